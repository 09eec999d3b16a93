-- VMs the BOSH director stopped reporting but that are kept in `vms` (same id, open alarms
-- intact) for `batch.vm_removal_grace_minutes`, so one incomplete answer does not delete a VM and
-- give it a new id. A row is cleared when the VM is reported again, or deleted with the VM once
-- the grace has run out.
CREATE TABLE IF NOT EXISTS batch_vm_absence (
  vm_id int unsigned NOT NULL,
  name varchar(200) NOT NULL,
  first_missing_at datetime NOT NULL,
  PRIMARY KEY (vm_id)
) DEFAULT CHARSET=utf8mb4;
