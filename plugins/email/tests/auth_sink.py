"""An aiosmtpd server that requires SMTP AUTH (PLAIN/LOGIN) on a plain connection, for the
email plugin's AUTH tests (the shared sinks do not authenticate).

usage: auth_sink.py PORT MAILDIR USER PASSWORD; prints "ready", runs until stdin closes."""
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult

port, maildir = int(sys.argv[1]), sys.argv[2]
user, password = sys.argv[3].encode(), sys.argv[4].encode()


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == user and auth_data.password == password
    # handled=False: aiosmtpd answers 535 itself on a failure
    return AuthResult(success=ok, handled=False)


controller = Controller(
    Mailbox(maildir),
    hostname="127.0.0.1",
    port=port,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=False,
)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
