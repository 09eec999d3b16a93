-- The leader epoch (batch_leader.epoch) under which a row was claimed. A new leader holds the lock
-- the old one lost, so the old one can send nothing more: claims made under an older epoch by
-- another owner may be taken at once instead of waiting for claim_until (issue 18, item 8).
-- NULL: claimed with leader election off (nothing proves that owner gone; its claim lapses).
ALTER TABLE batch_notifications
  ADD COLUMN claim_epoch bigint NULL AFTER claim_until;
