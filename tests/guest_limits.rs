//! A guest that exceeds its memory cap or its deadline yields the matching error, the host stays
//! up, and the same Sandbox keeps working for the next file.

use std::time::{Duration, Instant};

use sandload::{Dtype, Error, Input, Limits, Outcome, Sandbox};
use sandload_samples::{self as samples, Tensor};

/// A valid header that is expensive to parse: many tensors with long names.
fn heavy_checkpoint(tensors: usize) -> Vec<u8> {
    let list: Vec<Tensor> = (0..tensors)
        .map(|i| {
            Tensor::patterned(&format!("model.layers.{i}.self_attn.q_proj.weight.{}", "x".repeat(40)), Dtype::U8, &[0])
        })
        .collect();
    samples::safetensors(&list, &[])
}

#[test]
fn memory_cap_gives_guest_out_of_memory_and_sandbox_recovers() {
    const CAP: u64 = 16 << 20;
    let limits = Limits::default().with_guest_memory_bytes(CAP);
    let sandbox = Sandbox::with_limits(limits).unwrap();
    // ~11 MB of header fits in the cap, but parsing it needs several times that.
    let big = heavy_checkpoint(100_000);
    assert!((big.len() as u64) < CAP);
    let (result, receipt) = sandbox.open_safetensors_with_receipt(Input::from_bytes(big, "big.safetensors"));
    match result.unwrap_err() {
        Error::GuestOutOfMemory { limit, requested, guest, .. } => {
            assert_eq!(limit, CAP);
            assert!(requested > limit, "requested {requested}");
            assert_eq!(guest, "safetensors-header");
        }
        other => panic!("expected GuestOutOfMemory, got {other}"),
    }
    assert_eq!(receipt.outcome, Outcome::Rejected { kind: "guest_out_of_memory" });
    assert!(receipt.guest_peak_memory_bytes <= CAP, "peak {}", receipt.guest_peak_memory_bytes);
    assert!(receipt.guest_peak_memory_bytes > CAP / 2, "the input alone fills most of the cap");

    // The same sandbox opens the next file normally.
    let ok = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "ok.safetensors")).unwrap();
    assert_eq!(ok.len(), 3);
}

#[test]
fn input_larger_than_the_cap_gives_guest_out_of_memory() {
    let sandbox = Sandbox::with_limits(Limits::default().with_guest_memory_bytes(2 << 20)).unwrap();
    let err = sandbox.open_safetensors(Input::from_bytes(heavy_checkpoint(40_000), "big.safetensors")).unwrap_err();
    assert_eq!(err.kind(), "guest_out_of_memory", "{err}");
}

#[test]
fn deadline_gives_guest_timeout_and_sandbox_recovers() {
    let limits = Limits::default().with_guest_time(Duration::from_millis(1));
    let sandbox = Sandbox::with_limits(limits).unwrap();
    sandbox.precompile().unwrap();
    let big = heavy_checkpoint(200_000);
    let started = Instant::now();
    let err = sandbox.open_safetensors(Input::from_bytes(big, "slow.safetensors")).unwrap_err();
    let took = started.elapsed();
    match err {
        Error::GuestTimeout { limit, .. } => assert_eq!(limit, Duration::from_millis(1)),
        other => panic!("expected GuestTimeout, got {other}"),
    }
    // Bounded: nowhere near the seconds a full parse would take. (Generous for a loaded machine.)
    assert!(took < Duration::from_secs(2), "took {took:?}");

    let relaxed = Sandbox::with_limits(Limits::default()).unwrap();
    assert!(relaxed.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "ok.safetensors")).is_ok());
    // The strict sandbox still works on tiny files after the timeout (1 ms is enough for them
    // only sometimes on a busy machine, so accept either verdict but never a hang or a panic).
    let _ = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "ok.safetensors"));
}

#[test]
fn receipt_reports_limits_and_costs() {
    let sandbox = Sandbox::new().unwrap();
    let ckpt = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "r.safetensors")).unwrap();
    let r = ckpt.receipt();
    assert_eq!(r.outcome, Outcome::Accepted);
    assert_eq!(r.guest, Some("safetensors-header"));
    assert_eq!(r.limits, Limits::default());
    assert!(r.guest_peak_memory_bytes >= 64 * 1024, "a wasm memory is at least one page");
    assert!(r.guest_time > Duration::ZERO && r.guest_time <= r.total_time);
    assert_eq!(r.file.to_str(), Some("r.safetensors"));

    // Refused by the sniffer, then described by the pickle-scan guest: the receipt shows it.
    let (result, r) = sandbox.open_safetensors_with_receipt(Input::from_bytes(samples::pickle(4), "p.safetensors"));
    assert!(result.is_err());
    assert_eq!(r.guest, Some("pickle-scan"));
    assert!(r.guest_peak_memory_bytes >= 64 * 1024 && r.guest_time > Duration::ZERO);
    assert_eq!(r.format, sandload::Format::Pickle);

    // Refused before any guest ran (a format that holds no pickle to walk): the receipt says so.
    let (result, r) = sandbox.open_safetensors_with_receipt(Input::from_bytes(samples::gguf(), "g.safetensors"));
    assert!(result.is_err());
    assert_eq!(r.guest, None);
    assert_eq!(r.format, sandload::Format::Gguf);
    assert_eq!(r.outcome, Outcome::Rejected { kind: "refused_format" });
}

