//! candle tensors of accepted checkpoints (feature `candle`).
//!
//! The dtype mapping is candle's own safetensors loader's (`candle_core::safetensors::load`):
//! every dtype candle has is kept, `U16` widens to `U32` (candle has no u16), and `BOOL`, `I8`,
//! `U64`, `F8_E5M2`, the `FNUZ` kinds and `C64` are refused as candle refuses them. The bytes are
//! copied once into candle's storage (on `device`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::formats::safetensors::{Checkpoint, Dtype, TensorView};
use crate::formats::sharded::ShardedCheckpoint;

impl TensorView<'_> {
    /// The tensor as a `candle_core::Tensor` on `device`.
    ///
    /// ```
    /// use sandload_samples::{self as samples, Tensor};
    /// use sandload::{Dtype, Input, Sandbox};
    /// # fn main() -> sandload::Result<()> {
    /// let file = samples::safetensors(&[Tensor::patterned("w", Dtype::BF16, &[2, 3])], &[]);
    /// let checkpoint = Sandbox::new()?.open_safetensors(Input::from_bytes(file, "w.safetensors"))?;
    /// let w = checkpoint.tensor("w").unwrap().to_candle(&candle_core::Device::Cpu)?;
    /// assert_eq!((w.dims(), w.dtype()), (&[2usize, 3][..], candle_core::DType::BF16));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a dtype candle has no counterpart for, a dimension over
    /// `usize`, or candle failing to allocate on `device`.
    pub fn to_candle(&self, device: &Device) -> Result<Tensor> {
        self.require_data("make a candle tensor")?;
        let shape =
            self.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<usize>, _>>().map_err(|_| {
                self.unsupported(
                    "make a candle tensor",
                    format!("tensor {:?} has a dimension over usize::MAX", self.name),
                )
            })?;
        let candle_error =
            |e: candle_core::Error| self.unsupported("make a candle tensor", format!("tensor {:?}: {e}", self.name));
        let dtype = match self.dtype {
            Dtype::U8 => DType::U8,
            Dtype::U32 => DType::U32,
            Dtype::I16 => DType::I16,
            Dtype::I32 => DType::I32,
            Dtype::I64 => DType::I64,
            Dtype::BF16 => DType::BF16,
            Dtype::F16 => DType::F16,
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::F8_E4M3 => DType::F8E4M3,
            Dtype::F6_E2M3 => DType::F6E2M3,
            Dtype::F6_E3M2 => DType::F6E3M2,
            Dtype::F4 => DType::F4,
            Dtype::F8_E8M0 => DType::F8E8M0,
            Dtype::U16 => {
                // Exact: every u16 is a u32.
                return Tensor::from_vec(self.to_vec::<u32>()?, shape, device).map_err(candle_error);
            }
            other => {
                return Err(self.unsupported(
                    "make a candle tensor",
                    format!(
                        "tensor {:?} is {}, which candle has no dtype for; convert it with to_vec first",
                        self.name,
                        other.name()
                    ),
                ));
            }
        };
        if !cfg!(target_endian = "little") {
            return Err(Error::Unsupported {
                file: self.file.to_path_buf(),
                operation: "make a candle tensor",
                reason: "candle reads raw buffers in native byte order, and this machine is big-endian".into(),
            });
        }
        Tensor::from_raw_buffer(&self.data, dtype, &shape, device).map_err(candle_error)
    }
}

fn to_map<'a>(tensors: impl Iterator<Item = TensorView<'a>>, device: &Device) -> Result<HashMap<String, Tensor>> {
    tensors.map(|t| Ok((t.name.to_string(), t.to_candle(device)?))).collect()
}

impl Checkpoint {
    /// Every tensor as a candle tensor, by name: the map `candle_nn::VarBuilder::from_tensors`
    /// takes (`VarBuilder::from_tensors(checkpoint.to_candle(&device)?, DType::F32, &device)`).
    ///
    /// # Errors
    /// As [`TensorView::to_candle`], for the first tensor that fails.
    pub fn to_candle(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        to_map(self.iter(), device)
    }
}

impl ShardedCheckpoint {
    /// Every tensor of every shard as a candle tensor, by name (see [`Checkpoint::to_candle`]).
    ///
    /// # Errors
    /// As [`TensorView::to_candle`], for the first tensor that fails.
    pub fn to_candle(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        to_map(self.iter(), device)
    }
}
