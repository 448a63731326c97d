//! Messages of the `shard-index` guest: the index of a sharded checkpoint
//! (`model.safetensors.index.json`, as `transformers` and `huggingface_hub` write it):
//!
//! ```json
//! {"metadata": {"total_size": 26953662464},
//!  "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", ...}}
//! ```
//!
//! Payload: the index file's bytes (at most the host's `max_header_bytes`). The guest parses the
//! untrusted JSON and answers with the shard names and which shard holds each tensor; the host
//! re-checks every name and number before it opens anything.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::GuestError;

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// Most distinct shard files the index may name ([`crate::Rule::ShardCountOverLimit`]).
    pub max_shards: u64,
    /// Most tensors the index may list ([`crate::Rule::TooManyTensors`]).
    pub max_tensors: u64,
}

/// The parsed index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Index {
    /// `metadata.total_size`, if present: the bytes of all tensors' data.
    pub total_size: Option<u64>,
    /// The other `metadata` entries, strings as they are and other values as JSON text.
    pub metadata: Vec<(String, String)>,
    /// The distinct shard file names, in order of first mention.
    pub shards: Vec<String>,
    /// Each tensor and the index into `shards` of the file that holds it, in file order.
    pub tensors: Vec<(String, u32)>,
}

/// The guest's answer.
pub type Response = Result<Index, GuestError>;
