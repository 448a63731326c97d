//! The one decision every front end shares: what a path or some bytes are, and which guest opens
//! them. [`Sandbox::open`], `sandload inspect`, `sandload convert` and the Python package all ask
//! here, so one file gets the same verdict, format and guest from each of them.

use std::path::Path;

use cap_std::fs::Dir;

use crate::error::{Error, Result};
use crate::formats::sharded::ShardedCheckpoint;
use crate::input::Input;
use crate::limits::Limits;
use crate::sandbox::Sandbox;
use crate::sniff::{Format, is_tiff_container, sniff};

/// The name of a sharded checkpoint's index inside its directory (Hugging Face's convention).
pub const SHARD_INDEX_FILE: &str = "model.safetensors.index.json";

/// Which guest opens a file, decided from its content (never its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// PNG, JPEG and WebP: the `image-decoder` guest.
    Image,
    /// DNG, maker RAW containers, and a TIFF or an unrecognised file the guest can hold: the
    /// `raw-decoder` guest, whose own identification decides what is camera RAW (a file it does
    /// not recognise either is refused as "not a recognised format"). A TIFF it does not claim
    /// (a scan, a TIFF export), or claims by its maker but cannot decode (a camera's RGB TIFF),
    /// is then decoded by the `image-decoder` guest: see [`Route::image_fallback`].
    Raw,
    /// Everything else, safetensors-shaped files and every other recognised format: the
    /// checkpoint path, which accepts safetensors and refuses pickles, PyTorch files and the rest.
    Checkpoint,
}

impl Route {
    /// The route of a file of `len` bytes whose head sniffs as `format` (the head is enough:
    /// [`sniff`] looks only at it).
    pub fn of(format: Format, len: u64, limits: &Limits) -> Route {
        match format {
            Format::Png | Format::Jpeg | Format::Webp => Route::Image,
            Format::Dng | Format::Raw => Route::Raw,
            // 9 bytes: rawler identifies nothing shorter. Larger than the guest's memory: it
            // could not hold the file, and no checkpoint check needs the whole of it.
            Format::Tiff | Format::Unknown if len >= 9 && len <= limits.guest_memory_bytes => Route::Raw,
            _ => Route::Checkpoint,
        }
    }

    /// Whether a file that the RAW guest refused with `raw_error` is then decoded by the image
    /// guest, decided by decoding: a TIFF container (`head` is its first bytes) that rawler does
    /// not recognise, or that it claims by its camera `Make` tag but cannot decode (an ordinary
    /// RGB TIFF a camera wrote). The image guest refuses a TIFF holding CFA or linear raw data
    /// (`image_is_raw`), so a RAW file is never passed off as its thumbnail; see
    /// [`Route::raw_error_stands`] for whose error stands when both guests refuse.
    pub fn image_fallback(format: Format, head: &[u8], raw_error: &Error) -> bool {
        let tiff = match format {
            Format::Tiff => true,
            Format::Raw => is_tiff_container(head),
            _ => false,
        };
        let raw_refused = matches!(raw_error.rule(), Some("raw_not_recognised" | "raw_malformed" | "decoder_panic"))
            || matches!(raw_error, Error::Unsupported { .. });
        tiff && raw_refused
    }

    /// Whose error stands when the image guest also refused a file that the RAW guest refused
    /// ([`Route::image_fallback`]): rawler's when it claimed the file (the receipt then names the
    /// RAW guest), the image guest's when rawler did not recognise it (it is a picture, and the
    /// picture is broken).
    pub fn raw_error_stands(raw_error: &Error) -> bool {
        raw_error.rule() != Some("raw_not_recognised")
    }
}

/// Whether `name` (a file name) marks a sharded checkpoint's index: `*.safetensors.index.json`.
/// The content still decides: see [`Sandbox::open_if_sharded`].
pub fn is_shard_index_name(name: &Path) -> bool {
    name.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".safetensors.index.json"))
}

/// The index of a sharded checkpoint that `dir` holds, if it holds one ([`SHARD_INDEX_FILE`]).
pub fn shard_index_in(dir: &Dir) -> Option<&'static Path> {
    dir.is_file(SHARD_INDEX_FILE).then(|| Path::new(SHARD_INDEX_FILE))
}

impl Sandbox {
    /// Opens `name` in `dir` as a sharded checkpoint if that is what it is, reading it once:
    /// `None` when it is a file to [`open`](Sandbox::open) instead. It is an index when it has an
    /// index name ([`is_shard_index_name`]) and its content is no format sandload recognises, so
    /// that a pickle under an index name is still refused as a pickle. A file that cannot be read
    /// counts as an index: [`open_sharded`](Sandbox::open_sharded) then says what is wrong.
    pub fn open_if_sharded(&self, dir: &Dir, name: &Path) -> Option<Result<ShardedCheckpoint>> {
        if !is_shard_index_name(name) {
            return None;
        }
        match Input::open(dir, name).and_then(|input| input.read_all(self.limits())) {
            Ok(bytes) if sniff(&bytes).format != Format::Unknown => None,
            Ok(bytes) => Some(self.sharded_from_index(dir, name, &bytes)),
            Err(_) => Some(self.open_sharded(dir, name)),
        }
    }
}
