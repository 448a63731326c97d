//! safetensors checkpoints: header validated in a guest, re-validated here, data zero-copy.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use sandload_abi::Rule;
use sandload_abi::safetensors::{MAX_RANK, PICKLE_WINDOW, Request, Response, Table};

use crate::error::{Error, Result};
use crate::input::{DataAccess, Input};
use crate::limits::{Limit, Limits};
use crate::receipt::Receipt;
use crate::refusal::refuse_as_checkpoint;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, ReadAt, sniff};
use crate::verdict::{Violation, guest_rejection};

pub use sandload_abi::safetensors::Dtype;

const N_LEN: u64 = 8;

/// A validated safetensors checkpoint. Tensor data is shared, not copied: every
/// [`TensorView::data`] is a slice of one mapping (or one read) of the file, unless it was
/// opened with [`DataAccess::Verdict`](crate::DataAccess::Verdict), which leaves the tensor bytes
/// in the file ([`Checkpoint::has_data`]).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    file: PathBuf,
    data: Bytes,
    /// With `DataAccess::Verdict`: the file, and where its data section starts in it.
    on_disk: Option<(std::sync::Arc<Input>, u64)>,
    tensors: Vec<TensorInfo>,
    /// Indices into `tensors`, sorted by name: lookups by binary search, without a second copy
    /// of every name (a 100k-tensor header has 100k of them).
    by_name: Vec<u32>,
    metadata: Option<BTreeMap<String, String>>,
    header_len: u64,
    receipt: Receipt,
}

/// Name, type, shape and location of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    #[cfg_attr(feature = "schema", schemars(with = "crate::report::serialize::DtypeName"))]
    pub dtype: Dtype,
    /// Dimensions, outermost first (C order).
    pub shape: Vec<u64>,
    /// Byte range within the data section (after the header).
    pub data_offsets: (u64, u64),
}

/// One tensor with its bytes (little-endian, C order), sharing the checkpoint's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// The file the tensor is in (for errors).
    pub file: &'a Path,
    /// The tensor's name.
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: &'a [u64],
    /// The tensor's bytes; empty when the checkpoint was opened with
    /// [`DataAccess::Verdict`](crate::DataAccess::Verdict) (see [`Checkpoint::read_tensor`]).
    pub data: Bytes,
}

