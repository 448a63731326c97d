//! Messages of the `raw-decoder` guest (camera RAW files, decoded with rawler).
//!
//! Payload: the whole file. The decoded samples do not travel inside the postcard response:
//! the response names a region of guest memory ([`Frame::samples`]) holding them as u16
//! little-endian, which the host bounds-checks and hands out (or copies out once). A tiled image
//! may be decoded by several calls, each asked for a range of tiles.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::GuestError;

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// Length of the file in bytes (the payload is the whole file).
    pub file_len: u64,
    /// Most pixels (width x height) the guest may decode. Checked against the file's declared
    /// dimensions before the decoder allocates.
    pub max_pixels: u64,
    /// What to hand back besides the metadata.
    pub output: Output,
}

/// What the `raw-decoder` guest decodes besides the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Output {
    /// Metadata only (the samples are still decoded, to check the file, but not returned).
    Metadata,
    /// The raw samples ([`Frame::samples`]).
    Samples,
    /// The largest embedded preview image ([`Frame::preview`]).
    Preview,
    /// The samples as with `Samples`, unless the raw image is stored in tiles the guest can
    /// decode one by one: then no samples but [`Frame::tiling`], and the host asks for ranges of
    /// tiles ([`Output::Tiles`]) in parallel guest calls.
    SamplesOrTiling,
    /// Tiles `first .. first + count` (row-major tile order) of a tiled raw image, decoded, in
    /// [`Frame::samples`]: `count` tiles of `tile_width x tile_height x cpp` u16 each, one after
    /// the other, padding included (tiles at the right and bottom edges reach past the image).
    Tiles {
        /// The first tile.
        first: u32,
        /// How many tiles.
        count: u32,
    },
}

/// How a raw image is split into tiles the guest can decode separately (lossless JPEG tiles,
/// as cameras and Adobe's DNG converter write them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Tiling {
    /// Tile width in pixels.
    pub tile_width: u64,
    /// Tile height in pixels.
    pub tile_height: u64,
    /// Tiles across the image.
    pub across: u64,
    /// Tiles down the image.
    pub down: u64,
}

/// What the guest answers.
pub type Response = Result<Frame, GuestError>;

/// A region of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Region {
    /// Byte offset in guest memory.
    pub ptr: u32,
    /// Length in bytes.
    pub len: u32,
}

/// A rectangle in sensor coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Rect {
    /// Left column.
    pub x: u64,
    /// Top row.
    pub y: u64,
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
}

/// The decoded frame's metadata, plus where its samples are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Frame {
    /// Name of the decoder rawler chose (e.g. "dng").
    pub decoder: String,
    /// Image width in pixels.
    pub width: u64,
    /// Image height in pixels.
    pub height: u64,
    /// Components per pixel (1 for a CFA mosaic, 3 for linear RGB).
    pub cpp: u64,
    /// Bits per sample as stored in the file.
    pub bits_per_sample: u64,
    /// The CFA pattern, row-major, as colour indices 0=R 1=G 2=B 3=E (emerald/other); empty
    /// when the image is not a mosaic.
    pub cfa: Vec<u8>,
    /// CFA pattern width (repeat columns).
    pub cfa_width: u64,
    /// CFA pattern height (repeat rows).
    pub cfa_height: u64,
    /// Black levels: a repeating `black_width x black_height x cpp` block (row-major).
    pub black_levels: Vec<f32>,
    /// Black level block width.
    pub black_width: u64,
    /// Black level block height.
    pub black_height: u64,
    /// White level per component.
    pub white_levels: Vec<u32>,
    /// White-balance coefficients (R, G, B, E); NaN where unknown.
    pub wb_coeffs: [f32; 4],
    /// XYZ -> camera matrix, 4 rows (R, G, B, E) of 3.
    pub xyz_to_cam: [[f32; 3]; 4],
    /// Usable (non-black) area, if the file says.
    pub active_area: Option<Rect>,
    /// Recommended crop, if the file says.
    pub crop_area: Option<Rect>,
    /// EXIF orientation (1-8).
    pub orientation: u16,
    /// Camera make as in the file.
    pub make: String,
    /// Camera model as in the file.
    pub model: String,
    /// ISO speed, if known.
    pub iso: Option<u32>,
    /// Exposure time as (numerator, denominator) seconds, if known.
    pub exposure_time: Option<(u32, u32)>,
    /// Capture time as written in the file (EXIF DateTimeOriginal), if known.
    pub timestamp: Option<String>,
    /// Lens maker (EXIF LensMake), if known.
    pub lens_make: Option<String>,
    /// Lens model (EXIF LensModel), if known.
    pub lens_model: Option<String>,
    /// Aperture as an f-number (numerator, denominator), if known.
    pub f_number: Option<(u32, u32)>,
    /// Focal length in millimetres (numerator, denominator), if known.
    pub focal_length: Option<(u32, u32)>,
    /// The samples (u16 little-endian, row-major, `width x height x cpp`), if asked for.
    pub samples: Option<Region>,
    /// The embedded preview, if asked for and the file has one.
    pub preview: Option<crate::image::Picture>,
    /// With [`Output::SamplesOrTiling`]: how the image is tiled, when it is answered with tiles
    /// instead of samples.
    pub tiling: Option<Tiling>,
}
