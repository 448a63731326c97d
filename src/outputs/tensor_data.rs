//! Tensors as numbers: a validated tensor's little-endian bytes converted to Rust values
//! ([`TensorView::to_vec`]), and sub-tensors cut out by ranges ([`TensorView::slice`]).
//!
//! Nothing here parses the file: the dtype, shape and byte length of a [`TensorView`] were
//! checked against each other when the checkpoint was opened, so these are plain arithmetic on
//! trusted numbers (still overflow-checked, since a shape's product was only checked to fit the
//! file).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use float8::{F8E4M3, F8E5M2};
use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::formats::safetensors::{Dtype, TensorView};

mod sealed {
    /// A tensor element read from the file, before conversion to the target type.
    #[derive(Clone, Copy)]
    pub enum Value {
        Int(i128),
        Float(f64),
    }

    pub trait Sealed {}
}

use sealed::Value;

/// A Rust type that [`TensorView::to_vec`] converts tensor elements to.
///
/// Conversions are exact: a dtype converts to `T` only if every value of the dtype is a value of
/// `T` (`I32` to `i64` or `f64`, `F16` to `f32`, `U8` to `i16`, `F8_E4M3` to `bf16`...), and
/// NaNs and infinities stay what they are. Narrowing or sign-changing conversions (`F32` to
/// `f16`, `I64` to `f64`, `I8` to `u8`) are refused rather than rounded or wrapped.
pub trait Element: Copy + sealed::Sealed {
    /// The type's name, for error messages.
    const NAME: &'static str;
    /// Whether every value of `dtype` converts to this type exactly.
    fn accepts(dtype: Dtype) -> bool;
    /// The dtype whose little-endian bytes are this type's own representation, if any (views
    /// without a copy are possible only for it).
    const DTYPE: Option<Dtype>;
    #[doc(hidden)]
    fn from_value(value: Value) -> Self;
}

macro_rules! integer_element {
    ($t:ty, $own:ident, [$($dtype:ident),*]) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const NAME: &'static str = stringify!($t);
            const DTYPE: Option<Dtype> = Some(Dtype::$own);
            fn accepts(dtype: Dtype) -> bool {
                matches!(dtype, Dtype::BOOL $(| Dtype::$dtype)*)
            }
            fn from_value(value: Value) -> Self {
                // `accepts` admits only integer dtypes whose range fits.
                match value {
                    Value::Int(i) => i as $t,
                    Value::Float(f) => f as $t,
                }
            }
        }
    };
}

integer_element!(u8, U8, [U8]);
integer_element!(u16, U16, [U8, U16]);
integer_element!(u32, U32, [U8, U16, U32]);
integer_element!(u64, U64, [U8, U16, U32, U64]);
integer_element!(i8, I8, [I8]);
integer_element!(i16, I16, [U8, I8, I16]);
integer_element!(i32, I32, [U8, I8, U16, I16, I32]);
integer_element!(i64, I64, [U8, I8, U16, I16, U32, I32, I64]);

macro_rules! float_element {
    ($t:ty, $own:ident, $from_f64:expr, [$($dtype:ident),*]) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const NAME: &'static str = stringify!($t);
            const DTYPE: Option<Dtype> = Some(Dtype::$own);
            fn accepts(dtype: Dtype) -> bool {
                matches!(dtype, Dtype::BOOL $(| Dtype::$dtype)*)
            }
            fn from_value(value: Value) -> Self {
                // `accepts` admits only dtypes whose every value this type holds exactly.
                let from_f64: fn(f64) -> $t = $from_f64;
                match value {
                    Value::Int(i) => from_f64(i as f64),
                    Value::Float(f) => from_f64(f),
                }
            }
        }
    };
}

// f16: 11 significant bits, up to 65504, subnormals down to 2^-24; holds every u8/i8, F8_E4M3
// (3 mantissa bits, 2^-9 .. 448) and F8_E5M2 (the same exponent range, 2 mantissa bits).
float_element!(f16, F16, f16::from_f64, [U8, I8, F16, F8_E4M3, F8_E5M2]);
// bf16: 8 significant bits and f32's exponent range.
float_element!(bf16, BF16, bf16::from_f64, [U8, I8, BF16, F8_E4M3, F8_E5M2]);
// f32: 24 significant bits.
float_element!(f32, F32, |f| f as f32, [U8, I8, U16, I16, F16, BF16, F8_E4M3, F8_E5M2, F32]);
// f64: 53 significant bits.
float_element!(f64, F64, |f| f, [U8, I8, U16, I16, U32, I32, F16, BF16, F8_E4M3, F8_E5M2, F32, F64]);

