//! Camera RAW through the sandbox: real DNG files written by test code decode to exactly the
//! samples written; hostile ones (dimension bombs, IFD cycles, strips past EOF, truncation,
//! random bytes behind a TIFF header) become typed errors in bounded time and memory.

mod common;

use std::time::{Duration, Instant};

use common::{sandbox, sandbox_with};
use sandload::{CfaColor, Error, Format, Input, Limit, Limits, Sandbox};
use sandload_samples::{self as samples, Dng};

fn decode(bytes: Vec<u8>, name: &str) -> sandload::Result<sandload::RawImage> {
    sandbox().decode_raw(Input::from_bytes(bytes, name))
}

#[test]
fn uncompressed_dng_decodes_to_exactly_the_samples_written() {
    let dng = Dng::patterned(130, 96);
    let raw = decode(dng.to_bytes(), "shot.dng").unwrap();
    let info = raw.info();
    assert_eq!((info.width, info.height, info.cpp, info.bits_per_sample), (130, 96, 1, 16));
    assert_eq!(info.format, Format::Dng);
    assert_eq!(info.decoder, "dng");
    assert_eq!(info.cfa.as_ref().unwrap().name(), "RGGB");
    assert_eq!(info.black_levels, vec![256.0]);
    assert_eq!(info.white_levels, vec![4351]);
    assert_eq!((info.make.as_str(), info.model.as_str()), ("Sandload", "Synthetic 16"));
    assert_eq!(info.orientation, 1);
    assert_eq!(raw.samples().len(), 130 * 96 * 2);
    assert_eq!(raw.samples_u16(), dng.samples);
    assert_eq!(raw.sample(95, 129, 0), dng.samples[95 * 130 + 129]);
    // ColorMatrix1 round-trips (stored as rationals over 10000).
    let m = info.xyz_to_cam.unwrap();
    for (got, want) in m.iter().flatten().zip(dng.color_matrix) {
        assert!((got - want).abs() < 1e-3, "{got} vs {want}");
    }
    let receipt = raw.receipt();
    assert_eq!(receipt.guest, Some("raw-decoder"));
    assert!(receipt.guest_peak_memory_bytes > 130 * 96 * 2);
}

#[test]
fn lossless_jpeg_dng_decodes_to_exactly_the_samples_written() {
    // DNG compression 7 (lossless JPEG, as cameras and Adobe's converter write it), with
    // differences of every category including wrap-around at 0 and 65535.
    let (w, h) = (37u32, 23u32);
    let mut state = 12345u32;
    let samples: Vec<u16> = (0..w * h)
        .map(|i| match i % 5 {
            0 => 0,
            1 => 65535,
            _ => {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 8) as u16
            }
        })
        .collect();
    let dng = Dng { lossless_jpeg: true, ..Dng::new(w, h, samples.clone()) };
    let bytes = dng.to_bytes();
    assert!(bytes.len() < (w * h * 2) as usize + 4096, "compressed strip");
    let raw = decode(bytes, "ljpeg.dng").unwrap();
    assert_eq!((raw.info().width, raw.info().height), (w as usize, h as usize));
    assert_eq!(raw.samples_u16(), samples);

    // A smooth 12 MP-like pattern compresses well and still round-trips.
    let dng = Dng { lossless_jpeg: true, ..Dng::patterned(120, 80) };
    let bytes = dng.to_bytes();
    assert!(bytes.len() < 120 * 80 * 2, "{} bytes", bytes.len());
    assert_eq!(decode(bytes, "ljpeg2.dng").unwrap().samples_u16(), dng.samples);
}

