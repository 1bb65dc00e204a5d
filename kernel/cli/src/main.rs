//! `ratchet`: the command line. Runs `run-once` on the core alone and hands every other command
//! to `ratchet-full` (see `ratchet_cli::front`).

fn main() -> std::process::ExitCode {
    ratchet_cli::front::front_main()
}
