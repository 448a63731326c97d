//! The host's re-validation of what a guest returns, fuzzed with structure: any table, frame or
//! picture a compromised guest could send (plus arbitrary guest memory) goes through the exact
//! host code. Anything accepted is checked against an independent restatement of the rules, and
//! a table built consistently must be accepted (so the checks cannot pass by rejecting all).

#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sandload::fuzzing::abi::image::Picture;
use sandload::fuzzing::abi::raw::{Frame, Output, Region};
use sandload::fuzzing::abi::safetensors::{Dtype, Table, TensorEntry};
use sandload::fuzzing::{accept_frame, to_pixels, validate_table};
use sandload::{Format, Limits};

#[derive(Debug, Arbitrary)]
enum Case {
    /// Any table at all.
    Table { table: Table, file_len: u64, header_len: u64, max_tensors: u16 },
    /// A table laid out correctly from small shapes, then optionally broken in one field.
    Consistent {
        tensors: Vec<(String, Dtype, Vec<u8>)>,
        header_len: u16,
        metadata: Option<Vec<(String, String)>>,
        tweak: Option<Tweak>,
    },
    /// A raw-decoder response (as the guest would encode it) and the guest memory beside it.
    Frame { frame: Frame, memory: Vec<u8>, output: Output, max_pixels: u32 },
    /// A picture and the guest memory beside it.
    Picture { picture: Picture, memory: Vec<u8>, max_pixels: u32 },
}

#[derive(Debug, Arbitrary)]
enum Tweak {
    Begin(u8, u64),
    End(u8, u64),
    Shape(u8, Vec<u64>),
    Dtype(u8, Dtype),
    Rename(u8, u8),
    FileLen(i16),
    HeaderLen(u64),
    DropTensor(u8),
}

/// Bits per element, restated from the safetensors specification (not from sandload's code).
fn bits(dtype: Dtype) -> u128 {
    match format!("{dtype:?}").as_str() {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        other => panic!("dtype {other} unknown to the oracle"),
    }
}

/// Whether `table` obeys every rule, computed in u128 so that no overflow can hide a violation.
fn table_is_valid(table: &Table, file_len: u64, header_len: u64, limits: &Limits) -> bool {
    let data_start = 8u128 + u128::from(header_len);
    if table.header_len != header_len || header_len > limits.max_header_bytes || data_start > u128::from(file_len) {
        return false;
    }
    let data_len = u128::from(file_len) - data_start;
    if table.tensors.len() as u64 > limits.max_tensors {
        return false;
    }
    let mut names = std::collections::HashSet::new();
    let mut at = 0u128;
    for t in &table.tensors {
        // As in the reference implementation, the running element count and the bit count must
        // fit 64 bits even when a later dimension is 0.
        let fits = |v: u128| (v <= u128::from(u64::MAX)).then_some(v);
        let elements = t.shape.iter().try_fold(1u128, |acc, &d| fits(acc * u128::from(d)));
        let Some(total_bits) = elements.and_then(|e| fits(e * bits(t.dtype))) else { return false };
        if !names.insert(&t.name) || total_bits % 8 != 0 {
            return false;
        }
        if u128::from(t.begin) != at || u128::from(t.end) != at + total_bits / 8 {
            return false;
        }
        at = u128::from(t.end);
    }
    if at != data_len {
        return false;
    }
    let mut keys = std::collections::HashSet::new();
    table.metadata.iter().flatten().all(|(k, _)| keys.insert(k))
}

fn check_table(table: &Table, file_len: u64, header_len: u64, limits: &Limits) {
    let valid = table_is_valid(table, file_len, header_len, limits);
    match validate_table(table, file_len, header_len, limits) {
        Ok(layout) => {
            assert!(valid, "host accepted an invalid table: {table:?} file_len {file_len} header_len {header_len}");
            assert_eq!(layout.header_len, header_len);
            assert_eq!(u128::from(layout.data_len) + 8 + u128::from(header_len), u128::from(file_len));
        }
        Err(v) => {
            assert!(!valid, "host rejected a valid table ({}: {}): {table:?}", v.rule, v.detail);
            assert!(!v.rule.is_empty() && !v.detail.is_empty());
        }
    }
}

fn consistent(
    tensors: &[(String, Dtype, Vec<u8>)],
    header_len: u16,
    metadata: Option<Vec<(String, String)>>,
) -> (Table, u64) {
    let mut at = 0u64;
    let tensors = tensors
        .iter()
        .map(|(name, dtype, shape)| {
            // At most 6 dimensions of at most 255: sizes stay far from overflow (that is the
            // other cases' job).
            let shape: Vec<u64> = shape.iter().take(6).map(|&d| u64::from(d)).collect();
            let elements: u128 = shape.iter().map(|&d| u128::from(d)).product();
            let len = (elements * bits(*dtype)).div_ceil(8) as u64;
            let entry = TensorEntry { name: name.clone(), dtype: *dtype, shape, begin: at, end: at + len };
            at += len;
            entry
        })
        .collect();
    let header_len = u64::from(header_len);
    (Table { header_len, tensors, metadata }, 8 + header_len + at)
}