#[test]
fn every_bayer_phase_is_reported_and_packed_as_rggb() {
    let (w, h) = (8u32, 6u32);
    let samples: Vec<u16> = (0..w * h).map(|i| (i * 1000) as u16).collect();
    for (pattern, name) in
        [([0, 1, 1, 2], "RGGB"), ([2, 1, 1, 0], "BGGR"), ([1, 0, 2, 1], "GRBG"), ([1, 2, 0, 1], "GBRG")]
    {
        let dng = Dng { cfa: pattern, ..Dng::new(w, h, samples.clone()) };
        let raw = decode(dng.to_bytes(), "phase.dng").unwrap();
        let cfa = raw.info().cfa.clone().unwrap();
        assert_eq!(cfa.name(), name);
        let planes = raw.bayer_planes().unwrap();
        assert_eq!((planes.width, planes.height), (4, 3));
        // Plane 0 must hold exactly the red sites, plane 3 the blue ones, normalized by 65535.
        for (plane, colour) in [(0, CfaColor::Red), (3, CfaColor::Blue)] {
            let expected: Vec<f32> = (0..h as usize)
                .flat_map(|y| (0..w as usize).map(move |x| (y, x)))
                .filter(|&(y, x)| cfa.color_at(y, x) == colour)
                .map(|(y, x)| f32::from(samples[y * w as usize + x]) / 65535.0)
                .collect();
            assert_eq!(planes.plane(plane), &expected[..], "{name} plane {plane}");
        }
        for v in &planes.data {
            assert!((0.0..=1.0).contains(v));
        }
    }
}

#[test]
fn bayer_planes_are_black_and_white_level_normalized() {
    let dng = Dng { black_level: 1000, white_level: 5000, ..Dng::new(2, 2, vec![1000, 3000, 5000, 500]) };
    let planes = decode(dng.to_bytes(), "levels.dng").unwrap().bayer_planes().unwrap();
    // R = black -> 0, G1 = halfway -> 0.5, G2 = white -> 1, B below black -> clamped to 0.
    assert_eq!(planes.data, vec![0.0, 0.5, 1.0, 0.0]);
}

#[test]
fn active_area_bounds_the_ml_outputs() {
    let mut dng = Dng::patterned(40, 30);
    dng.active_area = Some([2, 4, 28, 36]); // top, left, bottom, right
    let raw = decode(dng.to_bytes(), "area.dng").unwrap();
    let area = raw.info().image_area();
    assert_eq!((area.x, area.y, area.width, area.height), (4, 2, 32, 26));
    let planes = raw.bayer_planes().unwrap();
    assert_eq!((planes.width, planes.height), (16, 13));
    assert_eq!(raw.develop().unwrap().dimensions(), (32, 26));
}

#[test]
fn developed_grey_stays_grey_and_white_balance_applies() {
    // A flat mosaic at half scale: with neutral white balance and an sRGB camera matrix, every
    // developed pixel is the same grey.
    let dng = Dng::new(16, 16, vec![32768; 256]);
    let raw = decode(dng.to_bytes(), "grey.dng").unwrap();
    let linear = raw.develop_linear().unwrap();
    for p in linear.pixels() {
        for c in p.0 {
            assert!((c - 0.5).abs() < 0.01, "{:?}", p.0);
        }
    }
    let srgb = raw.develop().unwrap();
    assert!(srgb.pixels().all(|p| p.0 == srgb.get_pixel(0, 0).0));
    assert!((186..=189).contains(&srgb.get_pixel(0, 0).0[0]), "sRGB(0.5) = 188: {:?}", srgb.get_pixel(0, 0));

    // A camera twice as sensitive to green (AsShotNeutral G = 1, R = B = 0.5): the white balance
    // doubles red and blue, so a mosaic with R = B = G/2 develops to grey.
    let samples: Vec<u16> = (0..16u32 * 16)
        .map(|i| {
            let (y, x) = (i / 16, i % 16);
            if (y + x) % 2 == 1 { 40000 } else { 20000 }
        })
        .collect();
    let dng = Dng { as_shot_neutral: [0.5, 1.0, 0.5], ..Dng::new(16, 16, samples) };
    let raw = decode(dng.to_bytes(), "wb.dng").unwrap();
    let wb = raw.info().wb_coeffs;
    assert!((wb[0].unwrap() / wb[1].unwrap() - 2.0).abs() < 1e-3, "{wb:?}");
    let linear = raw.develop_linear().unwrap();
    let p = linear.get_pixel(8, 8).0;
    assert!((p[0] - p[1]).abs() < 0.01 && (p[2] - p[1]).abs() < 0.01, "{p:?}");
}

