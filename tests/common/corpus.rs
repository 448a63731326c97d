//! A mixed corpus of valid and hostile files, and a comparable verdict for each, for the load
//! tests (`soak.rs`, `concurrency.rs`).

use sandload::{Dtype, Input, Opened, Sandbox};
use sandload_samples::{self as samples, Dng, Tensor};

/// Guest memory for the soak: enough for every valid file here, small enough that the bombs hit
/// the cap quickly.
pub const CAP: u64 = 64 << 20;

/// The corpus: each file with how often it appears per round of 100 files. Hostile files that
/// cost a full memory cap or deadline each are rarer, as in a real crawl.
pub fn corpus() -> Vec<(&'static str, Vec<u8>, usize)> {
    let checkpoint = samples::safetensors(
        &[Tensor::patterned("w", Dtype::F32, &[16, 16]), Tensor::patterned("b", Dtype::BF16, &[16])],
        &[("format", "pt")],
    );
    let mut truncated_png = samples::png_image(64, 64);
    truncated_png.truncate(truncated_png.len() / 2);
    vec![
        ("valid.safetensors", checkpoint.clone(), 25),
        ("small.safetensors", samples::small_checkpoint(), 10),
        ("pickle.safetensors", samples::malicious_pickle(), 8),
        ("model.pt", samples::pytorch_zip(), 5),
        ("legacy.pt", samples::pytorch_tar(), 2),
        ("object.npy", samples::npy_object(), 2),
        (
            "dup.safetensors",
            samples::with_header(
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
            ),
            5,
        ),
        (
            "holes.safetensors",
            samples::with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"),
            4,
        ),
        ("cut.safetensors", checkpoint[..checkpoint.len() - 3].to_vec(), 4),
        ("photo.dng", Dng::patterned(64, 48).to_bytes(), 10),
        (
            "bomb.dng",
            Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..Dng::patterned(8, 8) }.to_bytes(),
            3,
        ),
        ("eof.dng", Dng { strip_offset: Some(1 << 30), ..Dng::patterned(16, 16) }.to_bytes(), 3),
        ("cut.dng", Dng::patterned(24, 16).to_bytes()[..300].to_vec(), 3),
        ("loop.dng", Dng { self_loop: true, ..Dng::patterned(16, 16) }.to_bytes(), 1),
        ("image.png", samples::png_image(64, 64), 8),
        ("truncated.png", truncated_png, 3),
        ("bomb.png", samples::png_with_header(1 << 20, 1 << 20, 0, &[]), 2),
        ("bomb.jpg", samples::jpeg_with_dimensions(65_000, 65_000), 2),
    ]
}

/// A file's verdict, comparable across runs: what it opened as, or the error's kind and rule.
pub fn verdict(sandbox: &Sandbox, name: &str, bytes: &[u8]) -> String {
    let input = Input::from_bytes(bytes.to_vec(), name);
    // Images go to the image guest; everything else to `open`, which dispatches on content.
    let result = if name.ends_with(".png") || name.ends_with(".jpg") {
        sandbox.decode_image(input).map(|i| format!("image {}x{}", i.pixels.width(), i.pixels.height()))
    } else {
        sandbox.open(input).map(|opened| match opened {
            Opened::Checkpoint(c) => format!("checkpoint {} tensors", c.len()),
            Opened::Raw(r) => format!("raw {}x{}", r.info().width, r.info().height),
            other => format!("{other:?}"),
        })
    };
    match result {
        Ok(verdict) => verdict,
        Err(e) => {
            assert!(e.is_rejection(), "{name}: not a typed rejection: {e}");
            assert_eq!(e.file().and_then(|f| f.to_str()), Some(name), "{e}");
            format!("{} {}", e.kind(), e.rule().unwrap_or(""))
        }
    }
}

pub fn schedule(corpus: &[(&'static str, Vec<u8>, usize)]) -> Vec<usize> {
    corpus.iter().enumerate().flat_map(|(i, (_, _, n))| std::iter::repeat_n(i, *n)).collect()
}
