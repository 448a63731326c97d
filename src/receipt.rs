//! What the sandbox did for one file, for logs and alerts.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;
use crate::sniff::Format;

/// A record of one call: what ran, under which limits, what it cost and how it ended.
///
/// Every call can produce one, accepted or not (see
/// [`Sandbox::open_safetensors_with_receipt`](crate::Sandbox::open_safetensors_with_receipt)), so
/// that a pipeline can log it and alert on, say, guests that approach their memory cap.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Receipt {
    /// The file.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::report::serialize::lossy_path"))]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub file: PathBuf,
    /// The format recognised from content.
    pub format: Format,
    /// The guest that parsed it; `None` if the file was refused before any guest ran.
    pub guest: Option<&'static str>,
    /// The limits in force.
    pub limits: Limits,
    /// Whether the guest ran in a pooled instance slot.
    pub pooling: bool,
    /// Largest linear memory the guest reached, in bytes.
    pub guest_peak_memory_bytes: u64,
    /// Time from store creation to the guest's return (or trap).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "guest_time_us", serialize_with = "crate::report::serialize::micros")
    )]
    #[cfg_attr(feature = "schema", schemars(with = "u64"))]
    pub guest_time: Duration,
    /// Time for the whole call, including reading the file and host-side validation.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "total_time_us", serialize_with = "crate::report::serialize::micros")
    )]
    #[cfg_attr(feature = "schema", schemars(with = "u64"))]
    pub total_time: Duration,
    /// How the call ended.
    pub outcome: Outcome,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "serde", serde(tag = "verdict", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Outcome {
    /// The file was accepted.
    Accepted,
    /// The file was rejected; `kind` is [`Error::kind`](crate::Error::kind).
    Rejected {
        /// The error kind.
        kind: &'static str,
    },
}
