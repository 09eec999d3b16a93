-- 1. alarm_policies.measure_time: a fresh database got it NOT NULL without a default (the first
--    migration's CREATE TABLE), while one upgraded from 2.0 got DEFAULT 600 (its ALTER TABLE). An
--    insert that omits the column (other tooling, or the original batch re-seeding a policy after
--    a rollback) then failed on a fresh database only. Same default everywhere now; a 4.0
--    database, whose column the original added without a default, gets it too. Existing values
--    are left as they are (a 0 still reads as alarms.default_measure_seconds).
ALTER TABLE alarm_policies ALTER COLUMN measure_time SET DEFAULT 600;

-- 2. The level the last notification of an open alarm stated. An alarm's row follows the current
--    level (it steps down when a threshold is raised), but a level change is notified only under
--    the repeat rules, so the row's level and the last notified one can differ for a while; a
--    value flapping around the critical threshold must not mail on every crossing.
ALTER TABLE batch_alarm_state ADD COLUMN notified_level varchar(8) NULL AFTER recovered_at;
