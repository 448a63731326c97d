//! PNG/JPEG/TIFF/WebP through the image-decoder guest: exact pixels for valid files, typed errors
//! for dimension bombs, truncation and lies, refusal of non-images by content.

mod common;

use std::time::{Duration, Instant};

use common::{sandbox, sandbox_with};
use sandload::{Error, Format, Input, Limit, Limits};
use sandload_samples::{self as samples, Dng};

fn decode(bytes: Vec<u8>, name: &str) -> sandload::Result<sandload::DecodedImage> {
    sandbox().decode_image(Input::from_bytes(bytes, name))
}

/// Encodes a trusted image on the host, as a reference input.
fn encode(image: &sandload::image::DynamicImage, format: sandload::image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn png_decodes_to_exactly_the_pixels_written() {
    let png = samples::png_image(7, 5);
    let decoded = decode(png, "photo.jpg").unwrap();
    assert_eq!(decoded.format, "png");
    assert_eq!(decoded.pixels.layout(), sandload::PixelLayout::L8);
    let grey = decoded.pixels.to_dynamic_image().into_luma8();
    assert_eq!(grey.dimensions(), (7, 5));
    for (x, y, p) in grey.enumerate_pixels() {
        assert_eq!(u32::from(p.0[0]), (x * 255) / 7 + y);
    }
    assert_eq!(decoded.receipt.guest, Some("image-decoder"));
}

#[test]
fn sixteen_bit_rgba_and_tiff_round_trip() {
    let rgba16 = sandload::image::ImageBuffer::from_fn(9, 4, |x, y| {
        sandload::image::Rgba([(x * 7000) as u16, (y * 9000) as u16, 12345, 65535 - (x * y) as u16])
    });
    let image = sandload::image::DynamicImage::ImageRgba16(rgba16);
    for format in [sandload::image::ImageFormat::Png, sandload::image::ImageFormat::Tiff] {
        let decoded = decode(encode(&image, format), "x.bin").unwrap();
        assert_eq!(decoded.pixels.to_dynamic_image(), image, "{format:?}");
    }
}

/// A lossless (VP8L) WebP of `width` x `height` RGBA pixels, written by `image-webp`'s encoder.
fn webp(width: u32, height: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| {
            let (x, y) = (i % width, i / width);
            [(x * 23) as u8, (y * 41) as u8, (x ^ y) as u8, 255 - (x + y) as u8]
        })
        .collect();
    let mut out = Vec::new();
    image_webp::WebPEncoder::new(&mut out).encode(&pixels, width, height, image_webp::ColorType::Rgba8).unwrap();
    (out, pixels)
}

#[test]
fn lossless_webp_decodes_to_exactly_the_pixels_written() {
    let (file, pixels) = webp(11, 6);
    let decoded = decode(file, "photo.png").unwrap();
    assert_eq!(decoded.format, "webp");
    assert_eq!(decoded.pixels.layout(), sandload::PixelLayout::Rgba8);
    let rgba = decoded.pixels.to_dynamic_image().into_rgba8();
    assert_eq!(rgba.dimensions(), (11, 6));
    assert_eq!(rgba.as_raw(), &pixels);
}

#[test]
fn webp_dimension_bomb_is_refused_before_allocation() {
    // A VP8L bitstream stores width-1 and height-1 in 14 bits each, after the 0x2f signature
    // at offset 20. Rewrite them to 16383 x 16383 (268 megapixels): image-webp 0.2.4 reads the
    // format's true maximum, 16384, as 0 (`(1 + header) & 0x3FFF`) and calls the file malformed.
    let (mut bomb, _) = webp(4, 4);
    assert_eq!(&bomb[12..16], b"VP8L");
    let bits = u32::from_le_bytes(bomb[21..25].try_into().unwrap());
    let bits = (bits & !((1 << 28) - 1)) | 16382 | (16382 << 14);
    bomb[21..25].copy_from_slice(&bits.to_le_bytes());
    let (result, receipt) = sandbox().decode_image_with_receipt(Input::from_bytes(bomb, "bomb.webp"));
    match result.unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxPixels, value, .. } => assert_eq!(value, 16383 * 16383),
        other => panic!("expected the pixel limit, got {other}"),
    }
    assert!(receipt.guest_peak_memory_bytes < 16 << 20, "peak {}", receipt.guest_peak_memory_bytes);
}

