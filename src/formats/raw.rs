//! Camera RAW files: decoded by rawler in the `raw-decoder` guest, every field re-checked here.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sandload_abi::Rule;
use sandload_abi::raw::{Frame, Output, Request, Response, Tiling};

use super::picture::{DecodedImage, to_pixels};
use crate::error::{Result, printable};
use crate::input::Input;
use crate::limits::Limits;
use crate::receipt::Receipt;
use crate::refusal::refuse_as_raw;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, Sniffed};
use crate::verdict::{Violation, guest_rejection, region_range, violation};

/// Longest text field (make, model, timestamp, decoder name) accepted from the guest.
const MAX_TEXT_BYTES: usize = 256;
/// Largest CFA repeat pattern accepted (X-Trans is 6x6; nothing real exceeds 8x8).
const MAX_CFA_SIDE: u64 = 16;
/// Largest black-level repeat block accepted.
const MAX_BLACK_SIDE: u64 = 16;

/// A colour of a CFA (colour filter array) position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CfaColor {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// A fourth filter colour (emerald, cyan...), found on a few old sensors.
    Other,
}

impl CfaColor {
    fn from_index(i: u8) -> Option<CfaColor> {
        Some(match i {
            0 => CfaColor::Red,
            1 => CfaColor::Green,
            2 => CfaColor::Blue,
            3 => CfaColor::Other,
            _ => return None,
        })
    }

    /// One letter: `R`, `G`, `B` or `E`.
    pub fn letter(self) -> char {
        match self {
            CfaColor::Red => 'R',
            CfaColor::Green => 'G',
            CfaColor::Blue => 'B',
            CfaColor::Other => 'E',
        }
    }
}

/// The repeating colour-filter pattern over the sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cfa {
    /// Columns in one repeat of the pattern (2 for Bayer, 6 for X-Trans).
    pub width: usize,
    /// Rows in one repeat.
    pub height: usize,
    /// The pattern, row-major, `width x height` entries.
    pub pattern: Vec<CfaColor>,
}

impl Cfa {
    /// The colour of the filter over sensor pixel (`row`, `col`).
    pub fn color_at(&self, row: usize, col: usize) -> CfaColor {
        self.pattern[(row % self.height) * self.width + col % self.width]
    }

    /// The pattern as letters, e.g. `"RGGB"`.
    pub fn name(&self) -> String {
        self.pattern.iter().map(|c| c.letter()).collect()
    }
}

/// A rectangle in sensor pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

/// Metadata of a decoded RAW frame, every field checked by the host.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct RawInfo {
    /// The file.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::report::serialize::lossy_path"))]
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub file: PathBuf,
    /// The format recognised from content (`dng`, `raw` or `tiff`).
    pub format: Format,
    /// The rawler decoder that read it (e.g. `"dng"`).
    pub decoder: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Components per pixel: 1 for a CFA mosaic, 3 for linear (demosaiced) RAW.
    pub cpp: usize,
    /// Bits per sample as stored.
    pub bits_per_sample: u32,
    /// The colour filter pattern, for mosaics (`cpp == 1`).
    pub cfa: Option<Cfa>,
    /// Black levels as a repeating block of `black_width x black_height x cpp` values.
    pub black_levels: Vec<f32>,
    /// Width of the black-level block.
    pub black_width: usize,
    /// Height of the black-level block.
    pub black_height: usize,
    /// White (saturation) level per component; `len() == cpp`.
    pub white_levels: Vec<u32>,
    /// As-shot white-balance multipliers (R, G, B, other); `None` where the file does not say.
    pub wb_coeffs: [Option<f32>; 4],
    /// XYZ (D65) to camera colour matrix, rows R, G, B, other; `None` if the file has none.
    pub xyz_to_cam: Option<[[f32; 3]; 4]>,
    /// The sensor area holding image data, if the file says.
    pub active_area: Option<Rect>,
    /// The recommended crop, if the file says.
    pub crop_area: Option<Rect>,
    /// EXIF orientation 1-8 (0 = unknown). Pixels are in sensor order, not rotated.
    pub orientation: u16,
    /// Camera make.
    pub make: String,
    /// Camera model.
    pub model: String,
    /// ISO speed.
    pub iso: Option<u32>,
    /// Exposure time in seconds as (numerator, denominator).
    pub exposure_time: Option<(u32, u32)>,
    /// Capture time as written in the file (EXIF `DateTimeOriginal`).
    pub timestamp: Option<String>,
    /// Lens maker (EXIF `LensMake`), escaped like `make`.
    pub lens_make: Option<String>,
    /// Lens model (EXIF `LensModel`), escaped like `make`.
    pub lens_model: Option<String>,
    /// Aperture as an f-number, (numerator, denominator): `(18, 10)` is f/1.8.
    pub f_number: Option<(u32, u32)>,
    /// Focal length in millimetres, (numerator, denominator).
    pub focal_length: Option<(u32, u32)>,
}