#[test]
fn linear_dng_decodes_but_has_no_bayer_planes() {
    let (w, h) = (6u32, 4u32);
    let samples: Vec<u16> = (0..w * h * 3).map(|i| (i * 700) as u16).collect();
    let dng = Dng { cpp: 3, samples: samples.clone(), ..Dng::new(w, h, vec![0; (w * h) as usize]) };
    let raw = decode(dng.to_bytes(), "linear.dng").unwrap();
    assert_eq!((raw.info().cpp, raw.info().cfa.is_none()), (3, true));
    assert_eq!(raw.samples_u16(), samples);
    let err = raw.bayer_planes().unwrap_err();
    assert_eq!(err.kind(), "unsupported", "{err}");
    assert_eq!(raw.develop16().unwrap().dimensions(), (w, h));
}

#[test]
fn preview_is_extracted_from_the_raw_container() {
    let pixels: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
    let dng = Dng { preview: Some((4, 3, pixels.clone())), ..Dng::patterned(32, 24) };
    let bytes = dng.to_bytes();
    // The raw image now lives in a SubIFD; it still decodes exactly.
    assert_eq!(decode(bytes.clone(), "p.dng").unwrap().samples_u16(), dng.samples);
    let (info, preview) = sandbox().raw_preview(Input::from_bytes(bytes, "p.dng")).unwrap().unwrap();
    assert_eq!((info.width, info.height), (32, 24));
    assert_eq!(preview.pixels.layout(), sandload::PixelLayout::Rgb8);
    let rgb = preview.pixels.to_dynamic_image().into_rgb8();
    assert_eq!(rgb.dimensions(), (4, 3));
    assert_eq!(rgb.as_raw(), &pixels);
    assert!(sandbox().raw_preview(Input::from_bytes(Dng::patterned(8, 8).to_bytes(), "n.dng")).unwrap().is_none());
}

#[test]
fn dimension_bomb_is_refused_before_allocation() {
    // rawler natively aborts the process on this file ("memory allocation of 9223372028264841218
    // bytes failed"). Here the guest checks the declared size against max_pixels first.
    let dng = Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..Dng::patterned(8, 8) };
    let started = Instant::now();
    let (result, receipt) = sandbox().decode_raw_with_receipt(Input::from_bytes(dng.to_bytes(), "bomb.dng"));
    match result.unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxPixels, limit_value, value, .. } => {
            assert_eq!(limit_value, Limits::DEFAULT_MAX_PIXELS);
            assert_eq!(value, (i32::MAX as u64) * (i32::MAX as u64));
        }
        other => panic!("expected the pixel limit, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        receipt.guest_peak_memory_bytes < 64 << 20,
        "refused before allocating: {}",
        receipt.guest_peak_memory_bytes
    );

    // Under the pixel limit but over the guest's memory: the cap stops it.
    let dng = Dng { declared_size: Some((12_000, 12_000)), ..Dng::patterned(8, 8) };
    let small = sandbox_with(Limits::default().with_guest_memory_bytes(64 << 20));
    let err = small.decode_raw(Input::from_bytes(dng.to_bytes(), "bomb2.dng")).unwrap_err();
    assert!(err.is_rejection() && err.kind() != "internal", "{err}");
}

#[test]
fn strips_past_eof_and_truncation_are_malformed_not_crashes() {
    let dng = Dng { strip_offset: Some(1 << 30), ..Dng::patterned(16, 16) };
    let err = decode(dng.to_bytes(), "eof.dng").unwrap_err();
    assert!(matches!(err, Error::Malformed { .. } | Error::GuestTrap { .. }), "{err}");
    assert_eq!(err.file().unwrap(), std::path::Path::new("eof.dng"));

    let full = Dng::patterned(24, 16).to_bytes();
    let mut kinds = std::collections::BTreeMap::new();
    for cut in (0..full.len()).step_by(37).chain([full.len() - 1]) {
        let err = decode(full[..cut].to_vec(), "cut.dng").expect_err("a truncated DNG must not decode");
        assert!(err.is_rejection() && err.kind() != "internal", "cut at {cut}: {err}");
        *kinds.entry(err.kind()).or_insert(0) += 1;
    }
    assert!(kinds.contains_key("malformed"), "{kinds:?}");
}

