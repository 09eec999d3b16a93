-- The Monitoring DB tables of the original batch (GORM AutoMigrate of 2.0/4.0), same names,
-- columns, types and codes, so the PaaS-TA Monitoring web app keeps working on the same DB.
-- IF NOT EXISTS: a database the original already created keeps its tables and rows.

CREATE TABLE IF NOT EXISTS zones (
  id int unsigned NOT NULL AUTO_INCREMENT,
  name varchar(200) NOT NULL,
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS vms (
  id int unsigned NOT NULL AUTO_INCREMENT,
  zone_id int NOT NULL,
  name varchar(200) NOT NULL,
  ip varchar(15) NOT NULL,
  vm_type varchar(3) NOT NULL,
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  PRIMARY KEY (id, zone_id),
  UNIQUE KEY uix_vms_ip (ip)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS alarm_policies (
  id int unsigned NOT NULL AUTO_INCREMENT,
  origin_type varchar(3) NOT NULL,
  alarm_type varchar(6) NOT NULL,
  warning_threshold int NOT NULL,
  critical_threshold int NOT NULL,
  repeat_time int NOT NULL,
  measure_time int NOT NULL,
  comment varchar(5000) NULL,
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS alarm_targets (
  id int unsigned NOT NULL AUTO_INCREMENT,
  origin_type varchar(3) NOT NULL,
  mail_address varchar(100) NOT NULL,
  mail_send_yn varchar(1) NOT NULL DEFAULT 'Y',
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS alarms (
  id int unsigned NOT NULL AUTO_INCREMENT,
  origin_type varchar(3) NOT NULL,
  origin_id int NOT NULL,
  alarm_type varchar(6) NOT NULL,
  level varchar(8) NOT NULL,
  ip varchar(15) NULL,
  app_yn varchar(1) NOT NULL,
  app_name varchar(500) NULL,
  app_index int NULL,
  container_name varchar(40) NULL,
  alarm_title varchar(5000) NOT NULL,
  alarm_message text NOT NULL,
  resolve_status varchar(1) NOT NULL,
  alarm_cnt int NOT NULL DEFAULT 1,
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  alarm_send_date datetime NULL DEFAULT NULL,
  complete_date datetime NULL,
  complete_user varchar(36) NULL,
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS alarm_actions (
  id int unsigned NOT NULL AUTO_INCREMENT,
  alarm_id int NOT NULL,
  alarm_action_desc text NULL,
  reg_date datetime NOT NULL DEFAULT current_timestamp,
  reg_user varchar(36) NOT NULL DEFAULT 'system',
  modi_date datetime NULL DEFAULT current_timestamp,
  modi_user varchar(36) NULL DEFAULT 'system',
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

-- A 2.0 database lacks the 4.0 columns. MySQL has no ADD COLUMN IF NOT EXISTS (MariaDB has), so
-- the check goes through information_schema, which works on both. measure_time gets a default of
-- 600 here instead of the implicit 0 that broke upgraded 2.0 databases (defect D16).
SET @ddl = (SELECT IF(COUNT(*) = 0,
  'ALTER TABLE alarm_policies ADD COLUMN measure_time int NOT NULL DEFAULT 600 AFTER repeat_time',
  'DO 0') FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'alarm_policies' AND column_name = 'measure_time');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @ddl = (SELECT IF(COUNT(*) = 0,
  'ALTER TABLE alarm_targets ADD COLUMN mail_send_yn varchar(1) NOT NULL DEFAULT ''Y'' AFTER mail_address',
  'DO 0') FROM information_schema.columns
  WHERE table_schema = DATABASE() AND table_name = 'alarm_targets' AND column_name = 'mail_send_yn');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
