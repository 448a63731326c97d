//! Machine-readable reports (feature `serde`): one [`FileReport`] per inspected file and a
//! closing [`Summary`], the records `sandload inspect --json` prints one per line. Built from the
//! library's own types ([`Receipt`], [`RawInfo`], [`TensorInfo`], [`Error`], ...), so a pipeline
//! that embeds the library logs exactly what the CLI prints.
//!
//! Every record carries [`SCHEMA_VERSION`]; with the `schema` feature, [`json_schema`] returns
//! the JSON Schema of a record (committed as `schema/inspect.schema.json` and checked by the
//! tests against the CLI's real output).
//!
//! ```
//! # fn main() -> sandload::Result<()> {
//! use sandload::report::{FileReport, Summary, Verdict};
//! let sandbox = sandload::Sandbox::new()?;
//! let input = sandload::Input::from_bytes(sandload_samples::small_checkpoint(), "model.safetensors");
//! let (result, receipt) = sandbox.open_with_receipt(input);
//! let report = FileReport::new("model.safetensors", result, Some(receipt), true);
//! assert_eq!(report.verdict, Verdict::Accepted);
//! let line = serde_json::to_string(&report).unwrap();
//! assert!(line.starts_with(r#"{"schema_version":1,"path":"model.safetensors","verdict":"accepted""#));
//!
//! let mut summary = Summary::default();
//! summary.add(&report);
//! assert_eq!((summary.files, summary.accepted), (1, 1));
//! # Ok(()) }
//! ```

pub(crate) mod serialize;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::formats::picture::DecodedImage;
use crate::formats::raw::{RawImage, RawInfo};
use crate::formats::safetensors::{Checkpoint, TensorInfo};
use crate::formats::sharded::ShardedCheckpoint;
use crate::open::Opened;
use crate::receipt::Receipt;
use crate::refusal::PickleReport;
use crate::sniff::Format;

/// `text` for terminals and logs, by the rule the library applies to everything it reports that
/// came from a file: C0/C1 controls, DEL, the line and paragraph separators and the
/// bidirectional controls written as Rust escapes (`\n`, `\u{1b}`, `\u{202e}`). Idempotent, so
/// text the library already escaped is unchanged. The CLI's human output and messages use it.
///
/// ```
/// assert_eq!(sandload::report::printable(&"a\u{1b}[31mb\u{202e}"), "a\\u{1b}[31mb\\u{202e}");
/// ```
pub fn printable(text: &dyn std::fmt::Display) -> String {
    crate::error::printable(&text.to_string())
}

/// One serialized JSON line with every character [`printable`] escapes that serde_json leaves
/// raw (it escapes only C0, `"` and `\\`) written as `\uXXXX`. Those characters can only occur
/// inside strings (the JSON syntax around them is ASCII) and are all in the BMP, so the result
/// is the same JSON value, safe to print. `inspect --json` writes its records through it.
///
/// ```
/// let line = serde_json::to_string("x\u{202e}y").unwrap();
/// assert_eq!(sandload::report::json_safe(&line), r#""x\u202ey""#);
/// ```
pub fn json_safe(line: &str) -> String {
    use crate::error::unsafe_char;
    if !line.contains(unsafe_char) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_char(c) {
            out += &format!("\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// The version of the record layout. Raised whenever a field is renamed, removed or changes
/// meaning; adding an optional field does not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of `inspect --json`: a file's report, or the closing summary.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Record {
    /// One input.
    File(Box<FileReport>),
    /// The last line.
    Summary(SummaryRecord),
}

/// Accepted or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// sandload accepts the file (a safetensors checkpoint, a decodable RAW file or image, a
    /// consistent sharded checkpoint).
    Accepted,
    /// The file was refused, or could not be read (see the error's `kind`).
    Rejected,
}

/// What sandload found in one file (or one sharded checkpoint, with a report per shard).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[non_exhaustive]
pub struct FileReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The path as given (lossy UTF-8).
    pub path: String,
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// The format recognised from content (`unknown` if the file could not be read).
    pub format: Format,
    /// Why it was rejected; `null` when accepted.
    pub error: Option<Error>,
    /// For pickles and the formats that carry them: what unpickling would import and call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickle: Option<PickleRecord>,
    /// For an accepted RAW file: its metadata, every field checked by the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawRecord>,
    /// For an accepted image: dimensions and pixel layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRecord>,
    /// For an accepted checkpoint (or shard): its tensors in file order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensors: Option<Vec<TensorRecord>>,
    /// For an accepted checkpoint: its `__metadata__`; for a sharded one, the index's metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// For an accepted checkpoint: the JSON header's length in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_len: Option<u64>,
    /// For a sharded checkpoint: tensors over all shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor_count: Option<u64>,
    /// For a sharded checkpoint: the index's `metadata.total_size`, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    /// For a sharded checkpoint: one report per shard, in the index's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<FileReport>>,
    /// What the sandbox did: guest, limits, peak guest memory, time. Absent for a sharded
    /// checkpoint (each shard has its own) and for a file that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// A [`PickleReport`] with its triage hint.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PickleRecord {
    /// What the walk found.
    #[serde(flatten)]
    pub report: PickleReport,
    /// [`PickleReport::verdict_hint`].
    pub verdict_hint: String,
}

