//! Shared by the test binaries: sandboxes that compile the (5 MB) RAW guest once per
//! test run, through an on-disk cache in cargo's per-target temporary directory.

#![allow(dead_code)]

pub mod corpus;

use std::sync::OnceLock;

use sandload::{Limits, Sandbox};

pub fn cache_dir() -> cap_std::fs::Dir {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandload-test-cache");
    std::fs::create_dir_all(&path).unwrap();
    cap_std::fs::Dir::open_ambient_dir(&path, cap_std::ambient_authority()).unwrap()
}

/// A sandbox with `limits`, sharing the compiled-guest cache.
pub fn sandbox_with(limits: Limits) -> Sandbox {
    Sandbox::builder().limits(limits).cache_dir(cache_dir()).build().unwrap()
}

/// One default sandbox per test binary.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| sandbox_with(Limits::default()))
}

/// A `kB` field of `/proc/self/status` (Linux), in bytes; 0 where unavailable.
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident set of this process so far, in bytes.
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM")
}

/// Resident set of this process now, in bytes.
pub fn current_rss() -> u64 {
    status_bytes("VmRSS")
}

/// xorshift64*: deterministic, so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
