#!/usr/bin/python3
"""Writes VM metrics for scripts/chaos into InfluxDB 1.x, as the PaaS-TA metric agents do
(plugins/common/cf-metrics/src/vm.rs reads them):

  cf_metric_db.cf_metrics,ip=<vm ip>,metricname=cpuStats.0|cpuStats.1|memoryStats.UsedPercent|diskStats.Usage
  bosh_metric_db.bosh_metrics,origin=<service name>,metricname=...      (the director, origin bos)

    metric_writer.py INFLUX_URL VMS_JSON STATUS_JSONL PERIOD_SECONDS CONTROL_FILE

Each VM of VMS_JSON has a behaviour: steady (under every threshold), hot (some resources above
the critical threshold all along: the alarm repeats), flip (one resource alternates between
critical and normal: alarms open and recover), gappy (steady, but silent during a window given
in the file: a real "no data"). A write that fails (InfluxDB stopped) is counted and the writer
goes on; the VMs count as reporting all the same, since the writer never stopped trying. After
failed writes it backs off as a metrics forwarder reconnecting does (doubling, at most 10 s), so
when InfluxDB comes back there may be a tick or two before the first new point. CONTROL_FILE
saying `hold` makes it skip its writes: the harness holds it for a tick or two after InfluxDB is
back, as a forwarder that has not reconnected yet (the gap of issue 11, item 6).
"""

import json
import signal
import sys
import time
import urllib.error
import urllib.request

RESOURCES = {
    "cpu": ("cpuStats.0", "cpuStats.1"),
    "memory": ("memoryStats.UsedPercent",),
    "disk": ("diskStats.Usage",),
}
BACKOFF_MAX_S = 10.0
BASE = {"cpu": 15.0, "memory": 35.0, "disk": 40.0}


def value(vm, resource, t):
    """The usage of one resource of one VM at epoch second t."""
    wobble = ((t * 7 + vm["seq"] * 13) % 5) * 0.2  # 0..0.8, deterministic
    behaviour = vm["behaviour"]
    kind = behaviour["kind"]
    if kind == "hot" and resource in behaviour["levels"]:
        return behaviour["levels"][resource] + wobble
    if kind == "flip" and resource == behaviour["resource"]:
        phase = int((t + behaviour["phase"]) // behaviour["period"]) % 2
        return (behaviour["high"] if phase == 0 else behaviour["low"]) + wobble
    return BASE[resource] + wobble


def silent(vm, t):
    b = vm["behaviour"]
    return b["kind"] == "gappy" and b["gap_start"] <= t < b["gap_end"]


def lines_for(measurement, tags, vm, t):
    out = []
    for resource, metrics in RESOURCES.items():
        v = value(vm, resource, t)
        for metric in metrics:
            out.append("%s,%s,metricname=%s delta=0,total=0,value=%.3f %d" % (
                measurement, tags, metric, v, t))
    return out


def write(url, db, lines):
    req = urllib.request.Request(
        "%s/write?db=%s&precision=s" % (url, db), data=("\n".join(lines) + "\n").encode(), method="POST")
    with urllib.request.urlopen(req, timeout=3) as resp:
        return resp.status


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: metric_writer.py INFLUX_URL VMS_JSON STATUS_JSONL PERIOD_SECONDS CONTROL_FILE")
    url, vms_path, status_path, period = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    control = sys.argv[5]
    with open(vms_path, encoding="utf-8") as f:
        spec = json.load(f)
    status = open(status_path, "a", encoding="utf-8")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ok = failed = 0
    last_state = None
    backoff = 0
    while not stop:
        t = int(time.time())
        cf = []
        for vm in spec["vms"]:
            if silent(vm, t):
                continue
            tags = "eventtype=ValueMetric,index=%d,ip=%s,job=%s,origin=rep,zone=z1" % (vm["index"], vm["ip"], vm["job"])
            cf.extend(lines_for("cf_metrics", tags, vm, t))
        director = spec["director"]
        bosh = lines_for("bosh_metrics", "origin=%s" % director["service_name"], director, t)
        try:
            with open(control, encoding="utf-8") as f:
                held = f.read().strip() == "hold"
        except OSError:
            held = False
        try:
            if held:
                raise OSError("held by the harness")
            write(url, spec["cf_db"], cf)
            write(url, spec["bosh_db"], bosh)
            ok += 1
            state = "ok"
            backoff = 0
        except (urllib.error.URLError, OSError) as e:
            failed += 1
            state = "failed: %s" % e
            backoff = min(BACKOFF_MAX_S, max(period, 2 * (backoff or period / 2)))
        if state != last_state or (ok + failed) % 30 == 0:
            status.write(json.dumps({"t": time.time(), "state": state, "ok": ok, "failed": failed}) + "\n")
            status.flush()
            last_state = state
        slept = 0.0
        while slept < (backoff or period) and not stop:
            time.sleep(0.1)
            slept += 0.1
    status.write(json.dumps({"t": time.time(), "state": "stopped", "ok": ok, "failed": failed}) + "\n")
    status.close()


if __name__ == "__main__":
    main()
