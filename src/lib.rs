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

// The layers, bottom up; each imports only from those above it in this list.
// Foundation: what every layer speaks.
mod error;
mod input;
mod limits;
mod receipt;
mod refusal;
mod sniff;
#[cfg(feature = "tracing")]
mod trace;
// Running guests, then checking what they return.
mod sandbox;
mod verdict;
// One module per format, and what callers make of accepted files.
mod formats;
mod outputs;
// Deciding what a file is and opening it.
#[cfg(feature = "tokio")]
mod async_api;
mod open;
mod route;
// Presenting results (`serde` feature).
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "serde")]
pub mod report;

pub use bytes::Bytes;
pub use error::{Error, Result};
pub use formats::picture::DecodedImage;
pub use formats::pixels::{Colour, Layout as PixelLayout, Pixels, Sample};
pub use formats::raw::{Cfa, CfaColor, RawImage, RawInfo, Rect};
pub use formats::safetensors::{Checkpoint, Dtype, TensorInfo, TensorView};
pub use formats::sharded::{self, ShardedCheckpoint};
pub use half::{bf16, f16};
pub use image;
pub use input::{DataAccess, Input, parent_dir};
pub use limits::{Limit, Limits};
pub use open::Opened;
pub use outputs::develop::BayerPlanes;
pub use outputs::postprocess::{Demosaic, OutputColor, PostProcess, WhiteBalance};
pub use outputs::tensor_data::{Element, TensorSlice};
pub use receipt::{Outcome, Receipt};
pub use refusal::PickleReport;
pub use route::{Route, SHARD_INDEX_FILE, is_shard_index_name, shard_index_in};
pub use sandbox::{Guest, Sandbox, SandboxBuilder, user_cache_dir};
pub use sniff::{Format, Sniffed, sniff};

#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default): the
    //! host-side checks of guest output, callable on arbitrary bytes. Not a stable API.
    pub use crate::formats::pickle_report::validate_walks;
    pub use crate::formats::picture::to_pixels;
    pub use crate::formats::raw::{accept_frame, validate_frame};

    /// A sharded checkpoint's index parsed in the `shard-index` guest (the first step of
    /// [`Sandbox::open_sharded`](crate::Sandbox::open_sharded)), under the name `file`.
    pub fn shard_index(
        sandbox: &crate::Sandbox,
        file: &std::path::Path,
        bytes: &[u8],
    ) -> crate::Result<sandload_abi::shard_index::Index> {
        sandbox.parse_index(file, bytes)
    }
    pub use crate::formats::safetensors::{Layout, validate_table};
    pub use crate::verdict::Violation;
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
