//! The worker caps its own address space, before its first allocation.
//!
//! The kernel passes the cap as `--address-space-cap BYTES`. It must be in place before the
//! allocator maps anything: mimalloc reserves a 1 GiB arena of address space on the first
//! allocation, and a process that is already past `RLIMIT_AS` when the cap arrives fails its
//! next mapping (a thread's stack, a heap segment) and dies. The kernel also sets the cap with
//! prlimit(2) right after the spawn, but that call races with this start-up; on a busy
//! machine it lost, and a worker capped at 768 MiB died on its first run.
//!
//! The first allocation happens before `main` (std names the main thread), so the global
//! allocator applies the cap on its first call ([`crate::alloc`]), as best it can: nothing
//! here allocates, so the command line is read from `/proc/self/cmdline` into a buffer on the
//! stack. `main` then parses its arguments as usual, reports a bad value, and applies the cap
//! again: the same cap, or the cap at last where `/proc` could not be read.

/// The flag the kernel passes the cap with.
pub const FLAG: &str = "--address-space-cap";

/// Room for the command line: the binary's path (up to `PATH_MAX`) and a few short flags.
const CMDLINE_BYTES: usize = 8192;

/// Applies `--address-space-cap` when it is given. Allocates nothing; an error means the cap
/// is not applied.
pub fn apply_from_cmdline() -> Result<(), &'static str> {
    let mut buffer = [0u8; CMDLINE_BYTES];
    let len = read_cmdline(&mut buffer)?;
    match find_cap(&buffer[..len])? {
        Some(cap) => set_address_space_limit(cap),
        None => Ok(()),
    }
}

fn read_cmdline(buffer: &mut [u8]) -> Result<usize, &'static str> {
    const CANNOT_READ: &str = "cannot read /proc/self/cmdline for --address-space-cap";
    #[allow(unsafe_code)]
    // SAFETY: open(2) with a NUL-terminated static path; read(2) into the caller's buffer with
    // its own length; close(2) of the descriptor just opened. None of them allocates.
    unsafe {
        let fd = libc::open(c"/proc/self/cmdline".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(CANNOT_READ);
        }
        let mut len = 0;
        while len < buffer.len() {
            let read = libc::read(fd, buffer[len..].as_mut_ptr().cast(), buffer.len() - len);
            if read <= 0 {
                break;
            }
            len += read as usize;
        }
        libc::close(fd);
        if len == buffer.len() {
            return Err("the command line is too long to find --address-space-cap in");
        }
        Ok(len)
    }
}

/// The value after [`FLAG`] in a NUL-separated command line.
fn find_cap(cmdline: &[u8]) -> Result<Option<u64>, &'static str> {
    let mut words = cmdline.split(|byte| *byte == 0).skip(1);
    while let Some(word) = words.next() {
        if word == FLAG.as_bytes() {
            let value = words.next().ok_or("--address-space-cap needs a value")?;
            return parse_bytes(value).map(Some);
        }
    }
    Ok(None)
}

pub fn parse_bytes(value: &[u8]) -> Result<u64, &'static str> {
    core::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or("--address-space-cap: not a byte count")
}

pub fn set_address_space_limit(cap: u64) -> Result<(), &'static str> {
    let limit = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    #[allow(unsafe_code)]
    // SAFETY: setrlimit(2) with a pointer to an initialised rlimit that outlives the call.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if result == 0 { Ok(()) } else { Err("cannot set RLIMIT_AS for --address-space-cap") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_found_after_the_program_name_only() {
        assert_eq!(find_cap(b"/bin/w\0--address-space-cap\0805306368\0"), Ok(Some(805_306_368)));
        assert_eq!(find_cap(b"/bin/w\0--worker-id\0w0.1\0"), Ok(None));
        assert_eq!(find_cap(b"--address-space-cap\0--worker-id\0"), Ok(None));
        assert!(find_cap(b"/bin/w\0--address-space-cap\0").is_err());
        assert!(find_cap(b"/bin/w\0--address-space-cap\0lots\0").is_err());
    }
}
