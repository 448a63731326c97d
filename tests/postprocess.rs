//! `RawImage::postprocess`: the relations between its options that hold whatever the picture
//! (bit depths, half size, flips, white balance, colour space), and options out of range as typed
//! errors. Agreement with LibRaw itself is tested against rawpy, on generated DNGs
//! (python/tests/test_raw.py) and on real cameras' files (python/tests/test_raw_real_files.py).

mod common;

use common::sandbox;
use sandload::{Demosaic, Error, Input, OutputColor, PixelLayout, Pixels, PostProcess, RawImage, WhiteBalance};
use sandload_samples::Dng;

fn decode(dng: &Dng) -> RawImage {
    sandbox().decode_raw(Input::from_bytes(dng.to_bytes(), "p.dng")).unwrap()
}

fn develop(raw: &RawImage, opts: PostProcess) -> Pixels {
    raw.postprocess(&opts).unwrap()
}

/// `(width, height, rgb)` of an 8-bit result.
fn rgb8(p: &Pixels) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(p.layout(), PixelLayout::Rgb8);
    let px = p.as_bytes().chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    (p.width() as usize, p.height() as usize, px)
}

#[test]
fn eight_bits_are_the_top_of_sixteen() {
    let raw = decode(&Dng::patterned(96, 64));
    for demosaic in [Demosaic::Linear, Demosaic::Ahd] {
        let eight = develop(&raw, PostProcess { demosaic, ..Default::default() });
        let sixteen = develop(&raw, PostProcess { demosaic, output_bits: 16, ..Default::default() });
        assert_eq!(sixteen.layout(), PixelLayout::Rgb16);
        let high: Vec<u8> = sixteen.as_bytes().chunks_exact(2).map(|b| b[1]).collect();
        assert_eq!(high, eight.as_bytes(), "{demosaic:?}");
    }
}

#[test]
fn half_size_and_flips_shape_the_output() {
    let raw = decode(&Dng::patterned(97, 63));
    let half = develop(&raw, PostProcess { half_size: true, ..Default::default() });
    assert_eq!((half.width(), half.height()), (49, 32));
    let (w, h, upright) = rgb8(&develop(&raw, PostProcess { flip: Some(0), ..Default::default() }));
    assert_eq!((w, h), (97, 63));
    // LibRaw's flip: bit 0 mirrors columns, bit 1 rows, bit 2 transposes (after the mirrors).
    for flip in 0..8u8 {
        let (fw, fh, out) = rgb8(&develop(&raw, PostProcess { flip: Some(flip), ..Default::default() }));
        assert_eq!((fw, fh), if flip & 4 != 0 { (h, w) } else { (w, h) }, "flip {flip}");
        for (i, px) in out.iter().enumerate() {
            let (row, col) = (i / fw, i % fw);
            let (mut r, mut c) = if flip & 4 != 0 { (col, row) } else { (row, col) };
            if flip & 2 != 0 {
                r = h - 1 - r;
            }
            if flip & 1 != 0 {
                c = w - 1 - c;
            }
            assert_eq!(*px, upright[r * w + c], "flip {flip} at {row},{col}");
        }
    }
    // The file's orientation 6 (rotate 90 CW) is LibRaw's flip 6 unless the caller says otherwise.
    let rotated = decode(&Dng { orientation: 6, ..Dng::patterned(40, 20) });
    let default = develop(&rotated, PostProcess::default());
    assert_eq!((default.width(), default.height()), (20, 40));
    assert_eq!(default, develop(&rotated, PostProcess { flip: Some(6), ..Default::default() }));
}

#[test]
fn a_grey_world_balances_a_flat_scene() {
    // Every R site 1000, G 2000, B 1500 above black: grey world makes the channels equal, camera
    // white balance (as-shot neutral 0.5, 1, 0.75) does the same, daylight does not.
    let mut dng = Dng::patterned(64, 64);
    let (w, black) = (dng.width as usize, u32::from(dng.black_level));
    for (i, s) in dng.samples.iter_mut().enumerate() {
        let (row, col) = (i / w, i % w);
        let above = match (row % 2, col % 2) {
            (0, 0) => 1000,
            (1, 1) => 1500,
            _ => 2000,
        };
        *s = (black + above) as u16;
    }
    dng.as_shot_neutral = [0.5, 1.0, 0.75];
    let raw = decode(&dng);
    let raw_colour = |white_balance| PostProcess {
        white_balance,
        output_color: OutputColor::Raw,
        auto_bright: None,
        gamma: (1.0, 1.0),
        output_bits: 16,
        ..Default::default()
    };
    for wb in [WhiteBalance::Auto, WhiteBalance::Camera, WhiteBalance::User([2.0, 1.0, 4.0 / 3.0, 1.0])] {
        let p = develop(&raw, raw_colour(wb));
        let v: Vec<u16> = p.as_bytes().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        let centre = &v[(32 * 64 + 32) * 3..][..3];
        assert!(centre.iter().all(|c| c.abs_diff(centre[1]) <= 2), "{wb:?}: {centre:?}");
    }
    let daylight = develop(&raw, raw_colour(WhiteBalance::Daylight));
    let v: Vec<u16> = daylight.as_bytes().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    let centre = &v[(32 * 64 + 32) * 3..][..3];
    assert!(centre[0].abs_diff(centre[1]) > 100, "daylight multipliers are the matrix's: {centre:?}");
}

#[test]
fn options_out_of_range_are_errors_naming_them() {
    let raw = decode(&Dng::patterned(32, 32));
    let bad = [
        (PostProcess { output_bits: 12, ..Default::default() }, "output_bps"),
        (PostProcess { bright: 0.0, ..Default::default() }, "bright"),
        (PostProcess { gamma: (f64::NAN, 4.5), ..Default::default() }, "gamma"),
        (PostProcess { auto_bright: Some(1.5), ..Default::default() }, "auto_bright_thr"),
        (PostProcess { white_balance: WhiteBalance::User([-1.0, 1.0, 1.0, 1.0]), ..Default::default() }, "user_wb"),
        (PostProcess { white_balance: WhiteBalance::User([0.0; 4]), ..Default::default() }, "user_wb"),
        (PostProcess { adjust_maximum_thr: 2.0, ..Default::default() }, "adjust_maximum_thr"),
    ];
    for (opts, name) in bad {
        match raw.postprocess(&opts) {
            Err(Error::Unsupported { operation: "postprocess", reason, .. }) => {
                assert!(reason.contains(name), "{reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn every_colour_space_and_demosaic_develops() {
    let raw = decode(&Dng::patterned(48, 40));
    let spaces = [
        OutputColor::Raw,
        OutputColor::Srgb,
        OutputColor::Adobe,
        OutputColor::Wide,
        OutputColor::ProPhoto,
        OutputColor::Xyz,
        OutputColor::Aces,
        OutputColor::P3D65,
        OutputColor::Rec2020,
    ];
    let mut seen = Vec::new();
    for output_color in spaces {
        let p = develop(&raw, PostProcess { output_color, ..Default::default() });
        assert_eq!((p.width(), p.height()), (48, 40));
        seen.push(p);
    }
    // Different spaces give different pixels (sRGB's matrix is not another's).
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
