//! Messages of the `image-decoder` guest (PNG, JPEG, TIFF, WebP decoded with the `image` crate),
//! and the decoded-picture type the `raw-decoder` guest also uses for embedded previews.
//!
//! Payload: the whole file. Like RAW samples, the pixels stay in guest memory: the response names
//! a [`Region`] that the host bounds-checks against `width x height x layout.bytes_per_pixel()`
//! and copies out once.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::GuestError;
use crate::raw::Region;

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Request {
    /// Length of the file in bytes (the payload is the whole file).
    pub file_len: u64,
    /// Most pixels (width x height) the guest may decode; checked against the header's
    /// dimensions before any pixel buffer is allocated.
    pub max_pixels: u64,
    /// Most bytes the decoder may allocate (passed to `image::Limits::max_alloc`).
    pub max_alloc_bytes: u64,
}

/// What the guest answers.
pub type Response = Result<Picture, GuestError>;

/// Memory layout of decoded pixels (channels interleaved, samples native-endian = little-endian
/// on wasm32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Layout {
    /// 8-bit grey.
    L8,
    /// 8-bit grey + alpha.
    La8,
    /// 8-bit RGB.
    Rgb8,
    /// 8-bit RGBA.
    Rgba8,
    /// 16-bit grey.
    L16,
    /// 16-bit grey + alpha.
    La16,
    /// 16-bit RGB.
    Rgb16,
    /// 16-bit RGBA.
    Rgba16,
    /// 32-bit float RGB.
    Rgb32F,
    /// 32-bit float RGBA.
    Rgba32F,
}

impl Layout {
    /// Every layout, in declaration order.
    pub const ALL: [Layout; 10] = [
        Layout::L8,
        Layout::La8,
        Layout::Rgb8,
        Layout::Rgba8,
        Layout::L16,
        Layout::La16,
        Layout::Rgb16,
        Layout::Rgba16,
        Layout::Rgb32F,
        Layout::Rgba32F,
    ];

    /// Channels per pixel.
    pub fn channels(self) -> u64 {
        match self {
            Layout::L8 | Layout::L16 => 1,
            Layout::La8 | Layout::La16 => 2,
            Layout::Rgb8 | Layout::Rgb16 | Layout::Rgb32F => 3,
            Layout::Rgba8 | Layout::Rgba16 | Layout::Rgba32F => 4,
        }
    }

    /// Bytes per channel sample.
    pub fn bytes_per_sample(self) -> u64 {
        match self {
            Layout::L8 | Layout::La8 | Layout::Rgb8 | Layout::Rgba8 => 1,
            Layout::L16 | Layout::La16 | Layout::Rgb16 | Layout::Rgba16 => 2,
            Layout::Rgb32F | Layout::Rgba32F => 4,
        }
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> u64 {
        self.channels() * self.bytes_per_sample()
    }
}

/// A decoded picture whose pixels are in guest memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Picture {
    /// The container format the decoder recognised (e.g. "png").
    pub format: String,
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
    /// How the pixels are laid out.
    pub layout: Layout,
    /// The pixels, row-major, `width x height x layout.bytes_per_pixel()` bytes.
    pub pixels: Region,
    /// The EXIF orientation the file declares, 1-8 (1: stored upright, also the decoder's answer
    /// when the file does not say); 0 when the guest does not know (RAW previews, whose
    /// orientation is the frame's). Pixels are as stored, never rotated.
    pub orientation: u8,
    /// The embedded ICC colour profile, at most [`MAX_ICC_BYTES`]; `None` if the file has none
    /// (or one larger than that, which the guest drops).
    pub icc_profile: Option<Vec<u8>>,
}

/// The largest ICC profile a guest returns (real profiles are a few KiB to a few hundred KiB).
pub const MAX_ICC_BYTES: u64 = 4 << 20;
