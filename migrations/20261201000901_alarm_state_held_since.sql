-- An alarm recorded while its notification is held (silence, maintenance, inhibition) now gets
-- its occurrence time in alarms.alarm_send_date, as every other alarm gets the time of its mail:
-- the management app shows a NULL there as 0001-01-01 00:00:00 and some of its date filters
-- leave such rows out. That column can then no longer tell "never notified"; this one does.
-- Set when a new alarm is held, cleared by its first notification.
ALTER TABLE batch_alarm_state ADD COLUMN held_since datetime NULL AFTER notified_level;
