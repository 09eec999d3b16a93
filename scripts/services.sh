#!/usr/bin/env bash
# Install (if missing) and start the real services the tests and the demo use, without systemd:
# MariaDB (127.0.0.1:3306), InfluxDB 1.x (127.0.0.1:8086), VictoriaMetrics (127.0.0.1:8428, the
# Prometheus-API metric store) and an SMTP sink (aiosmtpd: 2525 plain, 2526 STARTTLS). Debian's
# `prometheus` and `promtool` are installed too (tests start their own prometheus on a free port),
# `prometheus-alertmanager` (tests start their own Alertmanager on a free port) and Chromium with
# its chromedriver (tests start their own). Idempotent: services already running are left alone.
# Needs root on Debian.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKI=${MONIT_PKI:-/var/tmp/ci-pki}      # throwaway test CA + server cert (localhost, 127.0.0.1)
SINK=${MONIT_SMTP_SINK:-/var/tmp/smtp-sink}

need=()
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server mariadb-client)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
[ -d /usr/lib/python3/dist-packages/aiosmtpd ] || need+=(python3-aiosmtpd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
# vmauth comes with it: tests start their own in front of VictoriaMetrics (bearer / basic auth)
{ command -v victoria-metrics && command -v vmauth; } >/dev/null 2>&1 || need+=(victoria-metrics)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# the console's browser test (tests/console.rs) drives headless Chromium through chromedriver
{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || need+=(chromium chromium-driver)
# peak RSS of a child (tests/prometheus_answer_memory.rs, scripts/bench, scripts/prom-answer-bench)
[ -x /usr/bin/time ] || need+=(time)
# Alertmanager: each test starts its own on a free port (monit_testkit::alertmanager), nothing here
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  echo "services.sh: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

wait_for() { # wait_for DESC CMD... (polls 4x/s, up to 60 s)
  local desc=$1; shift
  for _ in $(seq 1 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "services.sh: timed out waiting for $desc" >&2; return 1
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# rustls rejects a self-signed CA:TRUE cert as a server cert, so: a CA plus a CA:FALSE leaf.
install -d "$PKI"
if [ ! -s "$PKI/server.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=monit-test-ca \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" >/dev/null 2>&1
  printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
    'extendedKeyUsage=serverAuth' >"$PKI/server.ext"
  openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/server.ext" -out "$PKI/server.pem" >/dev/null 2>&1
  chmod 0644 "$PKI"/*
fi

# ---- MariaDB ----
install -d -o mysql -g mysql /run/mysqld /var/log/mysql
if ! mariadb-admin ping --silent >/dev/null 2>&1; then
  setsid mysqld_safe --user=mysql --skip-syslog --log-error=/var/log/mysql/error.log \
    </dev/null >/dev/null 2>&1 &
fi
wait_for mariadb mariadb-admin ping --silent
mariadb <<'SQL'
CREATE DATABASE IF NOT EXISTS monit CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS portaldb CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'monit'@'localhost' IDENTIFIED BY 'monit';
CREATE USER IF NOT EXISTS 'monit'@'%' IDENTIFIED BY 'monit';
-- ALL ON *.* so the tests can create and drop their own databases
GRANT ALL PRIVILEGES ON *.* TO 'monit'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO 'monit'@'%';
SQL

# ---- InfluxDB 1.x (not /etc/init.d/influxdb: it forces ulimit -n 65536 and fails in containers) ----
install -d -o influxdb -g influxdb /var/lib/influxdb /var/log/influxdb /run/influxdb
if ! curl -sf -o /dev/null http://127.0.0.1:8086/ping; then
  INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086 INFLUXDB_REPORTING_DISABLED=true \
  INFLUXDB_MONITOR_STORE_ENABLED=false \
  start-stop-daemon --start --quiet --oknodo --background --no-close \
    --chuid influxdb:influxdb --make-pidfile --pidfile /run/influxdb/influxd.pid \
    --exec /usr/bin/influxd -- -config /etc/influxdb/influxdb.conf \
    </dev/null >>/var/log/influxdb/influxd.log 2>&1
fi
wait_for influxdb curl -sf -o /dev/null http://127.0.0.1:8086/ping

# ---- VictoriaMetrics single node (not its systemd unit: there is no systemd here) ----
VM_DATA=${MONIT_VM_DATA:-/var/lib/victoria-metrics-monit}
install -d "$VM_DATA" /var/log/victoria-metrics
if ! curl -sf -o /dev/null http://127.0.0.1:8428/health; then
  setsid /usr/bin/victoria-metrics -storageDataPath="$VM_DATA" -httpListenAddr=127.0.0.1:8428 \
    -retentionPeriod=1 -search.latencyOffset=0s \
    </dev/null >>/var/log/victoria-metrics/monit.log 2>&1 &
fi
wait_for victoria-metrics curl -sf -o /dev/null http://127.0.0.1:8428/health

# ---- SMTP sink: Debian's aiosmtpd, run by /usr/bin/python3 (not a pyenv python3) ----
install -d "$SINK"/plain/{cur,new,tmp} "$SINK"/tls/{cur,new,tmp}
install -d "$SINK"/smtps/{cur,new,tmp}
start_sink() {
  local port=$1; shift
  if ! port_open "$port"; then
    setsid /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$port" "$@" \
      </dev/null >>"$SINK/aiosmtpd-$port.log" 2>&1 &
  fi
}
start_sink 2525 -c aiosmtpd.handlers.Mailbox "$SINK/plain"
start_sink 2526 --tlscert "$PKI/server.pem" --tlskey "$PKI/server.key" -c aiosmtpd.handlers.Mailbox "$SINK/tls"
start_sink 2527 --smtpscert "$PKI/server.pem" --smtpskey "$PKI/server.key" -c aiosmtpd.handlers.Mailbox "$SINK/smtps"
wait_for smtp-2525 port_open 2525
wait_for smtp-2526 port_open 2526
wait_for smtp-2527 port_open 2527

echo "mariadb  mysql://monit:monit@127.0.0.1:3306/monit"
echo "influxdb http://127.0.0.1:8086 (no auth)"
echo "victoria-metrics http://127.0.0.1:8428 (Prometheus API; InfluxDB line protocol on /write)"
echo "smtp     127.0.0.1:2525 plain -> $SINK/plain/new ; 127.0.0.1:2526 STARTTLS -> $SINK/tls/new (CA $PKI/ca.pem)"
