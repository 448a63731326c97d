//! Feature `ndarray`: arrays that borrow the tensor's bytes when the dtype is the element type's
//! own and the bytes are aligned, converted copies otherwise, the same values either way.
#![cfg(feature = "ndarray")]

use sandload::{Dtype, Input, bf16};
use sandload_samples::{self as samples, Tensor};

mod common;

fn open(tensors: &[Tensor]) -> sandload::Checkpoint {
    common::sandbox().open_safetensors(Input::from_bytes(samples::safetensors(tensors, &[]), "t.safetensors")).unwrap()
}

#[test]
fn own_dtype_is_a_view_of_the_file_bytes_and_others_convert() {
    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let f32s = Tensor {
        name: "w".into(),
        dtype: Dtype::F32,
        shape: vec![2, 3, 4],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let bf16s = Tensor {
        name: "b".into(),
        dtype: Dtype::BF16,
        shape: vec![4],
        data: [1.5f32, -2.0, 0.0, 1e30].iter().flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes()).collect(),
    };
    let ckpt = open(&[f32s, bf16s]);
    let w = ckpt.tensor("w").unwrap();
    let array = w.to_ndarray::<f32>().unwrap();
    assert_eq!(array.shape(), [2, 3, 4]);
    assert_eq!(array.iter().copied().collect::<Vec<f32>>(), values);
    assert_eq!(array[[1, 2, 3]], values[23]);
    // A view exactly when the bytes are aligned for f32: then it points into the checkpoint.
    let aligned = w.data.as_ptr().align_offset(4) == 0;
    assert_eq!(array.is_view(), aligned);
    if aligned {
        assert_eq!(array.as_ptr() as *const u8, w.data.as_ptr());
    }
    // Widening: a new array with the same values.
    let wide = w.to_ndarray::<f64>().unwrap();
    assert!(!wide.is_view());
    assert_eq!(wide.iter().map(|v| *v as f32).collect::<Vec<f32>>(), values);
    // BF16 as bf16 (its own) and as f32 (converted exactly).
    let b = ckpt.tensor("b").unwrap();
    assert_eq!(
        b.to_ndarray::<bf16>().unwrap().iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        [1.5, -2.0, 0.0, bf16::from_f32(1e30).to_f32()]
    );
    assert_eq!(b.to_ndarray::<f32>().unwrap().as_slice().unwrap()[..3], [1.5, -2.0, 0.0]);
    // Narrowing is refused, as by to_vec.
    assert_eq!(w.to_ndarray::<bf16>().unwrap_err().kind(), "unsupported");
}

/// A tensor at an odd offset cannot be viewed as u16: it is copied, with the right values.
#[test]
fn misaligned_tensors_are_copied() {
    let one = Tensor { name: "a".into(), dtype: Dtype::U8, shape: vec![1], data: vec![7] };
    let u16s = Tensor {
        name: "b".into(),
        dtype: Dtype::U16,
        shape: vec![3],
        data: [1u16, 500, 65535].iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let ckpt = open(&[one, u16s]);
    let b = ckpt.tensor("b").unwrap();
    let array = b.to_ndarray::<u16>().unwrap();
    assert_eq!(array.as_slice().unwrap(), [1, 500, 65535]);
    assert_eq!(array.is_view(), b.data.as_ptr().align_offset(2) == 0);
    // A scalar is a 0-dimensional array.
    let a = ckpt.tensor("a").unwrap();
    assert_eq!(a.to_ndarray::<u8>().unwrap().shape(), [1]);
}