#[test]
fn png_dimension_bomb_is_refused_before_allocation() {
    // IHDR says 100000 x 100000 (10 gigapixels); the data is one scanline.
    let bomb = samples::png_with_header(100_000, 100_000, 0, &[0; 100_001]);
    let started = Instant::now();
    let (result, receipt) = sandbox().decode_image_with_receipt(Input::from_bytes(bomb, "bomb.png"));
    match result.unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxPixels, value, .. } => assert_eq!(value, 10_000_000_000),
        other => panic!("expected the pixel limit, got {other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(receipt.guest_peak_memory_bytes < 16 << 20, "peak {}", receipt.guest_peak_memory_bytes);

    // Within max_pixels but over the decoder's allocation cap (half of a 64 MiB guest).
    let sandbox = sandbox_with(Limits::default().with_guest_memory_bytes(64 << 20));
    let bomb = samples::png_with_header(10_000, 10_000, 0, &[0; 10_001]);
    let err = sandbox.decode_image(Input::from_bytes(bomb, "bomb2.png")).unwrap_err();
    assert!(matches!(&err, Error::Malformed { rule: "decode_limit", .. }), "{err}");
}

#[test]
fn jpeg_dimension_bomb_is_refused_before_allocation() {
    let bomb = samples::jpeg_with_dimensions(65_000, 65_000);
    let err = decode(bomb, "bomb.jpg").unwrap_err();
    match err {
        Error::LimitExceeded { limit: Limit::MaxPixels, value, .. } => assert_eq!(value, 65_000 * 65_000),
        other => panic!("expected the pixel limit, got {other}"),
    }
}

#[test]
fn truncated_and_corrupt_images_are_malformed() {
    let png = samples::png_image(16, 16);
    for cut in [9, 20, 33, 40, png.len() / 2, png.len() - 13] {
        let err = decode(png[..cut].to_vec(), "cut.png").unwrap_err();
        assert!(err.is_rejection() && err.kind() != "internal", "cut {cut}: {err}");
    }
    let mut bad_crc = png.clone();
    bad_crc[29] ^= 0xff; // inside IHDR's CRC
    let err = decode(bad_crc, "crc.png").unwrap_err();
    assert!(matches!(err, Error::Malformed { rule: "image_malformed", .. }), "{err}");
    let err = decode(b"RIFF\x10\0\0\0WEBPVP8 garbage!".to_vec(), "x.webp").unwrap_err();
    // Sniffed as WebP by its RIFF/WEBP header, judged malformed by the guest.
    assert!(matches!(err, Error::Malformed { format: Format::Webp, rule: "image_malformed", .. }), "{err}");
}

#[test]
fn non_images_are_refused_by_content() {
    let err = decode(samples::pickle(2), "cat.png").unwrap_err();
    assert!(matches!(err, Error::Refused { format: Format::Pickle, .. }), "{err}");
    let err = decode(Dng::patterned(8, 8).to_bytes(), "cat.tiff").unwrap_err();
    assert!(matches!(err, Error::Refused { format: Format::Dng, .. }), "{err}");
    assert!(err.to_string().contains("decode_raw"), "{err}");
    let err = decode(b"just text".to_vec(), "cat.webp").unwrap_err();
    assert_eq!(err.rule(), Some("image_not_recognised"), "{err}");
    assert!(matches!(err, Error::Refused { format: Format::Unknown, .. }), "{err}");
}

