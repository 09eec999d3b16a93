//! The Monitoring DB, one module per group of tables, so the folder reads like the database:
//! policies and targets in, alarms (with the outbox rows and scale decisions of the same
//! transaction) out, the notification outbox, the run ledger, the VM inventory and the scaling
//! history. Every alarm change of a tick is written in one transaction, together with its
//! notifications, so a crash loses nothing and sends nothing twice.
//!
//! The fifth stage. In: the changes and their holds. Out: rows, written by the instance that
//! holds the [`leader`] lock (every write is fenced by its epoch); [`db`] opens the pool.

pub mod db;
pub mod inputs;
pub mod inventory;
pub mod leader;

pub mod alarms;
pub mod ledger;
pub mod outbox;
pub mod policies;
pub mod scaling_history;
pub mod vms;

pub use alarms::{Outbox, apply_changes, load_open_alarms};
pub use ledger::{prune, record_run};
pub use policies::{load_policies, load_recipients};
pub use vms::load_vms;
