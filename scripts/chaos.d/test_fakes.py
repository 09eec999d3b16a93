"""The fakes of scripts/chaos do what they say: every SMTP fault mode answers as documented and is
logged; the fake director answers the calls of plugins/bosh and leaves a VM out when told.
Run: /usr/bin/python3 -m unittest discover -s scripts/chaos.d"""

import json
import os
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
TYPO = "typo@chaos.example"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("port %d never opened" % port)


def set_mode(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)


class Smtp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        d = cls.dir.name
        cls.control, cls.events_path = os.path.join(d, "mode"), os.path.join(d, "events.jsonl")
        set_mode(cls.control, "normal")
        cls.port = free_port()
        cls.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "smtp_fault.py"), str(cls.port),
                                     cls.control, cls.events_path, os.path.join(d, "mail"), TYPO],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        cls.dir.cleanup()

    def events(self):
        with open(self.events_path) as f:
            return [json.loads(line) for line in f]

    def send(self, nid, rcpts=("ops@chaos.example", "oncall@chaos.example")):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "monit@chaos.example", ", ".join(rcpts), "[vm/0] cpu status [critical]!"
        msg["X-Monit-Notification-Id"] = str(nid)
        msg.set_content("critical : vm/0's cpu threshold [90]% exceeded, current usage [93.47]%.")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
            return s.send_message(msg)

    def test_modes(self):
        set_mode(self.control, "normal")
        self.assertEqual(self.send(1), {})
        e = self.events()[-1]
        self.assertEqual((e["ev"], e["nid"], e["usage"], e["rcpts"]),
                         ("accepted", "1", "93.47", ["ops@chaos.example", "oncall@chaos.example"]))
        self.assertEqual(e["subject"], "[vm/0] cpu status [critical]!")

        set_mode(self.control, "slow")
        start = time.monotonic()
        self.send(2)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

        set_mode(self.control, "4xx")
        with self.assertRaises(smtplib.SMTPDataError) as c:
            self.send(3)
        self.assertEqual(c.exception.smtp_code, 451)
        set_mode(self.control, "5xx")
        with self.assertRaises(smtplib.SMTPDataError) as c:
            self.send(4)
        self.assertEqual(c.exception.smtp_code, 554)
        self.assertEqual([e["ev"] for e in self.events()[-2:]], ["tempfail", "rejected"])
        self.assertEqual(self.events()[-1]["nid"], "4")

        set_mode(self.control, "refuse")
        refused = self.send(5, rcpts=("ops@chaos.example", TYPO))
        self.assertEqual(refused[TYPO][0], 550)
        ev = self.events()[-2:]
        self.assertEqual((ev[0]["ev"], ev[0]["rcpt"], ev[0]["others"]), ("refused_rcpt", TYPO, ["ops@chaos.example"]))
        self.assertEqual((ev[1]["ev"], ev[1]["rcpts"]), ("accepted", ["ops@chaos.example"]))

        set_mode(self.control, "defer oncall@chaos.example")
        deferred = self.send(51)
        self.assertEqual(deferred["oncall@chaos.example"][0], 450)
        ev = self.events()[-2:]
        self.assertEqual((ev[0]["ev"], ev[0]["rcpt"], ev[0]["others"]),
                         ("deferred_rcpt", "oncall@chaos.example", ["ops@chaos.example"]))
        self.assertEqual((ev[1]["ev"], ev[1]["rcpts"], ev[1]["nid"]), ("accepted", ["ops@chaos.example"], "51"))
        # a digest's header lists its rows
        set_mode(self.control, "normal")
        self.send("52, 53, 54")
        self.assertEqual(self.events()[-1]["nid"], "52, 53, 54")

        set_mode(self.control, "hang 1")
        self.send(6)  # the one it still accepts
        threading.Timer(1.5, set_mode, (self.control, "normal")).start()
        start = time.monotonic()
        with self.assertRaises(smtplib.SMTPResponseException) as c:
            self.send(7)
        self.assertGreaterEqual(time.monotonic() - start, 1.0)
        self.assertEqual(c.exception.smtp_code, 421)
        evs = [e["ev"] for e in self.events()[-3:]]
        self.assertEqual(evs, ["accepted", "hang", "hang_released"])
        self.assertFalse(any(e["ev"] == "accepted" and e["nid"] == "7" for e in self.events()))


class Director(unittest.TestCase):
    def test_tasks_and_partial_answers(self):
        with tempfile.TemporaryDirectory() as d:
            vms = [{"name": "router_z1/%d" % i, "job": "router_z1", "index": i, "ip": "10.244.0.%d" % (10 + i),
                    "agent_id": "a%d" % i, "instance_id": "id-%d" % i, "vm_cid": "vm-%d" % i} for i in range(3)]
            spec, control, events = os.path.join(d, "vms.json"), os.path.join(d, "mode"), os.path.join(d, "ev")
            with open(spec, "w") as f:
                json.dump({"deployment": "paasta", "vms": vms}, f)
            set_mode(control, "normal")
            port = free_port()
            proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "fake_director.py"), str(port), spec,
                                     control, events, "1", "admin", "pw"])
            try:
                wait_port(port)
                base = "http://127.0.0.1:%d" % port
                info = json.load(urllib.request.urlopen(base + "/info"))
                self.assertEqual(info["user_authentication"]["type"], "basic")
                with self.assertRaises(urllib.error.HTTPError) as c:
                    urllib.request.urlopen(base + "/deployments")
                self.assertEqual(c.exception.code, 401)
                auth = {"Authorization": "Basic YWRtaW46cHc="}

                def get(path):
                    return urllib.request.urlopen(urllib.request.Request(base + path, headers=auth))

                self.assertEqual(json.load(get("/deployments"))[0]["name"], "paasta")

                def listing():
                    # urllib follows the 302 to /tasks/<id> (the real client does it by hand)
                    task = json.load(get("/deployments/paasta/vms?format=full"))
                    for _ in range(5):
                        if task["state"] == "done":
                            break
                        task = json.load(get("/tasks/%d" % task["id"]))
                    self.assertEqual(task["state"], "done")
                    text = get("/tasks/%d/output?type=result" % task["id"]).read().decode()
                    return [json.loads(line)["job_name"] + "/" + str(json.loads(line)["index"])
                            for line in text.splitlines() if line]

                self.assertEqual(len(listing()), 3)
                set_mode(control, "partial router_z1/1")
                self.assertEqual(listing(), ["router_z1/0", "router_z1/2"])
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
