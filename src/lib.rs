#![doc = include_str!("../README.md")]
//!
//! # Core concepts
//!
//! - [`Sandbox`]: built once, shared by all threads. Owns the wasmtime engine, each guest compiled
//!   once, the pooling allocator and the [`Limits`]. Each file runs in a fresh, isolated store.
//! - [`Input`]: what to open — a path under a `cap_std::fs::Dir` capability, an open file, or
//!   bytes. There is no way to hand the library an ambient path.
//! - [`Checkpoint`]: an accepted safetensors file; tensors are zero-copy [`bytes::Bytes`] views.
//! - [`RawImage`]: a decoded camera RAW frame (rawler in a guest), with Bayer planes and a
//!   developed RGB image; [`DecodedImage`]: a PNG/JPEG/TIFF/WebP decoded in a guest.
//! - [`Error`]: one enum for everything; [`Error::kind`] gives a stable name.
//! - [`Receipt`]: what the sandbox did for one call (limits, guest memory peak, time, outcome).
//! - [`sniff`]: content-based format recognition, used to refuse pickles and friends.
//!
//! The guest/host boundary is defined once, in the `sandload-abi` crate (`abi/`).
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_api;
mod cache;
#[cfg(feature = "candle")]
mod candle_tensors;
mod develop;
mod error;
mod input;
mod limits;
#[cfg(feature = "ndarray")]
mod ndarray_view;
mod open;
mod pickle_report;
mod picture;
mod polyglot;
mod raw;
mod receipt;
mod refusal;
#[cfg(feature = "serde")]
pub mod report;
#[cfg(feature = "samples")]
pub mod samples;
mod sandbox;
#[cfg(feature = "serde")]
mod serialize;
pub mod sharded;
mod sniff;
mod tensor_data;
mod tensors;
#[cfg(feature = "tracing")]
mod trace;

pub use bytes::Bytes;
pub use cache::user_cache_dir;
pub use develop::BayerPlanes;
pub use error::{Error, Result};
pub use half::{bf16, f16};
pub use image;
pub use input::{DataAccess, Input, parent_dir};
pub use limits::{Limit, Limits};
pub use open::Opened;
pub use pickle_report::PickleReport;
pub use picture::DecodedImage;
pub use raw::{Cfa, CfaColor, RawImage, RawInfo, Rect};
pub use receipt::{Outcome, Receipt};
pub use sandbox::{Guest, Sandbox, SandboxBuilder};
pub use sharded::ShardedCheckpoint;
pub use sniff::{Format, Sniffed, sniff};
pub use tensor_data::{Element, TensorSlice};
pub use tensors::{Checkpoint, Dtype, TensorInfo, TensorView};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets; not a stable API.
    pub use crate::pickle_report::validate_walks;
    pub use crate::picture::to_image;
    pub use crate::raw::{accept_frame, validate_frame};

    /// A sharded checkpoint's index parsed in the `shard-index` guest (the first step of
    /// [`Sandbox::open_sharded`](crate::Sandbox::open_sharded)), under the name `file`.
    pub fn shard_index(
        sandbox: &crate::Sandbox,
        file: &std::path::Path,
        bytes: &[u8],
    ) -> crate::Result<sandload_abi::shard_index::Index> {
        sandbox.parse_index(file, bytes)
    }
    pub use crate::tensors::{Layout, Violation, validate_table};
    pub use sandload_abi as abi;
}

/// `Sandbox` is shared across threads by design; prove it at compile time.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
    assert_send_sync::<Checkpoint>();
    assert_send_sync::<RawImage>();
    assert_send_sync::<DecodedImage>();
    assert_send_sync::<Error>();
};
