//! TIFF layouts beyond `image`'s ten (32/64-bit integer and 64-bit float grey, signed samples,
//! CMYK, BigTIFF, every compression the tiff crate writes), written by the `tiff` crate's
//! encoder and decoded in the sandbox: the same dimensions, layout and samples as written.
//! (The differential against Pillow, on files written by Pillow and tifffile, is
//! `python/tests/test_pillow_differential.py`.)

use std::io::Cursor;

use sandload::{Colour, Error, Format, Input, PixelLayout, Sample, Sandbox};
use sandload_samples::{TiffEntry, TiffValue as Entry};
use tiff::encoder::colortype::{self, ColorType};
use tiff::encoder::{Compression, DeflateLevel, Predictor, TiffEncoder, TiffValue};

const W: u32 = 19;
const H: u32 = 7;

fn sandbox() -> &'static Sandbox {
    static SANDBOX: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

/// Writes one `C` image of `data` with `compression`, as classic TIFF or BigTIFF.
fn write<C: ColorType>(data: &[C::Inner], compression: Compression, big: bool) -> Vec<u8>
where
    [C::Inner]: TiffValue,
{
    let mut out = Cursor::new(Vec::new());
    if big {
        let mut encoder = TiffEncoder::new_big(&mut out).unwrap().with_compression(compression);
        encoder.write_image::<C>(W, H, data).unwrap();
    } else {
        let mut encoder = TiffEncoder::new(&mut out).unwrap().with_compression(compression);
        // The encoder has horizontal differencing for integers only.
        let integer = !C::SAMPLE_FORMAT.contains(&tiff::tags::SampleFormat::IEEEFP);
        if integer && !matches!(compression, Compression::Uncompressed | Compression::Packbits) {
            encoder = encoder.with_predictor(Predictor::Horizontal);
        }
        encoder.write_image::<C>(W, H, data).unwrap();
    }
    out.into_inner()
}

/// Samples that use every byte of their type and differ between neighbours.
fn samples<T>(channels: u32, from: impl Fn(u64) -> T) -> Vec<T> {
    (0..u64::from(W * H * channels)).map(|i| from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 3))).collect()
}