#[test]
fn cap_below_the_guest_minimum_is_guest_out_of_memory() {
    let sandbox = Sandbox::with_limits(Limits::default().with_guest_memory_bytes(64 * 1024)).unwrap();
    let err = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "s.safetensors")).unwrap_err();
    match err {
        Error::GuestOutOfMemory { limit, requested, .. } => assert!(requested > limit),
        other => panic!("expected GuestOutOfMemory, got {other}"),
    }
}

#[test]
fn oversized_memory_limit_is_refused_at_build() {
    let err = Sandbox::with_limits(Limits::default().with_guest_memory_bytes(5 << 30)).unwrap_err();
    assert_eq!(err.kind(), "internal");
}

#[test]
fn many_threads_share_one_sandbox() {
    let sandbox = Sandbox::builder().max_concurrent(2).build().unwrap();
    let files: Vec<(Vec<u8>, bool)> = vec![
        (samples::small_checkpoint(), true),
        (samples::pickle(2), false),
        (samples::pytorch_zip(), false),
        (samples::with_header("{\"a\":1}"), false),
        (samples::safetensors(&[Tensor::patterned("t", Dtype::F64, &[3, 3])], &[]), true),
    ];
    std::thread::scope(|s| {
        for t in 0..8 {
            let sandbox = &sandbox;
            let files = &files;
            s.spawn(move || {
                for i in 0..25 {
                    let (bytes, ok) = &files[(t + i) % files.len()];
                    let result = sandbox.open_safetensors(Input::from_bytes(bytes.clone(), format!("t{t}-{i}")));
                    assert_eq!(result.is_ok(), *ok, "thread {t} file {i}: {result:?}");
                }
            });
        }
    });
}

#[test]
fn an_unrepresentable_guest_time_means_no_deadline_and_never_panics() {
    // `Instant::now() + guest_time` overflows for these; the sandbox must treat them as "no
    // deadline", on both allocators and for every guest kind exercised here.
    for time in [Duration::MAX, Duration::from_secs(10_000_000_000_000_000_000)] {
        let limits = Limits::default().with_guest_time(time);
        assert_eq!(limits.get(sandload::Limit::GuestTimeMillis), u64::MAX);
        for pooling in [true, false] {
            let sandbox = Sandbox::builder().limits(limits.clone()).pooling(pooling).build().unwrap();
            let ok = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "ok.safetensors"));
            assert_eq!(ok.unwrap().len(), 3, "guest_time {time:?}, pooling {pooling}");
            let dng = samples::Dng::patterned(16, 16);
            let raw = sandbox.decode_raw(Input::from_bytes(dng.to_bytes(), "ok.dng")).unwrap();
            assert_eq!(raw.samples_u16(), dng.samples);
            let err = sandbox.open_safetensors(Input::from_bytes(samples::pickle(4), "p.safetensors")).unwrap_err();
            assert_eq!(err.kind(), "refused_format");
        }
    }
}

#[test]
fn degenerate_memory_caps_give_typed_errors() {
    // 0 and 1 byte: smaller than any guest's first page, so every guest call is refused with the
    // guest's own minimum as what it requested.
    for cap in [0u64, 1] {
        for pooling in [true, false] {
            let limits = Limits::default().with_guest_memory_bytes(cap);
            let sandbox = Sandbox::builder().limits(limits).pooling(pooling).build().unwrap();
            let err = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "s.safetensors"));
            match err.unwrap_err() {
                Error::GuestOutOfMemory { limit, requested, .. } => {
                    assert_eq!(limit, cap);
                    assert!(requested >= 64 << 10, "requested {requested}");
                }
                other => panic!("cap {cap}, pooling {pooling}: expected GuestOutOfMemory, got {other}"),
            }
            let dng = samples::Dng::patterned(16, 16);
            let err = sandbox.decode_raw(Input::from_bytes(dng.to_bytes(), "s.dng")).unwrap_err();
            assert!(matches!(err, Error::GuestOutOfMemory { .. } | Error::LimitExceeded { .. }), "cap {cap}: {err}");
        }
    }
    // One byte more than a wasm32 memory can address: refused when the sandbox is built.
    for pooling in [true, false] {
        let limits = Limits::default().with_guest_memory_bytes((4 << 30) + 1);
        let err = Sandbox::builder().limits(limits).pooling(pooling).build().unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert!(err.to_string().contains("4 GiB"), "{err}");
    }
}
