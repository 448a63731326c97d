//! What the host does with a guest's answer before anyone sees it: the one place that turns a
//! rule a guest reports broken into an [`Error`], reads bulk output out of guest memory, and
//! writes the [`Receipt`] of a file's calls.
//!
//! Every guest's answer is hostile. The format modules re-check the numbers of their own
//! responses (`validate_table`, `validate_frame`, `to_pixels`) and report a broken check as a
//! [`Violation`]; this module turns violations and guest-reported rules into errors, the same way
//! for every guest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sandload_abi::raw::Region;
use sandload_abi::{GuestError, Rule};

use crate::error::{Error, Result, printable};
use crate::input::Input;
use crate::limits::{Limit, Limits};
use crate::receipt::{Outcome, Receipt};
use crate::refusal;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, Sniffed, sniff};

/// A rule a guest's output broke on the host's re-check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(hidden)]
pub struct Violation {
    pub rule: &'static str,
    pub offset: Option<u64>,
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(rule: Rule, detail: String) -> Violation {
        Violation { rule: rule.name(), offset: None, detail }
    }
}

/// The bytes of a guest memory region, which must be exactly `expected` bytes long.
pub(crate) fn region_bytes<'m>(
    memory: &'m [u8],
    region: Region,
    expected: u64,
    what: &str,
) -> std::result::Result<&'m [u8], Violation> {
    Ok(&memory[region_range(memory, region, expected, what)?])
}

/// Where a guest memory region lies in `memory`, checked: exactly `expected` bytes long and
/// inside the memory.
pub(crate) fn region_range(
    memory: &[u8],
    region: Region,
    expected: u64,
    what: &str,
) -> std::result::Result<std::ops::Range<usize>, Violation> {
    if u64::from(region.len) != expected {
        return Err(Violation::new(
            Rule::RawMalformed,
            format!("guest returned {} bytes of {what}, the dimensions need exactly {expected}", region.len),
        ));
    }
    let start = region.ptr as usize;
    match start.checked_add(region.len as usize) {
        Some(end) if end <= memory.len() => Ok(start..end),
        _ => Err(Violation::new(
            Rule::RawMalformed,
            format!(
                "guest's {what} at {:#x}+{} lie outside its memory ({} bytes)",
                region.ptr,
                region.len,
                memory.len()
            ),
        )),
    }
}

/// The error for a host-side check that a guest's output failed.
pub(crate) fn violation(file: &Path, format: Format, limits: &Limits, v: Violation) -> Error {
    if v.rule == Rule::PixelLimit.name() {
        // validate_frame and to_pixels carry the pixel count in `offset`.
        return limits.exceeded_by_guest(Limit::MaxPixels, v.offset, file);
    }
    Error::malformed(file, format, v.rule, v.offset, v.detail)
}

/// The error for a rule `guest` reports as broken in `file` (sniffed as `format`): the one
/// mapping from guest rules to errors, for every guest.
pub(crate) fn guest_rejection(file: &Path, format: Format, limits: &Limits, guest: Guest, e: GuestError) -> Error {
    let over = |limit: Limit| limits.exceeded_by_guest(limit, e.value, file);
    match e.rule {
        Rule::PixelLimit => over(Limit::MaxPixels),
        Rule::TooManyTensors => over(Limit::MaxTensors),
        Rule::HeaderOverLimit => over(Limit::MaxHeaderBytes),
        Rule::ShardCountOverLimit => over(Limit::MaxShards),
        // The host's own request was wrong: a bug, not the file's fault.
        Rule::BadRequest => Error::Internal(format!("{} guest: {}", guest.name(), printable(&e.detail))),
        Rule::RawNotRecognised => refusal::refuse_not_raw(file, format, &e.detail),
        Rule::ImageIsRaw => refusal::refuse_raw_as_image(file, format, &e.detail),
        Rule::ImageNotRecognised => refusal::refuse_not_image(file, format, &e.detail),
        Rule::ImageUnsupported => Error::Unsupported {
            file: file.to_path_buf(),
            operation: "decode this image",
            reason: printable(&e.detail),
        },
        Rule::RawUnsupported => Error::Unsupported {
            file: file.to_path_buf(),
            operation: "decode this camera RAW file",
            reason: printable(&e.detail),
        },
        Rule::PicklePolyglot => refusal::refuse_polyglot(
            file,
            Format::Pickle,
            format!("a safetensors file that is also a Python pickle: {}", printable(&e.detail)),
            Rule::PicklePolyglot.name(),
            e.offset,
        ),
        rule => Error::malformed(file, format, rule.name(), e.offset, e.detail),
    }
}

impl GuestStats {
    /// The receipt of a file whose calls this recorded, ending in `result`.
    pub(crate) fn receipt<T>(
        &self,
        sandbox: &Sandbox,
        file: PathBuf,
        format: Format,
        started: Instant,
        result: &Result<T>,
    ) -> Receipt {
        let receipt = Receipt {
            file,
            format,
            guest: self.guest,
            limits: sandbox.limits().clone(),
            pooling: sandbox.pooling(),
            guest_peak_memory_bytes: self.peak_memory_bytes,
            guest_time: self.guest_time,
            total_time: started.elapsed(),
            outcome: match result {
                Ok(_) => Outcome::Accepted,
                Err(e) => Outcome::Rejected { kind: e.kind() },
            },
        };
        #[cfg(feature = "tracing")]
        crate::trace::file(&receipt, result.as_ref().err());
        receipt
    }
}

impl Sandbox {
    /// Runs `f` on `input` and builds the [`Receipt`] of what it did, accepted or not.
    pub(crate) fn with_receipt<T>(
        &self,
        input: Input,
        f: impl FnOnce(&Sandbox, Input, &mut GuestStats, &mut Format) -> Result<T>,
    ) -> (Result<T>, Receipt) {
        let started = Instant::now();
        let file = input.name().to_path_buf();
        let mut stats = GuestStats::default();
        let mut format = Format::Unknown;
        let result = f(self, input, &mut stats, &mut format);
        let receipt = stats.receipt(self, file, format, started, &result);
        (result, receipt)
    }

    /// [`with_receipt`](Sandbox::with_receipt) for a guest that decodes the whole file (RAW
    /// files, images): `f` gets the file's name, its bytes (read within `max_file_bytes` and the
    /// guest's memory) and what they sniff as.
    pub(crate) fn with_whole_file<T>(
        &self,
        input: Input,
        f: impl FnOnce(&Sandbox, &Path, &[u8], &Sniffed, &mut GuestStats, &mut Format) -> Result<T>,
    ) -> (Result<T>, Receipt) {
        self.with_receipt(input, |sandbox, input, stats, format| {
            let (file, data) = input.read_for_guest(sandbox.limits(), sandbox.data_access())?;
            f(sandbox, &file, &data, &sniff(&data), stats, format)
        })
    }
}
