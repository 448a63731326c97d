//! What a refused pickle would have done: the globals unpickling would import and the calls it
//! would make, found by walking its opcodes in the `pickle-scan` guest. Nothing is executed and
//! nothing is imported; this only *describes* a file sandload refuses (as pickle scanners do),
//! it never accepts one.

use std::ops::Range;
use std::path::Path;

use sandload_abi::pickle::{End, Walk, WalkLimits};
use sandload_abi::pickle_scan::{MAX_STREAM_BYTES, MAX_STREAMS, Request, Response, Stream};

use crate::error::{Error, Result, printable};
use crate::refusal::PickleReport;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, pickle_streams};

impl Sandbox {
    /// Walks the pickles of a file refused as `format` in the `pickle-scan` guest. `None` when the
    /// format holds no pickle sandload can reach (e.g. a compressed one) or the scan itself fails
    /// (a trap or timeout of the scan only loses the description, never the refusal).
    /// The scan's guest call is added to `stats`, so the refusal's receipt shows it.
    pub(crate) fn pickle_report(
        &self,
        file: &Path,
        data: &[u8],
        format: Format,
        stats: &mut GuestStats,
    ) -> Option<PickleReport> {
        let streams = pickle_streams(data, format, MAX_STREAM_BYTES as usize, MAX_STREAMS);
        if streams.is_empty() {
            return None;
        }
        self.scan(file, data, &streams, stats).ok()
    }

    fn scan(
        &self,
        file: &Path,
        data: &[u8],
        streams: &[(String, Range<usize>)],
        stats: &mut GuestStats,
    ) -> Result<PickleReport> {
        let total: usize = streams.iter().map(|(_, r)| r.len()).sum();
        // The guest holds the payload and its walk state: keep the payload to a quarter of it.
        if total as u64 > self.limits().guest_memory_bytes / 4 {
            return Err(Error::Internal("pickle streams larger than a quarter of the guest memory".into()));
        }
        let mut payload = Vec::with_capacity(total);
        for (_, range) in streams {
            payload.extend_from_slice(&data[range.clone()]);
        }
        let request = Request {
            streams: streams.iter().map(|(name, r)| Stream { name: name.clone(), len: r.len() as u64 }).collect(),
        };
        let walks: Response =
            self.call(Guest::PickleScan, file, Format::Pickle, &request, &payload, stats, |r, _| Ok(r))?;
        let walks = walks.map_err(|e| Error::Internal(format!("pickle-scan guest: {}", printable(&e.detail))))?;
        validate_walks(&walks, streams).map_err(|why| Error::GuestTrap {
            file: file.to_path_buf(),
            guest: Guest::PickleScan.name(),
            message: why,
        })?;
        Ok(report(&walks, streams))
    }
}

/// Re-checks the guest's walks: one per stream, counts within the walker's own budgets, offsets
/// inside their stream, names of bounded length. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn validate_walks(walks: &[Walk], streams: &[(String, Range<usize>)]) -> std::result::Result<(), String> {
    let limits = WalkLimits::default();
    if walks.len() != streams.len() {
        return Err(format!("{} walks for {} streams", walks.len(), streams.len()));
    }
    for (walk, (name, range)) in walks.iter().zip(streams) {
        let len = range.len() as u64;
        if walk.ops > limits.max_ops || walk.end_offset > len || walk.first_effect_offset.is_some_and(|o| o > len) {
            return Err(format!("walk of {name:?}: counts or offsets out of range"));
        }
        if walk.imports.len() > limits.max_imports
            || walk.imports.iter().any(|(m, n)| m.len() > limits.max_string || n.len() > limits.max_string)
        {
            return Err(format!("walk of {name:?}: more or longer imports than the walker reports"));
        }
        if walk.calls > walk.ops || walk.persistent_loads > walk.ops {
            return Err(format!("walk of {name:?}: more calls than opcodes"));
        }
    }
    Ok(())
}

fn report(walks: &[Walk], streams: &[(String, Range<usize>)]) -> PickleReport {
    let mut imports: Vec<String> = Vec::new();
    for (module, name) in walks.iter().flat_map(|w| &w.imports) {
        let import = printable(&format!("{module}.{name}"));
        if !imports.contains(&import) {
            imports.push(import);
        }
    }
    PickleReport {
        protocol: walks.iter().filter_map(|w| w.protocol).max(),
        imports,
        calls: walks.iter().map(|w| w.calls).sum(),
        persistent_loads: walks.iter().map(|w| w.persistent_loads).sum(),
        streams: streams.iter().map(|(name, _)| printable(name)).collect(),
        complete: walks.iter().zip(streams).all(|(w, (_, r))| match w.end {
            End::Stop | End::Invalid => true,
            // Unpickling the whole stream would fail there too, unless the host cut it short.
            End::Truncated => (r.len() as u64) < MAX_STREAM_BYTES,
            End::OpLimit | End::Ambiguous => false,
        }),
    }
}
