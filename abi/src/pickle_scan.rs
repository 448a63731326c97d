//! Messages of the `pickle-scan` guest: what unpickling a refused file would import and call,
//! found by the opcode walk of [`crate::pickle`] and never executed.
//!
//! Payload: the pickle streams of one file back to back — a pickle file itself, the `.pkl`
//! members of a PyTorch or TorchScript zip, the members of a legacy PyTorch tar — each at most
//! [`MAX_STREAM_BYTES`] long; the request gives their names and lengths in payload order.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::GuestError;
use crate::pickle::Walk;

/// Most bytes of one stream the host hands in (a longer pickle is walked up to here, and its walk
/// ends `Truncated`).
pub const MAX_STREAM_BYTES: u64 = 64 << 20;

/// Most streams per file.
pub const MAX_STREAMS: usize = 64;

/// One pickle stream of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Stream {
    /// Where it came from (e.g. `archive/data.pkl`), for the report.
    pub name: String,
    /// Its length in the payload.
    pub len: u64,
}

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// The streams, in payload order; their lengths add up to the payload's.
    pub streams: Vec<Stream>,
}

/// What the guest answers: one walk per stream, in order.
pub type Response = Result<Vec<Walk>, GuestError>;
