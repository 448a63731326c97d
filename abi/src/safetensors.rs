//! Messages of the `safetensors-header` guest.
//!
//! Payload: the first `min(file_len, 8 + header_len + PICKLE_WINDOW)` bytes of the file — the
//! length prefix, the JSON header and at most [`PICKLE_WINDOW`] bytes of tensor data, which the
//! guest reads only to rule out that the file is also a pickle (an opcode walk from byte 0 can
//! hop from the header into the data). The rest of the tensor data never enters the guest.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::GuestError;

/// Most bytes of tensor data, after the header, the host hands the guest for the pickle walk. A
/// walk still going at the end of them is refused (it could not be ruled out).
pub const PICKLE_WINDOW: u64 = 64 << 10;

/// Most dimensions of one tensor (NumPy's own maximum). The format sets none, but every shape
/// crosses the boundary and is held by the host: without a cap, a 100 MB header of one tensor with
/// millions of dimensions of 1 costs the host gigabytes.
pub const MAX_RANK: usize = 64;

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// Length of the whole file in bytes (the guest sees only the header).
    pub file_len: u64,
    /// Largest header the guest may parse, in bytes.
    pub max_header_bytes: u64,
    /// Largest number of tensors the guest may accept.
    pub max_tensors: u64,
}

/// What the guest answers.
pub type Response = Result<Table, GuestError>;

/// The validated tensor table. The host re-checks all of it against the real file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Table {
    /// Header length as read from the 8-byte prefix.
    pub header_len: u64,
    /// Tensors in data-offset order.
    pub tensors: Vec<TensorEntry>,
    /// The `__metadata__` map, sorted by key; `None` when the header has none.
    pub metadata: Option<Vec<(String, String)>>,
}

/// One tensor of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TensorEntry {
    /// Tensor name (the JSON key).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
    /// Start of the tensor's bytes, relative to the start of the data section.
    pub begin: u64,
    /// End (exclusive) of the tensor's bytes, relative to the start of the data section.
    pub end: u64,
}

/// Element types of the safetensors format (0.8), by their names in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[allow(non_camel_case_types, missing_docs)]
#[non_exhaustive]
pub enum Dtype {
    BOOL,
    F4,
    F6_E2M3,
    F6_E3M2,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    F8_E4M3FNUZ,
    F8_E5M2FNUZ,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    C64,
    F64,
    I64,
    U64,
}

impl Dtype {
    /// Every dtype, in the format's order.
    pub const ALL: [Dtype; 22] = [
        Dtype::BOOL,
        Dtype::F4,
        Dtype::F6_E2M3,
        Dtype::F6_E3M2,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8_E5M2,
        Dtype::F8_E4M3,
        Dtype::F8_E8M0,
        Dtype::F8_E4M3FNUZ,
        Dtype::F8_E5M2FNUZ,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::C64,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// The name used in safetensors headers, e.g. `"F32"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::F4 => "F4",
            Dtype::F6_E2M3 => "F6_E2M3",
            Dtype::F6_E3M2 => "F6_E3M2",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::F8_E8M0 => "F8_E8M0",
            Dtype::F8_E4M3FNUZ => "F8_E4M3FNUZ",
            Dtype::F8_E5M2FNUZ => "F8_E5M2FNUZ",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::C64 => "C64",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Parses a header name; `None` for names this version does not know.
    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Size of one element in bits (4 and 6 for the sub-byte float formats).
    pub fn bits(self) -> u64 {
        match self {
            Dtype::F4 => 4,
            Dtype::F6_E2M3 | Dtype::F6_E3M2 => 6,
            Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3
            | Dtype::F8_E8M0
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ => 8,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 16,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 32,
            Dtype::C64 | Dtype::F64 | Dtype::I64 | Dtype::U64 => 64,
        }
    }

    /// Byte length of a tensor of this dtype and shape, with every step overflow-checked.
    ///
    /// # Errors
    /// [`SizeError::Overflow`] if the element or bit count overflows `u64`;
    /// [`SizeError::Misaligned`] if the bit count is not a whole number of bytes.
    pub fn byte_len(self, shape: &[u64]) -> Result<u64, SizeError> {
        let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or(SizeError::Overflow)?;
        let bits = elements.checked_mul(self.bits()).ok_or(SizeError::Overflow)?;
        if bits % 8 != 0 {
            return Err(SizeError::Misaligned);
        }
        Ok(bits / 8)
    }
}

/// Why [`Dtype::byte_len`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Element or bit count overflows `u64`.
    Overflow,
    /// The bit count is not a multiple of 8.
    Misaligned,
}
