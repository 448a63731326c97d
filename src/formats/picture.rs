//! PNG, JPEG, TIFF and WebP images (the `image-decoder` guest), and RAW files' embedded previews.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer};
use sandload_abi::Rule;
use sandload_abi::image::{Layout, Picture, Request, Response};

use crate::error::Result;
use crate::input::Input;
use crate::limits::Limits;
use crate::receipt::Receipt;
use crate::refusal::refuse_as_image;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, Sniffed};
use crate::verdict::{Violation, guest_rejection, region_bytes, violation};

/// A decoded image: pixels copied once out of the guest into an `image` crate buffer.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The file.
    pub file: PathBuf,
    /// The format the decoder recognised (e.g. `"png"`; `"preview"` for a RAW file's preview).
    pub format: String,
    /// The pixels, in the file's own layout (8/16-bit grey or RGB(A), or 32-bit float), as
    /// stored: not rotated by `orientation`.
    pub image: DynamicImage,
    /// The EXIF orientation, 1-8 (1: stored upright, also when the file does not say; 6: rotate
    /// 90° clockwise to display, ...). A RAW file's preview has the RAW file's orientation.
    pub orientation: u16,
    /// The embedded ICC colour profile, if the file has one (at most 4 MiB; a larger one is
    /// dropped by the decoder).
    pub icc_profile: Option<Vec<u8>>,
    /// What the sandbox did to decode it.
    pub receipt: Receipt,
}

impl Sandbox {
    /// Decodes an untrusted PNG, JPEG, TIFF or WebP image in the `image-decoder` guest.
    ///
    /// The header's dimensions are checked against [`Limits::max_pixels`] before any pixel buffer
    /// is allocated, and the decoder runs under `image::Limits` with an allocation cap of half
    /// the guest's memory: a decompression bomb is refused, not decoded.
    ///
    /// # Errors
    /// [`Error::Refused`] (a checkpoint, a RAW file), [`Error::LimitExceeded`] (`max_pixels`),
    /// [`Error::Malformed`] (rules `image_unsupported`, `image_malformed`, `decode_limit`),
    /// [`Error::GuestTrap`], [`Error::GuestTimeout`], [`Error::GuestOutOfMemory`], [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// let png = sandload_samples::png_image(3, 2);
    /// let sandbox = sandload::Sandbox::new()?;
    /// let decoded = sandbox.decode_image(sandload::Input::from_bytes(png, "photo.jpg"))?;
    /// assert_eq!((decoded.format.as_str(), decoded.image.width(), decoded.image.height()), ("png", 3, 2));
    /// # Ok(()) }
    /// ```
    pub fn decode_image(&self, input: Input) -> Result<DecodedImage> {
        self.decode_image_with_receipt(input).0
    }

    /// [`decode_image`](Sandbox::decode_image), also returning the [`Receipt`] when the file is
    /// rejected.
    pub fn decode_image_with_receipt(&self, input: Input) -> (Result<DecodedImage>, Receipt) {
        let (result, receipt) = self.with_whole_file(input, |sandbox, file, data, sniffed, stats, format| {
            sandbox.decode_image_bytes(file, data, sniffed, stats, format)
        });
        (result.map(|decoded| decoded.with_receipt(receipt.clone())), receipt)
    }

    /// Decodes `data` (sniffed as `sniffed`) in the image guest, adding the call to `stats`.
    pub(crate) fn decode_image_bytes(
        &self,
        file: &Path,
        data: &[u8],
        sniffed: &Sniffed,
        stats: &mut GuestStats,
        format: &mut Format,
    ) -> Result<Decoded> {
        *format = sniffed.format;
        if let Some(refusal) = refuse_as_image(file, sniffed) {
            return Err(refusal);
        }
        let limits = self.limits();
        let request = Request {
            file_len: data.len() as u64,
            max_pixels: limits.max_pixels,
            // Half the guest's memory: the other half holds the file and the decoder's state.
            max_alloc_bytes: limits.guest_memory_bytes / 2,
        };
        let format = *format;
        self.call(Guest::ImageDecoder, file, &request, data, stats, |response: Response, memory| {
            let picture = response.map_err(|e| guest_rejection(file, format, limits, Guest::ImageDecoder, e))?;
            let image = to_image(&picture, memory, limits).map_err(|v| violation(file, format, limits, v))?;
            Ok(Decoded {
                file: file.to_path_buf(),
                format: picture.format,
                image,
                orientation: picture.orientation.into(),
                icc_profile: picture.icc_profile,
            })
        })
    }
}

