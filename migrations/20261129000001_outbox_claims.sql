-- Delivery you can prove: an outbox row is claimed by the instance that sends it (owner +
-- expiry, taken atomically), ordered by what matters, parked when it can never be sent, and
-- every recipient that is done (accepted or refused for good) is remembered so that a retry
-- goes only to the others.
ALTER TABLE batch_notifications
  ADD COLUMN priority tinyint NOT NULL DEFAULT 2,
  ADD COLUMN claimed_by varchar(200) NULL,
  ADD COLUMN claim_until datetime(3) NULL,
  ADD KEY ix_batch_notifications_queue (notifier, status, priority, id);

-- 'invalid' (an unreadable payload) was parked under another name.
UPDATE batch_notifications SET status = 'parked' WHERE status = 'invalid';

CREATE TABLE IF NOT EXISTS batch_notification_recipients (
  notification_id bigint unsigned NOT NULL,
  recipient varchar(320) NOT NULL,
  outcome varchar(8) NOT NULL,
  detail varchar(1000) NULL,
  decided_at datetime NOT NULL,
  PRIMARY KEY (notification_id, recipient)
) DEFAULT CHARSET=utf8mb4;

-- Fencing for leader election: a new leader bumps the epoch; a write transaction of an
-- instance that lost the lock finds another epoch and rolls back.
CREATE TABLE IF NOT EXISTS batch_leader (
  lock_name varchar(200) NOT NULL,
  holder varchar(200) NOT NULL,
  epoch bigint NOT NULL,
  acquired_at datetime(3) NOT NULL,
  PRIMARY KEY (lock_name)
) DEFAULT CHARSET=utf8mb4;
