"""The checker of scripts/chaos on made-up data: each count must move when, and only when, the
thing it counts happens. Run: /usr/bin/python3 -m unittest discover -s scripts/chaos.d"""

import unittest

from verdict import failed, judge, summary_line

OPS, ONCALL, TYPO = "ops@chaos.example", "oncall@chaos.example", "typo@chaos.example"
TARGETS = {"pas": [OPS, ONCALL, TYPO], "bos": [OPS]}


def row(i, kind="opened", status="sent", created=100.0, title="[cell_z1/0]'s cpu status [critical]", value=95.0):
    return {"id": i, "kind": kind, "status": status, "created": created, "origin": "pas",
            "title": title, "value": value}


def mail(r, rcpts, t=110.0, header=True):
    subject = r["title"] + "!" if r["kind"] != "recovered" else "[RECOVERED] %s - back to normal" % r["title"]
    return {"t": t, "ev": "accepted", "nid": str(r["id"]) if header else None, "subject": subject,
            "usage": None if r["value"] is None else "%.2f" % r["value"], "rcpts": rcpts}


def run(rows, events, alarms=(), vm_ids=(), kinds=None, panics=0, threshold=0):
    return judge(rows, TARGETS, events, TYPO, list(alarms), set(vm_ids), kinds or {}, panics, threshold)


def digest(rs, rcpts, t=110.0, tx=None):
    return {"t": t, "ev": "accepted", "nid": ", ".join(str(r["id"]) for r in rs), "tx": tx,
            "subject": "[DIGEST] %d alarms: critical %d" % (len(rs), len(rs)), "usage": None, "rcpts": rcpts}


class Digests(unittest.TestCase):
    def test_a_digest_counts_for_every_row_it_names(self):
        rows = [row(i) for i in (1, 2, 3)]
        v = run(rows, [digest(rows, [OPS, ONCALL, TYPO])], threshold=2)
        self.assertEqual((v["delivered"], v["duplicates"], v["lost"], v["digests"]), (9, 0, 0, 1))
        self.assertEqual(v["per_rcpt"][ONCALL], {"delivered": 3, "duplicates": 0, "lost": 0})
        # the same digest twice: every row doubled, for each recipient
        v = run(rows, [digest(rows, [OPS, ONCALL, TYPO])] * 2, threshold=2)
        self.assertEqual((v["delivered"], v["duplicates"]), (9, 9))
        self.assertEqual(v["per_rcpt"][OPS]["duplicates"], 3)
        # an older binary's header, first ids and "+N more": the rest is not matched
        v = run(rows, [dict(digest(rows, [OPS, ONCALL, TYPO]), nid="1,2,+1 more")], threshold=2)
        self.assertEqual((v["delivered"], v["lost"]), (6, 3))
        self.assertTrue(summary_line(0, 0, v, digest=True).endswith(" digests=1 flood=0"))

    def deferral(self, rows, t=100.0):
        """ONCALL deferred at RCPT while OPS and TYPO took the digest of `rows`."""
        return [{"t": t, "ev": "deferred_rcpt", "rcpt": ONCALL, "tx": 7, "others": [OPS]},
                digest(rows, [OPS, TYPO], t=t + 0.1, tx=7)]

    def test_a_deferred_recipient_sent_its_backlog_one_by_one_is_a_flood(self):
        rows = [row(i) for i in range(1, 6)]
        singles = [mail(r, [ONCALL], t=120.0 + r["id"]) for r in rows]
        v = run(rows, self.deferral(rows) + singles, threshold=3)
        self.assertEqual((v["flood"], v["deferred_digests"], v["lost"], v["duplicates"]), (4, 1, 0, 0))
        self.assertTrue(failed(0, v))
        # as one digest: no flood
        v = run(rows, self.deferral(rows) + [digest(rows, [ONCALL], t=130.0)], threshold=3)
        self.assertEqual((v["flood"], v["deferred_digests"], v["lost"]), (0, 1, 0))
        self.assertFalse(failed(0, v))
        # at or under the threshold, single mails are what is promised
        v = run(rows, self.deferral(rows) + singles, threshold=5)
        self.assertEqual((v["flood"], v["deferred_digests"]), (0, 0))
        # digests off: not checked
        self.assertEqual(run(rows, self.deferral(rows) + singles)["flood"], 0)

    def test_a_deferral_split_by_a_crash_is_excused_by_its_duplicates(self):
        rows = [row(i) for i in range(1, 6)]
        # the record of rows 4 and 5 was lost: they went to OPS again, alone, and to ONCALL
        events = self.deferral(rows) + [digest(rows[:3], [ONCALL], t=130.0),
                                        digest(rows[3:], [OPS, ONCALL], t=131.0)]
        v = run(rows, events, threshold=3)
        self.assertEqual((v["flood"], v["duplicates"], v["lost"]), (0, 2, 0))

    def test_a_deferred_recipient_blocking_the_others_is_counted(self):
        a = row(1)
        deferred = {"t": 101.0, "ev": "deferred_rcpt", "rcpt": ONCALL, "tx": 3, "others": [OPS]}
        self.assertEqual(run([a], [deferred])["blocked"], 1)
        self.assertEqual(run([a], [deferred, mail(a, [OPS, TYPO], t=101.2), mail(a, [ONCALL], t=105.0)])["blocked"], 0)


