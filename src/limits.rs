//! Resource limits with safe defaults.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// Limits applied to every file a [`Sandbox`](crate::Sandbox) opens.
///
/// Each limit is checked before the allocation or work it protects, and exceeding one is an
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) (or, for the guest's own resources,
/// [`Error::GuestOutOfMemory`](crate::Error::GuestOutOfMemory) /
/// [`Error::GuestTimeout`](crate::Error::GuestTimeout)) naming the limit and the value seen.
///
/// ```
/// use std::time::Duration;
/// let limits = sandload::Limits::default()
///     .with_max_file_bytes(8 << 30)
///     .with_guest_time(Duration::from_secs(2));
/// assert_eq!(limits.max_header_bytes, sandload::Limits::DEFAULT_MAX_HEADER_BYTES);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Limits {
    /// Largest file accepted, in bytes. By default this is [`Limits::DEFAULT_MAX_FILE_BYTES`].
    pub max_file_bytes: u64,
    /// Largest safetensors JSON header, in bytes. By default this is
    /// [`Limits::DEFAULT_MAX_HEADER_BYTES`], the reference implementation's own cap; larger values
    /// are still capped at that by the format.
    pub max_header_bytes: u64,
    /// Most tensors in one safetensors file, and in one sharded checkpoint's index. By default
    /// this is [`Limits::DEFAULT_MAX_TENSORS`].
    pub max_tensors: u64,
    /// Most shard files one sharded checkpoint's index may name. By default this is
    /// [`Limits::DEFAULT_MAX_SHARDS`].
    pub max_shards: u64,
    /// Most pixels (width x height) of one decoded image: a RAW frame, an image, or a RAW file's
    /// embedded preview. Checked against the dimensions a file declares before the decoder
    /// allocates. By default this is [`Limits::DEFAULT_MAX_PIXELS`].
    pub max_pixels: u64,
    /// Linear-memory cap of one guest instance, in bytes. By default this is
    /// [`Limits::DEFAULT_GUEST_MEMORY_BYTES`].
    pub guest_memory_bytes: u64,
    /// Wall-clock CPU deadline of one guest call. By default this is
    /// [`Limits::DEFAULT_GUEST_TIME`].
    #[cfg_attr(
        feature = "serde",
        serde(rename = "guest_time_ms", serialize_with = "crate::report::serialize::millis")
    )]
    #[cfg_attr(feature = "schema", schemars(with = "u64"))]
    pub guest_time: Duration,
}

impl Limits {
    /// 64 GiB: checkpoints are mapped, not read, so size costs address space, not memory.
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 30;
    /// 100 MB, as `safetensors::tensor::MAX_HEADER_SIZE`.
    pub const DEFAULT_MAX_HEADER_BYTES: u64 = 100_000_000;
    /// 1,000,000 tensors (the largest public checkpoints have tens of thousands).
    pub const DEFAULT_MAX_TENSORS: u64 = 1_000_000;
    /// 4,096 shards (the largest public checkpoints have a few hundred).
    pub const DEFAULT_MAX_SHARDS: u64 = 4096;
    /// 200 megapixels: above every production camera sensor (the largest are ~150 MP).
    pub const DEFAULT_MAX_PIXELS: u64 = 200_000_000;
    /// 1 GiB: enough to parse a 100 MB header or decode a 100 MP RAW file; virtual, reserved per pool slot, not committed.
    pub const DEFAULT_GUEST_MEMORY_BYTES: u64 = 1 << 30;
    /// 10 seconds of guest execution per file.
    pub const DEFAULT_GUEST_TIME: Duration = Duration::from_secs(10);
    /// Wasm linear memory is 32-bit: a guest can never address more than 4 GiB.
    pub const MAX_GUEST_MEMORY_BYTES: u64 = 4 << 30;
    /// The longest [`guest_time`](Limits::guest_time) accepted: one year. Longer is no deadline
    /// in practice, and the bound keeps `now + guest_time` from overflowing wherever a deadline
    /// is computed.
    pub const MAX_GUEST_TIME: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Sets [`max_shards`](Limits::max_shards).
    pub fn with_max_shards(mut self, count: u64) -> Self {
        self.max_shards = count;
        self
    }

