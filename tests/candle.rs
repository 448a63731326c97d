//! Feature `candle`: a checkpoint's tensors as candle tensors, differentially against candle's
//! own safetensors loader on the same bytes (same names, dtypes, shapes and values), including
//! the dtypes it refuses.
#![cfg(feature = "candle")]

use candle_core::{DType, Device};
use sandload::{Dtype, Input};
use sandload_samples::{self as samples, Tensor};

mod common;

#[test]
fn same_tensors_as_candles_own_loader() {
    let kept = [
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::BF16,
        Dtype::F16,
        Dtype::F32,
        Dtype::F64,
        Dtype::F8_E4M3,
    ];
    let tensors: Vec<Tensor> =
        kept.iter().map(|&d| Tensor::patterned(&format!("t.{}", d.name()), d, &[3, 2])).collect();
    let file = samples::safetensors(&tensors, &[]);
    let ckpt = common::sandbox().open_safetensors(Input::from_bytes(file.clone(), "m.safetensors")).unwrap();
    let ours = ckpt.to_candle(&Device::Cpu).unwrap();
    let theirs = candle_core::safetensors::load_buffer(&file, &Device::Cpu).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (name, want) in &theirs {
        let got = &ours[name];
        assert_eq!((got.dtype(), got.dims()), (want.dtype(), want.dims()), "{name}");
        if want.dtype() == DType::F8E4M3 {
            // candle 0.9.2's F8E4M3 -> F64 conversion never returns (CPU backend); its values
            // are checked through sandload's own conversion below instead.
            continue;
        }
        // Compare values as f64 (exact for every dtype here) where candle can convert, else bytes.
        let as_f64 = |t: &candle_core::Tensor| t.to_dtype(DType::F64).and_then(|t| t.flatten_all()?.to_vec1::<f64>());
        match (as_f64(got), as_f64(want)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "{name}"),
        }
    }
    assert_eq!(ours["t.U16"].dtype(), DType::U32, "u16 widens to u32 as candle's loader does");
    // F8_E4M3: the candle tensor holds the file's bytes, which sandload reads as the format says.
    let f8 = ckpt.tensor("t.F8_E4M3").unwrap();
    let mut raw = Vec::new();
    ours["t.F8_E4M3"].write_bytes(&mut raw).unwrap();
    assert_eq!(raw, &f8.data[..]);
    assert_eq!(
        ours["t.F32"].to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        ckpt.tensor("t.F32").unwrap().to_vec::<f32>().unwrap()
    );
}

#[test]
fn dtypes_candle_lacks_are_refused_by_both() {
    for dtype in [Dtype::BOOL, Dtype::I8, Dtype::U64, Dtype::F8_E5M2] {
        let file = samples::safetensors(&[Tensor::patterned("x", dtype, &[4])], &[]);
        let ckpt = common::sandbox().open_safetensors(Input::from_bytes(file.clone(), "m.safetensors")).unwrap();
        let err = ckpt.tensor("x").unwrap().to_candle(&Device::Cpu).unwrap_err();
        assert_eq!(err.kind(), "unsupported", "{dtype:?}: {err}");
        assert!(err.to_string().contains(dtype.name()), "{err}");
        assert!(candle_core::safetensors::load_buffer(&file, &Device::Cpu).is_err(), "{dtype:?}");
    }
}