class Delivery(unittest.TestCase):
    def test_clean_run(self):
        rows = [row(1), row(2, value=96.0)]
        for header in (True, False):
            v = run(rows, [mail(r, [OPS, ONCALL, TYPO], header=header) for r in rows])
            self.assertEqual((v["delivered"], v["duplicates"], v["lost"]), (6, 0, 0), header)
            self.assertEqual(v["mode"], "header" if header else "fallback")
            self.assertFalse(failed(0, v))

    def test_duplicates_and_losses_by_header(self):
        a, b = row(1), row(2)
        v = run([a, b], [mail(a, [OPS, ONCALL, TYPO]), mail(a, [OPS, ONCALL, TYPO]), mail(b, [OPS])])
        self.assertEqual((v["delivered"], v["duplicates"], v["lost"]), (4, 3, 2))
        self.assertTrue(failed(3, v))

    def test_duplicates_and_losses_by_subject(self):
        a, b = row(1), row(2, title="[router_z1/0]'s memory status [warning]", value=86.0)
        v = run([a, b], [mail(a, [OPS, ONCALL, TYPO], header=False)] * 2)
        self.assertEqual((v["delivered"], v["duplicates"], v["lost"]), (3, 3, 3))

    def test_repeats_of_one_alarm_are_told_apart_by_the_value_shown(self):
        # same subject; the payload says 93.475..., the mail rounds it to 93.47
        a, b = row(1, value=93.47500000000001), row(2, value=96.0)
        v = run([a, b], [mail(dict(a, value=93.47), [OPS, ONCALL, TYPO], header=False)] * 2)
        self.assertEqual((v["delivered"], v["duplicates"], v["lost"]), (3, 3, 3))

    def test_recovery_and_opening_are_told_apart(self):
        a, b = row(1), row(2, kind="recovered", value=20.0)
        v = run([a, b], [mail(a, [OPS, ONCALL, TYPO], header=False)] * 2)
        self.assertEqual((v["duplicates"], v["lost"]), (3, 3))

    def test_refused_recipient_is_excused_only_when_refused_during_the_rows_life(self):
        a = row(1, created=100.0)
        refused_late = {"t": 105.0, "ev": "refused_rcpt", "rcpt": TYPO}
        refused_early = {"t": 50.0, "ev": "refused_rcpt", "rcpt": TYPO}
        v = run([a], [mail(a, [OPS, ONCALL]), refused_late])
        self.assertEqual((v["lost"], v["excused_refused"]), (0, 1))
        v = run([a], [mail(a, [OPS, ONCALL]), refused_early])
        self.assertEqual(v["lost"], 1)
        # the good recipients are never excused by the refusal of another
        v = run([a], [mail(a, [TYPO]), refused_late])
        self.assertEqual(v["lost"], 2)

    def test_a_refused_recipient_blocking_the_others_is_counted(self):
        a = row(1, created=100.0)
        refused = {"t": 101.0, "ev": "refused_rcpt", "rcpt": TYPO, "others": [OPS, ONCALL]}
        self.assertEqual(run([a], [refused])["blocked"], 1)
        self.assertTrue(failed(0, run([a], [refused])))
        # the others got it in the same or the next transaction: not blocked
        v = run([a], [refused, mail(a, [OPS, ONCALL], t=101.5)])
        self.assertEqual((v["blocked"], v["lost"], v["excused_refused"]), (0, 0, 1))
        # a transaction of the refused address alone blocks nobody
        self.assertEqual(run([a], [dict(refused, others=[])])["blocked"], 0)

    def test_late_rows_are_matched_but_not_judged(self):
        a, late = row(1), dict(row(2, value=96.0, status="pending"), late=True)
        for header in (True, False):
            v = run([a, late], [mail(a, [OPS, ONCALL, TYPO], header=header)])
            self.assertEqual((v["notifications"], v["lost"], v["late"], v["unmatched"]), (1, 0, 1, 0), header)
            v = run([a, late], [mail(a, [OPS, ONCALL, TYPO], header=header)] + [mail(late, [OPS], header=header)] * 2)
            self.assertEqual((v["duplicates"], v["unmatched"], v["lost"]), (1, 0, 0), header)

    def test_duplicates_are_timed(self):
        a = row(1)
        v = run([a], [mail(a, [OPS, ONCALL, TYPO], t=110.0), mail(a, [OPS], t=120.0)])
        self.assertEqual(v["dup_times"], [120.0])

    def test_a_5xx_excuses_a_parked_row_but_not_a_pending_one(self):
        parked, pending = row(1, status="parked"), row(2, status="pending")
        events = [dict(mail(parked, [OPS, ONCALL, TYPO]), ev="rejected"),
                  dict(mail(pending, [OPS, ONCALL, TYPO]), ev="rejected")]
        v = run([parked, pending], events)
        self.assertEqual((v["excused_rejected"], v["lost"]), (3, 3))

    def test_unmatched_mail_counts_as_duplicate(self):
        a = row(1)
        stray = dict(mail(a, [OPS]), nid="999")
        v = run([a], [mail(a, [OPS, ONCALL, TYPO]), stray])
        self.assertEqual((v["unmatched"], v["duplicates"]), (1, 1))