impl Checkpoint {
    /// The file this checkpoint came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// All tensors, in data-offset order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True if the checkpoint holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor called `name`, or `None`.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let i = self.by_name.binary_search_by(|&i| self.tensors[i as usize].name.as_str().cmp(name)).ok()?;
        Some(self.view(&self.tensors[self.by_name[i] as usize]))
    }

    /// Every tensor with its data, in data-offset order.
    pub fn iter(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.tensors.iter().map(|t| self.view(t))
    }

    /// The header's `__metadata__` map, if it has one.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Length of the JSON header in bytes.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// What the sandbox did to open this checkpoint.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// Whether the tensor bytes are in memory: `false` for a checkpoint opened with
    /// [`DataAccess::Verdict`](crate::DataAccess::Verdict), whose [`TensorView::data`] are empty
    /// (the conversions then return [`Error::Unsupported`]); read them with
    /// [`read_tensor`](Checkpoint::read_tensor) or [`stream_data`](Checkpoint::stream_data).
    pub fn has_data(&self) -> bool {
        self.on_disk.is_none()
    }

    /// The bytes of the tensor called `name` (`None` if there is none): a slice of the data in
    /// memory, or, for a checkpoint opened with `DataAccess::Verdict`, one read of exactly that
    /// tensor from the file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read or is now shorter than when it was validated.
    pub fn read_tensor(&self, name: &str) -> Result<Option<Bytes>> {
        let Some(view) = self.tensor(name) else { return Ok(None) };
        let Some((input, data_start)) = &self.on_disk else { return Ok(Some(view.data)) };
        let i = self.by_name.binary_search_by(|&i| self.tensors[i as usize].name.as_str().cmp(name)).ok();
        let t = &self.tensors[self.by_name[i.expect("the view exists")] as usize];
        let (begin, end) = t.data_offsets;
        // validate_table bounded every offset by the file's length, and a tensor held in memory
        // is what the caller asked for.
        let len = usize::try_from(end - begin).map_err(|_| {
            Error::io(&self.file, std::io::Error::new(std::io::ErrorKind::OutOfMemory, "tensor larger than memory"))
        })?;
        input.read_exact_at(data_start + begin, len).map(Some)
    }

    /// Hands the data section to `f` in order, `chunk` bytes at a time (the last piece may be
    /// shorter), with each piece's offset in the data section: how a checkpoint opened with
    /// `DataAccess::Verdict` is hashed or copied without holding it whole. In memory, the pieces
    /// are slices of it.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read or changed size since it was validated.
    pub fn stream_data(&self, chunk: usize, mut f: impl FnMut(u64, &[u8])) -> Result<()> {
        let chunk = chunk.max(1);
        let total = self.tensors.last().map_or(0, |t| t.data_offsets.1);
        let mut at = 0u64;
        while at < total {
            let n = usize::try_from((total - at).min(chunk as u64)).unwrap_or(chunk);
            match &self.on_disk {
                Some((input, data_start)) => f(at, &input.read_exact_at(data_start + at, n)?),
                None => f(at, &self.data[at as usize..at as usize + n]),
            }
            at += n as u64;
        }
        Ok(())
    }

    fn view<'a>(&'a self, t: &'a TensorInfo) -> TensorView<'a> {
        // Offsets were checked against the file's length in validate_table; without the data in
        // memory, views are empty.
        let (begin, end) = (t.data_offsets.0 as usize, t.data_offsets.1 as usize);
        let data = if self.on_disk.is_some() { Bytes::new() } else { self.data.slice(begin..end) };
        TensorView { file: &self.file, name: &t.name, dtype: t.dtype, shape: &t.shape, data }
    }
}

impl Sandbox {
    /// Opens an untrusted safetensors checkpoint.
    ///
    /// The format is recognised from content: pickles, PyTorch zip/tar files, NumPy files and
    /// other formats are refused with [`Error::Refused`] whatever the file is called. The header is
    /// parsed and validated in the `safetensors-header` guest (which never sees tensor data);
    /// the table it returns is then re-validated here against the real file before any tensor is
    /// exposed.
    ///
    /// # Errors
    /// [`Error::Refused`], [`Error::LimitExceeded`], [`Error::Malformed`] (with the rule and
    /// offset), [`Error::GuestTrap`], [`Error::GuestTimeout`], [`Error::GuestOutOfMemory`],
    /// [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// // A one-tensor file: {"w": F32 [2]}.
    /// let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    /// let mut file = (header.len() as u64).to_le_bytes().to_vec();
    /// file.extend_from_slice(header);
    /// file.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]); // 1.0, 2.0
    ///
    /// let sandbox = sandload::Sandbox::new()?;
    /// let ckpt = sandbox.open_safetensors(sandload::Input::from_bytes(file, "w.safetensors"))?;
    /// let w = ckpt.tensor("w").unwrap();
    /// assert_eq!((w.dtype, w.shape), (sandload::Dtype::F32, &[2u64][..]));
    /// assert_eq!(&w.data[..4], &1.0f32.to_le_bytes());
    /// # Ok(()) }
    /// ```
    pub fn open_safetensors(&self, input: Input) -> Result<Checkpoint> {
        self.open_safetensors_with_receipt(input).0
    }

