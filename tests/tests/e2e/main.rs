//! End-to-end tests: the real `ratchet` and `ratchet-worker` binaries, and the kernel library
//! driving real worker processes.

mod api;
mod browser;
mod cli;
mod command_line;
mod dashboard;
mod explain;
mod hardening;
mod http;
mod javascript;
mod languages;
mod mcp;
mod patterns;
mod plugins;
mod protocol;
mod queue;
mod registry;
mod regressions;
mod reload;
mod schedules;
mod secrets;
mod serve;
mod supervisor;
mod task_format;
