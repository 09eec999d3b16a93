-- The notifications of one alarm per notifier: what each notifier was last told of an open alarm
-- is read every tick for the notifiers that restate what is firing (notify::dispatch, Alertmanager),
-- a few index probes per open alarm instead of a scan of the outbox.
ALTER TABLE batch_notifications
  ADD KEY ix_batch_notifications_alarm (alarm_id, notifier, id);
