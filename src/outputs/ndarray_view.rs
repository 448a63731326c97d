//! ndarray arrays of tensors (feature `ndarray`).

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};

use crate::error::Result;
use crate::formats::safetensors::TensorView;
use crate::outputs::tensor_data::Element;

impl TensorView<'_> {
    /// The tensor as an n-dimensional array of `T`, without a copy where possible.
    ///
    /// The array borrows the tensor's bytes (for a mapped checkpoint: the file's pages) when
    /// `T` is the tensor's own dtype (`f32` for `F32`, `bf16` for `BF16`, ...), the machine is
    /// little-endian like the format, and the bytes are aligned for `T` (safetensors does not
    /// align tensors; files written by the reference implementation usually are, since its
    /// header is padded to 8 bytes and tensors are laid out largest alignment first). Otherwise
    /// the elements are converted into a new array with [`to_vec`](TensorView::to_vec)'s exact
    /// conversions. `CowArray::is_view` says which happened.
    ///
    /// ```
    /// use sandload_samples::{self as samples, Tensor};
    /// use sandload::{Dtype, Input, Sandbox};
    /// # fn main() -> sandload::Result<()> {
    /// let tensor = Tensor::patterned("w", Dtype::F32, &[2, 3]);
    /// let file = samples::safetensors(&[tensor], &[]);
    /// let checkpoint = Sandbox::new()?.open_safetensors(Input::from_bytes(file, "w.safetensors"))?;
    /// let w = checkpoint.tensor("w").unwrap();
    /// let array = w.to_ndarray::<f32>()?;
    /// assert_eq!(array.shape(), [2, 3]);
    /// assert_eq!(array.as_slice().unwrap(), w.to_vec::<f32>()?.as_slice());
    /// // The same F32 as f64: converted, so a new array.
    /// assert!(!w.to_ndarray::<f64>()?.is_view());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Those of [`to_vec`](TensorView::to_vec), and [`Error::Unsupported`](crate::Error::Unsupported)
    /// if a dimension does not fit in `usize`.
    pub fn to_ndarray<T: Element + bytemuck::Pod>(&self) -> Result<CowArray<'_, T, IxDyn>> {
        self.require_data("make an ndarray")?;
        let shape =
            self.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<usize>, _>>().map_err(|_| {
                self.unsupported("make an ndarray", format!("tensor {:?} has a dimension over usize::MAX", self.name))
            })?;
        if T::DTYPE == Some(self.dtype) && cfg!(target_endian = "little") {
            if let Ok(elements) = bytemuck::try_cast_slice::<u8, T>(&self.data) {
                let view = ArrayViewD::from_shape(IxDyn(&shape), elements)
                    .map_err(|e| self.unsupported("make an ndarray", format!("tensor {:?}: {e}", self.name)))?;
                return Ok(CowArray::from(view));
            }
        }
        let array = ArrayD::from_shape_vec(IxDyn(&shape), self.to_vec::<T>()?)
            .map_err(|e| self.unsupported("make an ndarray", format!("tensor {:?}: {e}", self.name)))?;
        Ok(CowArray::from(array))
    }
}
