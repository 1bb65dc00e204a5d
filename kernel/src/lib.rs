//! The Ratchet kernel: configuration, task loading, the worker supervisor and execution.
//!
//! The kernel never evaluates task JavaScript itself: every run goes to a `ratchet-worker`
//! process that the [`supervisor`] spawns, limits, watches and kills.

pub mod api;
pub mod config;
pub mod execution;
pub mod generate;
pub mod http;
pub mod metrics;
pub mod plugins;
pub mod recording;
pub mod schedule;
pub mod service;
pub mod storage;
pub mod supervisor;
pub mod task;
pub mod testing;
pub mod time;

pub use config::Config;
pub use execution::{Execution, ExecutionError, Kernel};
pub use task::Task;
