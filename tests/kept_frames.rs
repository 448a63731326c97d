//! Decoded RAW frames handed out without a copy keep their guest's memory: they must stay intact
//! while later files decode, never hold more than `max_concurrent` guests' memory, never starve
//! new calls of pool slots, and give everything back when dropped, on any thread.

use sandload::{Input, RawImage, Sandbox};
use sandload_samples::Dng;

fn dng(seed: u16) -> (Vec<u8>, Vec<u16>) {
    let samples: Vec<u16> =
        (0..64 * 48).map(|i| (i as u16).wrapping_mul(7).wrapping_add(seed * 101) & 0x3fff).collect();
    (Dng::new(64, 48, samples.clone()).to_bytes(), samples)
}

fn decode(sandbox: &Sandbox, seed: u16) -> RawImage {
    sandbox.decode_raw(Input::from_bytes(dng(seed).0, format!("frame-{seed}.dng"))).unwrap()
}

#[test]
fn kept_frames_are_bounded_intact_and_released() {
    let sandbox = Sandbox::builder().max_concurrent(2).build().unwrap();
    // More frames alive than the bound: the first two keep their guests, the rest are copies,
    // and decoding goes on (a third kept store would have had no pool slot).
    let frames: Vec<RawImage> = (0..6).map(|seed| decode(&sandbox, seed)).collect();
    assert_eq!(sandbox.frames_kept(), 2);
    assert_eq!(sandbox.guests_running(), 0, "kept frames hold no call slot");
    // Every frame, kept or copied, still holds its own samples after the later decodes reused
    // the pool (a kept guest's memory must not be handed to the next file).
    for (seed, frame) in frames.iter().enumerate() {
        assert_eq!(frame.samples_u16(), dng(seed as u16).1, "frame {seed}");
    }
    // A clone of the samples keeps the guest alive after the frame is dropped.
    let samples = frames[0].samples().clone();
    drop(frames);
    assert_eq!(sandbox.frames_kept(), 1);
    let expected: Vec<u8> = dng(0).1.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(samples, expected);
    // Dropped on another thread, the last one gives its guest back too.
    std::thread::spawn(move || drop(samples)).join().unwrap();
    assert_eq!(sandbox.frames_kept(), 0);
    // With the bound free again, new frames are kept again.
    let again = decode(&sandbox, 9);
    assert_eq!(sandbox.frames_kept(), 1);
    assert_eq!(again.samples_u16(), dng(9).1);
}

#[test]
fn kept_frames_outlive_their_sandbox() {
    let sandbox = Sandbox::new().unwrap();
    let frame = decode(&sandbox, 3);
    drop(sandbox);
    assert_eq!(frame.samples_u16(), dng(3).1);
}

#[test]
fn threads_keeping_frames_do_not_deadlock() {
    // Two call slots, so two kept frames at most: four threads each holding frames while they
    // decode more must all finish with correct samples.
    let sandbox = Sandbox::builder().max_concurrent(2).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let sandbox = &sandbox;
            s.spawn(move || {
                let mut held = Vec::new();
                for i in 0..12u16 {
                    let seed = t * 100 + i;
                    held.push((seed, decode(sandbox, seed)));
                    if held.len() > 3 {
                        held.remove(0);
                    }
                    for (seed, frame) in &held {
                        assert_eq!(frame.samples_u16(), dng(*seed).1, "thread {t}, frame {seed}");
                    }
                }
            });
        }
    });
    assert!(sandbox.frames_kept() == 0 && sandbox.guests_running() == 0);
}
