//! The formats sandload opens or describes: each module owns one format's request to its guest
//! and the re-checks of what the guest returned.
//!
//! - [`safetensors`]: checkpoints (the `safetensors-header` guest), and [`polyglot`]: the checks
//!   that an accepted checkpoint is nothing else a common loader would open.
//! - [`sharded`]: a sharded checkpoint's index (the `shard-index` guest) and its shards.
//! - [`raw`]: camera RAW frames and their embedded previews (the `raw-decoder` guest).
//! - [`picture`]: PNG, JPEG, TIFF and WebP images (the `image-decoder` guest).
//! - [`pickle_report`]: what a refused pickle would import and call (the `pickle-scan` guest).

pub(crate) mod pickle_report;
pub(crate) mod picture;
pub(crate) mod pixels;
pub(crate) mod polyglot;
pub(crate) mod raw;
pub(crate) mod safetensors;
pub mod sharded;
