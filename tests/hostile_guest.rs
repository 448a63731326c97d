//! A compromised decoder, simulated: `guests/hostile` speaks the raw-decoder ABI and attacks the
//! sandbox from inside (escape attempts through WASI, unbounded allocation, endless loops, output
//! floods, lies about its output). It is installed with `SandboxBuilder::replace_guest`, exactly
//! as a user would install a rebuilt rawler, so these tests also cover replacing a guest.
//!
//! Each attack must end in a typed error within the configured bound, and the same `Sandbox`
//! must serve the next file normally.

use std::time::{Duration, Instant};

use sandload::{Error, Guest, Input, Limits, Outcome, RawImage, Sandbox};

const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));

fn hostile(limits: Limits) -> Sandbox {
    Sandbox::builder().limits(limits).replace_guest(Guest::RawDecoder, HOSTILE).build().unwrap()
}

fn attack(sandbox: &Sandbox, name: &str) -> Result<RawImage, Error> {
    sandbox.decode_raw(Input::from_bytes(name.as_bytes().to_vec(), format!("{name}.dng")))
}

/// The replacement serves a valid frame: the next file after any attack must get exactly this.
#[track_caller]
fn assert_serves_ok(sandbox: &Sandbox) {
    let raw = attack(sandbox, "ok").expect("the sandbox must keep working after an attack");
    assert_eq!(raw.samples_u16(), (0u16..16).collect::<Vec<_>>());
    assert_eq!(raw.info().cfa.as_ref().unwrap().name(), "RGGB");
}

#[test]
fn every_escape_attempt_through_wasi_is_denied() {
    let sandbox = hostile(Limits::default());
    let err = attack(&sandbox, "escape").unwrap_err();
    // The probe reports through the "unsupported RAW file" channel (rule raw_unsupported).
    let Error::Unsupported { reason: detail, .. } = &err else {
        panic!("expected the probe's report, got {err}");
    };
    // The host escaped the report's control characters (guest text reaches terminals and logs).
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    let attempts: Vec<(&str, &str)> = detail.split("\\n").filter_map(|l| l.split_once("\\t")).collect();
    eprintln!("{} escape attempts, e.g. {:?}", attempts.len(), &attempts[..4.min(attempts.len())]);
    // The report covers what a decoder would try: preopens, absolute and relative paths out,
    // devices, creating files and directories, listing, sockets, environment, arguments, stdin.
    for expected in [
        "fd_prestat_get(3)",
        "path_open(fd 3, \"/etc/passwd\")",
        "path_open(fd 3, \"..\")",
        "path_open(fd 3, \"/proc/self/mem\")",
        "path_open(fd 0, \"written-by-guest\")",
        "path_create_directory(fd 3)",
        "fd_readdir(fd 3)",
        "sock_accept(fd 3)",
        "environ_sizes_get",
        "args_sizes_get",
        "fd_read(stdin)",
        "std::fs::metadata(\"/etc/passwd\")",
        "std::env::var(\"HOME\")",
    ] {
        assert!(attempts.iter().any(|(a, _)| *a == expected), "attempt {expected} missing from the report");
    }
    assert!(attempts.len() >= 60, "only {} attempts reported", attempts.len());
    let allowed: Vec<_> = attempts.iter().filter(|(_, outcome)| outcome.starts_with("ALLOWED")).collect();
    assert!(allowed.is_empty(), "the guest reached outside its memory: {allowed:?}");
    // Nothing was created in the working directory either.
    assert!(!std::path::Path::new("written-by-guest").exists() && !std::path::Path::new("made-by-guest").exists());
    assert_serves_ok(&sandbox);
}

