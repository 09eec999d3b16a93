//! Notification, the sixth stage. In: the outbox rows the store wrote (this tick's and every
//! earlier one still due). Out: mails and calls through the notifiers, each outcome recorded
//! per row and recipient as it happens; rows for the same recipients go as one [`digest`]; a
//! notifier that shows the alarmed readings' past gets it read first ([`history`]).

pub mod digest;
pub mod dispatch;
pub mod history;
