//! The interface is versioned: the encoding of a canonical set of messages is committed in
//! `tests/golden-v{ABI_VERSION}.txt`. Changing a message type without bumping `ABI_VERSION` (and
//! blessing a new golden file with `SANDLOAD_BLESS=1 cargo test -p sandload-abi`) fails here, so a
//! host and a guest built from different interfaces cannot silently disagree.

use sandload_abi::image::{self, Colour, Layout, Picture, Sample};
use sandload_abi::pickle::{End, Walk};
use sandload_abi::pickle_scan;
use sandload_abi::raw::{self, Rect, Region};
use sandload_abi::safetensors::{Dtype, Request, Response, Table, TensorEntry};
use sandload_abi::shard_index;
use sandload_abi::{ABI_VERSION, GuestError, Rule, decode, encode, exports};

fn canonical() -> String {
    let request = Request { file_len: 1 << 40, max_header_bytes: 100_000_000, max_tensors: 1_000_000 };
    let ok: Response = Ok(Table {
        header_len: 264,
        tensors: vec![
            TensorEntry { name: "embed.weight".into(), dtype: Dtype::F32, shape: vec![4, 8], begin: 0, end: 128 },
            TensorEntry { name: "ünï".into(), dtype: Dtype::F8_E5M2FNUZ, shape: vec![], begin: 128, end: 129 },
        ],
        metadata: Some(vec![("format".into(), "pt".into())]),
    });
    let err: Response = Err(GuestError {
        rule: Rule::TooManyTensors,
        offset: Some(8),
        value: Some(u64::MAX),
        detail: "more than max_tensors".into(),
    });
    let mut out = format!("abi_version {ABI_VERSION}\n");
    out += &format!(
        "exports {} {} {} {} {}\n",
        exports::MEMORY,
        exports::INITIALIZE,
        exports::ABI_VERSION,
        exports::ALLOC,
        exports::CALL
    );
    for (name, bytes) in [
        ("request", encode(&request).unwrap()),
        ("response_ok", encode(&ok).unwrap()),
        ("response_err", encode(&err).unwrap()),
    ] {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out += &format!("{name} {hex}\n");
    }
    out += &raw_messages();
    out += &pickle_messages();
    out += &shard_index_messages();
    let colours = [Colour::L, Colour::La, Colour::Rgb, Colour::Rgba, Colour::Cmyk, Colour::Cmyka];
    let bilevel = [1, 2, 4].map(|bits| Layout { bits, ..Layout::L8 });
    let layouts = colours.iter().flat_map(|&c| Sample::ALL.map(|s| Layout::new(c, s)));
    for layout in bilevel.into_iter().chain(layouts) {
        assert!(layout.is_valid());
        out += &format!("layout {} {} {}\n", layout.name(), layout.bytes_per_pixel(), hex(&encode(&layout).unwrap()));
    }
    for dtype in Dtype::ALL {
        out += &format!("dtype {} {} {}\n", dtype.name(), dtype.bits(), hex(&encode(&dtype).unwrap()));
    }
    for rule in [
        Rule::HeaderTooSmall,
        Rule::HeaderTooLarge,
        Rule::HeaderPastEof,
        Rule::HeaderNotUtf8,
        Rule::HeaderJson,
        Rule::DuplicateKey,
        Rule::UnknownDtype,
        Rule::InvalidOffset,
        Rule::ShapeOverflow,
        Rule::MisalignedSlice,
        Rule::SizeMismatch,
        Rule::IncompleteCoverage,
        Rule::HeaderOverLimit,
        Rule::TooManyTensors,
        Rule::BadRequest,
        Rule::RawUnsupported,
        Rule::RawMalformed,
        Rule::PixelLimit,
        Rule::ImageUnsupported,
        Rule::ImageMalformed,
        Rule::DecodeLimit,
        Rule::HeaderStart,
        Rule::HeaderPadding,
        Rule::RankOverLimit,
        Rule::RawNotRecognised,
        Rule::PicklePolyglot,
        Rule::IndexJson,
        Rule::IndexDuplicateTensor,
        Rule::ShardCountOverLimit,
        Rule::DecoderPanic,
        Rule::ImageIsRaw,
        Rule::ImageNotRecognised,
    ] {
        out += &format!("rule {} {}\n", rule.name(), hex(&encode(&rule).unwrap()));
    }
    out
}

fn pickle_messages() -> String {
    let request = pickle_scan::Request {
        streams: vec![
            pickle_scan::Stream { name: "archive/data.pkl".into(), len: 1234 },
            pickle_scan::Stream { name: "pickle".into(), len: 0 },
        ],
    };
    let walk = Walk {
        end: End::Stop,
        end_offset: 1233,
        ops: 77,
        pickles: 1,
        protocol: Some(2),
        imports: vec![("torch._utils".into(), "_rebuild_tensor_v2".into()), ("os".into(), "system".into())],
        more_imports: 3,
        calls: 5,
        persistent_loads: 2,
        first_effect_offset: Some(14),
        reason: "STOP".into(),
    };
    let response: pickle_scan::Response = Ok(vec![walk.clone(), Walk { end: End::Truncated, ..walk }]);
    format!(
        "pickle_scan_request {}\npickle_scan_response {}\nend {} {} {} {} {}\n",
        hex(&encode(&request).unwrap()),
        hex(&encode(&response).unwrap()),
        hex(&encode(&End::Stop).unwrap()),
        hex(&encode(&End::Invalid).unwrap()),
        hex(&encode(&End::Truncated).unwrap()),
        hex(&encode(&End::OpLimit).unwrap()),
        hex(&encode(&End::Ambiguous).unwrap()),
    )
}