#[test]
fn unbounded_allocation_stops_at_the_cap() {
    for cap in [16u64 << 20, 64 << 20, 256 << 20] {
        let sandbox = hostile(Limits::default().with_guest_memory_bytes(cap));
        let started = Instant::now();
        let (result, receipt) = sandbox.decode_raw_with_receipt(Input::from_bytes(b"alloc".to_vec(), "alloc.dng"));
        let took = started.elapsed();
        match result.unwrap_err() {
            Error::GuestOutOfMemory { limit, requested, guest, .. } => {
                assert_eq!((limit, guest), (cap, "raw-decoder"));
                assert!(requested > cap, "requested {requested}");
            }
            other => panic!("expected GuestOutOfMemory, got {other}"),
        }
        assert_eq!(receipt.outcome, Outcome::Rejected { kind: "guest_out_of_memory" });
        // Overshoot: the guest's memory never exceeds the cap (growth past it is refused, not
        // undone); how much of the cap it got to use before the refusal:
        let peak = receipt.guest_peak_memory_bytes;
        assert!(peak <= cap, "peak {peak} over the cap {cap}");
        assert!(cap - peak <= 2 << 20, "stopped {} bytes short of the cap", cap - peak);
        eprintln!("cap {} MiB: peak {peak} bytes ({} KiB under the cap) after {took:?}", cap >> 20, (cap - peak) >> 10);
        assert_serves_ok(&sandbox);
    }
}

#[test]
fn endless_loop_stops_at_the_deadline() {
    for limit in [Duration::from_millis(50), Duration::from_millis(200), Duration::from_secs(1)] {
        let sandbox = hostile(Limits::default().with_guest_time(limit));
        sandbox.precompile().unwrap();
        let started = Instant::now();
        let (result, receipt) = sandbox.decode_raw_with_receipt(Input::from_bytes(b"loop".to_vec(), "loop.dng"));
        let took = started.elapsed();
        match result.unwrap_err() {
            Error::GuestTimeout { limit: reported, guest, .. } => assert_eq!((reported, guest), (limit, "raw-decoder")),
            other => panic!("expected GuestTimeout, got {other}"),
        }
        // Never early; late by at most a few epoch ticks (5 ms each) plus scheduling. The bound is
        // loose on purpose (a loaded 2-core CI machine); the measured overshoot is printed.
        assert!(receipt.guest_time >= limit, "stopped after {:?}, before the limit {limit:?}", receipt.guest_time);
        assert!(took < limit + Duration::from_millis(500), "stopped {:?} after the limit", took - limit);
        eprintln!(
            "deadline {limit:?}: guest stopped after {:?} (overshoot {:?})",
            receipt.guest_time,
            receipt.guest_time - limit
        );
        assert_serves_ok(&sandbox);
    }
}

#[test]
fn output_floods_are_bounded_and_exit_is_a_trap() {
    let sandbox = hostile(Limits::default());
    match attack(&sandbox, "flood").unwrap_err() {
        Error::GuestTrap { message, .. } => {
            // 64 MiB went to stderr; the host kept a bounded buffer of it (and dropped stdout).
            assert!(message.len() < 20 << 10, "{} bytes of guest output kept", message.len());
        }
        other => panic!("expected GuestTrap, got {other}"),
    }
    match attack(&sandbox, "exit").unwrap_err() {
        Error::GuestTrap { message, guest, .. } => {
            assert_eq!(guest, "raw-decoder");
            assert!(message.contains("exit"), "{message}");
        }
        other => panic!("expected GuestTrap, got {other}"),
    }
    assert_serves_ok(&sandbox);
}

#[test]
fn every_lie_about_the_output_is_caught() {
    let limits = Limits::default().with_max_pixels(1 << 30);
    let sandbox = hostile(limits);
    for (lie, expect) in [
        ("lie-pixels", "pixel"),
        ("lie-region", "lie outside its memory"),
        ("lie-length", "bytes of samples"),
        ("lie-cfa", "CFA colour index 7"),
        ("lie-levels", "not below white level"),
        ("lie-area", "crop area 4x4 at (2, 2)"),
    ] {
        let err = attack(&sandbox, lie).map(|raw| raw.info().clone()).expect_err(lie);
        assert!(err.is_rejection(), "{lie}: {err}");
        assert_eq!(err.file().and_then(|f| f.to_str()), Some(format!("{lie}.dng").as_str()));
        assert!(err.to_string().contains(expect), "{lie}: {err}");
        assert_serves_ok(&sandbox);
    }
}