impl RawInfo {
    /// The black level of sensor pixel (`row`, `col`), component `c`.
    pub fn black_level(&self, row: usize, col: usize, c: usize) -> f32 {
        let (r, k) = (row % self.black_height, col % self.black_width);
        self.black_levels[(r * self.black_width + k) * self.cpp + c]
    }

    /// The area ML outputs cover: the crop if the file gives one, else the active area, else the
    /// whole frame.
    pub fn image_area(&self) -> Rect {
        self.crop_area.or(self.active_area).unwrap_or(Rect { x: 0, y: 0, width: self.width, height: self.height })
    }
}

/// A decoded camera RAW frame: validated metadata plus the samples.
///
/// The samples are usually not copied: they stay where the guest decoded them, in its memory,
/// which the frame keeps (read-only) until it and every clone of [`samples`](RawImage::samples)
/// are dropped. A sandbox keeps at most `max_concurrent` such frames alive; past that, frames
/// are copied out and the guest's memory released at once. Keeping many frames for long (a cache)
/// therefore costs their guests' memory only for the first `max_concurrent` of them.
#[derive(Debug, Clone)]
pub struct RawImage {
    info: RawInfo,
    samples: Bytes,
    receipt: Receipt,
}

impl RawImage {
    pub(crate) fn new(info: RawInfo, samples: Bytes, receipt: Receipt) -> RawImage {
        RawImage { info, samples, receipt }
    }

    /// The frame's metadata.
    pub fn info(&self) -> &RawInfo {
        &self.info
    }

    /// The samples as u16 little-endian bytes, row-major, `width x height x cpp` of them.
    pub fn samples(&self) -> &Bytes {
        &self.samples
    }

    /// Sample at (`row`, `col`), component `c`. Panics if out of range.
    pub fn sample(&self, row: usize, col: usize, c: usize) -> u16 {
        let i = ((row * self.info.width + col) * self.info.cpp + c) * 2;
        u16::from_le_bytes([self.samples[i], self.samples[i + 1]])
    }

