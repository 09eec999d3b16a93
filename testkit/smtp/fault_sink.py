"""An aiosmtpd server that misbehaves on request, for delivery tests: slow, hanging, refusing.

usage: fault_sink.py PORT MAILDIR [--delay S] [--hang-after N] [--refuse ADDR]... [--tempfail ADDR]...
                     [--tempfail-code CODE] [--data-code CODE]
  --delay S       wait S seconds before answering each DATA (a slow server)
  --hang-after N  accept N mails, then stop answering (the connection stays open)
  --refuse ADDR   answer 550 (user unknown) at RCPT TO for ADDR
  --tempfail ADDR answer 451 at RCPT TO for ADDR
  --tempfail-code C  the code --tempfail answers instead of 451 (450: greylisting)
  --data-code C   answer C (e.g. 451 or 554) at the end of DATA instead of accepting the mail
Every accepted mail becomes a Maildir file, with an X-Sink-Rcpt header naming the envelope
recipients. Prints "ready", runs until stdin closes."""
import argparse
import asyncio
import mailbox
import os
import sys

from aiosmtpd.controller import Controller

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("maildir")
p.add_argument("--delay", type=float, default=0.0)
p.add_argument("--hang-after", type=int, default=-1)
p.add_argument("--refuse", action="append", default=[])
p.add_argument("--tempfail", action="append", default=[])
p.add_argument("--tempfail-code", type=int, default=451)
p.add_argument("--data-code", type=int, default=0)
a = p.parse_args()

# Maildir(create=True) makes the subfolders only when the folder itself is new
for sub in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(a.maildir, sub), exist_ok=True)
box = mailbox.Maildir(a.maildir, create=False)
accepted = 0


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if accepted >= a.hang_after >= 0:
            await asyncio.sleep(3600)
        if address.lower() in (r.lower() for r in a.refuse):
            return "550 5.1.1 user unknown"
        if address.lower() in (r.lower() for r in a.tempfail):
            return f"{a.tempfail_code} 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        global accepted
        if accepted >= a.hang_after >= 0:
            await asyncio.sleep(3600)
        if a.delay:
            await asyncio.sleep(a.delay)
        if a.data_code:
            return f"{a.data_code} refused by the test sink"
        head = "X-Sink-Rcpt: " + ", ".join(envelope.rcpt_tos) + "\r\n"
        box.add(head.encode() + envelope.original_content)
        accepted += 1
        return "250 Message accepted for delivery"


controller = Controller(Handler(), hostname="127.0.0.1", port=a.port)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