#[test]
fn a_replacement_speaking_another_protocol_or_no_wasm_is_contained() {
    // The safetensors guest has the same ABI version but answers another request type: whatever
    // it makes of a RAW request, the host gets a typed error, never an accepted frame or a crash.
    let wrong =
        Sandbox::builder().replace_guest(Guest::RawDecoder, Guest::SafetensorsHeader.bundled_wasm()).build().unwrap();
    let err = attack(&wrong, "ok").unwrap_err();
    assert!(err.is_rejection() || matches!(err, Error::Internal(_)), "{err}");
    // A module that is not wasm does not compile: a configuration error, on every call.
    let garbage = Sandbox::builder().replace_guest(Guest::RawDecoder, b"\0asm not really".to_vec()).build().unwrap();
    for _ in 0..2 {
        assert_eq!(attack(&garbage, "ok").unwrap_err().kind(), "internal");
    }
    // The other guests are untouched by a replacement.
    let ckpt = garbage.open_safetensors(Input::from_bytes(sandload_samples::small_checkpoint(), "m.safetensors"));
    assert_eq!(ckpt.unwrap().len(), 3);
}

/// Runs one attack on another thread and waits at most `patience` for it: an attack that holds
/// the thread must fail the test, not hang it.
fn attack_with_patience(
    sandbox: &Sandbox,
    name: &'static str,
    patience: Duration,
) -> (Result<RawImage, Error>, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let sandbox = sandbox.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let result = attack(&sandbox, name);
        let _ = tx.send((result, started.elapsed()));
    });
    rx.recv_timeout(patience).unwrap_or_else(|_| panic!("the {name} attack held the host thread for {patience:?}"))
}

#[test]
fn sleeping_or_yielding_cannot_hold_the_host_thread() {
    let limit = Duration::from_millis(200);
    let sandbox = hostile(Limits::default().with_guest_time(limit));
    assert_serves_ok(&sandbox); // compiled before the clock starts
    // `sleep`: std::thread::sleep(1 h); `poll`: a raw poll_oneoff on a 1 h relative clock. Both
    // reach the host's poll_oneoff, which wasmtime-wasi would serve by sleeping the calling
    // thread, out of reach of the epoch deadline.
    for name in ["sleep", "poll"] {
        let (result, took) = attack_with_patience(&sandbox, name, Duration::from_secs(10));
        match result.unwrap_err() {
            Error::GuestTrap { message, guest, .. } => {
                assert_eq!(guest, "raw-decoder");
                assert!(message.contains("poll_oneoff"), "{name}: {message}");
            }
            other => panic!("{name}: expected GuestTrap, got {other}"),
        }
        assert!(took < Duration::from_secs(1), "{name}: stopped after {took:?}");
        eprintln!("{name} (1 h): stopped after {took:?}");
        assert_serves_ok(&sandbox);
    }
    // `yield`: sched_yield forever returns at once each time, so the deadline stops the loop.
    let (result, took) = attack_with_patience(&sandbox, "yield", Duration::from_secs(10));
    match result.unwrap_err() {
        Error::GuestTimeout { limit: reported, .. } => assert_eq!(reported, limit),
        other => panic!("yield: expected GuestTimeout, got {other}"),
    }
    assert!(took >= limit && took < Duration::from_secs(1), "yield: stopped after {took:?}");
    eprintln!("yield forever (deadline {limit:?}): stopped after {took:?}");
    assert_serves_ok(&sandbox);
}

