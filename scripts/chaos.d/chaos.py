#!/usr/bin/python3
"""The soak behind scripts/chaos (see docs/reliability.md, "How it is tested").

Starts, in WORKDIR and on free 127.0.0.1 ports: a private MariaDB and InfluxDB, the fault SMTP
server, the fake BOSH director, the metric writer and two `monit-batch run` instances with leader
election; injects seeded random faults for the given minutes, logging each one with the effect
seen; turns every fault off and lets the outbox drain; stops everything and prints the verdict.
Every wait is bounded. Exit status: 0 pass, 1 the product failed the check, 3 the harness failed.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import verdict

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"  # Debian's, which sees python3-aiosmtpd
LOCK_DB = "monit"
OPS, ONCALL, TYPO, DBA = ("ops@chaos.example", "oncall@chaos.example", "typo@chaos.example",
                          "dba@chaos.example")
MEASURE_S = 20        # alarm_policies.measure_time of the soak
BUCKET_S = 5          # influx.bucket_seconds
WRITER_PERIOD_S = 2
DIRECTOR_USER, DIRECTOR_PASSWORD = "admin", "chaos-director-secret"
SERVICE_NAME = "micro-bosh"

WINDOW_FAULTS = ["smtp-slow", "smtp-hang", "smtp-4xx", "smtp-5xx", "smtp-refuse", "bosh-partial",
                 "influx-down"]
POINT_FAULTS = ["kill-leader", "kill-lock", "db-restart"]
ALL_FAULTS = WINDOW_FAULTS + POINT_FAULTS
# Digest mode only (not in the default plan, whose seeded schedules docs/reliability.md quotes):
# the SMTP server answers 450 at RCPT for DEFERRED only, as greylisting does.
DEFER_FAULT = "smtp-defer"
DEFERRED = ONCALL


class HarnessError(Exception):
    pass


def say(msg):
    print("chaos: " + msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(what, cond, within, step=0.2):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    raise HarnessError("%s: not within %.0f s" % (what, within))


class Proc:
    """A child process, its output in WORKDIR/logs, its pid in WORKDIR/pids (for the bash trap)."""

    def __init__(self, rt, name, argv, env=None):
        self.rt, self.name, self.argv, self.env = rt, name, argv, env
        self.popen = None

    def start(self):
        out = open(os.path.join(self.rt.logs, self.name + ".out"), "ab")
        err = open(os.path.join(self.rt.logs, self.name + ".err"), "ab")
        env = dict(os.environ)
        env.pop("PORT", None)
        env.update(self.env or {})
        self.popen = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        out.close()
        err.close()
        with open(os.path.join(self.rt.pids, self.name), "w") as f:
            f.write(str(self.popen.pid))
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, within=30.0):
        """Signals the process and waits (bounded); SIGKILL when it does not end. Returns the exit
        code, or None when it had to be killed."""
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            return None


class Runtime:
    def __init__(self, args):
        self.args = args
        self.dir = args.workdir
        self.logs = os.path.join(self.dir, "logs")
        self.pids = os.path.join(self.dir, "pids")
        for d in (self.logs, self.pids):
            os.makedirs(d, exist_ok=True)
        self.rng = random.Random(args.seed)
        self.t0 = time.time()
        self.ports = {k: free_port() for k in ("mysql", "influx", "influx_rpc", "smtp", "director")}
        self.procs = {}
        self.faults = []          # one dict per injected fault
        self.kills = 0            # kill -9 of an instance + MariaDB restarts (see docs)
        self.crashes = []         # instances that died without being killed
        self.smtp_control = os.path.join(self.dir, "smtp.mode")
        self.director_control = os.path.join(self.dir, "director.mode")
        self.smtp_events = os.path.join(self.dir, "smtp-events.jsonl")
        self.director_events = os.path.join(self.dir, "director-events.jsonl")
        self.writer_status = os.path.join(self.dir, "writer.jsonl")
        self.writer_control = os.path.join(self.dir, "writer.mode")
        self.fault_log = open(os.path.join(self.dir, "faults.log"), "a", encoding="utf-8")
        self.digest_threshold = args.digest_threshold if args.digest else 0
        self.set_mode(self.smtp_control, "normal")
        self.set_mode(self.director_control, "normal")
        self.set_mode(self.writer_control, "normal")

    def rel(self):
        return time.time() - self.t0

    @staticmethod
    def set_mode(path, text):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)

    # ---- MariaDB --------------------------------------------------------------------------
    def sql(self, query, db=LOCK_DB, timeout=15, check=True):
        cmd = ["mariadb", "--no-defaults", "--protocol=tcp", "-h127.0.0.1", "-P%d" % self.ports["mysql"],
               "-uroot", "-N", "-B", "-r", "--connect-timeout=5", "-e", query]
        if db:
            cmd.append(db)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise HarnessError("SQL timed out: %s" % query[:80])
            return None
        if r.returncode != 0:
            if check:
                raise HarnessError("SQL failed (%s): %s" % (r.stderr.strip(), query[:120]))
            return None
        return [line.split("\t") for line in r.stdout.splitlines()]

    def start_mariadb(self, first=False):
        data = os.path.join(self.dir, "mysql")
        if first:
            r = subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", "--skip-test-db",
                                "--auth-root-authentication-method=normal", "--datadir=" + data],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise HarnessError("mariadb-install-db: %s" % r.stderr[-500:])
        p = Proc(self, "mariadbd", [
            "mariadbd", "--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", "--datadir=" + data, "--port=%d" % self.ports["mysql"],
            "--socket=" + os.path.join(self.dir, "mysqld.sock"),
            "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
            "--log-error=" + os.path.join(self.logs, "mariadbd.log")]).start()
        self.procs["mariadbd"] = p
        wait_until("MariaDB on port %d" % self.ports["mysql"],
                   lambda: port_open(self.ports["mysql"]) and self.sql("SELECT 1", db=None, check=False), 90)

    def stop_mariadb(self):
        p = self.procs.get("mariadbd")
        if p:
            p.stop(signal.SIGTERM, within=60)
        wait_until("MariaDB port closed", lambda: not port_open(self.ports["mysql"]), 30)

    # ---- InfluxDB ---------------------------------------------------------------------------
    def influx_url(self):
        return "http://127.0.0.1:%d" % self.ports["influx"]

    def influx_up(self):
        try:
            with urllib.request.urlopen(self.influx_url() + "/ping", timeout=1) as r:
                return r.status == 204
        except OSError:
            return False

    def start_influx(self):
        d = os.path.join(self.dir, "influx")
        env = {
            "INFLUXDB_HTTP_BIND_ADDRESS": "127.0.0.1:%d" % self.ports["influx"],
            "INFLUXDB_BIND_ADDRESS": "127.0.0.1:%d" % self.ports["influx_rpc"],
            "INFLUXDB_META_DIR": os.path.join(d, "meta"),
            "INFLUXDB_DATA_DIR": os.path.join(d, "data"),
            "INFLUXDB_DATA_WAL_DIR": os.path.join(d, "wal"),
            "INFLUXDB_REPORTING_DISABLED": "true",
            "INFLUXDB_MONITOR_STORE_ENABLED": "false",
            "INFLUXDB_HTTP_LOG_ENABLED": "false",
        }
        self.procs["influxd"] = Proc(self, "influxd", ["influxd", "-config", "/etc/influxdb/influxdb.conf"],
                                     env).start()
        wait_until("InfluxDB /ping", self.influx_up, 60)

    def influx_query(self, q):
        data = ("q=" + urllib.request.quote(q)).encode()
        with urllib.request.urlopen(urllib.request.Request(self.influx_url() + "/query", data=data),
                                    timeout=10) as r:
            return r.read()

    # ---- the fakes ---------------------------------------------------------------------------
    def make_vms(self):
        rng, n = self.rng, self.args.vms
        jobs = ["router_z1", "api_z1", "cell_z1", "cell_z2", "uaa_z1", "nats_z1", "doppler_z2", "database_z1"]
        kinds = ["steady"] * max(2, n // 10) + ["gappy"] * max(1, n // 20)
        kinds += ["hot"] * max(2, n * 3 // 10)
        kinds += ["flip"] * (n - len(kinds))
        rng.shuffle(kinds)
        soak_end = self.args.minutes * 60
        per_job, vms = {}, []
        for i, kind in enumerate(kinds[:n]):
            job = jobs[i % len(jobs)]
            index = per_job.get(job, 0)
            per_job[job] = index + 1
            if kind == "hot":
                levels = {rng.choice(["cpu", "memory", "disk"]): rng.uniform(92, 96)}
                if rng.random() < 0.4:
                    levels[rng.choice(["cpu", "memory", "disk"])] = rng.uniform(86, 88)
                behaviour = {"kind": "hot", "levels": levels}
            elif kind == "flip":
                behaviour = {"kind": "flip", "resource": rng.choice(["cpu", "memory", "disk"]),
                             "high": rng.choice([93.0, 87.0]), "low": 20.0,
                             "period": rng.randint(25, 50), "phase": rng.randint(0, 60)}
            elif kind == "gappy":
                start = self.t0 + 30 + rng.uniform(0, max(1.0, soak_end / 2))
                behaviour = {"kind": "gappy", "gap_start": start, "gap_end": start + 45}
            else:
                behaviour = {"kind": "steady"}
            vms.append({"seq": i, "name": "%s/%d" % (job, index), "job": job, "index": index,
                        "ip": "10.244.%d.%d" % (i // 200, 10 + i % 200), "behaviour": behaviour,
                        "agent_id": "agent-%04d" % i, "instance_id": "00000000-0000-4000-8000-%012d" % i,
                        "vm_cid": "vm-%04d" % i})
        director = {"seq": 9999, "service_name": SERVICE_NAME,
                    "behaviour": {"kind": "flip", "resource": "cpu", "high": 93.0, "low": 20.0,
                                  "period": 40, "phase": 0}}
        self.vms = vms
        self.vms_json = os.path.join(self.dir, "vms.json")
        with open(self.vms_json, "w", encoding="utf-8") as f:
            json.dump({"deployment": "paasta", "cf_db": "cf_metric_db", "bosh_db": "bosh_metric_db",
                       "vms": vms, "director": director}, f, indent=1)

    def start_fakes(self):
        mail_dir = os.path.join(self.dir, "mail")
        self.procs["smtp"] = Proc(self, "smtp", [PY, os.path.join(HERE, "smtp_fault.py"), str(self.ports["smtp"]),
                                                 self.smtp_control, self.smtp_events, mail_dir, TYPO]).start()
        self.procs["director"] = Proc(self, "director", [
            PY, os.path.join(HERE, "fake_director.py"), str(self.ports["director"]), self.vms_json,
            self.director_control, self.director_events, str(self.args.seed), DIRECTOR_USER,
            DIRECTOR_PASSWORD]).start()
        self.procs["writer"] = Proc(self, "writer", [PY, os.path.join(HERE, "metric_writer.py"), self.influx_url(),
                                                     self.vms_json, self.writer_status,
                                                     str(WRITER_PERIOD_S), self.writer_control]).start()
        wait_until("SMTP server", lambda: port_open(self.ports["smtp"]), 30)
        wait_until("fake director", lambda: port_open(self.ports["director"]), 30)
        wait_until("first metric write", lambda: '"state": "ok"' in read_text(self.writer_status), 30)

    # ---- monit-batch ------------------------------------------------------------------------
    def write_config(self):
        self.config = os.path.join(self.dir, "monit-batch.toml")
        i = self.args.interval
        text = f"""# written by scripts/chaos
