-- State of this batch that the original did not have. New tables only: the reference tables
-- keep their meaning for the management UI.

-- Outbox: one row per (alarm event, notifier), written in the same transaction as the alarm
-- change; a failed send stays pending and is retried with backoff, a sent one is never re-sent.
CREATE TABLE IF NOT EXISTS batch_notifications (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  alarm_id int unsigned NOT NULL,
  notifier varchar(64) NOT NULL,
  kind varchar(16) NOT NULL,
  payload longtext NOT NULL,
  status varchar(8) NOT NULL DEFAULT 'pending',
  attempts int NOT NULL DEFAULT 0,
  next_attempt_at datetime NOT NULL,
  last_error text NULL,
  created_at datetime NOT NULL,
  sent_at datetime NULL,
  PRIMARY KEY (id),
  KEY ix_batch_notifications_due (status, next_attempt_at)
) DEFAULT CHARSET=utf8mb4;

-- Ledger: one row per tick.
CREATE TABLE IF NOT EXISTS batch_runs (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  started_at datetime(3) NOT NULL,
  duration_ms bigint NOT NULL,
  instance varchar(200) NOT NULL,
  dry_run tinyint(1) NOT NULL DEFAULT 0,
  summary longtext NOT NULL,
  errors text NULL,
  PRIMARY KEY (id),
  KEY ix_batch_runs_started (started_at)
) DEFAULT CHARSET=utf8mb4;

-- Scaling history: every autoscale decision, acted or not.
CREATE TABLE IF NOT EXISTS batch_scaling_history (
  id bigint unsigned NOT NULL AUTO_INCREMENT,
  decided_at datetime NOT NULL,
  app_guid varchar(255) NOT NULL,
  app_name varchar(255) NOT NULL,
  action varchar(8) NOT NULL,
  outcome varchar(16) NOT NULL,
  instances_before int NULL,
  instances_after int NULL,
  cpu_percent double NULL,
  memory_percent double NULL,
  reason varchar(1000) NOT NULL,
  PRIMARY KEY (id),
  KEY ix_batch_scaling_app (app_guid, decided_at)
) DEFAULT CHARSET=utf8mb4;

-- Alarm state the reference columns cannot hold: an open alarm that recovered while
-- alarms.auto_resolve is off (so the recovery notice is sent once, not every tick).
CREATE TABLE IF NOT EXISTS batch_alarm_state (
  alarm_id int unsigned NOT NULL,
  recovered_at datetime NULL,
  PRIMARY KEY (alarm_id)
) DEFAULT CHARSET=utf8mb4;