#[test]
fn a_huge_response_is_refused_before_the_host_decodes_it() {
    let sandbox = hostile(Limits::default());
    let started = Instant::now();
    match attack(&sandbox, "huge-response").unwrap_err() {
        Error::GuestTrap { message, guest, .. } => {
            assert_eq!(guest, "raw-decoder");
            assert!(message.contains("response too large"), "{message}");
            assert!(message.len() < 1 << 10, "{} bytes of message", message.len());
        }
        other => panic!("expected GuestTrap, got {}", other.kind()),
    }
    eprintln!("65 MiB response refused after {:?}", started.elapsed());
    assert_serves_ok(&sandbox);
}

/// A replacement guest that implements the ABI (version, alloc, call) and then traps in `call`:
/// if it is run at all, the result is a `GuestTrap`. `tables` funcref tables; `memories` are
/// memory types as encoded (`[0x00, 1]`: 32-bit, one page; `[0x04, 1]`: 64-bit, one page).
fn abi_module(memories: &[&[u8]], tables: usize) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    fn name(s: &str, out: &mut Vec<u8>) {
        leb(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
    fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend(body);
    }
    let version = sandload_abi::ABI_VERSION;
    assert!(version < 64, "i32.const below is a one-byte signed LEB");
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Types: () -> i32, (i32) -> i32, (i32, i32, i32, i32) -> i64.
    section(1, vec![3, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7e], &mut m);
    section(3, vec![3, 0, 1, 2], &mut m); // functions 0, 1, 2 of types 0, 1, 2
    if tables > 0 {
        let mut body = vec![tables as u8];
        for _ in 0..tables {
            body.extend([0x70, 0x00, 1]); // funcref, min 1
        }
        section(4, body, &mut m);
    }
    let mut body = vec![memories.len() as u8];
    for memory in memories {
        body.extend_from_slice(memory);
    }
    section(5, body, &mut m);
    let mut body = vec![4];
    name(sandload_abi::exports::MEMORY, &mut body);
    body.extend([2, 0]);
    for (export, func) in
        [(sandload_abi::exports::ABI_VERSION, 0u8), (sandload_abi::exports::ALLOC, 1), (sandload_abi::exports::CALL, 2)]
    {
        name(export, &mut body);
        body.extend([0, func]);
    }
    section(7, body, &mut m);
    // Bodies: `i32.const VERSION`, `i32.const 1024` (every input at the same place), `unreachable`.
    let code = [vec![0, 0x41, version as u8, 0x0b], vec![0, 0x41, 0x80, 0x08, 0x0b], vec![0, 0x00, 0x0b]];
    let mut body = vec![3];
    for f in code {
        leb(f.len() as u64, &mut body);
        body.extend(f);
    }
    section(10, body, &mut m);
    m
}

#[test]
fn guests_with_several_memories_memory64_or_several_tables_are_refused() {
    // The control: the same module with one memory and one table is run (and traps in `call`).
    for pooling in [true, false] {
        let sandbox = Sandbox::builder()
            .pooling(pooling)
            .replace_guest(Guest::RawDecoder, abi_module(&[&[0, 1]], 1))
            .build()
            .unwrap();
        let err = attack(&sandbox, "ok").unwrap_err();
        assert_eq!(err.kind(), "guest_trap", "pooling {pooling}: the control module must run: {err}");
    }
    for (what, module) in [
        ("two memories", abi_module(&[&[0, 1], &[0, 1]], 1)),
        ("a 64-bit memory", abi_module(&[&[0x04, 1]], 1)),
        ("two tables", abi_module(&[&[0, 1]], 2)),
    ] {
        for pooling in [true, false] {
            let sandbox =
                Sandbox::builder().pooling(pooling).replace_guest(Guest::RawDecoder, module.clone()).build().unwrap();
            let err = attack(&sandbox, "ok").unwrap_err();
            assert!(matches!(err, Error::Internal(_)), "{what}, pooling {pooling}: expected Internal, got {err}");
            eprintln!("{what}, pooling {pooling}: {err}");
        }
    }
}

