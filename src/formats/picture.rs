//! PNG, JPEG, TIFF and WebP images (the `image-decoder` guest), and RAW files' embedded previews.

use std::path::{Path, PathBuf};

use sandload_abi::Rule;
use sandload_abi::image::{Picture, Request, Response};

use super::pixels::Pixels;
use crate::error::Result;
use crate::input::Input;
use crate::limits::Limits;
use crate::receipt::Receipt;
use crate::refusal::refuse_as_image;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, Sniffed};
use crate::verdict::{Violation, guest_rejection, region_bytes, violation};

/// A decoded image: pixels copied once out of the guest, in the file's own sample type.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The file.
    pub file: PathBuf,
    /// The format the decoder recognised (`"png"`, `"jpeg"`, `"tiff"`, `"bigtiff"`, `"webp"`;
    /// `"preview"` for a RAW file's preview).
    pub format: String,
    /// The pixels, in the file's own layout (grey, RGB(A) or CMYK(A); 1 to 64-bit integer or
    /// 16 to 64-bit float samples), as stored: not rotated by `orientation`.
    /// [`Pixels::to_dynamic_image`] gives them as an `image` crate buffer.
    pub pixels: Pixels,
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
    /// Decodes an untrusted PNG, JPEG, TIFF (or BigTIFF) or WebP image in the `image-decoder`
    /// guest. TIFF's sample layouts are kept as the file has them ([`Pixels`]).
    ///
    /// The header's dimensions are checked against [`Limits::max_pixels`] before any pixel buffer
    /// is allocated, and the decoder runs under `image::Limits` with an allocation cap of half
    /// the guest's memory: a decompression bomb is refused, not decoded.
    ///
    /// # Errors
    /// [`Error::Refused`](crate::Error::Refused) (a checkpoint; a RAW file, rule `image_is_raw` when only the decoder
    /// found its raw data; no image at all, `image_not_recognised`), [`Error::LimitExceeded`](crate::Error::LimitExceeded)
    /// (`max_pixels`), [`Error::Unsupported`](crate::Error::Unsupported) (a valid image using a feature no bundled decoder
    /// has, named in the reason), [`Error::Malformed`](crate::Error::Malformed) (rules `image_malformed`, `decode_limit`,
    /// `decoder_panic`), [`Error::GuestTrap`](crate::Error::GuestTrap), [`Error::GuestTimeout`](crate::Error::GuestTimeout),
    /// [`Error::GuestOutOfMemory`](crate::Error::GuestOutOfMemory), [`Error::Io`](crate::Error::Io).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// let png = sandload_samples::png_image(3, 2);
    /// let sandbox = sandload::Sandbox::new()?;
    /// let decoded = sandbox.decode_image(sandload::Input::from_bytes(png, "photo.jpg"))?;
    /// assert_eq!((decoded.format.as_str(), decoded.pixels.width(), decoded.pixels.height()), ("png", 3, 2));
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
        if let Some(refusal) = refuse_as_image(file, sniffed, data) {
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
        self.call(Guest::ImageDecoder, file, format, &request, data, stats, |response: Response, memory| {
            let picture = response.map_err(|e| guest_rejection(file, format, limits, Guest::ImageDecoder, e))?;
            let pixels = to_pixels(&picture, memory, limits).map_err(|v| violation(file, format, limits, v))?;
            Ok(Decoded {
                file: file.to_path_buf(),
                format: picture.format,
                pixels,
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
    pixels: Pixels,
    orientation: u16,
    icc_profile: Option<Vec<u8>>,
}

impl Decoded {
    pub(crate) fn with_receipt(self, receipt: Receipt) -> DecodedImage {
        let Decoded { file, format, pixels, orientation, icc_profile } = self;
        DecodedImage { file, format, pixels, orientation, icc_profile, receipt }
    }
}

/// Checks a guest's picture against its memory and the limits, and copies the pixels out once.
/// Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn to_pixels(picture: &Picture, memory: &[u8], limits: &Limits) -> std::result::Result<Pixels, Violation> {
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
    if !layout.is_valid() {
        return Err(bad(format!("{:?} samples of {} bits", layout.sample, layout.bits)));
    }
    let expected = pixels.checked_mul(layout.bytes_per_pixel()).ok_or_else(|| bad(format!("{w}x{h} overflows")))?;
    let bytes = region_bytes(memory, picture.pixels, expected, "pixels").map_err(|v| bad(v.detail))?;
    Pixels::new(w as u32, h as u32, layout, bytes.to_vec())
        .ok_or_else(|| bad(format!("{w}x{h} {} pixels hold a sample over {} bits", layout.name(), layout.bits)))
}
