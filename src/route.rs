//! The one decision every front end shares: what a path or some bytes are, and which guest opens
//! them. [`Sandbox::open`], `sandload inspect`, `sandload convert` and the Python package all ask
//! here, so one file gets the same verdict, format and guest from each of them.

use std::path::Path;

use cap_std::fs::Dir;

use crate::error::Result;
use crate::formats::sharded::ShardedCheckpoint;
use crate::input::Input;
use crate::limits::Limits;
use crate::sandbox::Sandbox;
use crate::sniff::{Format, sniff};

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
    /// (a scan, a TIFF export) is then decoded by the `image-decoder` guest.
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

    /// Whether a file that the RAW guest refuses as not camera RAW is then decoded as an image.
    pub fn image_fallback(format: Format) -> bool {
        format == Format::Tiff
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
