//! Running the stages. In: the settings and the compiled plugins. Out: ticks, one after the
//! other ([`scheduler`] calls the stages in turn and records each in the run ledger), served
//! health and metrics ([`http`], [`telemetry`]), the operator's commands ([`cli`]) and
//! history replayed through the current policies ([`backtest`]).

pub mod backtest;
pub mod cli;
pub mod console;
pub mod heap;
pub mod http;
pub mod operator;
pub mod scheduler;
pub mod telemetry;
