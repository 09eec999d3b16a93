"""The end-of-run check of scripts/chaos: from the outbox rows, the alarms, the inventory and what
the SMTP server saw, count delivered, duplicated, lost and stranded, false `fail` alarms, panics.

Mails are matched to outbox rows (batch_notifications, notifier `email`) by the header
`X-Monit-Notification-Id: <batch_notifications.id>` when the mails carry it: that is exact, one
(row, recipient) pair at a time. A binary without the header is judged by the fallback: rows and
mails grouped by (alarm title, recovery or not) and recipient, and inside a group a mail goes to
a row whose value it shows (the usage figure of the body, to 0.01). The fallback cannot tell
apart two rows of one alarm with the same value (repeats of a steady reading): there a
duplicate of one and the loss of the other cancel out, so it may under-count, never over-count.

A digest mail carries every row it holds in that header (`12, 13, 14`, folded when long): each
of them counts for each envelope recipient, exactly as a single mail does.

A (row, recipient) pair that got no mail is not lost when the SMTP server refused it for good:
the refusable address was refused at RCPT after the row was created, or (row no longer pending)
the server answered 5xx to that very message. A refusal of one recipient that leaves the others of
the same transaction without a mail for BLOCKED_WITHIN_S is counted as `blocked` (a recipient deferred
with 4xx at RCPT likewise).

With digests on (`digest_threshold` > 0), `flood` counts the mails too many that a deferred
recipient needed for its backlog: when one mail of more than the threshold rows went to the
others while that recipient was deferred (450 at RCPT), those rows are owed to it as one digest,
so every later mail to it carrying any of them beyond the first is a flood (a recipient deferred
for one tick must not get a mail per row). A deferral whose rows were duplicated (a crash lost the
record of that mail, and the rows it split were sent again) is excused: its duplicates count. Everything here is a pure function of its inputs,
so test_verdict.py checks it on made-up data.
"""

import collections

BOSH_ORIGIN_ID = 9999
# Rows in these states are still meant to be sent; a missing mail of theirs is lost, whatever the
# server said earlier.
UNFINISHED = {"pending", "claimed", "sending"}
PIPELINE_ORIGIN_ID = 0
SLACK_S = 2.0
# A recipient that got through RCPT in a transaction where another was refused must get a mail
# within this long, or the refusal blocked it.
BLOCKED_WITHIN_S = 10.0


def subject_key(subject):
    """(title, recovered) from a mail subject, in either language."""
    s = " ".join((subject or "").split())
    for prefix, suffix in (("[RECOVERED] ", " - back to normal"), ("[회복] ", " - 정상으로 회복되었습니다")):
        if s.startswith(prefix) and s.endswith(suffix):
            return s[len(prefix):len(s) - len(suffix)].strip(), True
    if s.endswith("!"):
        s = s[:-1]
    return s.strip(), False


def row_key(row):
    usage = None if row.get("value") is None else "%.2f" % float(row["value"])
    title = " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in row["title"]).split())
    return title, row["kind"] == "recovered", usage


def same_usage(value, usage):
    """A row's value and the usage figure its mail shows ("93.47"), or neither has one."""
    if value is None or usage is None:
        return value is None and usage is None
    return abs(float(value) - float(usage)) <= 0.0101


def ids_of(nid):
    """The row ids a mail's X-Monit-Notification-Id names: one, or a digest's list (older binaries
    wrote the first 20 and `+N more`: the rest cannot be matched)."""
    if not nid:
        return []
    return [x.strip() for x in str(nid).split(",") if x.strip().isdigit()]


def mail_key(event):
    title, recovered = subject_key(event.get("subject"))
    return title, recovered, event.get("usage")