/// A picture the image guest decoded and the host checked, before its receipt is written.
pub(crate) struct Decoded {
    file: PathBuf,
    format: String,
    image: DynamicImage,
    orientation: u16,
    icc_profile: Option<Vec<u8>>,
}

impl Decoded {
    pub(crate) fn with_receipt(self, receipt: Receipt) -> DecodedImage {
        let Decoded { file, format, image, orientation, icc_profile } = self;
        DecodedImage { file, format, image, orientation, icc_profile, receipt }
    }
}

/// Checks a guest's picture against its memory and the limits, and copies the pixels once into an
/// image buffer. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn to_image(picture: &Picture, memory: &[u8], limits: &Limits) -> std::result::Result<DynamicImage, Violation> {
    let bad = |detail: String| Violation { rule: Rule::ImageMalformed.name(), offset: None, detail };
    let (w, h) = (picture.width, picture.height);
    if w == 0 || h == 0 || w > u64::from(u32::MAX) || h > u64::from(u32::MAX) {
        return Err(bad(format!("picture is {w}x{h}")));
    }
    let pixels = w * h; // both < 2^32: no overflow
    if pixels > limits.max_pixels {
        return Err(Violation {
            rule: Rule::PixelLimit.name(),
            offset: Some(pixels),
            detail: format!("{w}x{h} over max_pixels"),
        });
    }
    if picture.format.len() > 32 {
        return Err(bad("format name longer than 32 bytes".into()));
    }
    if picture.orientation > 8 {
        return Err(bad(format!("orientation {} is not an EXIF orientation (0-8)", picture.orientation)));
    }
    if let Some(icc) = &picture.icc_profile {
        if icc.len() as u64 > sandload_abi::image::MAX_ICC_BYTES {
            return Err(bad(format!(
                "ICC profile of {} bytes, over {}",
                icc.len(),
                sandload_abi::image::MAX_ICC_BYTES
            )));
        }
    }
    let layout = picture.layout;
    let expected = pixels.checked_mul(layout.bytes_per_pixel()).ok_or_else(|| bad(format!("{w}x{h} overflows")))?;
    let bytes = region_bytes(memory, picture.pixels, expected, "pixels").map_err(|v| bad(v.detail))?;
    let (w, h) = (w as u32, h as u32);
    let u16s = || bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect::<Vec<_>>();
    let f32s = || bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<_>>();
    // Lengths were checked above, so from_raw cannot fail.
    let image = match layout {
        Layout::L8 => ImageBuffer::from_raw(w, h, bytes.to_vec()).map(DynamicImage::ImageLuma8),
        Layout::La8 => ImageBuffer::from_raw(w, h, bytes.to_vec()).map(DynamicImage::ImageLumaA8),
        Layout::Rgb8 => ImageBuffer::from_raw(w, h, bytes.to_vec()).map(DynamicImage::ImageRgb8),
        Layout::Rgba8 => ImageBuffer::from_raw(w, h, bytes.to_vec()).map(DynamicImage::ImageRgba8),
        Layout::L16 => ImageBuffer::from_raw(w, h, u16s()).map(DynamicImage::ImageLuma16),
        Layout::La16 => ImageBuffer::from_raw(w, h, u16s()).map(DynamicImage::ImageLumaA16),
        Layout::Rgb16 => ImageBuffer::from_raw(w, h, u16s()).map(DynamicImage::ImageRgb16),
        Layout::Rgba16 => ImageBuffer::from_raw(w, h, u16s()).map(DynamicImage::ImageRgba16),
        Layout::Rgb32F => ImageBuffer::from_raw(w, h, f32s()).map(DynamicImage::ImageRgb32F),
        Layout::Rgba32F => ImageBuffer::from_raw(w, h, f32s()).map(DynamicImage::ImageRgba32F),
    };
    image.ok_or_else(|| bad(format!("{w}x{h} {layout:?} buffer of {} bytes", bytes.len())))
}
