-- Seed rows of the original (4.0 values), inserted only where the id is missing: rows an
-- operator edited, and rows of a database the original created, stay as they are.
INSERT IGNORE INTO alarm_policies
  (id, origin_type, alarm_type, warning_threshold, critical_threshold, repeat_time, measure_time, comment)
VALUES
  (1, 'pas', 'cpu',    85, 90, 10, 600, 'Initial Data'),
  (2, 'pas', 'memory', 85, 90, 10, 600, 'Initial Data'),
  (3, 'pas', 'disk',   85, 90, 10, 600, 'Initial Data'),
  (4, 'bos', 'cpu',    85, 90, 10, 600, 'Initial Data'),
  (5, 'bos', 'memory', 85, 90, 10, 600, 'Initial Data'),
  (6, 'bos', 'disk',   85, 90, 10, 600, 'Initial Data'),
  (7, 'con', 'cpu',    85, 90, 10, 600, 'Initial Data'),
  (8, 'con', 'memory', 85, 90, 10, 600, 'Initial Data'),
  (9, 'con', 'disk',   85, 90, 10, 600, 'Initial Data');

INSERT IGNORE INTO alarm_targets (id, origin_type, mail_address, mail_send_yn)
VALUES
  (1, 'bos', 'adminUser@gmail.com', 'Y'),
  (2, 'pas', 'adminUser@gmail.com', 'Y'),
  (3, 'con', 'adminUser@gmail.com', 'Y');