fn compressions() -> [(&'static str, Compression); 4] {
    [
        ("none", Compression::Uncompressed),
        ("lzw", Compression::Lzw),
        ("deflate", Compression::Deflate(DeflateLevel::Fast)),
        ("packbits", Compression::Packbits),
    ]
}

/// Decodes `file` and checks its layout and little-endian sample bytes.
fn check(name: &str, file: Vec<u8>, layout: PixelLayout, expected: Vec<u8>) {
    let big = file[2] == 43;
    let decoded = sandbox().decode_image(Input::from_bytes(file, name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(decoded.format, if big { "bigtiff" } else { "tiff" }, "{name}");
    assert_eq!((decoded.pixels.width(), decoded.pixels.height()), (W, H), "{name}");
    assert_eq!(decoded.pixels.layout(), layout, "{name}");
    assert!(decoded.pixels.as_bytes() == expected, "{name}: samples differ from those written");
}

macro_rules! layout_case {
    ($name:literal, $ct:ty, $colour:expr, $sample:expr, $channels:expr, $from:expr, $bytes:expr) => {
        for (method, compression) in compressions() {
            for big in [false, true] {
                let data = samples($channels, $from);
                let expected: Vec<u8> = data.iter().flat_map($bytes).collect();
                let file = write::<$ct>(&data, compression, big);
                let name = format!("{}-{method}-{}.tif", $name, if big { "big" } else { "classic" });
                check(&name, file, PixelLayout::new($colour, $sample), expected);
            }
        }
    };
}

#[test]
fn every_sample_type_the_encoder_writes_decodes_exactly() {
    layout_case!("gray8", colortype::Gray8, Colour::L, Sample::U8, 1, |v| v as u8, |v: &u8| [*v]);
    layout_case!("grayi8", colortype::GrayI8, Colour::L, Sample::I8, 1, |v| v as i8, |v: &i8| v.to_le_bytes());
    layout_case!("gray16", colortype::Gray16, Colour::L, Sample::U16, 1, |v| v as u16, |v: &u16| v.to_le_bytes());
    layout_case!("grayi16", colortype::GrayI16, Colour::L, Sample::I16, 1, |v| v as i16, |v: &i16| v.to_le_bytes());
    layout_case!("gray32", colortype::Gray32, Colour::L, Sample::U32, 1, |v| v as u32, |v: &u32| v.to_le_bytes());
    layout_case!("grayi32", colortype::GrayI32, Colour::L, Sample::I32, 1, |v| v as i32, |v: &i32| v.to_le_bytes());
    layout_case!("gray64", colortype::Gray64, Colour::L, Sample::U64, 1, |v| v, |v: &u64| v.to_le_bytes());
    layout_case!("grayi64", colortype::GrayI64, Colour::L, Sample::I64, 1, |v| v as i64, |v: &i64| v.to_le_bytes());
    let float = |v: u64| (v % 100_003) as f32 / 1000.0 - 7.5;
    layout_case!("gray32f", colortype::Gray32Float, Colour::L, Sample::F32, 1, float, |v: &f32| v.to_le_bytes());
    let double = |v: u64| (v % 1_000_003) as f64 / 1e4 - 3.25;
    layout_case!("gray64f", colortype::Gray64Float, Colour::L, Sample::F64, 1, double, |v: &f64| v.to_le_bytes());
    layout_case!("rgb8", colortype::RGB8, Colour::Rgb, Sample::U8, 3, |v| v as u8, |v: &u8| [*v]);
    layout_case!("rgb16", colortype::RGB16, Colour::Rgb, Sample::U16, 3, |v| v as u16, |v: &u16| v.to_le_bytes());
    layout_case!("rgb32", colortype::RGB32, Colour::Rgb, Sample::U32, 3, |v| v as u32, |v: &u32| v.to_le_bytes());
    layout_case!("rgb64f", colortype::RGB64Float, Colour::Rgb, Sample::F64, 3, double, |v: &f64| v.to_le_bytes());
    layout_case!("rgba16", colortype::RGBA16, Colour::Rgba, Sample::U16, 4, |v| v as u16, |v: &u16| v.to_le_bytes());
    layout_case!("rgba32f", colortype::RGBA32Float, Colour::Rgba, Sample::F32, 4, float, |v: &f32| v.to_le_bytes());
    layout_case!("cmyk8", colortype::CMYK8, Colour::Cmyk, Sample::U8, 4, |v| v as u8, |v: &u8| [*v]);
    layout_case!("cmyk16", colortype::CMYK16, Colour::Cmyk, Sample::U16, 4, |v| v as u16, |v: &u16| v.to_le_bytes());
    layout_case!("cmyka8", colortype::CMYKA8, Colour::Cmyka, Sample::U8, 5, |v| v as u8, |v: &u8| [*v]);
}

#[test]
fn a_cameras_rgb_tiff_is_a_picture_and_its_raw_files_are_not() {
    // An ordinary RGB TIFF with a camera maker's Make tag: sniffed as that maker's RAW, sent to
    // the RAW guest, which cannot decode it; the image guest then finds no raw data in it and
    // decodes it as the picture it is, through `open` (what inspect and convert run) and
    // `decode_image` alike.
    let rgb = samples(3, |v| v as u8);
    let mut out = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut out).unwrap();
    let mut image = encoder.new_image::<colortype::RGB8>(W, H).unwrap();
    image.encoder().write_tag(tiff::tags::Tag::Make, "NIKON CORPORATION").unwrap();
    image.encoder().write_tag(tiff::tags::Tag::Model, "NIKON D1").unwrap();
    image.write_data(&rgb).unwrap();
    let file = out.into_inner();
    assert_eq!(sandload::sniff(&file).format, Format::Raw, "the Make tag makes it look like a NEF");
    let opened = sandbox().open(Input::from_bytes(file.clone(), "DSC_0001.TIF")).unwrap();
    let sandload::Opened::Image(decoded) = opened else { panic!("not decoded as an image: {opened:?}") };
    assert_eq!(decoded.pixels.layout(), PixelLayout::Rgb8);
    assert_eq!(decoded.pixels.as_bytes(), &rgb[..]);
    assert_eq!(decoded.receipt.guest, Some("image-decoder"));
    let decoded = sandbox().decode_image(Input::from_bytes(file, "DSC_0001.TIF")).unwrap();
    assert_eq!(decoded.pixels.as_bytes(), &rgb[..]);

    // A DNG keeps its raw data in a SubIFD behind an RGB thumbnail: the image guest refuses it
    // as RAW instead of handing out the thumbnail.
    let dng = sandload_samples::Dng { preview: Some((4, 3, vec![7; 36])), ..sandload_samples::Dng::patterned(32, 24) };
    let mut bytes = dng.to_bytes();
    // Drop the DNGVersion tag's number (50706 -> 50707, an unknown private tag), so that the
    // host's sniffer calls it a plain TIFF and only the image guest's own walk finds the CFA.
    let at = bytes.windows(4).position(|w| w == [0x12, 0xc6, 0x01, 0x00]).expect("DNGVersion entry");
    bytes[at] = 0x13;
    assert_eq!(sandload::sniff(&bytes).format, Format::Tiff);
    match sandbox().decode_image(Input::from_bytes(bytes, "thumb.tif")).unwrap_err() {
        err @ Error::Refused { .. } => {
            assert_eq!(err.rule(), Some("image_is_raw"), "{err}");
            assert!(err.to_string().contains("decode_raw"), "{err}");
        }
        other => panic!("expected an image_is_raw refusal, got {other}"),
    }
}

/// A one-strip, uncompressed grey-like TIFF of `bits`-bit samples (`rows` already packed), with
/// `extra` entries (e.g. a palette), written entry by entry.
fn hand_written(bits: u16, photometric: u16, rows: Vec<u8>, extra: Vec<TiffEntry>) -> Vec<u8> {
    let short = |v: u16| Entry::Bytes(v.to_le_bytes().to_vec());
    let long = |v: u32| Entry::Bytes(v.to_le_bytes().to_vec());
    let mut entries: Vec<TiffEntry> = vec![
        (256, 4, 1, long(W)),
        (257, 4, 1, long(H)),
        (258, 3, 1, short(bits)),
        (259, 3, 1, short(1)),
        (262, 3, 1, short(photometric)),
        (273, 4, 1, Entry::BlobOffset(0)),
        (277, 3, 1, short(1)),
        (278, 4, 1, long(H)),
        (279, 4, 1, long(rows.len() as u32)),
    ];
    entries.extend(extra);
    sandload_samples::tiff_file(&[entries], &[None], &[rows])
}

#[test]
fn palette_images_are_expanded_to_rgb() {
    // PhotometricInterpretation 3: 4-bit indices into a 16-bit colour map. The tiff crate has no
    // palette images; the guest decodes the indices and expands them (top byte of each entry,
    // as Pillow reads the map).
    let colormap: Vec<u16> = (0..48u32).map(|i| (i * 1361 % 65536) as u16).collect();
    let indices: Vec<u8> = samples(1, |v| (v % 16) as u8);
    let packed: Vec<u8> = indices
        .chunks(W as usize)
        .flat_map(|row| row.chunks(2).map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0)).collect::<Vec<_>>())
        .collect();
    let map = Entry::Bytes(colormap.iter().flat_map(|v| v.to_le_bytes()).collect());
    let file = hand_written(4, 3, packed, vec![(320, 3, 48, map)]);
    let decoded = sandbox().decode_image(Input::from_bytes(file, "palette.tif")).unwrap();
    assert_eq!(decoded.pixels.layout(), PixelLayout::Rgb8);
    let expected: Vec<u8> =
        indices.iter().flat_map(|&i| [0, 16, 32].map(|c| (colormap[c + usize::from(i)] >> 8) as u8)).collect();
    assert_eq!(decoded.pixels.as_bytes(), &expected[..]);
    // A colour map of the wrong size is a broken file, not a guess.
    let short = Entry::Bytes(vec![0; 2 * 30]);
    let file = hand_written(4, 3, vec![0; (W as usize).div_ceil(2) * H as usize], vec![(320, 3, 30, short)]);
    let err = sandbox().decode_image(Input::from_bytes(file, "short-map.tif")).unwrap_err();
    assert_eq!(err.rule(), Some("image_malformed"), "{err}");
}

