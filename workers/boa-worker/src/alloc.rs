//! A global allocator that enforces the run's memory budget from inside the worker.
//!
//! The kernel also caps the whole process with `RLIMIT_AS`, but a failed `mmap` there ends in
//! an anonymous abort. Counting live heap bytes here lets the worker exit with
//! [`EXIT_MEMORY_LIMIT`], which the kernel reports as a memory-limit error naming the limit.
//!
//! Underneath is mimalloc rather than the system allocator: a run allocates and frees tens of
//! thousands of small objects (a realm's intrinsics, then their collection), and with mimalloc
//! a synchronous run over REST from one client takes about a quarter less time
//! (`cargo xtask bench`).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc;
use worker_protocol::EXIT_MEMORY_LIMIT;

pub struct BudgetAllocator {
    live: AtomicUsize,
    budget: AtomicUsize,
    /// Whether the first allocation has applied `--address-space-cap` (see [`crate::cap`]).
    capped: AtomicBool,
}

impl BudgetAllocator {
    pub const fn new() -> Self {
        BudgetAllocator {
            live: AtomicUsize::new(0),
            budget: AtomicUsize::new(usize::MAX),
            capped: AtomicBool::new(false),
        }
    }

    /// Sets the most heap the process may hold from now on.
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn charge(&self, size: usize) {
        if !self.capped.load(Ordering::Relaxed) {
            self.cap_before_the_first_allocation();
        }
        let live = self.live.fetch_add(size, Ordering::Relaxed) + size;
        if live > self.budget.load(Ordering::Relaxed) {
            exceeded();
        }
    }

    /// Applies the address-space cap before mimalloc maps its first arena. Std allocates
    /// before `main` (the main thread's name), so `main` would be too late; `main` applies it
    /// again, from its parsed arguments. Two threads racing here would set the same cap twice.
    #[cold]
    fn cap_before_the_first_allocation(&self) {
        self.capped.store(true, Ordering::Relaxed);
        let _ = crate::cap::apply_from_cmdline();
    }
}

/// Leaves at once: no allocation, no unwinding, a fixed message and a fixed exit code.
#[cold]
fn exceeded() -> ! {
    const MESSAGE: &[u8] = b"ratchet-worker: memory limit exceeded\n";
    #[allow(unsafe_code)]
    // SAFETY: write(2) on fd 2 with a valid static buffer, then _exit(2); neither allocates.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(EXIT_MEMORY_LIMIT)
    }
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `MiMalloc` with the caller's layout unchanged and only adds
// bookkeeping of sizes; the accounting never touches the memory itself.
unsafe impl GlobalAlloc for BudgetAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.charge(layout.size());
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.charge(layout.size());
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.charge(new_size - layout.size());
        } else {
            self.live.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}