    /// [`open_safetensors`](Sandbox::open_safetensors), also returning the [`Receipt`] when the
    /// file is rejected.
    pub fn open_safetensors_with_receipt(&self, input: Input) -> (Result<Checkpoint>, Receipt) {
        let started = Instant::now();
        let file = input.name().to_path_buf();
        let mut stats = GuestStats::default();
        let mut format = Format::Unknown;
        match self.open_inner(input, &mut stats, &mut format, started) {
            Ok(ckpt) => {
                let receipt = ckpt.receipt.clone();
                (Ok(ckpt), receipt)
            }
            Err(e) => {
                let result = Err(e);
                let receipt = stats.receipt(self, file, format, started, &result);
                (result, receipt)
            }
        }
    }

    fn open_inner(
        &self,
        input: Input,
        stats: &mut GuestStats,
        format: &mut Format,
        started: Instant,
    ) -> Result<Checkpoint> {
        let limits = self.limits();
        let file = input.name().to_path_buf();
        let len = input.len()?;
        limits.check(Limit::MaxFileBytes, len, &file)?;
        // With DataAccess::Verdict a file is read in pieces (the head here, the polyglot checks'
        // reads later), never whole unless the pickle walk needs it; otherwise it is one read or
        // mapping that the checkpoint's tensors then share.
        let verdict = self.data_access() == DataAccess::Verdict && !input.in_memory();
        let (data, input) = if verdict {
            let head = input.read_exact_at(0, Self::verdict_head(&input, len, limits)?)?;
            (head, Some(std::sync::Arc::new(input)))
        } else {
            (input.contents(len, self.data_access())?, None)
        };
        let sniffed = sniff(&data);
        *format = sniffed.format;
        if let Some(refusal) = refuse_as_checkpoint(&file, &sniffed, len) {
            return Err(self.describe_pickles(refusal, &data, stats));
        }
        // Safetensors-shaped, or too short to be anything: from here on the parser names the rule.
        *format = Format::Safetensors;

        // The host reads the length prefix only to bound what it copies into the guest; the
        // guest parses and judges it. A prefix over the limit is refused before any copy.
        let claimed = data.get(..N_LEN as usize).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        if let Some(n) = claimed {
            limits.check(Limit::MaxHeaderBytes, n, &file)?;
        }
        // Prefix, header, and a window of tensor data for the guest's pickle walk.
        let payload_len = claimed.map_or(len, |n| (N_LEN + n).saturating_add(PICKLE_WINDOW).min(len)) as usize;
        let request =
            Request { file_len: len, max_header_bytes: limits.max_header_bytes, max_tensors: limits.max_tensors };
        let call = |payload: &[u8], stats: &mut GuestStats| -> Result<Response> {
            self.call(Guest::SafetensorsHeader, &file, Format::Safetensors, &request, payload, stats, |response, _| {
                Ok(response)
            })
        };
        let head = data.get(..payload_len).ok_or_else(|| Error::Internal("head shorter than the payload".into()))?;
        let mut response = call(head, stats)?;
        // The pickle walk from byte 0 was still going where the window ended (e.g. a protocol-0
        // text argument running over zero-filled tensor data): walk the whole file instead, when
        // the guest can hold it, rather than refuse a file that may be fine.
        if let Err(e) = &response {
            let undecided = e.rule == Rule::PicklePolyglot && e.value == Some(1);
            if undecided && (payload_len as u64) < len && len <= limits.guest_memory_bytes / 2 {
                response = match &input {
                    Some(input) => call(&input.read_exact_at(0, len as usize)?, stats)?,
                    None => call(&data, stats)?,
                };
            }
        }
        let table = response.map_err(|e| {
            self.describe_pickles(guest_rejection(&file, *format, limits, Guest::SafetensorsHeader, e), &data, stats)
        })?;
        let layout = validate_table(&table, len, claimed.unwrap_or(0), limits)
            .map_err(|v| Error::malformed(&file, *format, v.rule, v.offset, v.detail))?;
        // Valid safetensors; now make sure no other loader reads these bytes as its own format.
        let other = match &input {
            Some(input) => {
                super::polyglot::refuse_other_format(&file, &Pieces { input, len: len as usize, head: &data })?
            }
            None => super::polyglot::refuse_other_format(&file, &data[..])?,
        };
        if let Some(refusal) = other {
            return Err(refusal);
        }

        let data_start = (N_LEN + layout.header_len) as usize;
        let (data, on_disk) = match input {
            Some(input) => (Bytes::new(), Some((input, data_start as u64))),
            None => (data.slice(data_start..), None),
        };
        let Table { tensors, metadata, .. } = table;
        let tensors: Vec<TensorInfo> = tensors
            .into_iter()
            .map(|t| TensorInfo { name: t.name, dtype: t.dtype, shape: t.shape, data_offsets: (t.begin, t.end) })
            .collect();
        // validate_table refused duplicate names. A header held in a wasm32 guest's memory (at
        // most 4 GiB, over 10 bytes per entry) cannot list u32::MAX tensors.
        let count = u32::try_from(tensors.len()).map_err(|_| Error::Internal("tensor count over u32".into()))?;
        let mut by_name: Vec<u32> = (0..count).collect();
        by_name.sort_unstable_by(|&a, &b| tensors[a as usize].name.cmp(&tensors[b as usize].name));
        let receipt = stats.receipt(self, file.clone(), *format, started, &Ok::<(), Error>(()));
        Ok(Checkpoint {
            file,
            data,
            on_disk,
            tensors,
            by_name,
            metadata: metadata.map(|m| m.into_iter().collect()),
            header_len: layout.header_len,
            receipt,
        })
    }
}