#[test]
fn odd_depth_grey_is_unpacked_exactly() {
    // 12- and 10-bit grey (scientific cameras, scanners): packed most significant bit first, rows
    // padded to whole bytes. The tiff crate has no such depths; the guest unpacks them.
    for bits in [12u16, 10, 14] {
        let values: Vec<u16> = samples(1, |v| (v % (1 << bits)) as u16);
        let mut rows = Vec::new();
        for row in values.chunks(W as usize) {
            let (mut acc, mut have) = (0u64, 0u32);
            for &v in row {
                acc = (acc << bits) | u64::from(v);
                have += u32::from(bits);
                while have >= 8 {
                    have -= 8;
                    rows.push((acc >> have) as u8);
                }
            }
            if have > 0 {
                rows.push((acc << (8 - have)) as u8);
            }
        }
        let file = hand_written(bits, 1, rows, vec![]);
        let decoded = sandbox().decode_image(Input::from_bytes(file, "deep.tif")).unwrap();
        assert_eq!(decoded.pixels.layout(), PixelLayout::L16, "{bits}-bit");
        let expected: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decoded.pixels.as_bytes(), &expected[..], "{bits}-bit");
    }
}

#[test]
fn layouts_no_decoder_has_are_unsupported_and_say_which() {
    // CIE L*a*b* (PhotometricInterpretation 8): the tiff crate decodes no Lab.
    let file = hand_written(8, 8, vec![0; (W * H) as usize], vec![]);
    match sandbox().decode_image(Input::from_bytes(file, "lab.tif")).unwrap_err() {
        Error::Unsupported { reason, .. } => assert!(reason.contains("TIFF") && reason.contains("Lab"), "{reason}"),
        other => panic!("expected Unsupported, got {other}"),
    }
}