/// A pooled slot is reused with its memory kept resident (`SandboxBuilder::keep_resident`), but
/// reset: a guest that reads all of its memory never finds the bytes the previous file's guest
/// left there, whether the dirty pages were zeroed in place (kept resident) or handed back.
#[test]
fn a_reused_slot_never_shows_the_last_files_bytes() {
    let stains = |result: Result<RawImage, Error>| -> usize {
        match result {
            Err(Error::Unsupported { reason, .. }) => {
                reason.strip_prefix("stains ").and_then(|n| n.parse().ok()).expect("the snoop's report")
            }
            other => panic!("expected the snoop's report, got {other:?}"),
        }
    };
    for keep in [0, 2 << 20, 256 << 20] {
        // One slot, so the snoop runs in the very memory the stain dirtied.
        let sandbox = Sandbox::builder()
            .max_concurrent(1)
            .keep_resident(keep)
            .replace_guest(Guest::RawDecoder, HOSTILE)
            .build()
            .unwrap();
        // The snoop's own code and stack hold the marker a few times: that is the baseline.
        let baseline = stains(attack(&sandbox, "snoop"));
        assert!(baseline < 8, "keep_resident {keep}: {baseline}");
        // The control: in one instance, the snoop sees the 4 Mi markers of its own stain.
        assert!(stains(attack(&sandbox, "stain-snoop")) >= (64 << 20) / 16, "keep_resident {keep}");
        attack(&sandbox, "stain").expect("the stain answers like ok");
        assert_eq!(
            stains(attack(&sandbox, "snoop")),
            baseline,
            "keep_resident {keep}: the slot leaked 64 MiB of markers"
        );
    }
}

/// A tiled file (1 MiB or more, so that the host splits it) answered by the hostile guest: with
/// honest tiles the host places and crops every tile right; a tiling that does not cover the
/// image, an answer one sample short or describing another image is refused, and nothing is
/// stitched from it.
#[test]
fn tiled_answers_are_stitched_right_and_lies_refused() {
    let tiled = |name: &str| {
        let mut file = vec![b'x'; 1 << 20];
        file.extend_from_slice(format!("sandload-attack:{name}").as_bytes());
        file
    };
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIPPED: one CPU, so files are never split into tile calls");
        return;
    }
    for threads in [2u32, 4] {
        let sandbox =
            Sandbox::builder().max_concurrent(threads).replace_guest(Guest::RawDecoder, HOSTILE).build().unwrap();
        let raw = sandbox.decode_raw(Input::from_bytes(tiled("tiles-ok"), "tiles.dng")).unwrap();
        assert_eq!(raw.samples_u16(), (0u16..16).collect::<Vec<_>>(), "{threads} calls at once");
        for lie in ["tiles-lie-geometry", "tiles-lie-length", "tiles-lie-metadata"] {
            let err = sandbox.decode_raw(Input::from_bytes(tiled(lie), "lie.dng")).unwrap_err();
            assert_eq!(err.rule(), Some("raw_malformed"), "{lie}: {err}");
            assert_eq!(sandbox.guests_running(), 0);
        }
    }
    // Without splitting (or with one call slot), the guest is asked for samples only; this one
    // answers with a tiling instead, which is refused.
    for whole in [
        Sandbox::builder().parallel_tiles(false).replace_guest(Guest::RawDecoder, HOSTILE).build().unwrap(),
        Sandbox::builder().max_concurrent(1).replace_guest(Guest::RawDecoder, HOSTILE).build().unwrap(),
    ] {
        let err = whole.decode_raw(Input::from_bytes(tiled("tiles-ok"), "tiles.dng")).unwrap_err();
        assert_eq!(err.rule(), Some("raw_malformed"), "{err}");
    }
}