#[test]
fn random_bytes_behind_a_tiff_header_never_escape_the_sandbox() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = Dng::patterned(16, 16).to_bytes();
    for i in 0..120 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = 8 + (next() % 600) as usize;
            let mut b = b"II*\0\x08\0\0\0".to_vec();
            b.extend((8..len).map(|_| next() as u8));
            b
        } else {
            // Mutate a valid DNG's directory area.
            let mut b = valid.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % 400) as usize;
                b[at] = next() as u8;
            }
            b
        };
        match sandbox().decode_raw(Input::from_bytes(bytes, format!("random-{i}.tif"))) {
            Ok(raw) => assert_eq!(raw.samples().len(), raw.info().width * raw.info().height * raw.info().cpp * 2),
            Err(e) => assert!(e.is_rejection() && e.kind() != "internal", "case {i}: {e}"),
        }
    }
}

#[test]
fn decoder_panics_are_malformed_files_with_the_decoders_message() {
    // PhotometricInterpretation 5 (CMYK) hits a `todo!()` in rawler's DNG decoder: a decoder bug
    // the file found, so the file is refused as malformed, naming the panic.
    let mut bytes = Dng::patterned(8, 8).to_bytes();
    let at = bytes.windows(8).position(|w| w == [0x06, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]).unwrap();
    bytes[at + 8..at + 10].copy_from_slice(&5u16.to_le_bytes());
    match decode(bytes, "cmyk.dng").unwrap_err() {
        Error::Malformed { rule: "decoder_panic", format: Format::Dng, detail, .. } => {
            assert!(detail.contains("raw-decoder"), "{detail}");
            assert!(detail.contains("not yet implemented"), "{detail}");
        }
        other => panic!("expected a decoder_panic refusal, got {other}"),
    }
    // And the sandbox goes on.
    assert!(decode(Dng::patterned(8, 8).to_bytes(), "next.dng").is_ok());
}

#[test]
fn non_raw_files_are_refused_by_content() {
    let err = decode(samples::pickle(4), "IMG_0001.dng").unwrap_err();
    assert!(matches!(err, Error::Refused { format: Format::Pickle, .. }), "{err}");
    assert!(err.to_string().contains("arbitrary code"), "{err}");
    let err = decode(samples::png_image(4, 4), "IMG_0002.CR2").unwrap_err();
    assert!(matches!(err, Error::Refused { format: Format::Png, .. }), "{err}");
    assert!(err.to_string().contains("decode_image"), "{err}");
    // Unknown content goes to the decoder, whose own identification finds no RAW format in it.
    let err = decode(b"hello, world".to_vec(), "x.nef").unwrap_err();
    assert_eq!((err.kind(), err.rule()), ("refused_format", Some("raw_not_recognised")), "{err}");
    assert!(err.to_string().contains("not a safetensors file and not a recognised format"), "{err}");
}

#[test]
fn pixel_limit_is_configurable() {
    let sandbox = sandbox_with(Limits::default().with_max_pixels(100));
    let err = sandbox.decode_raw(Input::from_bytes(Dng::patterned(16, 16).to_bytes(), "big.dng")).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::MaxPixels, limit_value: 100, value: 256, .. }), "{err}");
    let ok = sandbox.decode_raw(Input::from_bytes(Dng::patterned(10, 10).to_bytes(), "ok.dng"));
    assert!(ok.is_ok());
}