fn shard_index_messages() -> String {
    let request = shard_index::Request { max_shards: 10_000, max_tensors: 1_000_000 };
    let index: shard_index::Response = Ok(shard_index::Index {
        total_size: Some(26_953_662_464),
        metadata: vec![("format".into(), "pt".into())],
        shards: vec!["model-00001-of-00002.safetensors".into(), "model-00002-of-00002.safetensors".into()],
        tensors: vec![("embed.weight".into(), 0), ("lm_head.weight".into(), 1)],
    });
    format!(
        "shard_index_request {}\nshard_index_response {}\n",
        hex(&encode(&request).unwrap()),
        hex(&encode(&index).unwrap())
    )
}

fn raw_messages() -> String {
    let region = Region { ptr: 0x1000, len: 24 };
    let request = raw::Request { file_len: 123_456, max_pixels: 250_000_000, output: raw::Output::Samples };
    let preview = raw::Request { output: raw::Output::Preview, ..request.clone() };
    let or_tiling = raw::Request { output: raw::Output::SamplesOrTiling, ..request.clone() };
    let tiles = raw::Request { output: raw::Output::Tiles { first: 7, count: 300 }, ..request.clone() };
    let frame: raw::Response = Ok(raw::Frame {
        decoder: "dng".into(),
        width: 4,
        height: 3,
        cpp: 1,
        bits_per_sample: 16,
        cfa: vec![0, 1, 1, 2],
        cfa_width: 2,
        cfa_height: 2,
        black_levels: vec![512.0, 512.5, 513.0, 514.0],
        black_width: 2,
        black_height: 2,
        white_levels: vec![16383],
        wb_coeffs: [2.0, 1.0, 1.5, f32::NAN],
        xyz_to_cam: [[0.5, -0.25, 0.125], [1.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0; 3]],
        active_area: Some(Rect { x: 0, y: 0, width: 4, height: 3 }),
        crop_area: None,
        orientation: 6,
        make: "Sandload".into(),
        model: "Test Cam".into(),
        iso: Some(400),
        exposure_time: Some((1, 125)),
        timestamp: Some("2026:11:22 10:00:00".into()),
        lens_make: Some("Sandload Optics".into()),
        lens_model: Some("50mm F1.8".into()),
        f_number: Some((18, 10)),
        focal_length: Some((50, 1)),
        samples: Some(region),
        preview: Some(Picture {
            format: "jpeg".into(),
            width: 2,
            height: 1,
            layout: Layout::Rgb8,
            pixels: region,
            orientation: 0,
            icc_profile: None,
        }),
        tiling: Some(raw::Tiling { tile_width: 256, tile_height: 512, across: 24, down: 8 }),
    });
    let image_request = image::Request { file_len: 99, max_pixels: 1 << 28, max_alloc_bytes: 1 << 30 };
    let picture: image::Response = Ok(Picture {
        format: "png".into(),
        width: 2,
        height: 3,
        layout: Layout::Rgba16,
        pixels: region,
        orientation: 6,
        icc_profile: Some(vec![0, 0, 2, 0x0c, b'a', b'c', b's', b'p']),
    });
    let mut out = String::new();
    for (name, bytes) in [
        ("raw_request", encode(&request).unwrap()),
        ("raw_request_preview", encode(&preview).unwrap()),
        ("raw_request_samples_or_tiling", encode(&or_tiling).unwrap()),
        ("raw_request_tiles", encode(&tiles).unwrap()),
        ("raw_response_ok", encode(&frame).unwrap()),
        ("image_request", encode(&image_request).unwrap()),
        ("image_response_ok", encode(&picture).unwrap()),
    ] {
        out += &format!("{name} {}\n", hex(&bytes));
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn interface_matches_the_committed_golden_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden-v{ABI_VERSION}.txt"));
    let live = canonical();
    if std::env::var_os("SANDLOAD_BLESS").is_some() {
        std::fs::write(&path, &live).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: a new ABI_VERSION needs a blessed golden file", path.display()));
    assert_eq!(live, committed, "the ABI changed: bump ABI_VERSION and bless a new golden file");
}

#[test]
fn decode_refuses_trailing_and_truncated_bytes() {
    let req = Request { file_len: 1, max_header_bytes: 2, max_tensors: 3 };
    let mut bytes = encode(&req).unwrap();
    assert_eq!(decode::<Request>(&bytes).unwrap(), req);
    bytes.push(0);
    assert!(decode::<Request>(&bytes).is_err());
    bytes.truncate(bytes.len() - 2);
    assert!(decode::<Request>(&bytes).is_err());
}

#[test]
fn decode_does_not_trust_sequence_lengths() {
    // A table claiming 2^32 tensors in a few bytes must fail fast, not allocate.
    let mut bytes = vec![0x00]; // Ok variant
    bytes.push(8); // header_len
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // tensors: len 2^32 - 1
    assert!(decode::<Response>(&bytes).is_err());
}

#[test]
fn byte_len_is_overflow_checked() {
    use sandload_abi::safetensors::SizeError;
    assert_eq!(Dtype::F32.byte_len(&[2, 3]), Ok(24));
    assert_eq!(Dtype::F32.byte_len(&[]), Ok(4));
    assert_eq!(Dtype::F4.byte_len(&[3]), Err(SizeError::Misaligned));
    assert_eq!(Dtype::U8.byte_len(&[u64::MAX, 2]), Err(SizeError::Overflow));
    assert_eq!(Dtype::F64.byte_len(&[u64::MAX / 4]), Err(SizeError::Overflow));
    for d in Dtype::ALL {
        assert_eq!(Dtype::from_name(d.name()), Some(d));
    }
    assert_eq!(Dtype::from_name("F128"), None);
}
