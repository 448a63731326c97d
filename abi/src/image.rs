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

/// Which channels a pixel has, in memory order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Colour {
    /// Grey (luma), one channel.
    L,
    /// Grey + alpha.
    La,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue, alpha.
    Rgba,
    /// Cyan, magenta, yellow, black (as a printer's TIFF stores it; not converted).
    Cmyk,
    /// CMYK + alpha.
    Cmyka,
}

impl Colour {
    /// Channels per pixel.
    pub fn channels(self) -> u64 {
        match self {
            Colour::L => 1,
            Colour::La => 2,
            Colour::Rgb => 3,
            Colour::Rgba | Colour::Cmyk => 4,
            Colour::Cmyka => 5,
        }
    }

    /// A short name: `L`, `La`, `Rgb`, `Rgba`, `Cmyk`, `Cmyka`.
    pub fn name(self) -> &'static str {
        match self {
            Colour::L => "L",
            Colour::La => "La",
            Colour::Rgb => "Rgb",
            Colour::Rgba => "Rgba",
            Colour::Cmyk => "Cmyk",
            Colour::Cmyka => "Cmyka",
        }
    }
}

/// The type of one channel sample, stored little-endian (wasm32's byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Sample {
    /// Unsigned 8-bit (also 1-, 2- and 4-bit samples, one per byte: see [`Layout::bits`]).
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Signed 64-bit.
    I64,
    /// IEEE 754 half precision.
    F16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
}

impl Sample {
    /// Every sample type, in declaration order.
    pub const ALL: [Sample; 11] = [
        Sample::U8,
        Sample::U16,
        Sample::U32,
        Sample::U64,
        Sample::I8,
        Sample::I16,
        Sample::I32,
        Sample::I64,
        Sample::F16,
        Sample::F32,
        Sample::F64,
    ];

    /// Bytes per sample.
    pub fn bytes(self) -> u64 {
        match self {
            Sample::U8 | Sample::I8 => 1,
            Sample::U16 | Sample::I16 | Sample::F16 => 2,
            Sample::U32 | Sample::I32 | Sample::F32 => 4,
            Sample::U64 | Sample::I64 | Sample::F64 => 8,
        }
    }

    /// Whether the sample is a floating-point number.
    pub fn is_float(self) -> bool {
        matches!(self, Sample::F16 | Sample::F32 | Sample::F64)
    }

    /// Whether the sample is a signed integer.
    pub fn is_signed_int(self) -> bool {
        matches!(self, Sample::I8 | Sample::I16 | Sample::I32 | Sample::I64)
    }
}

/// Memory layout of decoded pixels: channels interleaved, row-major, no row padding, samples
/// little-endian (wasm32's byte order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Layout {
    /// The channels.
    pub colour: Colour,
    /// The type of each channel's sample.
    pub sample: Sample,
    /// Significant bits per sample: 1, 2 or 4 for a bilevel or low-depth grey image stored one
    /// sample per byte (values `0..2^bits`, as the file stores them); otherwise the sample's full
    /// width (`8 x bytes`).
    pub bits: u8,
}

impl Layout {
    /// A layout whose samples use their full width.
    pub const fn new(colour: Colour, sample: Sample) -> Layout {
        let bits = match sample {
            Sample::U8 | Sample::I8 => 8,
            Sample::U16 | Sample::I16 | Sample::F16 => 16,
            Sample::U32 | Sample::I32 | Sample::F32 => 32,
            Sample::U64 | Sample::I64 | Sample::F64 => 64,
        };
        Layout { colour, sample, bits }
    }

    // The names of the layouts the `image` crate also has, spelled as its `ColorType` spells them.
    /// 8-bit grey.
    #[allow(non_upper_case_globals)]
    pub const L8: Layout = Layout::new(Colour::L, Sample::U8);
    /// 8-bit grey + alpha.
    #[allow(non_upper_case_globals)]
    pub const La8: Layout = Layout::new(Colour::La, Sample::U8);
    /// 8-bit RGB.
    #[allow(non_upper_case_globals)]
    pub const Rgb8: Layout = Layout::new(Colour::Rgb, Sample::U8);
    /// 8-bit RGBA.
    #[allow(non_upper_case_globals)]
    pub const Rgba8: Layout = Layout::new(Colour::Rgba, Sample::U8);
    /// 16-bit grey.
    #[allow(non_upper_case_globals)]
    pub const L16: Layout = Layout::new(Colour::L, Sample::U16);
    /// 16-bit grey + alpha.
    #[allow(non_upper_case_globals)]
    pub const La16: Layout = Layout::new(Colour::La, Sample::U16);
    /// 16-bit RGB.
    #[allow(non_upper_case_globals)]
    pub const Rgb16: Layout = Layout::new(Colour::Rgb, Sample::U16);
    /// 16-bit RGBA.
    #[allow(non_upper_case_globals)]
    pub const Rgba16: Layout = Layout::new(Colour::Rgba, Sample::U16);
    /// 32-bit float RGB.
    #[allow(non_upper_case_globals)]
    pub const Rgb32F: Layout = Layout::new(Colour::Rgb, Sample::F32);
    /// 32-bit float RGBA.
    #[allow(non_upper_case_globals)]
    pub const Rgba32F: Layout = Layout::new(Colour::Rgba, Sample::F32);

    /// Channels per pixel.
    pub fn channels(self) -> u64 {
        self.colour.channels()
    }

    /// Bytes per channel sample.
    pub fn bytes_per_sample(self) -> u64 {
        self.sample.bytes()
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> u64 {
        self.channels() * self.bytes_per_sample()
    }

    /// Whether `bits` is possible for `sample` (1, 2, 4 or 8 for `U8`; the full width otherwise).
    pub fn is_valid(self) -> bool {
        match self.sample {
            Sample::U8 => matches!(self.bits, 1 | 2 | 4 | 8),
            s => u64::from(self.bits) == s.bytes() * 8,
        }
    }

    /// A name such as `Rgb8`, `L16`, `Rgba32F`, `LI16` (signed), `L1` (bilevel), `Cmyk8`.
    pub fn name(self) -> String {
        let kind = match self.sample {
            s if s.is_float() => "F",
            s if s.is_signed_int() => "I",
            _ => "",
        };
        match kind {
            "F" => alloc::format!("{}{}F", self.colour.name(), self.bits),
            "I" => alloc::format!("{}I{}", self.colour.name(), self.bits),
            _ => alloc::format!("{}{}", self.colour.name(), self.bits),
        }
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