/// [`RawInfo`] plus, with digests on, the SHA-256 of the decoded samples (u16 little-endian).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RawRecord {
    /// The metadata.
    #[serde(flatten)]
    pub info: RawInfo,
    /// Hex SHA-256 of the samples, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels_sha256: Option<String>,
}

/// A decoded image's shape.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ImageRecord {
    /// The decoder's name for the format (`png`, `jpeg`, `tiff`, `bigtiff`, `webp`; `preview`).
    pub decoder: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixel layout: colour and bits per sample (`Rgb8`, `L16`, `Rgba32F`, `L32`, `LI16` for
    /// signed, `L64F`, `L1` for bilevel, `Cmyk8`, ...), as `image` names the layouts it has.
    pub color_type: String,
    /// EXIF orientation 1-8 ([`DecodedImage::orientation`]).
    pub orientation: u16,
    /// Size of the embedded ICC profile in bytes, if the file has one.
    pub icc_profile_bytes: Option<u64>,
    /// Hex SHA-256 of the decoded pixels in that layout (native-endian samples, row-major), when
    /// asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels_sha256: Option<String>,
}

/// [`TensorInfo`] plus, with digests on, the SHA-256 of the tensor's bytes.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TensorRecord {
    /// Name, dtype, shape, byte range.
    #[serde(flatten)]
    pub info: TensorInfo,
    /// Hex SHA-256 of the tensor's bytes, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The closing record of a run.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct SummaryRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The counts.
    pub summary: Summary,
}

/// Counts over the files of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Summary {
    /// Inputs reported.
    pub files: u64,
    /// Accepted inputs.
    pub accepted: u64,
    /// Rejected inputs (refused or unreadable).
    pub rejected: u64,
    /// Rejected inputs per error kind ([`Error::kind`]).
    pub by_kind: BTreeMap<String, u64>,
    /// Rejected inputs per rule ([`Error::rule`]), for errors that name one.
    pub by_rule: BTreeMap<String, u64>,
    /// Inputs per format, accepted or not.
    pub by_format: BTreeMap<String, u64>,
}

impl Summary {
    /// Counts one report.
    pub fn add(&mut self, report: &FileReport) {
        self.files += 1;
        match report.verdict {
            Verdict::Accepted => self.accepted += 1,
            Verdict::Rejected => self.rejected += 1,
        }
        if let Some(e) = &report.error {
            *self.by_kind.entry(e.kind().to_string()).or_default() += 1;
            if let Some(rule) = e.rule() {
                *self.by_rule.entry(rule.to_string()).or_default() += 1;
            }
        }
        *self.by_format.entry(report.format.name().to_string()).or_default() += 1;
    }