fn apply(table: &mut Table, file_len: &mut u64, header_len: &mut u64, tweak: Tweak) {
    let n = table.tensors.len();
    let pick = |i: u8| (n > 0).then(|| usize::from(i) % n);
    match tweak {
        Tweak::Begin(i, v) => pick(i).into_iter().for_each(|i| table.tensors[i].begin = v),
        Tweak::End(i, v) => pick(i).into_iter().for_each(|i| table.tensors[i].end = v),
        Tweak::Shape(i, s) => pick(i).into_iter().for_each(|i| table.tensors[i].shape = s.clone()),
        Tweak::Dtype(i, d) => pick(i).into_iter().for_each(|i| table.tensors[i].dtype = d),
        Tweak::Rename(i, j) => {
            if let (Some(i), Some(j)) = (pick(i), pick(j)) {
                table.tensors[i].name = table.tensors[j].name.clone();
            }
        }
        Tweak::FileLen(d) => *file_len = file_len.wrapping_add_signed(i64::from(d)),
        Tweak::HeaderLen(h) => *header_len = h,
        Tweak::DropTensor(i) => {
            if let Some(i) = pick(i) {
                table.tensors.remove(i);
            }
        }
    }
}

fn check_frame(frame: Frame, memory: &[u8], output: Output, max_pixels: u32) {
    let limits = Limits::default().with_max_pixels(u64::from(max_pixels));
    let file = Path::new("guest-output");
    match accept_frame(Ok(frame.clone()), memory, output, &limits, file, Format::Dng) {
        Ok((info, samples)) => {
            let pixels = (info.width as u128) * (info.height as u128);
            assert!(pixels > 0 && pixels <= u128::from(limits.max_pixels), "{}x{} accepted", info.width, info.height);
            assert!((1..=4).contains(&info.cpp));
            assert_eq!(info.white_levels.len(), info.cpp);
            assert!(info.white_levels.iter().all(|&w| (1..=65535).contains(&w)));
            assert_eq!(info.black_levels.len(), info.black_width * info.black_height * info.cpp);
            for (i, b) in info.black_levels.iter().enumerate() {
                assert!(b.is_finite() && *b >= 0.0 && *b < info.white_levels[i % info.cpp] as f32, "black {b}");
            }
            match &info.cfa {
                Some(cfa) => {
                    assert_eq!(info.cpp, 1);
                    assert_eq!(cfa.pattern.len(), cfa.width * cfa.height);
                }
                None => assert_ne!(info.cpp, 1, "a mosaic without a CFA pattern"),
            }
            for area in [info.active_area, info.crop_area].into_iter().flatten() {
                assert!(area.width > 0 && area.height > 0);
                assert!(area.x + area.width <= info.width && area.y + area.height <= info.height, "area {area:?}");
            }
            match output {
                Output::Samples => {
                    let samples = samples.expect("samples asked for");
                    assert_eq!(samples.len() as u128, pixels * info.cpp as u128 * 2);
                    let Region { ptr, len } = frame.samples.expect("accepted samples came from a region");
                    assert_eq!(&samples[..], &memory[ptr as usize..ptr as usize + len as usize]);
                }
                _ => assert!(samples.is_none()),
            }
        }
        Err(e) => {
            assert!(e.is_rejection(), "guest output must give a rejection, not {e:?}");
            assert_eq!(e.file(), Some(file));
        }
    }
}

fn check_picture(picture: Picture, memory: &[u8], max_pixels: u32) {
    let limits = Limits::default().with_max_pixels(u64::from(max_pixels));
    if let Ok(image) = to_pixels(&picture, memory, &limits) {
        assert_eq!((u64::from(image.width()), u64::from(image.height())), (picture.width, picture.height));
        assert_eq!(image.layout(), picture.layout);
        assert!(image.layout().bits >= 8 || image.as_bytes().iter().all(|&v| v >> image.layout().bits == 0));
        assert!(picture.width * picture.height <= limits.max_pixels);
        let bytes = image.as_bytes();
        let Region { ptr, len } = picture.pixels;
        assert_eq!(bytes.len(), len as usize);
        assert_eq!(bytes, &memory[ptr as usize..ptr as usize + len as usize], "pixels are not the guest's bytes");
    }
}

fuzz_target!(|case: Case| {
    match case {
        Case::Table { table, file_len, header_len, max_tensors } => {
            let limits = Limits::default().with_max_tensors(u64::from(max_tensors));
            check_table(&table, file_len, header_len, &limits);
            // The same table against the file it describes, so that the accepting path is reached.
            let header_len = table.header_len;
            if let Some(end) = table.tensors.last().map(|t| t.end) {
                let file_len = 8u64.saturating_add(header_len).saturating_add(end);
                check_table(&table, file_len, header_len, &limits);
            }
        }
        Case::Consistent { tensors, header_len, metadata, tweak } => {
            let (mut table, mut file_len) = consistent(&tensors, header_len, metadata);
            let mut header_len = table.header_len;
            let untouched = tweak.is_none();
            if let Some(tweak) = tweak {
                apply(&mut table, &mut file_len, &mut header_len, tweak);
            }
            let limits = Limits::default();
            check_table(&table, file_len, header_len, &limits);
            if untouched && table_is_valid(&table, file_len, header_len, &limits) {
                assert!(validate_table(&table, file_len, header_len, &limits).is_ok());
            }
        }
        Case::Frame { frame, memory, output, max_pixels } => check_frame(frame, &memory, output, max_pixels),
        Case::Picture { picture, memory, max_pixels } => check_picture(picture, &memory, max_pixels),
    }
});
