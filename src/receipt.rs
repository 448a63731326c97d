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
#[non_exhaustive]
pub struct Receipt {
    /// The file.
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
    pub guest_time: Duration,
    /// Time for the whole call, including reading the file and host-side validation.
    pub total_time: Duration,
    /// How the call ended.
    pub outcome: Outcome,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