/// A TIFF's orientation tag and ICC profile reach `DecodedImage`; pixels stay as stored.
#[test]
fn orientation_and_icc_profile() {
    use samples::TiffValue::{BlobOffset, Bytes};
    // 64x64: image 0.25's TIFF decoder caps tag values at the pixel buffer's size / 32 bytes
    // (tiff's in-memory `Value`), so a tiny image loses a larger ICC profile (upstream quirk).
    let (w, h) = (64u32, 64u32);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 9) as u8).collect();
    // A fake but well-formed ICC header: size, 'acsp' at 36; decoders pass the bytes through.
    let mut icc = vec![0u8; 132];
    icc[..4].copy_from_slice(&132u32.to_be_bytes());
    icc[36..40].copy_from_slice(b"acsp");
    let short = |v: u16| Bytes(v.to_le_bytes().to_vec());
    let long = |v: u32| Bytes(v.to_le_bytes().to_vec());
    let ifd = vec![
        (256, 4, 1, long(w)),
        (257, 4, 1, long(h)),
        (258, 3, 3, Bytes([8u16, 8, 8].iter().flat_map(|v| v.to_le_bytes()).collect())),
        (259, 3, 1, short(1)),
        (262, 3, 1, short(2)),
        (273, 4, 1, BlobOffset(0)),
        (274, 3, 1, short(6)),
        (277, 3, 1, short(3)),
        (278, 4, 1, long(h)),
        (279, 4, 1, long(pixels.len() as u32)),
        (34675, 7, icc.len() as u32, Bytes(icc.clone())),
    ];
    let file = samples::tiff_file(&[ifd], &[None], &[pixels.clone()]);
    let image = decode(file.clone(), "rotated.tif").unwrap();
    assert_eq!(image.orientation, 6);
    assert_eq!(image.icc_profile.as_deref(), Some(&icc[..]));
    assert_eq!((image.pixels.width(), image.pixels.height()), (w, h), "not rotated");
    assert_eq!(image.pixels.as_bytes(), &pixels[..]);
    // `open` (what `inspect` runs) decodes it as an image too.
    match sandbox().open(Input::from_bytes(file, "rotated.tif")).unwrap() {
        sandload::Opened::Image(image) => assert_eq!(image.orientation, 6),
        other => panic!("{other:?}"),
    }
    // A PNG with neither: upright (the EXIF default), no profile.
    let plain = decode(samples::png_image(4, 4), "plain.png").unwrap();
    assert_eq!((plain.orientation, plain.icc_profile.is_none()), (1, true));
}

/// A guest that lies about orientation or hands back an oversized ICC profile is caught by the
/// host's re-validation.
#[test]
#[cfg(feature = "fuzzing")]
fn lying_picture_metadata_is_refused() {
    use sandload::fuzzing::abi::image::{Layout, MAX_ICC_BYTES, Picture};
    use sandload::fuzzing::abi::raw::Region;
    let memory = vec![7u8; 64];
    let good = Picture {
        format: "png".into(),
        width: 2,
        height: 2,
        layout: Layout::L8,
        pixels: Region { ptr: 0, len: 4 },
        orientation: 8,
        icc_profile: Some(vec![1; 16]),
    };
    let limits = Limits::default();
    assert!(sandload::fuzzing::to_pixels(&good, &memory, &limits).is_ok());
    let bad = Picture { orientation: 9, ..good.clone() };
    assert!(sandload::fuzzing::to_pixels(&bad, &memory, &limits).unwrap_err().detail.contains("orientation 9"));
    let bad = Picture { icc_profile: Some(vec![0; MAX_ICC_BYTES as usize + 1]), ..good };
    assert!(sandload::fuzzing::to_pixels(&bad, &memory, &limits).unwrap_err().detail.contains("ICC"));
}

#[test]
fn lossless_jpeg_decodes_exactly() {
    // zune-jpeg (image's JPEG decoder) has no lossless mode; the guest hands SOF3 files to
    // jpeg-decoder. 16-bit samples over the whole range, as DNG's LJPEG tiles hold them.
    let (w, h) = (13u32, 5u32);
    let samples: Vec<u16> = (0..w * h).map(|i| (i.wrapping_mul(40_503) % 65_536) as u16).collect();
    let file = samples::lossless_jpeg(w, h, &samples);
    let decoded = decode(file, "scan.jpg").unwrap();
    assert_eq!(decoded.format, "jpeg");
    assert_eq!(decoded.pixels.layout(), sandload::PixelLayout::L16);
    let expected: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(decoded.pixels.as_bytes(), &expected[..]);
}
