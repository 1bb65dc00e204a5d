//! Ratchet's core: tasks (loading, checking, schemas), execution through supervised worker
//! processes, HTTP for tasks under the egress policy (with recording, replay and masking),
//! cron maths, configuration types, and the clock and ids.
//!
//! **Architecture invariant:** this crate links no database driver, HTTP server, WASM runtime
//! or command-line parser (`cargo xtask ci` checks it from `cargo metadata`), and it never
//! evaluates task JavaScript: every run goes to a `ratchet-worker` process that the
//! [`supervisor`] spawns, limits, watches and kills.

pub mod config;
pub mod execution;
pub mod http;
pub mod recording;
pub mod schedule;
pub mod supervisor;
pub mod task;
pub mod time;
pub mod trace;

pub use config::Config;
pub use execution::{Execution, ExecutionError, Kernel, RunIdentity, RunStatus};
pub use task::Task;