    /// Sets [`max_file_bytes`](Limits::max_file_bytes).
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }
    /// Sets [`max_header_bytes`](Limits::max_header_bytes).
    pub fn with_max_header_bytes(mut self, bytes: u64) -> Self {
        self.max_header_bytes = bytes;
        self
    }
    /// Sets [`max_tensors`](Limits::max_tensors).
    pub fn with_max_tensors(mut self, count: u64) -> Self {
        self.max_tensors = count;
        self
    }
    /// Sets [`max_pixels`](Limits::max_pixels).
    pub fn with_max_pixels(mut self, pixels: u64) -> Self {
        self.max_pixels = pixels;
        self
    }
    /// Sets [`guest_memory_bytes`](Limits::guest_memory_bytes) (at most 4 GiB).
    pub fn with_guest_memory_bytes(mut self, bytes: u64) -> Self {
        self.guest_memory_bytes = bytes;
        self
    }
    /// Sets [`guest_time`](Limits::guest_time).
    pub fn with_guest_time(mut self, time: Duration) -> Self {
        self.guest_time = time;
        self
    }

    /// The value of one limit, in its unit (bytes, count, or milliseconds for time).
    pub fn get(&self, limit: Limit) -> u64 {
        match limit {
            Limit::MaxFileBytes => self.max_file_bytes,
            Limit::MaxHeaderBytes => self.max_header_bytes,
            Limit::MaxTensors => self.max_tensors,
            Limit::MaxShards => self.max_shards,
            Limit::MaxPixels => self.max_pixels,
            Limit::GuestMemoryBytes => self.guest_memory_bytes,
            Limit::GuestTimeMillis => u64::try_from(self.guest_time.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Checks limits a person set (a command-line flag, a Python keyword): a guest memory of at
    /// least one byte and at most [`MAX_GUEST_MEMORY_BYTES`](Limits::MAX_GUEST_MEMORY_BYTES),
    /// and a guest time above zero and at most [`MAX_GUEST_TIME`](Limits::MAX_GUEST_TIME). The
    /// CLI and the Python package both call this, so they accept the same settings.
    /// [`SandboxBuilder::build`](crate::SandboxBuilder::build) is more lenient with what code
    /// sets: it refuses only a memory a wasm32 guest cannot address, takes a guest time too large
    /// to add to the clock (e.g. `Duration::MAX`) as no deadline, and a memory smaller than a
    /// guest's first page as a cap every call then reports.
    ///
    /// # Errors
    /// [`Error::Internal`] naming the limit, the value and the accepted range.
    pub fn validate(&self) -> Result<()> {
        self.check_addressable()?;
        if self.guest_memory_bytes == 0 {
            return Err(Self::invalid(Limit::GuestMemoryBytes, "0".into(), "at least 1 byte"));
        }
        if self.guest_time.is_zero() || self.guest_time > Self::MAX_GUEST_TIME {
            let value = format!("{} s", self.guest_time.as_secs_f64());
            return Err(Self::invalid(Limit::GuestTimeMillis, value, "a positive number of seconds up to one year"));
        }
        Ok(())
    }

    /// The one check [`SandboxBuilder::build`](crate::SandboxBuilder::build) makes: a guest
    /// memory a wasm32 guest can address.
    pub(crate) fn check_addressable(&self) -> Result<()> {
        if self.guest_memory_bytes > Self::MAX_GUEST_MEMORY_BYTES {
            let value = self.guest_memory_bytes.to_string();
            return Err(Self::invalid(Limit::GuestMemoryBytes, value, "at most the 4 GiB a wasm32 guest can address"));
        }
        Ok(())
    }

    fn invalid(limit: Limit, value: String, range: &str) -> Error {
        Error::Internal(format!("limit {limit} must be {range}, got {value}"))
    }

    /// `Ok` if `value` is within `limit`; otherwise the [`Error::LimitExceeded`] for `file`.
    pub(crate) fn check(&self, limit: Limit, value: u64, file: &Path) -> Result<()> {
        if value > self.get(limit) { Err(self.exceeded(limit, value, file)) } else { Ok(()) }
    }

    /// The [`Error::LimitExceeded`] for `value` over `limit` in `file`: the one place that error
    /// is built.
    pub(crate) fn exceeded(&self, limit: Limit, value: u64, file: &Path) -> Error {
        Error::LimitExceeded { file: file.to_path_buf(), limit, limit_value: self.get(limit), value }
    }

    /// [`exceeded`](Limits::exceeded) for a guest that reported `limit` broken, with the value it
    /// named, or one past the limit when it named none (the value is the guest's claim: only a
    /// report of it, never used to size anything).
    pub(crate) fn exceeded_by_guest(&self, limit: Limit, value: Option<u64>, file: &Path) -> Error {
        self.exceeded(limit, value.unwrap_or(self.get(limit).saturating_add(1)), file)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: Self::DEFAULT_MAX_FILE_BYTES,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
            max_tensors: Self::DEFAULT_MAX_TENSORS,
            max_shards: Self::DEFAULT_MAX_SHARDS,
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            guest_memory_bytes: Self::DEFAULT_GUEST_MEMORY_BYTES,
            guest_time: Self::DEFAULT_GUEST_TIME,
        }
    }
}

/// Names one field of [`Limits`], for errors and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_file_bytes`].
    MaxFileBytes,
    /// [`Limits::max_header_bytes`].
    MaxHeaderBytes,
    /// [`Limits::max_tensors`].
    MaxTensors,
    /// [`Limits::max_shards`].
    MaxShards,
    /// [`Limits::max_pixels`].
    MaxPixels,
    /// [`Limits::guest_memory_bytes`].
    GuestMemoryBytes,
    /// [`Limits::guest_time`], in milliseconds.
    GuestTimeMillis,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 7] = [
        Limit::MaxFileBytes,
        Limit::MaxHeaderBytes,
        Limit::MaxTensors,
        Limit::MaxShards,
        Limit::MaxPixels,
        Limit::GuestMemoryBytes,
        Limit::GuestTimeMillis,
    ];

    /// The field's name, e.g. `"max_header_bytes"`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxFileBytes => "max_file_bytes",
            Limit::MaxHeaderBytes => "max_header_bytes",
            Limit::MaxTensors => "max_tensors",
            Limit::MaxShards => "max_shards",
            Limit::MaxPixels => "max_pixels",
            Limit::GuestMemoryBytes => "guest_memory_bytes",
            Limit::GuestTimeMillis => "guest_time_ms",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
