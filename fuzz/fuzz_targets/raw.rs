//! Camera RAW end to end through the sandbox: rawler decodes in the guest, the host re-validates
//! and copies the samples out. rawler may crash on hostile input (a typed `GuestTrap`); sandload
//! may not: no panic, no hang, no unbounded host memory, and anything accepted is consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sandload::Input;
use sandload_fuzz::{FILE_NAME, check_rejection, limits, sandbox};

fuzz_target!(
    init: sandload_fuzz::warm_up(|s| s.decode_raw(Input::from_bytes(sandload_samples::Dng::patterned(16, 16).to_bytes(), "warm-up"))),
    |data: &[u8]| {
    match sandbox().decode_raw(Input::from_bytes(data.to_vec(), FILE_NAME)) {
        Ok(raw) => {
            let info = raw.info();
            let pixels = (info.width as u64) * (info.height as u64);
            assert!(pixels > 0 && pixels <= limits().max_pixels, "{}x{} accepted", info.width, info.height);
            assert_eq!(raw.samples().len(), info.width * info.height * info.cpp * 2, "sample buffer length");
            assert_eq!(info.white_levels.len(), info.cpp);
            assert_eq!(info.black_levels.len(), info.black_width * info.black_height * info.cpp);
            if let Some(cfa) = &info.cfa {
                assert_eq!(cfa.pattern.len(), cfa.width * cfa.height);
            }
            for area in [info.active_area, info.crop_area].into_iter().flatten() {
                assert!(area.x + area.width <= info.width && area.y + area.height <= info.height, "area {area:?}");
            }
            // The ML outputs run on validated data: they may refuse (X-Trans, linear), never panic.
            if pixels <= 1 << 16 {
                let _ = raw.bayer_planes();
                let _ = raw.develop();
            }
        }
        Err(e) => check_rejection(&e, true),
    }
});
