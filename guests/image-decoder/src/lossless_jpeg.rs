//! Lossless JPEG (ITU T.81 process 14, SOF3), decoded with `jpeg-decoder`: zune-jpeg, `image`'s
//! JPEG decoder, has no lossless mode. Medical and scientific images and some camera tools write
//! it; 2-16-bit precision, grey or RGB.

use sandload_abi::Rule;
use sandload_abi::image::{Colour, Layout, Picture, Request, Response, Sample};

use crate::{check_pixels, fail};

/// The most marker segments looked at before the frame header.
const MAX_SEGMENTS: usize = 64;

/// Whether `payload` is a JPEG whose first frame header is SOF3 (lossless, Huffman-coded).
/// Walks the marker segments after SOI (bounded), as every JPEG reader does.
pub fn is_lossless_jpeg(payload: &[u8]) -> bool {
    if !payload.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut at = 2usize;
    for _ in 0..MAX_SEGMENTS {
        let Some(&[0xFF, marker]) = payload.get(at..at + 2) else { return false };
        match marker {
            0xC3 => return true,
            // Any other frame header, or the start of scan data: not lossless.
            0xC0..=0xC2 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDA => return false,
            0xFF => at += 1, // fill byte
            _ => {
                let Some(len) = payload.get(at + 2..at + 4) else { return false };
                at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
    false
}

/// Decodes a lossless JPEG under the pixel and allocation limits.
pub fn decode(req: &Request, payload: &[u8]) -> Response {
    let malformed = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(what) => {
            fail(Rule::ImageUnsupported, None, format!("lossless JPEG: {what:?}"))
        }
        other => fail(Rule::ImageMalformed, None, format!("lossless JPEG: {other}")),
    };
    let mut decoder = jpeg_decoder::Decoder::new(payload);
    decoder.set_max_decoding_buffer_size(usize::try_from(req.max_alloc_bytes).unwrap_or(usize::MAX));
    decoder.read_info().map_err(malformed)?;
    let info = decoder.info().ok_or_else(|| fail(Rule::ImageMalformed, None, "lossless JPEG: no frame header"))?;
    let (width, height) = (u64::from(info.width), u64::from(info.height));
    check_pixels("jpeg", width, height, req)?;
    let pixels = width * height;
    let layout = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => Layout::L8,
        jpeg_decoder::PixelFormat::L16 => Layout::L16,
        jpeg_decoder::PixelFormat::RGB24 => Layout::Rgb8,
        jpeg_decoder::PixelFormat::CMYK32 => Layout::new(Colour::Cmyk, Sample::U8),
    };
    let needed = pixels.saturating_mul(layout.bytes_per_pixel());
    if needed > req.max_alloc_bytes {
        return Err(fail(
            Rule::DecodeLimit,
            Some(req.max_alloc_bytes),
            format!("{width}x{height} lossless JPEG needs {needed} bytes, over the decoder's max_alloc"),
        ));
    }
    let samples = decoder.decode().map_err(malformed)?;
    // jpeg-decoder gives 16-bit samples in native byte order: little-endian on wasm32, the ABI's.
    if samples.len() as u64 != needed {
        return Err(fail(Rule::ImageMalformed, None, "lossless JPEG: the decoder returned a short image"));
    }
    Ok(Picture {
        format: "jpeg".into(),
        width,
        height,
        layout,
        pixels: picture::leak(samples),
        orientation: 1,
        icc_profile: None,
    })
}