def judge(rows, targets, events, refusable, alarms, vm_ids, vm_kinds, logs_panics, digest_threshold=0):
    """rows: outbox rows of the email notifier {id, kind, status, created, origin, title, value,
    late}; a late row (queued after the drain ended, by the last tick) is matched but not judged;
    targets: origin -> addresses mailed (alarm_targets, mail_send_yn = 'Y');
    events: the SMTP server's JSON lines; refusable: the address the server may refuse;
    alarms: {id, origin_type, origin_id, alarm_type, level, ip, resolve_status};
    vm_ids: ids in `vms`; vm_kinds: ip -> writer behaviour ("gappy" VMs went silent on purpose);
    logs_panics: number of "panicked" lines in the instances' output;
    digest_threshold: the product's alarms.digest_threshold (0: digests off, no flood check)."""
    refusable = refusable.lower()
    accepted = [e for e in events if e.get("ev") == "accepted"]
    refused_at = [e["t"] for e in events if e.get("ev") == "refused_rcpt" and e.get("rcpt", "").lower() == refusable]
    rejected = [e for e in events if e.get("ev") == "rejected"]
    with_header = [e for e in accepted if e.get("nid")]
    mode = "header" if with_header or not accepted else "fallback"

    def refused_after(row):
        return any(t >= row["created"] - SLACK_S for t in refused_at)

    def rejected_for(row, key):
        if row["status"] in UNFINISHED:
            return False
        for e in rejected:
            if e["t"] < row["created"] - SLACK_S:
                continue
            if mode == "header" and str(row["id"]) in ids_of(e.get("nid")):
                return True
            if mode == "fallback" and mail_key(e)[:2] == key[:2] and same_usage(row.get("value"), mail_key(e)[2]):
                return True
        return False

    def excused(row, rcpt, key):
        if rcpt.lower() == refusable and refused_after(row):
            return "refused"
        if rejected_for(row, key):
            return "rejected"
        return None

    out = collections.Counter()
    per_rcpt = collections.defaultdict(collections.Counter)
    out["notifications"] = sum(1 for r in rows if not r.get("late"))
    lost_rows = set()
    dup_times = []
    if mode == "header":
        copies = collections.Counter()
        by_id = {str(r["id"]): r for r in rows}
        for e in sorted(accepted, key=lambda e: e["t"]):
            ids = ids_of(e.get("nid")) or [e.get("nid")]
            if len(ids) > 1:
                out["digests"] += 1
            for nid in ids:
                for rcpt in e.get("rcpts", []):
                    if nid in by_id:
                        copies[(nid, rcpt.lower())] += 1
                        if copies[(nid, rcpt.lower())] > 1:
                            dup_times.append(e["t"])
                    else:
                        out["unmatched"] += 1
                        per_rcpt[rcpt.lower()]["duplicates"] += 1
                        dup_times.append(e["t"])
        for r in rows:
            for rcpt in targets.get(r["origin"], []):
                n = copies.get((str(r["id"]), rcpt.lower()), 0)
                pr = per_rcpt[rcpt.lower()]
                if r.get("late"):
                    out["duplicates"] += max(0, n - 1)
                    pr["duplicates"] += max(0, n - 1)
                elif n:
                    out["delivered"] += 1
                    out["duplicates"] += n - 1
                    pr["delivered"] += 1
                    pr["duplicates"] += n - 1
                else:
                    why = excused(r, rcpt, None)
                    if why:
                        out["excused_" + why] += 1
                    else:
                        out["lost"] += 1
                        pr["lost"] += 1
                        lost_rows.add(r["id"])
        if digest_threshold > 0:
            duplicated = {nid for (nid, _), n in copies.items() if n > 1}
            out["flood"], out["deferred_digests"] = flood(accepted, events, digest_threshold, duplicated)
    else:
        # group by (title, recovered, recipient); inside a group, a mail goes to a row whose value
        # it shows (to 0.01: the mail and the payload may round the last digit apart)
        mails = collections.defaultdict(list)
        for e in sorted(accepted, key=lambda e: e["t"]):
            title, recovered, usage = mail_key(e)
            for rcpt in e.get("rcpts", []):
                mails[(title, recovered, rcpt.lower())].append((usage, e["t"]))
        groups = collections.defaultdict(list)
        for r in rows:
            title, recovered, usage = row_key(r)
            for rcpt in targets.get(r["origin"], []):
                groups[(title, recovered, rcpt.lower())].append(r)
        for gk, grows in groups.items():
            got = [0] * len(grows)
            for usage, t in mails.pop(gk, []):
                fits = [i for i, r in enumerate(grows) if same_usage(r.get("value"), usage)]
                fresh = [i for i in fits if got[i] == 0]
                if fresh:
                    got[fresh[0]] += 1
                    continue
                if fits:
                    got[fits[0]] += 1
                else:
                    out["unmatched"] += 1
                dup_times.append(t)
            for r, n in zip(grows, got):
                if r.get("late"):
                    out["duplicates"] += max(0, n - 1)
                    continue
                if n:
                    out["delivered"] += 1
                    out["duplicates"] += n - 1
                    continue
                why = excused(r, gk[2], row_key(r))
                if why:
                    out["excused_" + why] += 1
                else:
                    out["lost"] += 1
                    lost_rows.add(r["id"])
        # mails that no row explains: extra copies (or a subject the fallback cannot read)
        for left in mails.values():
            out["unmatched"] += len(left)
            dup_times.extend(t for _, t in left)
    out["duplicates"] += out["unmatched"]

    for a in alarms:
        # the metrics-pipeline alarm (origin_id 0, no VM) stands for a gap, not for a VM
        if a["origin_id"] == PIPELINE_ORIGIN_ID and a["origin_type"] in ("pas", "bos"):
            out["pipeline_alarms"] += 1
            continue
        if a["resolve_status"] in ("1", "2"):
            if a["origin_type"] == "pas" and a["origin_id"] not in vm_ids:
                out["stranded"] += 1
            if a["origin_type"] == "bos" and a["origin_id"] != BOSH_ORIGIN_ID and a["origin_id"] not in vm_ids:
                out["stranded"] += 1
        if "fail" in (a["alarm_type"], a["level"]):
            if a["origin_type"] == "bos":
                out["false_fail"] += 1
            elif a["origin_type"] == "pas" and vm_kinds.get(a.get("ip")) != "gappy":
                out["false_fail"] += 1
            else:
                out["true_fail"] += 1
    # one refused (or deferred) recipient blocking the others of the same mail
    for e in events:
        if e.get("ev") not in ("refused_rcpt", "deferred_rcpt") or not e.get("others"):
            continue
        for other in e["others"]:
            if not any(a["t"] >= e["t"] and a["t"] <= e["t"] + BLOCKED_WITHIN_S
                       and other.lower() in (r.lower() for r in a.get("rcpts", [])) for a in accepted):
                out["blocked"] += 1
                break
    out["panics"] = logs_panics
    result = {k: out.get(k, 0) for k in (
        "notifications", "delivered", "duplicates", "lost", "stranded", "false_fail", "panics",
        "unmatched", "excused_refused", "excused_rejected", "true_fail", "blocked", "pipeline_alarms",
        "digests", "flood", "deferred_digests")}
    result["per_rcpt"] = {r: {k: c.get(k, 0) for k in ("delivered", "duplicates", "lost")}
                          for r, c in sorted(per_rcpt.items())}
    result["dup_times"] = sorted(dup_times)
    result["mode"] = mode
    result["pending_at_end"] = sum(1 for r in rows if r["status"] in UNFINISHED and not r.get("late"))
    result["late"] = sum(1 for r in rows if r.get("late"))
    result["lost_rows"] = sorted(lost_rows)[:20]
    return result