/// A file opened with `DataAccess::Verdict`, read piece by piece for the polyglot checks: the
/// head already read, anything else with `pread`.
struct Pieces<'a> {
    input: &'a Input,
    len: usize,
    head: &'a [u8],
}

impl ReadAt for Pieces<'_> {
    fn size(&self) -> usize {
        self.len
    }

    fn read(&self, at: usize, n: usize) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
        let Some(end) = at.checked_add(n).filter(|&end| end <= self.len) else { return Ok(None) };
        if let Some(bytes) = self.head.get(at..end) {
            return Ok(Some(std::borrow::Cow::Borrowed(bytes)));
        }
        Ok(Some(std::borrow::Cow::Owned(self.input.read_exact_at(at as u64, n)?.to_vec())))
    }
}

impl Sandbox {
    /// How much of a file `DataAccess::Verdict` reads first: for a safetensors-shaped file the
    /// prefix, the header (up to `max_header_bytes`) and the pickle window after it; for
    /// anything else the first MiB, from which it is recognised and refused.
    pub(crate) fn verdict_head(input: &Input, len: u64, limits: &Limits) -> Result<usize> {
        const OTHER: u64 = 1 << 20;
        let prefix = input.read_exact_at(0, len.min(N_LEN + 1) as usize)?;
        let head = match (prefix.get(..8), prefix.get(4..8)) {
            (Some(n), Some([0, 0, 0, 0])) => {
                let n = u64::from_le_bytes(n.try_into().expect("8 bytes")).min(limits.max_header_bytes);
                (N_LEN + n).saturating_add(PICKLE_WINDOW).max(OTHER.min(len))
            }
            _ => OTHER,
        };
        Ok(head.min(len) as usize)
    }

    /// Adds the pickle report (what unpickling would import and call) to a refusal of a pickle,
    /// a pickle polyglot or a format that carries pickles.
    fn describe_pickles(&self, mut refusal: Error, data: &[u8], stats: &mut GuestStats) -> Error {
        if let Error::Refused { file, format, what, pickle, rule, remedy, .. } = &mut refusal {
            if let Some(report) = self.pickle_report(file, data, *format, stats) {
                *what = format!("{what}; {}", report.summary());
                // A polyglot's remedy stays "re-save it"; a pickle's depends on what it holds.
                if rule.is_none() && *format == Format::Pickle {
                    *remedy = crate::refusal::pickle_remedy(&report.imports);
                }
                *pickle = Some(Box::new(report));
            }
        }
        refusal
    }
}

