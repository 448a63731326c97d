//! Feature `tokio`: async calls that keep a one-worker runtime responsive while guests run, and
//! whose dropped futures stop their guest and free its slot at once.
#![cfg(feature = "tokio")]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sandload::{Error, Guest, Input, Limits, Sandbox};
use sandload_samples as samples;

mod common;

const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));

/// One at a time: the timings below are about this sandbox, not about sharing two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn hostile(guest_time: Duration) -> Sandbox {
    Sandbox::builder()
        .limits(Limits::default().with_guest_time(guest_time))
        .replace_guest(Guest::RawDecoder, HOSTILE)
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

fn attack(name: &str) -> Input {
    Input::from_bytes(name.as_bytes().to_vec(), format!("{name}.dng"))
}

#[test]
fn async_calls_give_the_same_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let sandbox = common::sandbox();
    runtime().block_on(async {
        let ckpt = sandbox.open_safetensors_async(Input::from_bytes(samples::small_checkpoint(), "m.safetensors"));
        assert_eq!(ckpt.await.unwrap().len(), 3);
        let err = sandbox.open_async(Input::from_bytes(samples::malicious_pickle(), "evil.safetensors")).await;
        assert_eq!(err.unwrap_err().kind(), "refused_format");
        let dng = samples::Dng::patterned(32, 24);
        let raw = sandbox.decode_raw_async(Input::from_bytes(dng.to_bytes(), "a.dng")).await.unwrap();
        assert_eq!(raw.samples_u16(), dng.samples);
        let png = sandbox.decode_image_async(Input::from_bytes(samples::png_image(4, 3), "a.png")).await.unwrap();
        assert_eq!(png.pixels.width(), 4);
    });
}

/// Dropping the future of a guest that loops forever frees its slot within 20 ms, and the same
/// sandbox serves the next file.
#[test]
fn dropping_the_future_stops_the_guest() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let sandbox = hostile(Duration::from_secs(60));
    let rt = runtime();
    let mut freed_in = Vec::new();
    for _ in 0..3 {
        let elapsed = rt.block_on(async {
            let s = sandbox.clone();
            let task = tokio::spawn(async move { s.decode_raw_async(attack("loop")).await });
            let start = Instant::now();
            while sandbox.guests_running() == 0 {
                assert!(start.elapsed() < Duration::from_secs(10), "the guest never started");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!task.is_finished(), "the loop runs until cancelled");
            task.abort();
            let dropped = Instant::now();
            assert!(task.await.unwrap_err().is_cancelled());
            while sandbox.guests_running() > 0 {
                assert!(dropped.elapsed() < Duration::from_secs(2), "the slot was never freed");
                std::thread::sleep(Duration::from_micros(200));
            }
            dropped.elapsed()
        });
        freed_in.push(elapsed);
    }
    eprintln!("slot freed after the drop in {freed_in:?}");
    freed_in.sort();
    assert!(freed_in[1] < Duration::from_millis(20), "{freed_in:?}");
    let ok = rt.block_on(sandbox.decode_raw_async(attack("ok"))).unwrap();
    assert_eq!(ok.samples_u16(), (0u16..16).collect::<Vec<_>>());
}

/// A runtime with one worker keeps running its other tasks while a guest spins until its
/// deadline, and the deadline still applies.
#[test]
fn a_one_worker_runtime_stays_responsive() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let sandbox = hostile(Duration::from_millis(400));
    runtime().block_on(async {
        let s = sandbox.clone();
        let guest = tokio::spawn(async move { s.decode_raw_async(attack("loop")).await });
        let (mut ticks, mut worst) = (0u32, Duration::ZERO);
        let mut last = Instant::now();
        while !guest.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
            ticks += 1;
        }
        eprintln!("{ticks} ticks while the guest ran, longest gap {worst:?}");
        assert!(ticks > 50, "{ticks}");
        assert!(worst < Duration::from_millis(100), "{worst:?}");
        assert!(matches!(guest.await.unwrap(), Err(Error::GuestTimeout { .. })));
    });
}