/// What is camera RAW is decided by rawler's own identification in the guest, not by a host list
/// of makers: containers the host names nowhere (Epson ERF, Kodak, Leaf MOS by their TIFF Make;
/// ARRI and QuickTake by their magic) reach the decoder, which judges them; a TIFF that no RAW
/// decoder claims is refused as not RAW.
#[test]
fn rawler_decides_what_is_camera_raw() {
    let padded = |magic: &[u8]| {
        let mut b = magic.to_vec();
        b.resize(4096, 0);
        b
    };
    for (what, bytes) in [
        ("Epson ERF", samples::tiff(false, Some("SEIKO EPSON CORP."))),
        ("Kodak DCR", samples::tiff(false, Some("Kodak"))),
        ("Leaf MOS", samples::tiff(false, Some("Leaf"))),
        ("ARRI", padded(b"ARRI\x12\x34\x56\x78")),
        ("QuickTake", padded(b"qktk")),
    ] {
        let (result, receipt) = sandbox().open_with_receipt(Input::from_bytes(bytes, "IMG.bin"));
        let err = result.err().unwrap_or_else(|| panic!("{what}: a synthetic header is not a whole RAW file"));
        assert_eq!(receipt.guest, Some("raw-decoder"), "{what}: {err}");
        assert!(matches!(err.kind(), "malformed" | "unsupported" | "guest_trap"), "{what}: {err}");
        assert_ne!(err.rule(), Some("raw_not_recognised"), "{what}: {err}");
    }
    let scan = || Input::from_bytes(samples::tiff(false, Some("ACME Scanner")), "scan.tif");
    let err = sandbox().decode_raw(scan()).unwrap_err();
    assert_eq!((err.kind(), err.rule()), ("refused_format", Some("raw_not_recognised")), "{err}");
    assert!(err.to_string().contains("ACME Scanner"), "{err}");
    // `open` then treats that TIFF as an image (this header-only one has no pixels to decode).
    let (result, receipt) = sandbox().open_with_receipt(scan());
    assert_eq!(receipt.guest, Some("image-decoder"), "{result:?}");
}

/// An intact file of a camera the decoder does not know is `unsupported` (naming make and
/// model), not `malformed`.
#[test]
fn an_unknown_camera_is_unsupported_not_malformed() {
    use samples::TiffValue::Bytes;
    // An Epson ERF whose Make rawler knows and whose Model (the R-D1's successor that never was)
    // it does not.
    let make = b"SEIKO EPSON CORP.\0".to_vec();
    let model = b"R-D9\0".to_vec();
    let ifd0 = vec![(271, 2, make.len() as u32, Bytes(make)), (272, 2, model.len() as u32, Bytes(model))];
    let file = samples::tiff_file(&[ifd0], &[None], &[]);
    let err = decode(file, "EPSN0001.ERF").unwrap_err();
    assert_eq!(err.kind(), "unsupported", "{err}");
    let message = err.to_string();
    assert!(message.contains("SEIKO EPSON CORP.") && message.contains("R-D9"), "{message}");
}

/// Lens, aperture, focal length and orientation come through from the file's EXIF tags; the
/// 0/0 some cameras write for "unknown" is no value, not a malformed file.
#[test]
fn lens_aperture_focal_length_and_orientation() {
    let dng = Dng {
        orientation: 6,
        lens: Some(("Sandload Optics".into(), "35mm F1.4 \u{1b}[2J".into())),
        f_number: Some((14, 10)),
        focal_length: Some((35, 1)),
        ..Dng::patterned(32, 24)
    };
    let raw = decode(dng.to_bytes(), "lens.dng").unwrap();
    let info = raw.info();
    assert_eq!(info.orientation, 6);
    assert_eq!(info.lens_make.as_deref(), Some("Sandload Optics"));
    // Escaped for terminals and logs, like make and model.
    assert_eq!(info.lens_model.as_deref(), Some("35mm F1.4 \\u{1b}[2J"));
    assert_eq!(info.f_number, Some((14, 10)));
    assert_eq!(info.focal_length, Some((35, 1)));

    let unknown = Dng { f_number: Some((0, 0)), focal_length: Some((0, 0)), ..Dng::patterned(32, 24) };
    let raw = decode(unknown.to_bytes(), "unknown.dng").unwrap();
    assert_eq!((raw.info().f_number, raw.info().focal_length), (None, None));
    let bare = decode(Dng::patterned(32, 24).to_bytes(), "bare.dng").unwrap();
    assert_eq!((bare.info().lens_make.as_deref(), bare.info().lens_model.as_deref()), (None, None));
}

