//! One `tracing` span per file (feature `tracing`), so a service sees what the sandbox did for
//! each file in its own logs: the guest, limits, peak guest memory, time and verdict. Span and
//! events have the target and name `sandload::file`, for subscribers' filters
//! (`RUST_LOG=sandload::file=info`).

use crate::error::Error;
use crate::receipt::Receipt;

/// Emits the span of one finished call: every field of the receipt, and inside it one event,
/// `info` for an accepted file, `warn` for a refused one, `error` when the environment failed.
///
/// The span is opened when the receipt is made, at the end of the call, so its own duration is
/// not the call's: `guest_time_us` and `total_time_us` are.
pub(crate) fn file(receipt: &Receipt, error: Option<&Error>) {
    let limits = &receipt.limits;
    let span = tracing::info_span!(
        target: "sandload::file",
        "sandload::file",
        file = %receipt.file.display(),
        format = receipt.format.name(),
        guest = receipt.guest.unwrap_or("none"),
        pooling = receipt.pooling,
        guest_peak_memory_bytes = receipt.guest_peak_memory_bytes,
        guest_time_us = u64::try_from(receipt.guest_time.as_micros()).unwrap_or(u64::MAX),
        total_time_us = u64::try_from(receipt.total_time.as_micros()).unwrap_or(u64::MAX),
        max_file_bytes = limits.max_file_bytes,
        max_header_bytes = limits.max_header_bytes,
        max_tensors = limits.max_tensors,
        max_shards = limits.max_shards,
        max_pixels = limits.max_pixels,
        guest_memory_bytes = limits.guest_memory_bytes,
        guest_time_ms = u64::try_from(limits.guest_time.as_millis()).unwrap_or(u64::MAX),
        verdict = if error.is_none() { "accepted" } else { "rejected" },
        kind = error.map_or("", Error::kind),
        rule = error.and_then(Error::rule).unwrap_or(""),
    );
    let _entered = span.enter();
    match error {
        None => tracing::info!(target: "sandload::file", "accepted"),
        Some(e) if e.is_rejection() => tracing::warn!(target: "sandload::file", error = %e, "rejected"),
        Some(e) => tracing::error!(target: "sandload::file", error = %e, "failed"),
    }
}
