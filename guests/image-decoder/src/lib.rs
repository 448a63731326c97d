//! sandload guest: decode a PNG, JPEG, TIFF or WebP file with the `image` crate (TIFF and
//! BigTIFF with the `tiff` crate directly: see [`tiff_picture`]).
//!
//! The format is guessed from the content (never a file name; the guest has none). The header's
//! dimensions are checked against the host's pixel limit before any pixel buffer exists, and the
//! decoder runs under `image::Limits` (`max_alloc`, width and height), so a dimension bomb is
//! refused before allocation; the guest memory cap backs both up.

use std::io::Cursor;

use image::error::ImageError;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use sandload_abi::image::{Request, Response};
use sandload_abi::{GuestError, Rule};

mod lossless_jpeg;
mod tiff_picture;

// Owned: a palette TIFF is patched in place before the tiff crate reads it (see tiff_picture).
sandload_abi::guest_main!(Request, decode, owned);

pub(crate) fn fail(rule: Rule, value: Option<u64>, detail: impl Into<String>) -> GuestError {
    GuestError { rule, offset: None, value, detail: detail.into() }
}

fn image_error(e: ImageError, req: &Request) -> GuestError {
    match e {
        ImageError::Unsupported(e) => fail(Rule::ImageUnsupported, None, e.to_string()),
        ImageError::Limits(e) => fail(Rule::DecodeLimit, Some(req.max_alloc_bytes), e.to_string()),
        other => fail(Rule::ImageMalformed, None, other.to_string()),
    }
}

/// Refuses, as the pixel limit it breaks, an image whose header declares more than
/// `max_pixels`: checked before any decoder allocates for it.
pub(crate) fn check_pixels(name: &str, width: u64, height: u64, req: &Request) -> Result<(), GuestError> {
    let pixels = width.saturating_mul(height);
    if pixels > req.max_pixels {
        return Err(fail(
            Rule::PixelLimit,
            Some(pixels),
            format!("{name} header declares {width}x{height} = {pixels} pixels, over max_pixels {}", req.max_pixels),
        ));
    }
    Ok(())
}

/// Decodes `payload` (a whole image file).
pub fn decode(req: Request, payload: Vec<u8>) -> Response {
    if tiff_picture::is_tiff(&payload) {
        return tiff_picture::decode(&req, payload);
    }
    let payload = &payload[..];
    if lossless_jpeg::is_lossless_jpeg(payload) {
        return lossless_jpeg::decode(&req, payload);
    }
    let mut reader = ImageReader::new(Cursor::new(payload))
        .with_guessed_format()
        .map_err(|e| fail(Rule::ImageMalformed, None, format!("reading the signature: {e}")))?;
    let format =
        reader.format().ok_or_else(|| fail(Rule::ImageNotRecognised, None, "not a PNG, JPEG, TIFF or WebP file"))?;
    let name = format.extensions_str().first().copied().unwrap_or("image");

    // Read the header alone first, without limits, so that a dimension bomb is reported as the
    // pixel limit it breaks rather than as whichever allocation the decoder would try first.
    // Header parsing itself is bounded by the guest's memory cap.
    let (width, height) = dimensions(payload, format).map_err(|e| image_error(e, &req))?;
    check_pixels(name, width.into(), height.into(), &req)?;

    let mut limits = image::Limits::default();
    limits.max_alloc = Some(req.max_alloc_bytes);
    limits.max_image_width = Some(u32::try_from(req.max_pixels).unwrap_or(u32::MAX));
    limits.max_image_height = Some(u32::try_from(req.max_pixels).unwrap_or(u32::MAX));
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(|e| image_error(e, &req))?;
    if decoder.dimensions() != (width, height) {
        return Err(fail(Rule::ImageMalformed, None, "the header reads differently the second time"));
    }
    // Not every image decoder reserves its output against `max_alloc` itself: check the pixel
    // buffer here, before `from_decoder` allocates it.
    let needed = decoder.total_bytes();
    if needed > req.max_alloc_bytes {
        return Err(fail(
            Rule::DecodeLimit,
            Some(req.max_alloc_bytes),
            format!(
                "{width}x{height} {:?} needs {needed} bytes, over the decoder's max_alloc {}",
                decoder.color_type(),
                req.max_alloc_bytes
            ),
        ));
    }
    // Metadata the caller needs to show the pixels right: read before decoding (the decoder is
    // consumed by it). A broken EXIF or ICC chunk loses the metadata, not the image.
    let icc_profile = decoder.icc_profile().ok().flatten();
    let orientation = decoder.orientation().map_or(0, |o| o.to_exif());
    let image = DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, &req))?;
    Ok(picture::picture(name, image, orientation, icc_profile))
}

/// The dimensions a file's header declares, read without decoding.
fn dimensions(payload: &[u8], format: ImageFormat) -> image::ImageResult<(u32, u32)> {
    if format == ImageFormat::Png {
        // image's PNG decoder refuses, as a generic memory limit, any image whose buffer would
        // not fit a 32-bit usize, before it reports the dimensions; the png crate's header read
        // does not size anything.
        let mut decoder = png::Decoder::new(Cursor::new(payload));
        let info = decoder
            .read_header_info()
            .map_err(|e| ImageError::Decoding(image::error::DecodingError::new(ImageFormat::Png.into(), e)))?;
        return Ok((info.width, info.height));
    }
    let mut probe = ImageReader::with_format(Cursor::new(payload), format);
    probe.no_limits();
    probe.into_dimensions()
}