/// Elements of `bytes` (little-endian `dtype`), converted. `T::accepts(dtype)` must hold.
fn convert<T: Element>(dtype: Dtype, bytes: &[u8]) -> Vec<T> {
    macro_rules! read {
        ($n:expr, |$c:ident| $value:expr) => {
            bytes.chunks_exact($n).map(|$c| T::from_value($value)).collect()
        };
    }
    macro_rules! le {
        ($t:ty, $c:expr) => {
            <$t>::from_le_bytes($c.try_into().expect("chunks_exact"))
        };
    }
    match dtype {
        // Any non-zero byte is true, as NumPy and PyTorch read a bool buffer.
        Dtype::BOOL => read!(1, |c| Value::Int(i128::from(c[0] != 0))),
        Dtype::U8 => read!(1, |c| Value::Int(c[0].into())),
        Dtype::I8 => read!(1, |c| Value::Int(le!(i8, c).into())),
        Dtype::U16 => read!(2, |c| Value::Int(le!(u16, c).into())),
        Dtype::I16 => read!(2, |c| Value::Int(le!(i16, c).into())),
        Dtype::U32 => read!(4, |c| Value::Int(le!(u32, c).into())),
        Dtype::I32 => read!(4, |c| Value::Int(le!(i32, c).into())),
        Dtype::U64 => read!(8, |c| Value::Int(le!(u64, c).into())),
        Dtype::I64 => read!(8, |c| Value::Int(le!(i64, c).into())),
        Dtype::F16 => read!(2, |c| Value::Float(f16::from_bits(le!(u16, c)).to_f64())),
        Dtype::BF16 => read!(2, |c| Value::Float(bf16::from_bits(le!(u16, c)).to_f64())),
        Dtype::F8_E4M3 => read!(1, |c| Value::Float(F8E4M3::from_bits(c[0]).to_f64())),
        Dtype::F8_E5M2 => read!(1, |c| Value::Float(F8E5M2::from_bits(c[0]).to_f64())),
        Dtype::F32 => read!(4, |c| Value::Float(le!(f32, c).into())),
        Dtype::F64 => read!(8, |c| Value::Float(le!(f64, c))),
        // No `Element` accepts these (see `Element::accepts`).
        _ => Vec::new(),
    }
}

/// A part of a tensor cut out by [`TensorView::slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSlice {
    /// The tensor's element type.
    pub dtype: Dtype,
    /// The slice's dimensions: one per dimension of the tensor.
    pub shape: Vec<u64>,
    /// The slice's elements in row-major order: a zero-copy view of the file when they are
    /// contiguous in it, a copy otherwise.
    pub data: Bytes,
}

