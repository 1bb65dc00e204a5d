//! `ratchet-full`: every command of the `ratchet` command line. The `ratchet` binary hands it
//! the commands it does not run itself (see `ratchet_cli::front`).

fn main() -> std::process::ExitCode {
    ratchet_cli::full_main()
}