/// What the host learned from a table it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct Layout {
    pub header_len: u64,
    pub data_len: u64,
}

/// Re-checks a guest's table against the file: the guest is not trusted, so every number is
/// checked again with overflow-checked arithmetic. Public (hidden) for the fuzz targets.
///
/// `header_len` is the length prefix the host itself read from the file.
#[doc(hidden)]
pub fn validate_table(
    table: &Table,
    file_len: u64,
    header_len: u64,
    limits: &Limits,
) -> std::result::Result<Layout, Violation> {
    let bad = |rule: Rule, offset: Option<u64>, detail: String| Violation { rule: rule.name(), offset, detail };
    if table.header_len != header_len {
        return Err(bad(
            Rule::HeaderJson,
            Some(0),
            format!("guest reported header length {} but the file says {header_len}", table.header_len),
        ));
    }
    if header_len > limits.max_header_bytes {
        return Err(bad(Rule::HeaderOverLimit, Some(0), format!("header length {header_len} over max_header_bytes")));
    }
    let data_start = N_LEN.checked_add(header_len).filter(|&s| s <= file_len).ok_or_else(|| {
        bad(Rule::HeaderPastEof, Some(0), format!("header length {header_len} past end of file ({file_len} bytes)"))
    })?;
    let data_len = file_len - data_start;
    if table.tensors.len() as u64 > limits.max_tensors {
        return Err(bad(
            Rule::TooManyTensors,
            None,
            format!("{} tensors over max_tensors {}", table.tensors.len(), limits.max_tensors),
        ));
    }
    let mut names: HashSet<&str> = HashSet::with_capacity(table.tensors.len());
    let mut expected_begin = 0u64;
    for t in &table.tensors {
        if t.shape.len() > MAX_RANK {
            return Err(bad(
                Rule::RankOverLimit,
                None,
                format!("tensor {:?} has {} dimensions, at most {MAX_RANK}", t.name, t.shape.len()),
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(bad(Rule::DuplicateKey, None, format!("tensor name {:?} appears twice", t.name)));
        }
        if t.begin != expected_begin || t.end < t.begin {
            return Err(bad(
                Rule::InvalidOffset,
                data_start.checked_add(t.begin),
                format!(
                    "tensor {:?}: data_offsets [{}, {}], expected to start at {expected_begin}",
                    t.name, t.begin, t.end
                ),
            ));
        }
        if t.end > data_len {
            return Err(bad(
                Rule::IncompleteCoverage,
                Some(file_len),
                format!("tensor {:?} ends at data offset {} but the data section has {data_len} bytes", t.name, t.end),
            ));
        }
        let size = t.dtype.byte_len(&t.shape).map_err(|_| {
            bad(
                Rule::ShapeOverflow,
                None,
                format!("tensor {:?}: shape {:?} of {} has no valid byte size", t.name, t.shape, t.dtype.name()),
            )
        })?;
        if size != t.end - t.begin {
            return Err(bad(
                Rule::SizeMismatch,
                data_start.checked_add(t.begin),
                format!(
                    "tensor {:?}: {} x {:?} is {size} bytes, offsets span {}",
                    t.name,
                    t.dtype.name(),
                    t.shape,
                    t.end - t.begin
                ),
            ));
        }
        expected_begin = t.end;
    }
    if expected_begin != data_len {
        return Err(bad(
            Rule::IncompleteCoverage,
            data_start.checked_add(expected_begin),
            format!("tensors cover {expected_begin} of {data_len} data bytes"),
        ));
    }
    if let Some(meta) = &table.metadata {
        let mut keys: HashSet<&str> = HashSet::with_capacity(meta.len());
        for (k, _) in meta {
            if !keys.insert(k) {
                return Err(bad(Rule::DuplicateKey, None, format!("__metadata__ key {k:?} appears twice")));
            }
        }
    }
    Ok(Layout { header_len, data_len })
}
