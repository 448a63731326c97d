//! Files that make rawler loop or allocate without bound natively (in-process, a self-referencing
//! IFD reaches 9 GB of RSS in 20 s): in the sandbox they end in a typed error within the guest's
//! memory cap and deadline, and the host's memory returns to where it was.
//!
//! One test in its own binary, so that no concurrent test disturbs the RSS measurement.

mod common;

use std::time::{Duration, Instant};

use common::{current_rss, peak_rss};
use sandload::{Error, Input, Limits, Sandbox};
use sandload_samples::{self as samples, Dng, TiffValue};

const CAP: u64 = 256 << 20;

/// A TIFF whose IFD0 lists itself as its own SubIFD and as its next IFD.
fn subifd_self_loop() -> Vec<u8> {
    use TiffValue::{Bytes, IfdOffset};
    let ifd0 = vec![
        (256, 4, 1, Bytes(8u32.to_le_bytes().to_vec())),
        (257, 4, 1, Bytes(8u32.to_le_bytes().to_vec())),
        (271, 2, 4, Bytes(b"Foo\0".to_vec())),
        (330, 4, 1, IfdOffset(0)),
        (50706, 1, 4, Bytes(vec![1, 4, 0, 0])),
    ];
    samples::tiff_file(&[ifd0], &[Some(0)], &[])
}

#[test]
fn ifd_cycles_end_in_a_typed_error_within_the_caps() {
    let limits = Limits::default().with_guest_memory_bytes(CAP).with_guest_time(Duration::from_secs(3));
    // What a slot keeps resident between files is bounded by keep_resident; the rest of a 256 MiB
    // bomb's memory must go back to the kernel.
    const KEEP: usize = 16 << 20;
    let sandbox = Sandbox::builder().limits(limits).keep_resident(KEEP).cache_dir(common::cache_dir()).build().unwrap();
    sandbox.precompile().unwrap();
    let rss_before = current_rss();
    let peak_before = peak_rss();
    for (name, bytes) in [
        ("self-loop.dng", Dng { self_loop: true, ..Dng::patterned(16, 16) }.to_bytes()),
        (
            "self-loop-preview.dng",
            Dng { self_loop: true, preview: Some((1, 1, vec![0; 3])), ..Dng::patterned(16, 16) }.to_bytes(),
        ),
        ("subifd-loop.tif", subifd_self_loop()),
    ] {
        let started = Instant::now();
        let (result, receipt) = sandbox.decode_raw_with_receipt(Input::from_bytes(bytes, name));
        let elapsed = started.elapsed();
        let err = result.expect_err(name);
        assert!(err.is_rejection() && err.kind() != "internal", "{name}: {err}");
        if let Error::GuestOutOfMemory { limit, .. } = err {
            assert_eq!(limit, CAP);
        }
        // Bounded time: the deadline (3 s) plus instantiation and host work.
        assert!(elapsed < Duration::from_secs(5), "{name} took {elapsed:?}");
        assert!(receipt.guest_peak_memory_bytes <= CAP, "{name}: {}", receipt.guest_peak_memory_bytes);
        eprintln!("{name}: {} after {elapsed:?}, guest peak {} MiB", err.kind(), receipt.guest_peak_memory_bytes >> 20);
    }
    // Guest memory lives in this process: the peak may grow by one guest's cap, no more...
    let grown = peak_rss().saturating_sub(peak_before);
    assert!(grown <= CAP + (64 << 20), "host peak RSS grew by {} MiB", grown >> 20);
    // ...and all but keep_resident of it is given back when the instance is dropped.
    let kept = current_rss().saturating_sub(rss_before);
    assert!(kept < KEEP as u64 + (32 << 20), "host RSS kept {} MiB", kept >> 20);
    // The same sandbox decodes the next file normally.
    let ok = sandbox.decode_raw(Input::from_bytes(Dng::patterned(16, 16).to_bytes(), "ok.dng")).unwrap();
    assert_eq!(ok.info().width, 16);
}
