-- Silences: an operator's "I know, stop mailing" for the alarms that match every matcher, until
-- `ends_at`. Silenced alarms are still recorded in `alarms` (the web UI sees them); only their
-- notifications are held back. `monit-batch silence add | list | expire`.
CREATE TABLE IF NOT EXISTS batch_silences (
  id int unsigned NOT NULL AUTO_INCREMENT,
  -- JSON array of {"key": "vm", "value": "diego-cell/*"}: all must match
  matchers varchar(2000) NOT NULL,
  author varchar(100) NOT NULL,
  comment varchar(1000) NOT NULL,
  created_at datetime NOT NULL,
  ends_at datetime NOT NULL,
  PRIMARY KEY (id),
  KEY ix_batch_silences_ends (ends_at)
) DEFAULT CHARSET=utf8mb4;

-- BOSH deployments a director task (deploy, recreate, stop, start, restart) was seen running on,
-- and when it was last seen: their VMs' alarms are held back until `last_seen_at` plus
-- `alarms.maintenance_grace_minutes`.
CREATE TABLE IF NOT EXISTS batch_maintenance (
  deployment varchar(200) NOT NULL,
  task_id bigint NOT NULL,
  description varchar(500) NOT NULL,
  first_seen_at datetime NOT NULL,
  last_seen_at datetime NOT NULL,
  PRIMARY KEY (deployment)
) DEFAULT CHARSET=utf8mb4;

-- The deployment of each VM as the director last reported it (silence key `deployment`,
-- maintenance): `vms` has no column for it.
CREATE TABLE IF NOT EXISTS batch_vm_deployment (
  vm_name varchar(200) NOT NULL,
  deployment varchar(200) NOT NULL,
  PRIMARY KEY (vm_name)
) DEFAULT CHARSET=utf8mb4;