impl TensorView<'_> {
    /// The tensor's elements converted to `T`, in row-major order.
    ///
    /// ```
    /// use sandload_samples::{self as samples, Tensor};
    /// use sandload::{Dtype, Input, Sandbox};
    /// # fn main() -> sandload::Result<()> {
    /// // bf16 [1.0, -2.5, 3.0]: the high halves of the f32s.
    /// let data = [1.0f32, -2.5, 3.0].iter().map(|v| (v.to_bits() >> 16) as u16).flat_map(u16::to_le_bytes);
    /// let tensor = Tensor { name: "w".into(), dtype: Dtype::BF16, shape: vec![3], data: data.collect() };
    /// let file = samples::safetensors(&[tensor], &[]);
    /// let checkpoint = Sandbox::new()?.open_safetensors(Input::from_bytes(file, "model.safetensors"))?;
    /// let w = checkpoint.tensor("w").unwrap();
    /// assert_eq!(w.to_vec::<f32>()?, [1.0, -2.5, 3.0]);
    /// assert!(w.to_vec::<i64>().is_err()); // floats never become integers
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the conversion would not be exact (see [`Element`]), or for
    /// dtypes with no Rust counterpart here (`F4`, `F6_*`, `F8_E8M0`, the `FNUZ` kinds, `C64`).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.require_data("convert a tensor")?;
        if !T::accepts(self.dtype) {
            return Err(self.unsupported(
                "convert a tensor",
                format!(
                    "tensor {:?} is {}, which does not convert to {} exactly",
                    self.name,
                    self.dtype.name(),
                    T::NAME
                ),
            ));
        }
        Ok(convert(self.dtype, &self.data))
    }

    /// The part of the tensor selected by `ranges`, one per leading dimension (missing trailing
    /// dimensions are taken whole), as the `safetensors` crate's `TensorView::sliced_data`
    /// selects it with `TensorIndexer::Narrow`.
    ///
    /// ```
    /// use sandload_samples::{self as samples, Tensor};
    /// use sandload::{Dtype, Input, Sandbox};
    /// # fn main() -> sandload::Result<()> {
    /// let data: Vec<u8> = (0u8..12).collect(); // a 3x4 U8 matrix holding 0..12
    /// let tensor = Tensor { name: "m".into(), dtype: Dtype::U8, shape: vec![3, 4], data };
    /// let file = samples::safetensors(&[tensor], &[]);
    /// let checkpoint = Sandbox::new()?.open_safetensors(Input::from_bytes(file, "m.safetensors"))?;
    /// let part = checkpoint.tensor("m").unwrap().slice(&[1..3, 1..3])?;
    /// assert_eq!(part.shape, [2, 2]);
    /// assert_eq!(&part.data[..], [5, 6, 9, 10]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for more ranges than dimensions, a range past its dimension or
    /// reversed, or a dtype whose elements are not whole bytes (`F4`, `F6_*`).
    pub fn slice(&self, ranges: &[Range<u64>]) -> Result<TensorSlice> {
        self.require_data("slice a tensor")?;
        let bad = |reason: String| self.unsupported("slice a tensor", reason);
        let bits = self.dtype.bits();
        if bits % 8 != 0 {
            return Err(bad(format!(
                "tensor {:?} is {}: its elements are not whole bytes",
                self.name,
                self.dtype.name()
            )));
        }
        let item = (bits / 8) as usize;
        if ranges.len() > self.shape.len() {
            return Err(bad(format!(
                "{} ranges for tensor {:?} of {} dimensions",
                ranges.len(),
                self.name,
                self.shape.len()
            )));
        }
        let mut selected = Vec::with_capacity(self.shape.len());
        for (axis, &dim) in self.shape.iter().enumerate() {
            let range = ranges.get(axis).cloned().unwrap_or(0..dim);
            if range.start > range.end || range.end > dim {
                return Err(bad(format!(
                    "range {range:?} of dimension {axis} of tensor {:?}, which has {dim} entries",
                    self.name
                )));
            }
            selected.push(range);
        }
        let shape: Vec<u64> = selected.iter().map(|r| r.end - r.start).collect();
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad(format!("tensor {:?} is too large", self.name)));
        let total = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let total = to_usize(total.ok_or_else(|| bad(format!("tensor {:?} is too large", self.name)))?)?;
        let data = if total == 0 {
            Bytes::new()
        } else {
            // Element strides of the whole tensor (validated: the product fits the file).
            let mut strides = vec![1usize; self.shape.len()];
            for axis in (0..self.shape.len().saturating_sub(1)).rev() {
                strides[axis] = strides[axis + 1] * to_usize(self.shape[axis + 1])?;
            }
            // The innermost axes selected whole, plus the one outside them, form contiguous
            // runs; the axes outside that are walked like an odometer.
            let mut inner = self.shape.len();
            while inner > 0 && selected[inner - 1] == (0..self.shape[inner - 1]) {
                inner -= 1;
            }
            let run_axis = inner.saturating_sub(1);
            let run_elements = if self.shape.is_empty() { 1 } else { to_usize(shape[run_axis])? * strides[run_axis] };
            let run_bytes = run_elements * item;
            let outer = &selected[..run_axis.min(selected.len())];
            let start_of = |index: &[u64]| -> usize {
                let mut element =
                    if self.shape.is_empty() { 0 } else { selected[run_axis].start as usize * strides[run_axis] };
                for (axis, &i) in index.iter().enumerate() {
                    element += i as usize * strides[axis];
                }
                element * item
            };
            let mut index: Vec<u64> = outer.iter().map(|r| r.start).collect();
            let first = start_of(&index);
            if total * item == run_bytes {
                // One contiguous run: a view of the file, no copy.
                self.data.slice(first..first + run_bytes)
            } else {
                let mut out = BytesMut::with_capacity(total * item);
                loop {
                    let at = start_of(&index);
                    out.extend_from_slice(&self.data[at..at + run_bytes]);
                    // Next index, last axis fastest.
                    let mut axis = index.len();
                    loop {
                        if axis == 0 {
                            return Ok(TensorSlice { dtype: self.dtype, shape, data: out.freeze() });
                        }
                        axis -= 1;
                        index[axis] += 1;
                        if index[axis] < outer[axis].end {
                            break;
                        }
                        index[axis] = outer[axis].start;
                    }
                }
            }
        };
        Ok(TensorSlice { dtype: self.dtype, shape, data })
    }

    /// The view's bytes are all there: not so for a checkpoint opened with
    /// `DataAccess::Verdict`, whose views are empty.
    pub(crate) fn require_data(&self, operation: &'static str) -> Result<()> {
        let bits = self.shape.iter().try_fold(self.dtype.bits(), |acc, &d| acc.checked_mul(d));
        if bits.map(|b| b / 8) == Some(self.data.len() as u64) {
            return Ok(());
        }
        Err(self.unsupported(
            operation,
            format!(
                "tensor {:?} has no data in memory: its checkpoint was opened with DataAccess::Verdict, which leaves \
                 tensor bytes in the file (read them with Checkpoint::read_tensor)",
                self.name
            ),
        ))
    }

    pub(crate) fn unsupported(&self, operation: &'static str, reason: String) -> Error {
        Error::Unsupported { file: self.file.to_path_buf(), operation, reason: crate::error::printable(&reason) }
    }
}