class Alarms(unittest.TestCase):
    def alarm(self, **kw):
        a = {"id": 1, "origin_type": "pas", "origin_id": 5, "alarm_type": "cpu", "level": "critical",
             "ip": "10.244.0.10", "resolve_status": "1"}
        a.update(kw)
        return a

    def test_stranded(self):
        self.assertEqual(run([], [], [self.alarm()], vm_ids=[5])["stranded"], 0)
        self.assertEqual(run([], [], [self.alarm()], vm_ids=[6])["stranded"], 1)
        self.assertEqual(run([], [], [self.alarm(resolve_status="3")], vm_ids=[6])["stranded"], 0)
        director = self.alarm(origin_type="bos", origin_id=9999)
        self.assertEqual(run([], [], [director], vm_ids=[])["stranded"], 0)

    def test_false_fail(self):
        fail = self.alarm(alarm_type="fail", level="fail")
        v = run([], [], [fail], vm_ids=[5], kinds={"10.244.0.10": "flip"})
        self.assertEqual(v["false_fail"], 1)
        self.assertTrue(failed(0, v))
        v = run([], [], [fail], vm_ids=[5], kinds={"10.244.0.10": "gappy"})
        self.assertEqual((v["false_fail"], v["true_fail"]), (0, 1))

    def test_the_pipeline_alarm_is_neither_stranded_nor_a_false_fail(self):
        pipeline = self.alarm(alarm_type="fail", level="fail", origin_id=0, ip="")
        v = run([], [], [pipeline], vm_ids=[5])
        self.assertEqual((v["stranded"], v["false_fail"], v["pipeline_alarms"]), (0, 0, 1))
        self.assertFalse(failed(0, v))

    def test_panics_fail_the_run(self):
        self.assertTrue(failed(0, run([], [], panics=1)))


if __name__ == "__main__":
    unittest.main()
