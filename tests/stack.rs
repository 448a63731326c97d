//! Guest calls do not depend on the caller's stack: from a thread with a 256 KiB stack (less than
//! wasmtime's 512 KiB `max_wasm_stack` alone), deeply nested input and unbounded recursion in a
//! guest end in typed errors, and the process survives to say so. Without the sandbox's own stack
//! segment a recursing guest runs off the end of the thread's stack and the process dies with
//! SIGSEGV, taking this whole test binary with it.

use std::time::Instant;

use sandload::{Error, Guest, Input, Sandbox};

const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));
const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` on a fresh thread with a [`SMALL_STACK`]-byte stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().name("small-stack".into()).stack_size(SMALL_STACK).spawn(f).unwrap().join().unwrap()
}

#[test]
fn deeply_nested_json_header_from_a_small_stack() {
    let sandbox = Sandbox::new().unwrap();
    // 100,000 levels of arrays under one key: the header is 100 kB, far under max_header_bytes.
    let header = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let file = sandload_samples::with_header(&header);
    let fresh = sandbox.clone();
    let (result, took) = on_small_stack(move || {
        let started = Instant::now();
        // The first call also compiles the guest on this thread.
        let result = fresh.open_safetensors(Input::from_bytes(file, "nested.safetensors")).map(|c| c.len());
        (result, started.elapsed())
    });
    let err = result.unwrap_err();
    assert!(err.is_rejection(), "expected a typed rejection, got {err}");
    assert_eq!(err.file().and_then(|f| f.to_str()), Some("nested.safetensors"));
    eprintln!("100,000-deep JSON header from a 256 KiB stack: {} after {took:?}: {err}", err.kind());
    // And a valid file from the same kind of thread still opens.
    let ok = on_small_stack(move || {
        sandbox
            .open_safetensors(Input::from_bytes(sandload_samples::small_checkpoint(), "ok.safetensors"))
            .map(|c| c.len())
    });
    assert_eq!(ok.unwrap(), 3);
}

#[test]
fn unbounded_recursion_in_a_guest_from_a_small_stack() {
    let sandbox = Sandbox::builder().replace_guest(Guest::RawDecoder, HOSTILE).build().unwrap();
    let hostile = sandbox.clone();
    let (result, took) = on_small_stack(move || {
        let started = Instant::now();
        let result = hostile.decode_raw(Input::from_bytes(b"recurse".to_vec(), "recurse.dng")).map(|_| ());
        (result, started.elapsed())
    });
    match result.unwrap_err() {
        Error::GuestTrap { message, guest, .. } => {
            assert_eq!(guest, "raw-decoder");
            assert!(message.contains("stack"), "{message}");
            eprintln!(
                "unbounded recursion from a 256 KiB stack: GuestTrap after {took:?}: {}",
                message.lines().last().unwrap_or("")
            );
        }
        other => panic!("expected GuestTrap, got {other}"),
    }
    // Twice more, the second from the test's own (larger) stack: the sandbox is unharmed.
    let again = sandbox.clone();
    let second = on_small_stack(move || again.decode_raw(Input::from_bytes(b"recurse".to_vec(), "r.dng")).map(|_| ()));
    assert_eq!(second.unwrap_err().kind(), "guest_trap");
    let third = sandbox.decode_raw(Input::from_bytes(b"recurse".to_vec(), "r.dng")).map(|_| ());
    assert_eq!(third.unwrap_err().kind(), "guest_trap");
    let ok = on_small_stack(move || {
        sandbox.decode_raw(Input::from_bytes(b"ok".to_vec(), "ok.dng")).map(|r| r.samples_u16())
    });
    assert_eq!(ok.unwrap(), (0u16..16).collect::<Vec<_>>());
}