#[test]
fn an_unsupported_dng_compression_is_unsupported_naming_camera_and_compression() {
    // Compression 5 (LZW) in the raw IFD: an intact DNG that rawler cannot decode ("TODO:
    // Unsupported DNG compression"): `unsupported`, naming make, model and the compression,
    // not `malformed`.
    let mut bytes = Dng::patterned(8, 8).to_bytes();
    let entry = [0x03, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00];
    let at = bytes.windows(entry.len()).position(|w| w == entry).expect("Compression = 1 entry");
    bytes[at + 8..at + 10].copy_from_slice(&5u16.to_le_bytes());
    match decode(bytes, "lzw.dng").unwrap_err() {
        Error::Unsupported { reason, .. } => {
            assert!(reason.contains("compression 5"), "{reason}");
            assert!(reason.contains("make \"Sandload\"") && reason.contains("model \"Synthetic"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other}"),
    }
}

/// `raw_info` reads metadata without decoding the samples (rawler's DNG reader through the
/// guest's patch, guests/vendor/rawler/PATCHES.md): what it reports must be exactly what a full
/// decode reports, for every kind of DNG the samples write and for every real file the team
/// shares that rawler decodes.
#[test]
fn raw_info_equals_decode_raw_info() {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for lossless_jpeg in [false, true] {
        let base = Dng { lossless_jpeg, ..Dng::patterned(64, 48) };
        let kinds = [
            ("patterned", base.clone()),
            ("black 0", Dng { black_level: 0, ..base.clone() }),
            ("active area", Dng { active_area: Some([2, 4, 46, 60]), ..base.clone() }),
            ("GRBG", Dng { cfa: [1, 0, 2, 1], ..base.clone() }),
            ("rotated", Dng { orientation: 6, ..base.clone() }),
            ("white balance", Dng { as_shot_neutral: [0.5, 1.0, 0.8], ..base.clone() }),
        ];
        for (what, dng) in kinds {
            files.push((format!("{what}, lossless JPEG {lossless_jpeg}"), dng.to_bytes()));
        }
    }
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/raw");
    match std::fs::read_dir(&shared) {
        Ok(dir) => {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".json") && !name.ends_with(".md") {
                    files.push((name, std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        Err(_) => eprintln!("SKIPPED the real files: {} is absent (CI always has ../shared)", shared.display()),
    }
    let mut compared = 0;
    for (what, bytes) in files {
        let Ok(decoded) = sandbox().decode_raw(Input::from_bytes(bytes.clone(), "f")) else { continue };
        let info = sandbox().raw_info(Input::from_bytes(bytes, "f")).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(&info, decoded.info(), "{what}");
        compared += 1;
    }
    assert!(compared >= 12, "only {compared} files decoded");
}

/// Tiled lossless-JPEG DNGs (as cameras and Adobe's converter write them) of 1 MiB and more are
/// decoded by several guest calls at once, a band of tile rows each, and stitched by the host:
/// the frame must be exactly the samples written, for tiles that divide the image and tiles that
/// reach past its edges, and equal to the one-call decode.
#[test]
fn tiled_dngs_decode_in_parallel_calls_to_the_samples_written() {
    let split = Sandbox::builder().max_concurrent(4).build().unwrap();
    let whole = Sandbox::builder().parallel_tiles(false).build().unwrap();
    for (width, height, tiles) in
        [(1280, 768, (256, 256)), (1250, 900, (256, 256)), (1300, 850, (512, 128)), (1400, 800, (1400, 800))]
    {
        let dng = Dng { lossless_jpeg: true, tiles: Some(tiles), ..Dng::patterned(width, height) };
        let bytes = dng.to_bytes();
        assert!(bytes.len() >= 1 << 20, "{width}x{height}: {} bytes, too small to be split", bytes.len());
        let raw = split.decode_raw(Input::from_bytes(bytes.clone(), "tiled.dng")).unwrap();
        assert_eq!(raw.samples_u16(), dng.samples, "{width}x{height} in {tiles:?} tiles");
        // A split decode is stitched in host memory: it keeps no guest (a one-call decode does).
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 && tiles.1 < height {
            assert_eq!(split.frames_kept(), 0, "{width}x{height} was not split");
        }
        let one = whole.decode_raw(Input::from_bytes(bytes, "tiled.dng")).unwrap();
        assert_eq!(one.samples(), raw.samples());
        assert_eq!(one.info(), raw.info());
    }
}
