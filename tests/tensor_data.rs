//! Tensors as numbers: `TensorView::to_vec` against the formats' own definitions (IEEE binary16,
//! bfloat16, OCP FP8 E4M3FN and E5M2, written out here as an independent oracle), the exactness
//! rule for every dtype and target, and `TensorView::slice` against the `safetensors` crate's
//! `sliced_data` (differential, random shapes and ranges).

mod common;

use std::ops::{Bound, Range};

use common::{Rng, sandbox};
use sandload::{Checkpoint, Dtype, Element, Input, bf16, f16};
use sandload_samples::{self as samples, Tensor};

fn checkpoint(tensors: &[Tensor]) -> Checkpoint {
    sandbox().open_safetensors(Input::from_bytes(samples::safetensors(tensors, &[]), "t.safetensors")).unwrap()
}

fn one(dtype: Dtype, shape: &[u64], data: Vec<u8>) -> Checkpoint {
    checkpoint(&[Tensor { name: "t".into(), dtype, shape: shape.to_vec(), data }])
}

/// The value of a minifloat code, from the format's definition: `exp` exponent bits, `man`
/// mantissa bits, IEEE-style infinities and NaNs when `ieee`, else (E4M3FN) no infinities and NaN
/// only for the all-ones code.
fn minifloat(code: u32, exp: u32, man: u32, ieee: bool) -> f64 {
    let sign = if code >> (exp + man) & 1 == 1 { -1.0 } else { 1.0 };
    let e = (code >> man) & ((1 << exp) - 1);
    let m = code & ((1 << man) - 1);
    let bias = (1i32 << (exp - 1)) - 1;
    let max_e = (1 << exp) - 1;
    if ieee && e == max_e {
        return if m == 0 { sign * f64::INFINITY } else { f64::NAN };
    }
    if !ieee && e == max_e && m == (1 << man) - 1 {
        return f64::NAN;
    }
    let fraction = f64::from(m) / f64::from(1u32 << man);
    if e == 0 { sign * fraction * 2f64.powi(1 - bias) } else { sign * (1.0 + fraction) * 2f64.powi(e as i32 - bias) }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn every_float_code_decodes_as_its_format_defines() {
    // (dtype, bytes per element, exponent bits, mantissa bits, IEEE specials)
    for (dtype, width, exp, man, ieee) in [
        (Dtype::F16, 2, 5, 10, true),
        (Dtype::BF16, 2, 8, 7, true),
        (Dtype::F8_E5M2, 1, 5, 2, true),
        (Dtype::F8_E4M3, 1, 4, 3, false),
    ] {
        let codes: Vec<u32> = (0..1u32 << (8 * width)).collect();
        let data: Vec<u8> = codes.iter().flat_map(|&c| c.to_le_bytes()[..width].to_vec()).collect();
        let ckpt = one(dtype, &[codes.len() as u64], data);
        let t = ckpt.tensor("t").unwrap();
        let as_f64 = t.to_vec::<f64>().unwrap();
        let as_f32 = t.to_vec::<f32>().unwrap();
        for (i, &code) in codes.iter().enumerate() {
            let expected = minifloat(code, exp, man, ieee);
            assert!(same(as_f64[i], expected), "{dtype:?} {code:#x}: {} != {expected}", as_f64[i]);
            assert!(same(f64::from(as_f32[i]), expected), "{dtype:?} {code:#x} as f32");
        }
        // The half-precision targets hold these exactly too, where the exactness rule allows.
        if f16::accepts(dtype) {
            for (v, e) in t.to_vec::<f16>().unwrap().iter().zip(&as_f64) {
                assert!(same(v.to_f64(), *e), "{dtype:?} as f16");
            }
        }
        if bf16::accepts(dtype) {
            for (v, e) in t.to_vec::<bf16>().unwrap().iter().zip(&as_f64) {
                assert!(same(v.to_f64(), *e), "{dtype:?} as bf16");
            }
        }
    }
}

/// Checks one integer dtype against every target: the conversion exists exactly when every
/// value of the dtype fits, and then gives the values.
fn check_integers<T: Copy + Into<i128>>(dtype: Dtype, values: &[T], to_le: fn(T) -> Vec<u8>) {
    let data = values.iter().flat_map(|&v| to_le(v)).collect();
    let ckpt = one(dtype, &[values.len() as u64], data);
    let t = ckpt.tensor("t").unwrap();
    let expected: Vec<i128> = values.iter().map(|&v| v.into()).collect();
    // (target, its integer range, or the integers a float target holds exactly: 2^significand)
    fn fits(lo: i128, hi: i128, expected: &[i128]) -> bool {
        expected.iter().all(|v| (lo..=hi).contains(v))
    }
    macro_rules! int_target {
        ($t:ty) => {{
            let (lo, hi) = (<$t>::MIN as i128, <$t>::MAX as i128);
            let dtype_fits = fits(lo, hi, &[dtype_min(dtype), dtype_max(dtype)]);
            match t.to_vec::<$t>() {
                Ok(v) => {
                    assert!(dtype_fits, "{dtype:?} -> {} accepted but does not fit", stringify!($t));
                    assert_eq!(
                        v.iter().map(|&x| x as i128).collect::<Vec<_>>(),
                        expected,
                        "{dtype:?} -> {}",
                        stringify!($t)
                    );
                }
                Err(e) => {
                    assert!(!dtype_fits, "{dtype:?} -> {} refused: {e}", stringify!($t));
                    assert_eq!(e.kind(), "unsupported");
                }
            }
        }};
    }
    macro_rules! float_target {
        ($t:ty, $significand:expr, $to_f64:expr) => {{
            let exact = 1i128 << $significand;
            let dtype_fits = fits(-exact, exact, &[dtype_min(dtype), dtype_max(dtype)]);
            match t.to_vec::<$t>() {
                Ok(v) => {
                    assert!(dtype_fits, "{dtype:?} -> {} accepted but not exact", stringify!($t));
                    let to_f64: fn($t) -> f64 = $to_f64;
                    let got: Vec<i128> = v.iter().map(|&x| to_f64(x) as i128).collect();
                    assert_eq!(got, expected, "{dtype:?} -> {}", stringify!($t));
                }
                Err(e) => assert!(!dtype_fits, "{dtype:?} -> {} refused: {e}", stringify!($t)),
            }
        }};
    }
    int_target!(u8);
    int_target!(u16);
    int_target!(u32);
    int_target!(u64);
    int_target!(i8);
    int_target!(i16);
    int_target!(i32);
    int_target!(i64);
    float_target!(f16, 11, |x| x.to_f64());
    float_target!(bf16, 8, |x| x.to_f64());
    float_target!(f32, 24, |x| f64::from(x));
    float_target!(f64, 53, |x| x);
}

fn dtype_min(dtype: Dtype) -> i128 {
    match dtype {
        Dtype::I8 => i8::MIN.into(),
        Dtype::I16 => i16::MIN.into(),
        Dtype::I32 => i32::MIN.into(),
        Dtype::I64 => i64::MIN.into(),
        _ => 0,
    }
}

fn dtype_max(dtype: Dtype) -> i128 {
    match dtype {
        Dtype::BOOL => 1,
        Dtype::U8 => u8::MAX.into(),
        Dtype::I8 => i8::MAX.into(),
        Dtype::U16 => u16::MAX.into(),
        Dtype::I16 => i16::MAX.into(),
        Dtype::U32 => u32::MAX.into(),
        Dtype::I32 => i32::MAX.into(),
        Dtype::U64 => u64::MAX.into(),
        Dtype::I64 => i64::MAX.into(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn integers_convert_exactly_or_not_at_all() {
    check_integers(Dtype::BOOL, &[0u8, 1, 1, 0], |v| vec![v]);
    check_integers(Dtype::U8, &[0u8, 1, 127, 200, 255], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::I8, &[i8::MIN, -1, 0, 5, i8::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::U16, &[0u16, 300, u16::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::I16, &[i16::MIN, -300, 0, i16::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::U32, &[0u32, 70_000, u32::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::I32, &[i32::MIN, -70_000, 0, i32::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::U64, &[0u64, 1 << 40, u64::MAX], |v| v.to_le_bytes().to_vec());
    check_integers(Dtype::I64, &[i64::MIN, -(1 << 40), 0, i64::MAX], |v| v.to_le_bytes().to_vec());
}

#[test]
fn bool_bytes_other_than_one_are_true() {
    let ckpt = one(Dtype::BOOL, &[3], vec![0, 1, 7]);
    assert_eq!(ckpt.tensor("t").unwrap().to_vec::<u8>().unwrap(), [0, 1, 1]);
}

#[test]
fn lossy_or_unknown_conversions_are_refused_with_the_file_and_tensor() {
    let f32s: Vec<u8> = [1.5f32, 1e-30].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ckpt = one(Dtype::F32, &[2], f32s);
    let t = ckpt.tensor("t").unwrap();
    for err in [t.to_vec::<f16>().unwrap_err(), t.to_vec::<bf16>().unwrap_err(), t.to_vec::<i64>().unwrap_err()] {
        assert_eq!(err.kind(), "unsupported");
        let msg = err.to_string();
        assert!(msg.contains("t.safetensors") && msg.contains("\"t\"") && msg.contains("F32"), "{msg}");
    }
    assert_eq!(t.to_vec::<f64>().unwrap(), [1.5, f64::from(1e-30f32)]);
    // No Rust type here holds F4 (two per byte), E8M0 scales, the FNUZ kinds or complex numbers.
    for dtype in [Dtype::F4, Dtype::F8_E8M0, Dtype::F8_E4M3FNUZ, Dtype::F8_E5M2FNUZ, Dtype::C64] {
        let bytes = (dtype.bits() * 4).div_ceil(8) as usize;
        let ckpt = one(dtype, &[4], vec![0; bytes]);
        let err = ckpt.tensor("t").unwrap().to_vec::<f64>().unwrap_err();
        assert_eq!(err.kind(), "unsupported", "{dtype:?}");
    }
}

fn reference_slice(dtype: Dtype, shape: &[u64], data: &[u8], ranges: &[Range<u64>]) -> Option<(Vec<u64>, Vec<u8>)> {
    use safetensors::slice::TensorIndexer;
    let st_dtype: safetensors::Dtype = serde_json::from_str(&format!("\"{}\"", dtype.name())).unwrap();
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let view = safetensors::tensor::TensorView::new(st_dtype, shape, data).unwrap();
    let indexers: Vec<TensorIndexer> = ranges
        .iter()
        .map(|r| {
            TensorIndexer::Narrow(
                Bound::Included(r.start as usize),
                Bound::Excluded(r.end as usize),
                std::num::NonZeroUsize::MIN,
            )
        })
        .collect();
    let iter = view.sliced_data(&indexers).ok()?;
    let newshape = iter.newshape().iter().map(|&d| d as u64).collect();
    Some((newshape, iter.flatten().copied().collect()))
}

#[test]
fn slices_match_the_reference_crate() {
    let mut rng = Rng(0x5eed_511c);
    let (mut compared, mut zero_copy) = (0, 0);
    for case in 0..600 {
        let dtype = [Dtype::U8, Dtype::F16, Dtype::F32, Dtype::I64][case % 4];
        let rank = rng.below(5);
        let shape: Vec<u64> = (0..rank).map(|_| 1 + rng.below(5) as u64).collect();
        let bytes = shape.iter().product::<u64>() as usize * (dtype.bits() / 8) as usize;
        let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + case) as u8).collect();
        let ranges: Vec<Range<u64>> = shape[..rng.below(rank + 1)]
            .iter()
            .map(|&d| {
                let a = rng.below(d as usize + 1) as u64;
                let b = a + rng.below((d - a) as usize + 1) as u64;
                a..b
            })
            .collect();
        let ckpt = one(dtype, &shape, data.clone());
        let ours = ckpt.tensor("t").unwrap().slice(&ranges).unwrap();
        let Some((shape_ref, bytes_ref)) = reference_slice(dtype, &shape, &data, &ranges) else {
            // The reference refuses empty selections; ours returns them empty.
            assert!(ours.data.is_empty(), "{shape:?} {ranges:?}");
            continue;
        };
        assert_eq!(ours.shape, shape_ref, "{dtype:?} {shape:?} {ranges:?}");
        if shape_ref.contains(&0) {
            // An empty selection: the reference (0.8) still yields bytes for it (e.g. all 20 of a
            // [1, 5, 4] U8 tensor for [0..0, 3..5]); an empty shape has no elements.
            assert!(ours.data.is_empty(), "{shape:?} {ranges:?}");
            continue;
        }
        assert_eq!(&ours.data[..], &bytes_ref[..], "{dtype:?} {shape:?} {ranges:?}");
        compared += 1;
        // A contiguous selection is a view of the file, not a copy.
        let file = ckpt.tensor("t").unwrap().data;
        let inside = file.as_ptr_range().contains(&ours.data.as_ptr());
        zero_copy += usize::from(inside && !ours.data.is_empty());
    }
    assert!(compared > 300, "only {compared} cases compared");
    assert!(zero_copy > 50, "only {zero_copy} zero-copy slices");
}

#[test]
fn bad_slices_are_refused() {
    let ckpt = one(Dtype::U8, &[3, 4], (0..12).collect());
    let t = ckpt.tensor("t").unwrap();
    let reversed = 2..1;
    for ranges in [vec![0..4], vec![0..3, 0..5], vec![reversed, 0..1], vec![0..1, 0..1, 0..1]] {
        let err = t.slice(&ranges).unwrap_err();
        assert_eq!(err.kind(), "unsupported", "{ranges:?}");
        assert!(err.to_string().contains("t.safetensors"), "{err}");
    }
    // Whole-byte elements only: F4 packs two per byte.
    let f4 = one(Dtype::F4, &[4], vec![0; 2]);
    assert_eq!(f4.tensor("t").unwrap().slice(&[0..2]).unwrap_err().kind(), "unsupported");
    // A scalar slices to itself.
    let scalar = one(Dtype::F32, &[], 2.5f32.to_le_bytes().to_vec());
    let s = scalar.tensor("t").unwrap().slice(&[]).unwrap();
    assert_eq!((s.shape.len(), &s.data[..]), (0, &2.5f32.to_le_bytes()[..]));
}
