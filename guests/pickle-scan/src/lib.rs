//! sandload guest: what would unpickling this do? Walks each pickle stream the host hands in with
//! `sandload_abi::pickle::walk_stream` — opcodes and argument lengths only, nothing executed,
//! nothing imported — and reports the globals it would import and the calls it would make.
//!
//! This runs in a guest because the walk parses untrusted bytes. It is only ever used to
//! *describe* a file sandload refuses; a pickle is never accepted, whatever the walk finds.

use sandload_abi::pickle::{WalkLimits, walk_stream};
use sandload_abi::pickle_scan::{MAX_STREAM_BYTES, MAX_STREAMS, Request, Response};
use sandload_abi::{GuestError, Rule};

sandload_abi::guest_main!(Request, scan);

fn bad_request(detail: String) -> GuestError {
    GuestError { rule: Rule::BadRequest, offset: None, value: None, detail }
}

/// Walks every stream of `payload`, in the order and with the lengths the request gives.
pub fn scan(req: Request, payload: &[u8]) -> Response {
    if req.streams.len() > MAX_STREAMS {
        return Err(bad_request(format!("{} streams, at most {MAX_STREAMS}", req.streams.len())));
    }
    let limits = WalkLimits::default();
    let mut walks = Vec::with_capacity(req.streams.len());
    let mut at = 0usize;
    for stream in &req.streams {
        let end = usize::try_from(stream.len)
            .ok()
            .filter(|_| stream.len <= MAX_STREAM_BYTES)
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= payload.len())
            .ok_or_else(|| bad_request(format!("stream of {} bytes does not fit the payload", stream.len)))?;
        walks.push(walk_stream(&payload[at..end], &limits));
        at = end;
    }
    if at != payload.len() {
        return Err(bad_request(format!("streams cover {at} of {} payload bytes", payload.len())));
    }
    Ok(walks)
}
