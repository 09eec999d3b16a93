#!/usr/bin/python3
"""A fault-injecting SMTP server for scripts/chaos (Debian's aiosmtpd; run with /usr/bin/python3).

    smtp_fault.py PORT CONTROL_FILE EVENTS_JSONL MAIL_DIR REFUSABLE_ADDRESS

Behaviour is read from CONTROL_FILE (one line) at every command, so the harness switches it at
run time:

    normal          accept everything
    slow            0.3 s per mail before the 250
    hang K          accept K more mails, then hold every DATA without an answer until the mode
                    changes (then 421), at most 120 s
    4xx             451 at the end of DATA (transient)
    5xx             554 at the end of DATA (permanent: the message is refused)
    refuse          550 at RCPT for REFUSABLE_ADDRESS only; the others are accepted
    defer ADDR      450 at RCPT for ADDR only (greylisting); the others are accepted

Every outcome is one JSON line in EVENTS_JSONL (time, mode, event, envelope recipients, the
X-Monit-Notification-Id header when present, subject, usage figure from the body), written
before the answer is sent: the checker counts deliveries from it. Accepted mails are also kept
as files in MAIL_DIR for reading by hand.
"""

import asyncio
import email
import email.policy
import json
import os
import re
import sys
import time

from aiosmtpd.controller import Controller

HANG_LIMIT_S = 120.0
SLOW_S = 0.3
USAGE = re.compile(r"current usage \[([0-9.]+)\]%")


class Control:
    """The mode in the control file, re-read when the file changes."""

    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.mode = "normal"
        self.arg = None
        # hang: mails still to accept since the hang mode was set
        self.hang_left = 0

    def current(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return self.mode
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                with open(self.path, encoding="utf-8") as f:
                    words = f.read().split()
            except OSError:
                words = []
            self.mode = words[0] if words else "normal"
            self.arg = words[1] if len(words) > 1 else None
            if self.mode == "hang":
                try:
                    self.hang_left = int(self.arg or "3")
                except ValueError:
                    self.hang_left = 3
        return self.mode


class FaultHandler:
    def __init__(self, control, events_path, mail_dir, refusable):
        self.control = control
        self.events = open(events_path, "a", encoding="utf-8")
        self.mail_dir = mail_dir
        self.refusable = refusable.lower()
        self.seq = 0

    def log(self, **fields):
        fields.setdefault("t", time.time())
        self.events.write(json.dumps(fields, ensure_ascii=False) + "\n")
        self.events.flush()

    def tx(self, envelope):
        """A number for the mail transaction (MAIL FROM to DATA) the envelope belongs to."""
        if getattr(envelope, "chaos_tx", None) is None:
            self.seq += 1
            envelope.chaos_tx = self.seq
        return envelope.chaos_tx

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = self.control.current()
        tx = self.tx(envelope)
        if mode == "refuse" and address.lower() == self.refusable:
            # with the recipients this transaction had already got through: if none of them
            # gets a mail soon after, the refusal blocked them
            self.log(mode=mode, ev="refused_rcpt", rcpt=address, tx=tx, others=list(envelope.rcpt_tos))
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if mode == "defer" and address.lower() == (self.control.arg or "").lower():
            self.log(mode=mode, ev="deferred_rcpt", rcpt=address, tx=tx, others=list(envelope.rcpt_tos))
            return "450 4.2.0 <%s>: Recipient address rejected: Greylisted, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def describe(self, envelope):
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        nid = msg.get("X-Monit-Notification-Id")
        subject = str(msg.get("Subject", ""))
        text = ""
        try:
            part = msg.get_body(preferencelist=("plain",))
            if part is not None:
                text = part.get_content()
        except Exception:  # a body the parser cannot read still counts as a mail
            text = ""
        m = USAGE.search(text)
        return raw, {
            "tx": getattr(envelope, "chaos_tx", None),
            "nid": str(nid).strip() if nid is not None else None,
            "subject": subject,
            "usage": m.group(1) if m else None,
            "rcpts": list(envelope.rcpt_tos),
        }

    async def handle_DATA(self, server, session, envelope):
        mode = self.control.current()
        raw, info = self.describe(envelope)
        if mode == "4xx":
            self.log(mode=mode, ev="tempfail", **info)
            return "451 4.3.0 Temporary local problem, try again later"
        if mode == "5xx":
            self.log(mode=mode, ev="rejected", **info)
            return "554 5.6.0 Message rejected by policy"
        if mode == "hang":
            if self.control.hang_left > 0:
                self.control.hang_left -= 1
            else:
                self.log(mode=mode, ev="hang", **info)
                start = time.monotonic()
                while self.control.current() == "hang" and time.monotonic() - start < HANG_LIMIT_S:
                    await asyncio.sleep(0.2)
                self.log(mode=mode, ev="hang_released", **info)
                return "421 4.3.2 Service shutting down"
        if mode == "slow":
            await asyncio.sleep(SLOW_S)
        name = "%d.%06d.eml" % (int(time.time()), info["tx"] or 0)
        with open(os.path.join(self.mail_dir, name), "wb") as f:
            f.write(raw)
        self.log(mode=mode, ev="accepted", file=name, **info)
        return "250 Message accepted for delivery"


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: smtp_fault.py PORT CONTROL_FILE EVENTS_JSONL MAIL_DIR REFUSABLE_ADDRESS")
    port, control, events, mail_dir, refusable = sys.argv[1:]
    os.makedirs(mail_dir, exist_ok=True)
    handler = FaultHandler(Control(control), events, mail_dir, refusable)
    controller = Controller(handler, hostname="127.0.0.1", port=int(port), decode_data=False)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