def flood(accepted, events, threshold, duplicated):
    """(mails too many, deferrals checked): see the module doc. `duplicated`: row ids some
    recipient got more than once."""
    by_tx = {}
    for e in accepted:
        if e.get("tx") is not None:
            by_tx.setdefault(e["tx"], e)
    extra = checked = 0
    for d in events:
        if d.get("ev") != "deferred_rcpt":
            continue
        sent = by_tx.get(d.get("tx"))
        if sent is None or sent["t"] < d["t"]:
            continue  # nobody took that mail: its rows are owed to everyone alike
        owed = set(ids_of(sent.get("nid")))
        if len(owed) <= threshold:
            continue
        checked += 1
        if owed & duplicated:
            continue
        who = d["rcpt"].lower()
        later = [e for e in accepted if e["t"] > sent["t"] and who in (r.lower() for r in e.get("rcpts", []))
                 and owed & set(ids_of(e.get("nid")))]
        extra += max(0, len(later) - 1)
    return extra, checked


def summary_line(faults, kills, v, digest=False):
    line = ("chaos: faults=%d kills=%d notifications=%d delivered=%d duplicates=%d lost=%d "
            "stranded=%d false_fail=%d panics=%d blocked=%d" % (
                faults, kills, v["notifications"], v["delivered"], v["duplicates"], v["lost"],
                v["stranded"], v["false_fail"], v["panics"], v["blocked"]))
    if digest:
        line += " digests=%d flood=%d" % (v["digests"], v["flood"])
    return line


def failed(kills, v):
    return (v["lost"] > 0 or v["duplicates"] > kills or v["stranded"] > 0
            or v["false_fail"] > 0 or v["panics"] > 0 or v["blocked"] > 0 or v.get("flood", 0) > 0)
