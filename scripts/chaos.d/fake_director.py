#!/usr/bin/python3
"""A fake BOSH director for scripts/chaos, following the calls plugins/bosh/src/director.rs makes:

    GET /info                                   unauthenticated; basic auth
    GET /deployments                            [{"name": ...}]
    GET /deployments/<name>/vms?format=full     starts a task: 302 to /tasks/<id>, or 200 task JSON
    GET /tasks/<id>                             processing once (sometimes), then done
    GET /tasks/<id>/output?type=result          one VM JSON per line

    fake_director.py PORT VMS_JSON CONTROL_FILE EVENTS_JSONL SEED USER PASSWORD

CONTROL_FILE holds `normal` or `partial <vm name>`: the VM list of every task started while it
says partial leaves that VM out (a director answer missing one VM). Each task is logged to
EVENTS_JSONL with the VMs it left out.
"""

import base64
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs


class State:
    def __init__(self, vms, control, events, seed, user, password):
        self.vms = vms
        self.control = control
        self.events = open(events, "a", encoding="utf-8")
        self.rng = random.Random(seed)
        self.auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.lock = threading.Lock()
        self.next_id = 1000
        # task id -> {"lines": str, "polls_left": int}
        self.tasks = {}

    def mode(self):
        try:
            with open(self.control, encoding="utf-8") as f:
                return f.read().split()
        except OSError:
            return []

    def new_task(self, deployment):
        words = self.mode()
        omit = set(words[1:]) if words and words[0] == "partial" else set()
        lines = []
        for vm in self.vms:
            if vm["name"] in omit:
                continue
            lines.append(json.dumps({
                "agent_id": vm["agent_id"],
                "job_name": vm["job"],
                "index": vm["index"],
                "id": vm["instance_id"],
                "ips": [vm["ip"]],
                "az": None,
                "vm_cid": vm["vm_cid"],
                "job_state": "running",
                "resource_pool": "default",
                "vitals": {"cpu": {"sys": "1.0", "user": "2.0", "wait": "0.1"}},
                "processes": [],
            }))
        with self.lock:
            self.next_id += 1
            tid = self.next_id
            self.tasks[tid] = {"lines": "\n".join(lines) + "\n", "polls_left": self.rng.choice([0, 1])}
            redirect = self.rng.random() < 0.5
            self.events.write(json.dumps({
                "t": time.time(), "task": tid, "deployment": deployment,
                "vms": len(lines), "omitted": sorted(omit), "redirect": redirect,
            }) + "\n")
            self.events.flush()
        return tid, redirect

    def task_json(self, tid, advance):
        with self.lock:
            task = self.tasks.get(tid)
            if task is None:
                return None
            state = "done"
            if task["polls_left"] > 0:
                state = "processing"
                if advance:
                    task["polls_left"] -= 1
        return {"id": tid, "state": state, "description": "retrieve vm-stats",
                "timestamp": int(time.time()), "result": None, "user": "admin"}


def handler_for(state, deployment):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the events file says what happened
            pass

        def send_json(self, code, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def send_text(self, code, text):
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            if parts == ["info"]:
                return self.send_json(200, {
                    "name": "chaos-director", "uuid": "chaos", "version": "280.0.0 (00000000)",
                    "user": None, "cpi": "warden_cpi",
                    "user_authentication": {"type": "basic", "options": {}},
                })
            if self.headers.get("Authorization") != state.auth:
                return self.send_text(401, "Not authorized: '%s'\n" % url.path)
            if parts == ["deployments"]:
                return self.send_json(200, [{"name": deployment, "releases": [], "stemcells": [],
                                             "cloud_config": "latest", "teams": []}])
            if len(parts) == 3 and parts[0] == "deployments" and parts[2] == "vms":
                if parts[1] != deployment:
                    return self.send_text(404, "Deployment '%s' doesn't exist\n" % parts[1])
                if query.get("format") != ["full"]:
                    return self.send_json(200, [])
                tid, redirect = state.new_task(parts[1])
                if redirect:
                    self.send_response(302)
                    self.send_header("Location", "http://%s/tasks/%d" % (self.headers.get("Host", "127.0.0.1"), tid))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self.send_json(200, state.task_json(tid, advance=False))
            if len(parts) >= 2 and parts[0] == "tasks" and parts[1].isdigit():
                tid = int(parts[1])
                if len(parts) == 2:
                    task = state.task_json(tid, advance=True)
                    if task is None:
                        return self.send_text(404, "Task %d could not be found\n" % tid)
                    return self.send_json(200, task)
                if len(parts) == 3 and parts[2] == "output" and query.get("type") == ["result"]:
                    with state.lock:
                        task = state.tasks.get(tid)
                    if task is None:
                        return self.send_text(404, "Task %d could not be found\n" % tid)
                    return self.send_text(200, task["lines"])
            return self.send_text(404, "not found\n")

    return Handler


def main():
    if len(sys.argv) != 8:
        sys.exit("usage: fake_director.py PORT VMS_JSON CONTROL_FILE EVENTS_JSONL SEED USER PASSWORD")
    port, vms_path, control, events, seed, user, password = sys.argv[1:]
    with open(vms_path, encoding="utf-8") as f:
        spec = json.load(f)
    state = State(spec["vms"], control, events, int(seed), user, password)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(state, spec["deployment"]))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
