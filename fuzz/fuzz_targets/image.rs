//! PNG/JPEG/TIFF/WebP end to end through the image-decoder guest, differentially against the same
//! `image` release decoding natively: when both succeed the pixels are identical; whatever the
//! sandbox returns respects the pixel limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sandload::Input;
use sandload_fuzz::{FILE_NAME, check_rejection, limits, sandbox};

/// Native decode under tight limits (this process is not sandboxed).
fn native(data: &[u8]) -> Option<image::DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(data)).with_guessed_format().ok()?;
    let mut native_limits = image::Limits::default();
    native_limits.max_image_width = Some(4096);
    native_limits.max_image_height = Some(4096);
    native_limits.max_alloc = Some(64 << 20);
    reader.limits(native_limits);
    reader.decode().ok()
}

fuzz_target!(
    init: sandload_fuzz::warm_up(|s| s.decode_image(Input::from_bytes(sandload_samples::png_image(4, 4), "warm-up"))),
    |data: &[u8]| {
    match sandbox().decode_image(Input::from_bytes(data.to_vec(), FILE_NAME)) {
        Ok(decoded) => {
            let (w, h) = (decoded.pixels.width() as u64, decoded.pixels.height() as u64);
            assert!(w * h > 0 && w * h <= limits().max_pixels, "{w}x{h} accepted");
            if let Some(native) = native(data) {
                let native = sandload::Pixels::from(&native);
                // TIFF is decoded with the tiff crate in the file's own layout, which `image`
                // converts (CMYK to RGB, for one); where the layouts agree, so must the pixels.
                let tiff = decoded.format.ends_with("tiff");
                if !tiff || native.layout() == decoded.pixels.layout() {
                    assert_eq!(decoded.pixels.layout(), native.layout(), "pixel layout differs from native decode");
                    assert!(decoded.pixels == native, "pixels differ from native decode");
                }
            }
        }
        Err(e) => check_rejection(&e, true),
    }
});
