//! `ratchet-full`: every command of the `ratchet` command line. The `ratchet` binary hands it
//! the commands it does not run itself (see `ratchet_cli::front`).

/// mimalloc rather than glibc's allocator: a node's hot path (a job's frames, records and SQL
/// statements) allocates and frees many short-lived buffers across Tokio's threads, and under
/// glibc `malloc`, `free` and `realloc` took about a tenth of the node's CPU in a queue drain
/// (perf, PostgreSQL); with mimalloc the node's CPU per job in 10,000-job drains fell from a
/// median 0.20 ms to 0.17 (4 interleaved pairs, one sitting).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ratchet_cli::full_main()
}