[batch]
interval_seconds = {i}
step_timeout_seconds = {self.args.step_timeout}
inventory_timeout_seconds = {self.args.step_timeout}
leader_election = true
[server]
enabled = false
[log]
format = "plain"
level = "info"
[monitoring_db]
host = "127.0.0.1"
port = {self.ports["mysql"]}
dbname = "{LOCK_DB}"
username = "root"
password = ""
max_connections = 5
[influx]
url = "{self.influx_url()}"
timeout_seconds = 3
paasta_db = "cf_metric_db"
bosh_db = "bosh_metric_db"
container_db = "container_metric_db"
bucket_seconds = {BUCKET_S}
[alarms]
language = "en"
default_measure_seconds = {MEASURE_S}
default_repeat_minutes = 1
# 0: one mail per outbox row. --digest: more rows than this for the same recipients go as one
# digest, whose X-Monit-Notification-Id lists every row; the verdict matches either to its rows
digest_threshold = {self.digest_threshold}
retry_min_seconds = {self.args.retry_min}
retry_max_seconds = {self.args.retry_max}
[plugins.paasta]
enabled = true
[plugins.container]
enabled = false
[plugins.bosh]
enabled = true
api_url = "http://127.0.0.1:{self.ports["director"]}"
username = "{DIRECTOR_USER}"
password = "{DIRECTOR_PASSWORD}"
cf_deployment = "paasta"
service_name = "{SERVICE_NAME}"
timeout_seconds = 3
task_timeout_seconds = 5
task_poll_millis = 200
# every tick: the bosh-partial fault (8-15 s of partial answers) must reach the inventory
sync_interval_seconds = 0
[plugins.email]
enabled = true
smtp_host = "127.0.0.1"
smtp_port = {self.ports["smtp"]}
security = "plain"
sender = "PaaS-TA Monitor <monit@chaos.example>"
timeout_seconds = {self.args.smtp_timeout}
display_utc_offset_hours = 0
[plugins.autoscale]
enabled = false
"""
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text)

    def prepare_db(self):
        self.sql("CREATE DATABASE IF NOT EXISTS %s CHARACTER SET utf8mb4" % LOCK_DB, db=None)
        r = subprocess.run([self.args.bin, "--config", self.config, "migrate"], capture_output=True, text=True,
                           timeout=120, env={k: v for k, v in os.environ.items() if k != "PORT"})
        if r.returncode != 0:
            raise HarnessError("monit-batch migrate failed: %s %s" % (r.stdout[-800:], r.stderr[-800:]))
        self.sql(
            "UPDATE alarm_policies SET warning_threshold = 85, critical_threshold = 90, repeat_time = 1, "
            "measure_time = %d WHERE origin_type IN ('pas','bos');"
            "DELETE FROM alarm_targets;"
            "INSERT INTO alarm_targets (origin_type, mail_address, mail_send_yn) VALUES "
            "('pas','%s','Y'),('pas','%s','Y'),('pas','%s','Y'),('bos','%s','Y'),('bos','%s','Y'),"
            "('pas','muted@chaos.example','N');" % (MEASURE_S, OPS, ONCALL, TYPO, OPS, DBA))

    def start_instance(self, name):
        p = Proc(self, name, [self.args.bin, "--config", self.config, "run"],
                 {"MONIT_BATCH__BATCH__INSTANCE_NAME": name, "RUST_BACKTRACE": "1"}).start()
        p.killed = False
        self.procs[name] = p
        return p

    def instances(self):
        return [self.procs[n] for n in ("monit-a", "monit-b") if n in self.procs]

    def lock_holder(self):
        """(connection id, pid of the instance holding it) of the leader lock, or (None, None)."""
        rows = self.sql("SELECT IS_USED_LOCK('monit-batch:%s')" % LOCK_DB, check=False)
        if not rows or not rows[0] or rows[0][0] in ("NULL", ""):
            return None, None
        conn = rows[0][0]
        host = self.sql("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s" % conn, check=False)
        if not host or not host[0]:
            return conn, None
        port = host[0][0].rsplit(":", 1)[-1]
        return conn, self.pid_with_local_port(int(port)) if port.isdigit() else None

    def pid_with_local_port(self, port):
        """The instance whose socket has this local TCP port (/proc/net/tcp, then its fds)."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in read_text(table).splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
        for p in self.instances():
            if not p.alive():
                continue
            try:
                fds = os.listdir("/proc/%d/fd" % p.pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (p.pid, fd))
                except OSError:
                    continue
                m = re.fullmatch(r"socket:\[(\d+)\]", link)
                if m and m.group(1) in inodes:
                    return p.pid
        return None

    def instance_by_pid(self, pid):
        for p in self.instances():
            if p.pid == pid:
                return p
        return None

    def reap_instances(self):
        """Restarts an instance that died without being killed (a crash), and records it."""
        for p in self.instances():
            if not p.alive() and not getattr(p, "killed", False):
                self.crashes.append({"t": round(self.rel(), 1), "instance": p.name, "exit": p.popen.returncode})
                say("t=+%.0fs instance %s exited by itself (code %s); restarted" % (
                    self.rel(), p.name, p.popen.returncode))
                self.start_instance(p.name)

    # ---- faults -------------------------------------------------------------------------------
    def events_between(self, path, t_from, t_to):
        out = []
        for line in read_text(path).splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if t_from <= e.get("t", 0) <= t_to:
                out.append(e)
        return out

    def record(self, kind, started, effect, effective, **extra):
        f = {"fault": kind, "at": round(started - self.t0, 1), "seconds": round(time.time() - started, 1),
             "effect": effect, "effective": effective}
        f.update(extra)
        self.faults.append(f)
        self.fault_log.write(json.dumps(f) + "\n")
        self.fault_log.flush()
        say("t=+%.0fs %s (%.0f s): %s%s" % (f["at"], kind, f["seconds"], effect,
                                            "" if effective else "  [NO EFFECT SEEN]"))

    def sleep_with_points(self, seconds, during):
        """Sleeps through a fault window; sometimes fires one point fault inside it."""
        end = time.time() + seconds
        if self.point_inside and self.rng.random() < 0.4:
            time.sleep(max(0.0, self.rng.uniform(0.3, 0.7) * seconds))
            self.point_fault(self.rng.choice(self.point_inside), inside=during)
        while time.time() < end:
            self.reap_instances()
            time.sleep(min(0.5, max(0.0, end - time.time())))

    def smtp_fault(self, kind):
        mode = kind.split("-", 1)[1]
        seconds = self.rng.uniform(8, 20)
        text = {"slow": "slow", "hang": "hang %d" % self.rng.randint(1, 4), "4xx": "4xx", "5xx": "5xx",
                "refuse": "refuse", "defer": "defer %s" % DEFERRED}[mode]
        started = time.time()
        self.set_mode(self.smtp_control, text)
        self.sleep_with_points(seconds, kind)
        self.set_mode(self.smtp_control, "normal")
        ev = self.events_between(self.smtp_events, started, time.time())
        count = {
            "slow": sum(1 for e in ev if e["ev"] == "accepted" and e.get("mode") == "slow"),
            "hang": sum(1 for e in ev if e["ev"] == "hang"),
            "4xx": sum(1 for e in ev if e["ev"] == "tempfail"),
            "5xx": sum(1 for e in ev if e["ev"] == "rejected"),
            "refuse": sum(1 for e in ev if e["ev"] == "refused_rcpt"),
            "defer": sum(1 for e in ev if e["ev"] == "deferred_rcpt"),
        }[mode]
        what = {"slow": "mails delayed 0.3 s", "hang": "DATA commands held without answer (%s)" % text,
                "4xx": "mails answered 451", "5xx": "mails answered 554", "refuse": "RCPT %s answered 550" % TYPO,
                "defer": "RCPT %s answered 450" % DEFERRED}
        accepted = sum(1 for e in ev if e["ev"] == "accepted")
        self.record(kind, started, "%d %s; %d mails accepted in the window" % (count, what[mode], accepted),
                    count > 0, mode=text)

    def bosh_partial(self):
        hot = [v for v in self.vms if v["behaviour"]["kind"] == "hot"] or self.vms
        vm = self.rng.choice(hot)
        seconds = self.rng.uniform(8, 15)
        before = self.sql("SELECT CAST(id AS CHAR) FROM vms WHERE name = '%s'" % vm["name"], check=False)
        started = time.time()
        self.set_mode(self.director_control, "partial %s" % vm["name"])
        gone = False
        end = started + seconds
        while time.time() < end:
            rows = self.sql("SELECT COUNT(*) FROM vms WHERE name = '%s'" % vm["name"], check=False)
            if rows and rows[0][0] == "0":
                gone = True
            self.reap_instances()
            time.sleep(1)
        self.set_mode(self.director_control, "normal")
        served = [e for e in self.events_between(self.director_events, started, time.time()) if e["omitted"]]
        self.record("bosh-partial", started,
                    "%d director answers without %s (vms.id %s); product: %s" % (
                        len(served), vm["name"], before[0][0] if before else "?",
                        "VM deleted from vms" if gone else "VM kept in vms"),
                    len(served) > 0, vm=vm["name"])

    def influx_down(self):
        seconds = MEASURE_S + 3 * BUCKET_S + self.rng.uniform(5, 15)
        started = time.time()
        self.procs["influxd"].stop(signal.SIGTERM, within=30)
        down = not self.influx_up()
        self.sleep_with_points(seconds, "influx-down")
        # the metrics come back a tick or two after InfluxDB does, as a forwarder reconnects
        self.set_mode(self.writer_control, "hold")
        self.start_influx()
        back = time.time()
        hold = self.rng.uniform(self.args.interval + 1, 2 * self.args.interval + 1)
        time.sleep(hold)
        self.set_mode(self.writer_control, "normal")
        fails = sum(1 for line in read_text(self.writer_status).splitlines()
                    if '"failed: ' in line and json.loads(line)["t"] >= started)
        self.record("influx-down", started, "InfluxDB %s for %.0f s (policy window %d s), metrics back %.0f s "
                    "after it; writer saw failures: %s" % (
                        "stopped" if down else "STILL ANSWERING", back - started, MEASURE_S, hold,
                        "yes" if fails else "no"), down, window=MEASURE_S)

    def point_fault(self, kind, inside=None):
        started = time.time()
        note = " (inside %s)" % inside if inside else ""
        if kind == "kill-leader":
            conn, pid = self.lock_holder()
            p = self.instance_by_pid(pid)
            if p is None:
                p = self.rng.choice(self.instances())
                how = "no lock holder found; killed %s" % p.name
            else:
                how = "killed leader %s (pid %d, lock conn %s)" % (p.name, pid, conn)
            p.killed = True
            p.popen.send_signal(signal.SIGKILL)
            code = p.popen.wait(timeout=10)
            self.kills += 1
            time.sleep(self.rng.uniform(0.5, 3))
            self.start_instance(p.name)
            new = self.wait_new_holder(conn)
            self.record(kind, started, "%s -9 (exit %s), restarted; lock now held by %s%s" % (
                how, code, new, note), code == -9)
        elif kind == "kill-lock":
            conn, pid = self.lock_holder()
            if conn is None:
                self.record(kind, started, "no lock holder to disconnect" + note, False)
                return
            ok = self.sql("KILL %s" % conn, db=None, check=False) is not None
            p = self.instance_by_pid(pid)
            new = self.wait_new_holder(conn)
            self.record(kind, started, "KILL lock connection %s of %s: %s; lock now held by %s%s" % (
                conn, p.name if p else "pid %s" % pid, "done" if ok else "FAILED", new, note), ok)
        elif kind == "db-restart":
            down_s = self.rng.uniform(3, 15)
            self.stop_mariadb()
            closed = not port_open(self.ports["mysql"])
            time.sleep(down_s)
            self.start_mariadb()
            self.kills += 1
            self.record(kind, started, "MariaDB stopped for %.0f s (port closed: %s) and started%s" % (
                down_s, closed, note), closed)

    def wait_new_holder(self, old_conn, within=None):
        within = within or 3 * self.args.interval + 10
        deadline = time.time() + within
        while time.time() < deadline:
            conn, pid = self.lock_holder()
            if conn is not None and conn != old_conn:
                p = self.instance_by_pid(pid)
                return "%s (conn %s, after %.1f s)" % (p.name if p else "pid %s" % pid, conn,
                                                     within - (deadline - time.time()))
            self.reap_instances()
            time.sleep(0.5)
        return "NOBODY within %.0f s" % within

    def fault_plan(self):
        """Every fault kind once, in seeded order, then seeded random picks. With --digest, every
        other fault is a deferral of DEFERRED, so that even a short run defers digests."""
        plan = self.plain_plan()
        if not self.args.digest:
            yield from plan
            return
        while True:
            after = next(plan)  # first, so the plan's set-up (point_inside) precedes any fault
            yield DEFER_FAULT
            yield after

    def plain_plan(self):
        if self.args.only == "none":  # the baseline: the same platform without any fault
            self.point_inside = []
            while True:
                yield None
        known = ALL_FAULTS + [DEFER_FAULT]
        only = [f for f in self.args.only.split(",") if f] if self.args.only else ALL_FAULTS
        for f in only:
            if f not in known:
                raise HarnessError("--only: unknown fault %r (known: %s)" % (f, ", ".join(known)))
        self.point_inside = [f for f in only if f in POINT_FAULTS]
        first = list(only)
        self.rng.shuffle(first)
        for f in first:
            yield f
        while True:
            yield self.rng.choice(only)

    def inject(self, kind):
        if kind is None:
            time.sleep(1)
        elif kind.startswith("smtp-"):
            self.smtp_fault(kind)
        elif kind == "bosh-partial":
            self.bosh_partial()
        elif kind == "influx-down":
            self.influx_down()
        else:
            self.point_fault(kind)

    # ---- the run ------------------------------------------------------------------------------
    def unfinished_mail(self):
        rows = self.sql("SELECT COUNT(*) FROM batch_notifications WHERE notifier = 'email' AND status "
                        "IN ('pending','claimed','sending')", check=False)
        return int(rows[0][0]) if rows and rows[0] else None

    def run(self):
        a = self.args
        say("workdir %s, seed %d, %.1f min of faults, digests %s, binary %s" % (
            self.dir, a.seed, a.minutes, "on (threshold %d)" % self.digest_threshold if a.digest else "off", a.bin))
        self.start_mariadb(first=True)
        self.start_influx()
        for db in ("cf_metric_db", "bosh_metric_db", "container_metric_db"):
            self.influx_query("CREATE DATABASE %s" % db)
        self.make_vms()
        self.start_fakes()
        self.write_config()
        self.prepare_db()
        self.start_instance("monit-a")
        time.sleep(1)
        self.start_instance("monit-b")
        wait_until("the first tick", lambda: (self.sql("SELECT COUNT(*) FROM batch_runs", check=False) or [["0"]])[0][0]
                   not in ("0",), 60, step=0.5)
        wait_until("the BOSH inventory in vms", lambda: (self.sql("SELECT COUNT(*) FROM vms", check=False) or [["0"]])[0][0]
                   == str(len(self.vms)), 60, step=0.5)
        time.sleep(2 * a.interval)
        say("t=+%.0fs warm: %s VMs, %s alarms open, faults begin" % (
            self.rel(), len(self.vms), self.sql("SELECT COUNT(*) FROM alarms WHERE resolve_status <> '3'")[0][0]))

        soak_end = time.time() + a.minutes * 60
        plan = self.fault_plan()
        while time.time() < soak_end:
            self.inject(next(plan))
            gap = self.rng.uniform(2, 6)
            gap_end = min(soak_end, time.time() + gap)
            while time.time() < gap_end:
                self.reap_instances()
                time.sleep(0.5)

        # drain: every fault is off (each window reverts itself); give the outbox its time
        self.set_mode(self.smtp_control, "normal")
        self.set_mode(self.director_control, "normal")
        self.set_mode(self.writer_control, "normal")
        drain_start = time.time()
        say("t=+%.0fs faults off, draining (up to %d s)" % (self.rel(), a.drain_seconds))
        quiet = 0
        while time.time() - drain_start < a.drain_seconds:
            self.reap_instances()
            polled = time.time()
            left = self.unfinished_mail()
            quiet = quiet + 1 if left == 0 else 0
            if quiet >= 2 and time.time() - drain_start >= 2 * a.interval:
                break
            time.sleep(2)
        else:
            polled = time.time()
        # rows queued after this and still pending are the last ticks' own: no later tick was let
        # to send them
        self.drain_end = polled
        say("t=+%.0fs drained for %.0f s; %s email rows unfinished" % (
            self.rel(), time.time() - drain_start, self.unfinished_mail()))
        for p in self.instances():
            code = p.stop(signal.SIGTERM, within=30)
            if code is None:
                say("instance %s did not stop within 30 s of SIGTERM: killed" % p.name)
        for name in ("writer", "director", "smtp"):
            self.procs[name].stop(signal.SIGTERM, within=10)
        return self.judge()

    def judge(self):
        self.sql("SELECT 1")
        rows = []
        q = ("SET time_zone = '+00:00'; SELECT JSON_OBJECT('id', n.id, 'kind', n.kind, 'status', n.status, "
             "'created', UNIX_TIMESTAMP(n.created_at), "
             "'origin', COALESCE(JSON_VALUE(n.payload, '$.origin'), a.origin_type), "
             "'title', COALESCE(JSON_VALUE(n.payload, '$.title'), a.alarm_title), "
             "'value', JSON_VALUE(n.payload, '$.value')) "
             "FROM batch_notifications n LEFT JOIN alarms a ON a.id = n.alarm_id "
             "WHERE n.notifier = 'email' ORDER BY n.id")
        for (line,) in self.sql(q):
            r = json.loads(line)
            r["created"] = float(r["created"])
            r["value"] = None if r["value"] in (None, "null") else float(r["value"])
            r["late"] = r["created"] >= int(self.drain_end) - 1 and r["status"] in verdict.UNFINISHED
            rows.append(r)
        targets = {}
        for origin, addr in self.sql("SELECT origin_type, mail_address FROM alarm_targets WHERE mail_send_yn = 'Y'"):
            targets.setdefault(origin, []).append(addr)
        alarms = []
        for line in self.sql("SELECT JSON_OBJECT('id', id, 'origin_type', origin_type, 'origin_id', origin_id, "
                             "'alarm_type', alarm_type, 'level', level, 'ip', ip, 'resolve_status', resolve_status) "
                             "FROM alarms"):
            alarms.append(json.loads(line[0]))
        vm_ids = {int(r[0]) for r in self.sql("SELECT id FROM vms")}
        kinds = {v["ip"]: v["behaviour"]["kind"] for v in self.vms}
        events = [json.loads(l) for l in read_text(self.smtp_events).splitlines() if l.strip()]
        panics = 0
        for n in ("monit-a", "monit-b"):
            for ext in (".err", ".out"):
                panics += read_text(os.path.join(self.logs, n + ext)).count("panicked")
        # exit code 101 is a Rust panic, even when its message could not be written
        panics = max(panics, sum(1 for c in self.crashes if c["exit"] == 101))
        v = verdict.judge(rows, targets, events, TYPO, alarms, vm_ids, kinds, panics, self.digest_threshold)
        by_kind = {}
        for f in self.faults:
            by_kind.setdefault(f["fault"], [0, 0])
            by_kind[f["fault"]][0] += 1
            by_kind[f["fault"]][1] += 1 if f["effective"] else 0
        lock_lost = sum(read_text(os.path.join(self.logs, n + ".out")).count("leader lock lost")
                        + read_text(os.path.join(self.logs, n + ".err")).count("leader lock lost")
                        for n in ("monit-a", "monit-b"))
        open_alarms = sum(1 for a in alarms if a["resolve_status"] in ("1", "2"))
        say("detail: matching=%s blocked_by_refusal=%d unmatched_mails=%d excused_refused=%d excused_rejected=%d pending_at_end=%d "
            "late_rows=%d true_fail=%d open_alarms=%d alarms=%d vms=%d crashes=%d leader_lock_lost_logs=%d lost_rows=%s" % (
                v["mode"], v["blocked"], v["unmatched"], v["excused_refused"], v["excused_rejected"], v["pending_at_end"],
                v["late"], v["true_fail"], open_alarms, len(alarms), len(vm_ids), len(self.crashes), lock_lost,
                v["lost_rows"]))
        say("detail: faults by kind (injected/with effect seen): " + (", ".join(
            "%s %d/%d" % (k, n, e) for k, (n, e) in sorted(by_kind.items())) or "none"))
        if v["dup_times"]:
            say("detail: duplicates by the fault in progress or ended at most 30 s before: " + ", ".join(
                "%s %d" % kv for kv in sorted(self.attribute(v["dup_times"]).items())))
        say("detail: per recipient: " + ", ".join(
            "%s delivered=%d duplicates=%d lost=%d" % (r, c["delivered"], c["duplicates"], c["lost"])
            for r, c in v["per_rcpt"].items()))
        if self.args.digest:
            say("detail: digests (threshold %d): %d digest mails, %d deferrals of a digest checked for "
                "flood, flood=%d" % (self.digest_threshold, v["digests"], v["deferred_digests"], v["flood"]))
        if v["mode"] == "fallback":
            say("detail: the mails carry no X-Monit-Notification-Id header: matched by alarm title and "
                "the value shown (two rows of one alarm with the same value cannot be told apart)")
        line = verdict.summary_line(len(self.faults), self.kills, v, digest=self.args.digest)
        with open(os.path.join(self.dir, "verdict.json"), "w") as f:
            json.dump({"verdict": v, "faults": self.faults, "kills": self.kills, "crashes": self.crashes,
                       "summary": line}, f, indent=1)
        print(line, flush=True)
        return 1 if verdict.failed(self.kills, v) else 0

    def attribute(self, times):
        """fault kind -> how many of `times` fell in it or within 30 s after it."""
        out = {}
        for t in times:
            rel = t - self.t0
            best = None
            for f in self.faults:
                if f["at"] <= rel <= f["at"] + f["seconds"] + 30 and (best is None or f["at"] > best["at"]):
                    best = f
            k = best["fault"] if best else "no fault"
            out[k] = out.get(k, 0) + 1
        return out

    def shutdown(self):
        for name in ("monit-a", "monit-b", "writer", "director", "smtp"):
            p = self.procs.get(name)
            if p:
                p.stop(signal.SIGTERM, within=15)
        for name in ("influxd", "mariadbd"):
            p = self.procs.get(name)
            if p:
                p.stop(signal.SIGTERM, within=60)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drain-seconds", type=int, default=60)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--step-timeout", type=int, default=8)
    ap.add_argument("--smtp-timeout", type=int, default=3)
    ap.add_argument("--retry-min", type=int, default=2)
    ap.add_argument("--retry-max", type=int, default=10)
    ap.add_argument("--vms", type=int, default=40)
    ap.add_argument("--digest", action="store_true", help="digests on (alarms.digest_threshold = "
                    "--digest-threshold) and every other fault a 450 at RCPT for %s (%s); the verdict "
                    "also checks that a deferred recipient's backlog comes as digests (flood)" % (DEFERRED, DEFER_FAULT))
    ap.add_argument("--digest-threshold", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated fault kinds (%s), or none: the "
                    "baseline without faults" % ", ".join(ALL_FAULTS + [DEFER_FAULT]))
    args = ap.parse_args()
    rt = Runtime(args)
    stopping = []

    def on_signal(signum, _frame):
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 3
    try:
        code = rt.run()
    except HarnessError as e:
        say("HARNESS ERROR: %s (logs in %s)" % (e, rt.logs))
        code = 3
    except KeyboardInterrupt:
        say("interrupted")
        code = 3
    except Exception:  # a harness bug must not read as a product failure (exit 1)
        import traceback
        traceback.print_exc()
        say("HARNESS ERROR: unexpected exception (logs in %s)" % rt.logs)
        code = 3
    finally:
        rt.shutdown()
    sys.exit(code)


if __name__ == "__main__":
    main()