    /// The record to print last.
    pub fn record(self) -> SummaryRecord {
        SummaryRecord { schema_version: SCHEMA_VERSION, summary: self }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl FileReport {
    fn empty(path: &Path, verdict: Verdict, format: Format, error: Option<Error>) -> FileReport {
        FileReport {
            schema_version: SCHEMA_VERSION,
            path: path.display().to_string(),
            verdict,
            format,
            error,
            pickle: None,
            raw: None,
            image: None,
            tensors: None,
            metadata: None,
            header_len: None,
            tensor_count: None,
            total_size: None,
            shards: None,
            receipt: None,
        }
    }

    /// The report of one [`Sandbox::open`](crate::Sandbox::open) (or `open_with_receipt`)
    /// result. With `digest`, every tensor's bytes and every decoded frame's pixels are hashed
    /// (SHA-256).
    pub fn new(path: impl AsRef<Path>, result: crate::Result<Opened>, receipt: Option<Receipt>, digest: bool) -> Self {
        let format = receipt.as_ref().map_or(Format::Unknown, |r| r.format);
        let mut report = match result {
            Err(e) => {
                let pickle = e
                    .pickle_report()
                    .map(|p| PickleRecord { verdict_hint: p.verdict_hint().to_string(), report: p.clone() });
                let mut report = FileReport::empty(path.as_ref(), Verdict::Rejected, format, Some(e));
                report.pickle = pickle;
                report
            }
            Ok(opened) => FileReport::opened(path.as_ref(), &opened, format, digest),
        };
        report.receipt = receipt;
        report
    }

    /// The report of an accepted file, from a borrow of what [`Sandbox::open_with_receipt`]
    /// opened, so the caller keeps using it (the same record as [`FileReport::new`] with `Ok`).
    ///
    /// [`Sandbox::open_with_receipt`]: crate::Sandbox::open_with_receipt
    pub fn accepted(path: impl AsRef<Path>, opened: &Opened, receipt: Receipt, digest: bool) -> Self {
        let mut report = FileReport::opened(path.as_ref(), opened, receipt.format, digest);
        report.receipt = Some(receipt);
        report
    }

    fn opened(path: &Path, opened: &Opened, format: Format, digest: bool) -> Self {
        let mut report = FileReport::empty(path, Verdict::Accepted, format, None);
        match opened {
            Opened::Checkpoint(ckpt) => report.add_checkpoint(ckpt, digest),
            Opened::Raw(raw) => report.raw = Some(raw_record(raw, digest)),
            Opened::Image(image) => report.image = Some(image_record(image, digest)),
        }
        report
    }

    /// The report of a sharded checkpoint ([`Sandbox::open_sharded`](crate::Sandbox::open_sharded)):
    /// one verdict for the model, and when accepted one report per shard.
    pub fn sharded(path: impl AsRef<Path>, result: crate::Result<ShardedCheckpoint>, digest: bool) -> Self {
        match result {
            Err(e) => FileReport::empty(path.as_ref(), Verdict::Rejected, Format::SafetensorsIndex, Some(e)),
            Ok(model) => {
                let mut report = FileReport::empty(path.as_ref(), Verdict::Accepted, Format::SafetensorsIndex, None);
                report.tensor_count = Some(model.len() as u64);
                report.total_size = model.total_size();
                report.metadata = Some(model.metadata().clone());
                report.shards = Some(
                    model
                        .shards()
                        .iter()
                        .map(|shard| {
                            let mut r = FileReport::empty(shard.file(), Verdict::Accepted, Format::Safetensors, None);
                            r.add_checkpoint(shard, digest);
                            r.receipt = Some(shard.receipt().clone());
                            r
                        })
                        .collect(),
                );
                report
            }
        }
    }

    /// Whether the file was accepted.
    pub fn is_accepted(&self) -> bool {
        self.verdict == Verdict::Accepted
    }

    fn add_checkpoint(&mut self, ckpt: &Checkpoint, digest: bool) {
        let digests = match (digest, ckpt.has_data()) {
            (false, _) => None,
            (true, true) => Some(ckpt.iter().map(|view| sha256_hex(&view.data)).collect()),
            (true, false) => match streamed_digests(ckpt) {
                Ok(digests) => Some(digests),
                Err(e) => {
                    // The file changed or failed under the digest: a read error, not a verdict.
                    self.verdict = Verdict::Rejected;
                    self.error = Some(e);
                    None
                }
            },
        };
        let tensors = ckpt
            .tensors()
            .iter()
            .enumerate()
            .map(|(i, info)| TensorRecord {
                info: info.clone(),
                sha256: digests.as_ref().map(|d: &Vec<String>| d[i].clone()),
            })
            .collect();
        self.tensors = Some(tensors);
        self.metadata = ckpt.metadata().cloned();
        self.header_len = Some(ckpt.header_len());
    }
}

/// The SHA-256 of each tensor of a checkpoint whose data stayed in the file, streamed through in
/// 1 MiB pieces (tensors are contiguous and in offset order, as validation guarantees).
fn streamed_digests(ckpt: &Checkpoint) -> crate::Result<Vec<String>> {
    let tensors = ckpt.tensors();
    let mut hashers: Vec<Sha256> = tensors.iter().map(|_| Sha256::new()).collect();
    let mut t = 0usize;
    ckpt.stream_data(1 << 20, |offset, mut piece| {
        let mut at = offset;
        while !piece.is_empty() {
            while t < tensors.len() && tensors[t].data_offsets.1 <= at {
                t += 1;
            }
            let Some(info) = tensors.get(t) else { break };
            let take = ((info.data_offsets.1 - at) as usize).min(piece.len());
            hashers[t].update(&piece[..take]);
            piece = &piece[take..];
            at += take as u64;
        }
    })?;
    Ok(hashers.into_iter().map(|h| h.finalize().iter().map(|b| format!("{b:02x}")).collect()).collect())
}

fn raw_record(raw: &RawImage, digest: bool) -> RawRecord {
    RawRecord { info: raw.info().clone(), pixels_sha256: digest.then(|| sha256_hex(raw.samples())) }
}

fn image_record(image: &DecodedImage, digest: bool) -> ImageRecord {
    ImageRecord {
        decoder: image.format.clone(),
        width: image.pixels.width(),
        height: image.pixels.height(),
        color_type: image.pixels.layout().name(),
        orientation: image.orientation,
        icc_profile_bytes: image.icc_profile.as_ref().map(|p| p.len() as u64),
        pixels_sha256: digest.then(|| sha256_hex(image.pixels.as_bytes())),
    }
}

/// The JSON Schema (draft 2020-12) of one [`Record`], as committed in
/// `schema/inspect.schema.json`.
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Record).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), "sandload inspect --json record".into());
    }
    schema
}
