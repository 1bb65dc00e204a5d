//! `ratchet`: the command line. Runs `run-once` on the core alone and hands every other command
//! to `ratchet-full` (see `ratchet_front::front`).

fn main() -> std::process::ExitCode {
    ratchet_front::front::front_main()
}