    /// The samples as a `Vec<u16>` (a copy; [`samples`](RawImage::samples) is the shared buffer).
    pub fn samples_u16(&self) -> Vec<u16> {
        self.samples.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// What the sandbox did to decode this file.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

impl Sandbox {
    /// Decodes an untrusted camera RAW file (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...).
    ///
    /// rawler runs in the `raw-decoder` guest under the memory cap and deadline; the pixel limit
    /// is checked against the dimensions the file declares before the decoder allocates. Every
    /// field the guest returns is then re-checked here (dimensions within limits, sample buffer
    /// length exactly `width x height x cpp`, CFA pattern, black/white levels, areas) before
    /// anything is exposed; the samples are then handed out where the guest left them (see
    /// [`RawImage`]), or copied once.
    ///
    /// # Errors
    /// [`Error::Refused`](crate::Error::Refused) (not a RAW file: a pickle, a PNG...), [`Error::LimitExceeded`](crate::Error::LimitExceeded)
    /// (`max_pixels`, `max_file_bytes`), [`Error::Malformed`](crate::Error::Malformed), [`Error::GuestTrap`](crate::Error::GuestTrap),
    /// [`Error::GuestTimeout`](crate::Error::GuestTimeout), [`Error::GuestOutOfMemory`](crate::Error::GuestOutOfMemory), [`Error::Io`](crate::Error::Io).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// // A 4x2 RGGB mosaic, written as a DNG by sandload's own test-data generator.
    /// let samples: Vec<u16> = (0..8).map(|i| 1000 + i * 100).collect();
    /// let dng = sandload_samples::Dng::new(4, 2, samples.clone()).to_bytes();
    ///
    /// let sandbox = sandload::Sandbox::new()?;
    /// let raw = sandbox.decode_raw(sandload::Input::from_bytes(dng, "shot.dng"))?;
    /// assert_eq!((raw.info().width, raw.info().height), (4, 2));
    /// assert_eq!(raw.info().cfa.as_ref().unwrap().name(), "RGGB");
    /// assert_eq!(raw.samples_u16(), samples);
    /// # Ok(()) }
    /// ```
    pub fn decode_raw(&self, input: Input) -> Result<RawImage> {
        self.decode_raw_with_receipt(input).0
    }

    /// [`decode_raw`](Sandbox::decode_raw), also returning the [`Receipt`] when the file is
    /// rejected.
    pub fn decode_raw_with_receipt(&self, input: Input) -> (Result<RawImage>, Receipt) {
        let (result, receipt) = self.with_whole_file(input, |sandbox, file, data, sniffed, stats, format| {
            sandbox.decode_raw_bytes(file, data, sniffed, stats, format)
        });
        (result.map(|(info, samples)| RawImage { info, samples, receipt: receipt.clone() }), receipt)
    }

    /// Reads a RAW file's metadata (dimensions, CFA, levels, colour data, camera) without decoding
    /// its samples, and checks it like [`decode_raw`](Sandbox::decode_raw) does.
    ///
    /// Unlike `decode_raw` this does not prove that the pixel data decodes: a file whose metadata
    /// is sound but whose samples are corrupt passes here and fails `decode_raw`. rawler's readers
    /// skip the pixel data in this mode (its DNG reader with a one-line patch in the guest,
    /// `guests/vendor/rawler/PATCHES.md`), so it costs about the copy of the file into the guest.
    ///
    /// # Errors
    /// As [`decode_raw`](Sandbox::decode_raw).
    pub fn raw_info(&self, input: Input) -> Result<RawInfo> {
        self.with_whole_file(input, |sandbox, file, data, sniffed, stats, format| {
            Ok(sandbox.run_raw(file, data, sniffed, Output::Metadata, stats, format)?.0)
        })
        .0
    }

    /// Extracts the largest embedded preview of a camera RAW file (usually a full-size JPEG),
    /// decoded in the `raw-decoder` guest, together with the RAW frame's metadata. `Ok(None)`
    /// if the file has no preview.
    ///
    /// # Errors
    /// As [`decode_raw`](Sandbox::decode_raw).
    pub fn raw_preview(&self, input: Input) -> Result<Option<(RawInfo, DecodedImage)>> {
        let (result, receipt) = self.with_whole_file(input, |sandbox, file, data, sniffed, stats, format| {
            let limits = sandbox.limits();
            let request = sandbox.raw_request(file, data, sniffed, Output::Preview, format)?;
            let format = *format;
            sandbox.call(Guest::RawDecoder, file, format, &request, data, stats, |response, memory| {
                let (info, frame) = checked_frame(response, limits, file, format)?;
                let Some(preview) = frame.preview else { return Ok(None) };
                let pixels = to_pixels(&preview, memory, limits).map_err(|v| violation(file, format, limits, v))?;
                Ok(Some((info, pixels)))
            })
        });
        result.map(|found| {
            found.map(|(info, pixels)| {
                let (file, orientation) = (info.file.clone(), info.orientation);
                (info, DecodedImage { file, format: "preview".into(), orientation, pixels, icc_profile: None, receipt })
            })
        })
    }

    /// Decodes `data` (sniffed as `sniffed`) in the raw-decoder guest, adding the call to
    /// `stats`: the frame's metadata and its samples.
    pub(crate) fn decode_raw_bytes(
        &self,
        file: &Path,
        data: &[u8],
        sniffed: &Sniffed,
        stats: &mut GuestStats,
        format: &mut Format,
    ) -> Result<(RawInfo, Bytes)> {
        let (info, samples) = self.run_raw(file, data, sniffed, Output::Samples, stats, format)?;
        Ok((info, samples.unwrap_or_default()))
    }

    /// The raw-decoder request for `data`, unless the sniffer already knows it is no RAW file.
    fn raw_request(
        &self,
        file: &Path,
        data: &[u8],
        sniffed: &Sniffed,
        output: Output,
        format: &mut Format,
    ) -> Result<Request> {
        *format = sniffed.format;
        if let Some(refusal) = refuse_as_raw(file, sniffed) {
            return Err(refusal);
        }
        Ok(Request { file_len: data.len() as u64, max_pixels: self.limits().max_pixels, output })
    }

    /// Runs the raw-decoder guest on `data` and validates what it returns. The samples are
    /// handed out without a copy when the sandbox can keep the guest's store (see
    /// `Finished::into_bytes`); a tiled file may be decoded by several calls (`decode_tiled`).
    fn run_raw(
        &self,
        file: &Path,
        data: &[u8],
        sniffed: &Sniffed,
        output: Output,
        stats: &mut GuestStats,
        format: &mut Format,
    ) -> Result<(RawInfo, Option<Bytes>)> {
        let limits = self.limits();
        let mut request = self.raw_request(file, data, sniffed, output, format)?;
        let format = *format;
        let threads = self.tile_calls();
        if output == Output::Samples && threads > 1 && data.len() >= MIN_SPLIT_FILE_BYTES {
            request.output = Output::SamplesOrTiling;
        }
        let (response, finished) = self.call_finished(Guest::RawDecoder, file, format, &request, data, stats)?;
        let (info, frame) = checked_frame(response, limits, file, format)?;
        if let (Output::SamplesOrTiling, None, Some(tiling)) = (request.output, frame.samples, frame.tiling) {
            // Its slot back first: the bands may need every call slot there is.
            drop(finished);
            let tiled = Tiled { file, data, request: &request, info: &info, tiling, format };
            let samples = self.decode_tiled(&tiled, threads, stats)?;
            return Ok((info, Some(samples)));
        }
        let samples = samples_range(&info, &frame, finished.memory(), output, limits, file, format)?;
        Ok((info, samples.map(|range| finished.into_bytes(range))))
    }

    /// The samples of a tiled file, decoded by up to `threads` guest calls at once, each a band
    /// of whole tile rows, stitched into one frame here. Every call has the file's limits; its
    /// answer is checked (the same metadata as the first call's, exactly its tiles' bytes) before
    /// a byte of it is copied.
    fn decode_tiled(&self, tiled: &Tiled<'_>, threads: usize, stats: &mut GuestStats) -> Result<Bytes> {
        let limits = self.limits();
        let Tiled { file, info, tiling, format, .. } = *tiled;
        let geometry = TileGeometry::check((info.width, info.height, info.cpp), &tiling, limits.max_pixels)
            .map_err(|detail| violation(file, format, limits, bad(Rule::RawMalformed, detail)))?;
        // Image rows of each band, and the band's share of the frame: disjoint, in order.
        let bands = threads.min(geometry.down);
        let rows_per_band = geometry.down.div_ceil(bands);
        let band_bytes = rows_per_band * geometry.tile_height * geometry.row_bytes;
        let mut frame = vec![0u8; info.height * geometry.row_bytes];
        let results: Vec<(Result<()>, GuestStats)> = std::thread::scope(|s| {
            let handles: Vec<_> = frame
                .chunks_mut(band_bytes)
                .enumerate()
                .map(|(band, out)| {
                    let first_row = band * rows_per_band;
                    let rows = rows_per_band.min(geometry.down - first_row);
                    let geometry = &geometry;
                    s.spawn(move || {
                        let mut stats = GuestStats::default();
                        let done = self.decode_band(tiled, geometry, first_row, rows, out, &mut stats);
                        (done, stats)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        for (_, band) in &results {
            stats.guest = band.guest.or(stats.guest);
            stats.guest_time += band.guest_time;
            stats.peak_memory_bytes = stats.peak_memory_bytes.max(band.peak_memory_bytes);
        }
        for (done, _) in results {
            done?;
        }
        Ok(Bytes::from(frame))
    }

    /// Tile rows `first_row .. first_row + rows` of a tiled file, decoded in one guest call and
    /// copied into `out` (those tiles' image rows, cropped to the image's width and height).
    fn decode_band(
        &self,
        tiled: &Tiled<'_>,
        geometry: &TileGeometry,
        first_row: usize,
        rows: usize,
        out: &mut [u8],
        stats: &mut GuestStats,
    ) -> Result<()> {
        let limits = self.limits();
        let Tiled { file, data, request, info, tiling, format } = *tiled;
        let malformed = |detail: String| violation(file, format, limits, bad(Rule::RawMalformed, detail));
        let (first, count) = (first_row * geometry.across, rows * geometry.across);
        let output = Output::Tiles {
            first: u32::try_from(first).map_err(|_| malformed(format!("tile {first} past u32")))?,
            count: u32::try_from(count).map_err(|_| malformed(format!("{count} tiles past u32")))?,
        };
        let request = Request { output, ..request.clone() };
        let (response, finished) = self.call_finished(Guest::RawDecoder, file, format, &request, data, stats)?;
        let (band_info, frame) = checked_frame(response, limits, file, format)?;
        // One file, one answer: a call that describes the file differently is not believed.
        if band_info != *info || frame.tiling != Some(tiling) {
            return Err(malformed(format!("the guest's call for tiles {first}..+{count} describes another image")));
        }
        let region = frame.samples.ok_or_else(|| malformed("guest returned no tiles".into()))?;
        let memory = finished.memory();
        let expected = (count * geometry.tile_bytes) as u64;
        let range = region_range(memory, region, expected, "tiles").map_err(|v| violation(file, format, limits, v))?;
        let pixel = info.cpp * 2;
        for (k, tile) in memory[range].chunks_exact(geometry.tile_bytes).enumerate() {
            let (row, col) = (k / geometry.across, k % geometry.across);
            let x0 = col * geometry.tile_width;
            // Tiles at the right and bottom edges reach past the image: their padding is dropped.
            let width = geometry.tile_width.min(info.width - x0) * pixel;
            for (ty, line) in tile.chunks_exact(geometry.tile_width * pixel).enumerate() {
                let y = row * geometry.tile_height + ty;
                if (first_row * geometry.tile_height) + y >= info.height {
                    break;
                }
                let at = y * geometry.row_bytes + x0 * pixel;
                out[at..at + width].copy_from_slice(&line[..width]);
            }
        }
        Ok(())
    }
}

/// Files smaller than this are decoded in one call even when tiled: a second call would cost more
/// than it saves.
const MIN_SPLIT_FILE_BYTES: usize = 1 << 20;

/// A tiled file being decoded in bands, and what its first call said about it.
#[derive(Clone, Copy)]
struct Tiled<'a> {
    file: &'a Path,
    data: &'a [u8],
    request: &'a Request,
    info: &'a RawInfo,
    tiling: Tiling,
    format: Format,
}

/// A guest's tiling of a checked frame, re-checked: tiles that cover exactly the image, each
/// within the pixel limit, every size below addressable.
struct TileGeometry {
    tile_width: usize,
    tile_height: usize,
    across: usize,
    down: usize,
    /// Bytes of one decoded tile (padding included).
    tile_bytes: usize,
    /// Bytes of one image row of the frame.
    row_bytes: usize,
}

impl TileGeometry {
    /// The geometry of `tiling` over an image of (width, height, cpp), already checked against
    /// the limits (`validate_frame`).
    fn check(
        (width, height, cpp): (usize, usize, usize),
        tiling: &Tiling,
        max_pixels: u64,
    ) -> std::result::Result<TileGeometry, String> {
        let Tiling { tile_width, tile_height, across, down } = *tiling;
        let (w, h) = (width as u64, height as u64);
        let tile_pixels = tile_width.checked_mul(tile_height).filter(|&p| p > 0 && p <= max_pixels);
        if tile_pixels.is_none() || across != w.div_ceil(tile_width) || down != h.div_ceil(tile_height) {
            return Err(format!(
                "tiles of {tile_width}x{tile_height}, {across} across and {down} down, do not cover a {w}x{h} image"
            ));
        }
        // Each factor is at most max_pixels (a u64 count of pixels the host can address), and
        // the frame itself was checked against it; the products below are checked anyway.
        let size = |v: u64| usize::try_from(v).map_err(|_| format!("{v} is not addressable"));
        let tile_bytes =
            tile_pixels.and_then(|p| p.checked_mul(cpp as u64 * 2)).ok_or_else(|| "tile size overflows".to_string())?;
        Ok(TileGeometry {
            tile_width: size(tile_width)?,
            tile_height: size(tile_height)?,
            across: size(across)?,
            down: size(down)?,
            tile_bytes: size(tile_bytes)?,
            row_bytes: width * cpp * 2,
        })
    }
}

/// Everything the host does with the raw-decoder guest's answer (decoded by the typed call):
/// re-checks the frame, and copies the samples (if asked for) out of the guest's memory. Both
/// `response` and `memory` are hostile. Public (feature `fuzzing`) for the fuzz targets; the
/// library itself hands the samples out without a copy where it can (`Sandbox::run_raw`), after
/// the same checks (`samples_range`).
#[cfg(feature = "fuzzing")]
pub fn accept_frame(
    response: Response,
    memory: &[u8],
    output: Output,
    limits: &Limits,
    file: &Path,
    format: Format,
) -> Result<(RawInfo, Option<Bytes>)> {
    let (info, frame) = checked_frame(response, limits, file, format)?;
    let samples = samples_range(&info, &frame, memory, output, limits, file, format)?;
    Ok((info, samples.map(|range| Bytes::copy_from_slice(&memory[range]))))
}

/// Where a checked frame's samples (if asked for) lie in `memory`: exactly the bytes its
/// dimensions need, inside the memory.
fn samples_range(
    info: &RawInfo,
    frame: &Frame,
    memory: &[u8],
    output: Output,
    limits: &Limits,
    file: &Path,
    format: Format,
) -> Result<Option<std::ops::Range<usize>>> {
    let samples = match (output, frame.samples) {
        (Output::Samples, Some(region)) => {
            let expected = (info.width * info.height * info.cpp * 2) as u64;
            let range =
                region_range(memory, region, expected, "samples").map_err(|v| violation(file, format, limits, v))?;
            Some(range)
        }
        (Output::Samples, None) => {
            return Err(violation(file, format, limits, bad(Rule::RawMalformed, "guest returned no samples".into())));
        }
        _ => None,
    };
    Ok(samples)
}

/// The frame a raw-decoder response holds, with its numbers re-checked (its regions are checked
/// where they are read).
fn checked_frame(response: Response, limits: &Limits, file: &Path, format: Format) -> Result<(RawInfo, Frame)> {
    let frame = response.map_err(|e| guest_rejection(file, format, limits, Guest::RawDecoder, e))?;
    let info = validate_frame(&frame, limits, file, format).map_err(|v| violation(file, format, limits, v))?;
    Ok((info, frame))
}

fn bad(rule: Rule, detail: String) -> Violation {
    Violation::new(rule, detail)
}

/// Re-checks a guest's frame: the guest is not trusted, so every number is checked again with
/// overflow-checked arithmetic before it sizes or indexes anything. A pixel-limit violation
/// carries the pixel count in `offset`. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn validate_frame(
    frame: &Frame,
    limits: &Limits,
    file: &Path,
    format: Format,
) -> std::result::Result<RawInfo, Violation> {
    let malformed = |detail: String| bad(Rule::RawMalformed, detail);
    let (w, h, cpp) = (frame.width, frame.height, frame.cpp);
    if w == 0 || h == 0 {
        return Err(malformed(format!("image is {w}x{h}")));
    }
    // Images (and `develop`'s outputs) are u32 x u32 on the host, whatever max_pixels allows.
    if w > u64::from(u32::MAX) || h > u64::from(u32::MAX) {
        return Err(malformed(format!("image is {w}x{h}: a side over {} pixels", u32::MAX)));
    }
    let pixels = w.checked_mul(h).ok_or_else(|| malformed(format!("{w}x{h} overflows")))?;
    if pixels > limits.max_pixels {
        return Err(Violation {
            rule: Rule::PixelLimit.name(),
            offset: Some(pixels),
            detail: format!("{w}x{h} = {pixels} pixels, over max_pixels {}", limits.max_pixels),
        });
    }
    if !(1..=4).contains(&cpp) {
        return Err(malformed(format!("{cpp} components per pixel (1 to 4 expected)")));
    }
    // Whole buffer in bytes must be addressable; pixels <= max_pixels keeps this far from overflow
    // only if max_pixels is sane, so check it anyway.
    pixels
        .checked_mul(cpp)
        .and_then(|n| n.checked_mul(2))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed(format!("{w}x{h}x{cpp} samples overflow")))?;
    if !(1..=16).contains(&frame.bits_per_sample) {
        return Err(malformed(format!("{} bits per sample (1 to 16 expected)", frame.bits_per_sample)));
    }

    let cfa = if cpp == 1 {
        let (cw, ch) = (frame.cfa_width, frame.cfa_height);
        if !(1..=MAX_CFA_SIDE).contains(&cw) || !(1..=MAX_CFA_SIDE).contains(&ch) {
            return Err(bad(Rule::RawMalformed, format!("CFA pattern is {cw}x{ch} (1 to {MAX_CFA_SIDE} per side)")));
        }
        if frame.cfa.len() as u64 != cw * ch {
            return Err(malformed(format!("CFA pattern {cw}x{ch} has {} entries", frame.cfa.len())));
        }
        let pattern = frame
            .cfa
            .iter()
            .map(|&c| {
                CfaColor::from_index(c).ok_or_else(|| malformed(format!("CFA colour index {c} (0 to 3 expected)")))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Some(Cfa { width: cw as usize, height: ch as usize, pattern })
    } else {
        if !frame.cfa.is_empty() {
            return Err(malformed(format!("a {cpp}-component image cannot have a CFA pattern")));
        }
        None
    };

    let (bw, bh) = (frame.black_width, frame.black_height);
    if !(1..=MAX_BLACK_SIDE).contains(&bw) || !(1..=MAX_BLACK_SIDE).contains(&bh) {
        return Err(malformed(format!("black level block is {bw}x{bh} (1 to {MAX_BLACK_SIDE} per side)")));
    }
    if frame.black_levels.len() as u64 != bw * bh * cpp {
        return Err(malformed(format!("black level block {bw}x{bh}x{cpp} has {} values", frame.black_levels.len())));
    }
    if let Some(b) = frame.black_levels.iter().find(|b| !b.is_finite() || **b < 0.0 || **b > 65535.0) {
        return Err(malformed(format!("black level {b} (0 to 65535 expected)")));
    }
    let white_levels: Vec<u32> = match frame.white_levels.len() as u64 {
        1 => vec![frame.white_levels[0]; cpp as usize],
        n if n == cpp => frame.white_levels.clone(),
        n => return Err(malformed(format!("{n} white levels for {cpp} components"))),
    };
    for (c, &white) in white_levels.iter().enumerate() {
        if white == 0 || white > 65535 {
            return Err(malformed(format!("white level {white} of component {c} (1 to 65535 expected)")));
        }
        let max_black = frame.black_levels.iter().skip(c).step_by(cpp as usize).fold(0f32, |m, &b| m.max(b));
        if max_black >= white as f32 {
            return Err(malformed(format!("black level {max_black} is not below white level {white} (component {c})")));
        }
    }

    let mut wb_coeffs = [None; 4];
    for (slot, &k) in wb_coeffs.iter_mut().zip(&frame.wb_coeffs) {
        if k.is_nan() || k == 0.0 {
            continue; // unknown
        }
        if !k.is_finite() || k < 0.0 || k > 1e4 {
            return Err(malformed(format!("white-balance coefficient {k}")));
        }
        *slot = Some(k);
    }
    let xyz_to_cam = if frame.xyz_to_cam.iter().flatten().all(|v| *v == 0.0) {
        None
    } else if frame.xyz_to_cam.iter().flatten().all(|v| v.is_finite() && v.abs() < 1e4) {
        Some(frame.xyz_to_cam)
    } else {
        return Err(malformed(format!("colour matrix {:?} has non-finite or huge values", frame.xyz_to_cam)));
    };

    let area = |name: &str, r: &Option<sandload_abi::raw::Rect>| -> std::result::Result<Option<Rect>, Violation> {
        let Some(r) = r else { return Ok(None) };
        let right = r.x.checked_add(r.width);
        let bottom = r.y.checked_add(r.height);
        match (right, bottom) {
            (Some(right), Some(bottom)) if r.width > 0 && r.height > 0 && right <= w && bottom <= h => {
                // In range of usize: bounded by w and h, which fit (checked above).
                Ok(Some(Rect { x: r.x as usize, y: r.y as usize, width: r.width as usize, height: r.height as usize }))
            }
            _ => Err(malformed(format!(
                "{name} {}x{} at ({}, {}) does not lie within the {w}x{h} image",
                r.width, r.height, r.x, r.y
            ))),
        }
    };
    let active_area = area("active area", &frame.active_area)?;
    let crop_area = area("crop area", &frame.crop_area)?;
    if frame.orientation > 8 {
        return Err(malformed(format!("orientation {} (0 to 8 expected)", frame.orientation)));
    }
    for (name, text) in [("decoder", Some(&frame.decoder)), ("make", Some(&frame.make)), ("model", Some(&frame.model))]
        .into_iter()
        .chain([
            ("timestamp", frame.timestamp.as_ref()),
            ("lens make", frame.lens_make.as_ref()),
            ("lens model", frame.lens_model.as_ref()),
        ])
    {
        if text.is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(malformed(format!("{name} is longer than {MAX_TEXT_BYTES} bytes")));
        }
    }
    if frame.exposure_time.is_some_and(|(_, d)| d == 0) {
        return Err(malformed("exposure time has a zero denominator".into()));
    }

    Ok(RawInfo {
        file: file.to_path_buf(),
        format,
        decoder: printable(&frame.decoder),
        width: w as usize,
        height: h as usize,
        cpp: cpp as usize,
        bits_per_sample: frame.bits_per_sample as u32,
        cfa,
        black_levels: frame.black_levels.clone(),
        black_width: bw as usize,
        black_height: bh as usize,
        white_levels,
        wb_coeffs,
        xyz_to_cam,
        active_area,
        crop_area,
        orientation: frame.orientation,
        make: printable(frame.make.trim()),
        model: printable(frame.model.trim()),
        iso: frame.iso,
        exposure_time: frame.exposure_time,
        timestamp: frame.timestamp.as_deref().map(printable),
        lens_make: frame.lens_make.as_deref().map(|t| printable(t.trim())).filter(|t| !t.is_empty()),
        lens_model: frame.lens_model.as_deref().map(|t| printable(t.trim())).filter(|t| !t.is_empty()),
        // Cameras write 0/0 for "unknown"; that is no value, not a malformed file.
        f_number: frame.f_number.filter(|&(_, d)| d != 0),
        focal_length: frame.focal_length.filter(|&(_, d)| d != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiling(tile_width: u64, tile_height: u64, across: u64, down: u64) -> Tiling {
        Tiling { tile_width, tile_height, across, down }
    }

    #[test]
    fn tilings_must_cover_the_image_exactly_within_the_limits() {
        let image = (1000, 700, 1);
        let ok = TileGeometry::check(image, &tiling(256, 256, 4, 3), 1 << 20).unwrap();
        assert_eq!((ok.tile_bytes, ok.row_bytes), (256 * 256 * 2, 2000));
        for (bad, why) in [
            (tiling(256, 256, 3, 3), "too few across"),
            (tiling(256, 256, 5, 3), "too many across"),
            (tiling(256, 256, 4, 2), "too few down"),
            (tiling(0, 256, 0, 3), "zero width"),
            (tiling(u64::MAX, 2, 1, 350), "tile pixels overflow"),
            (tiling(1 << 21, 1, 1, 700), "a tile over max_pixels"),
        ] {
            assert!(TileGeometry::check(image, &bad, 1 << 20).is_err(), "{why}");
        }
    }
}
