//! TIFF and BigTIFF, decoded with the `tiff` crate directly rather than through `image`.
//!
//! `image`'s `DynamicImage` holds ten layouts (8/16-bit integer and 32-bit float grey/RGB(A)),
//! so `image` refuses TIFFs that Pillow opens every day: 32-bit integer and 64-bit float grey,
//! signed samples, CMYK, bilevel and 2/4-bit grey, BigTIFF. The `tiff` crate decodes those; this
//! module hands its samples over as they are, in an ABI [`Layout`] that says their type.
//!
//! What still is refused is refused as `image_unsupported` naming the feature (e.g. "TIFF:
//! compression method OJPEG is unsupported"), never as a broken file.

use std::io::Cursor;

use sandload_abi::image::{Colour, Layout, Picture, Request, Response, Sample};
use sandload_abi::raw::Region;
use sandload_abi::{GuestError, Rule};
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::{CompressionMethod, IfdPointer, Tag};
use tiff::{ColorType, TiffError};

use crate::{check_pixels, fail};

/// Whether `payload` starts with a TIFF or BigTIFF signature (either byte order).
pub fn is_tiff(payload: &[u8]) -> bool {
    [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"].iter().any(|sig| payload.starts_with(*sig))
}

fn tiff_error(e: TiffError, req: &Request) -> GuestError {
    match e {
        TiffError::UnsupportedError(e) => fail(Rule::ImageUnsupported, None, format!("TIFF: {e}")),
        TiffError::LimitsExceeded => fail(
            Rule::DecodeLimit,
            Some(req.max_alloc_bytes),
            format!("TIFF: decoding needs more than the decoder's max_alloc {}", req.max_alloc_bytes),
        ),
        other => fail(Rule::ImageMalformed, None, format!("TIFF: {other}")),
    }
}

fn unsupported(what: String) -> GuestError {
    fail(Rule::ImageUnsupported, None, format!("TIFF: {what}"))
}

/// Decodes the first image of a TIFF or BigTIFF file.
pub fn decode(req: &Request, mut payload: Vec<u8>) -> Response {
    // The tiff crate has no palette images. A palette image's samples are grey-like indices:
    // read the colour map, mark IFD0 as grey in place, decode the indices, and expand them.
    let palette = palette_of(&payload, req)?;
    if palette.is_some() {
        set_ifd0_tag(&mut payload, Tag::PhotometricInterpretation, 1)?;
    }
    // Nor has it 9- to 15-bit samples (12-bit grey is common from scientific cameras and
    // scanners). An uncompressed or LZW/Deflate strip of them, without a predictor, is the same
    // bytes as 8-bit grey `row_bytes` wide: relabel IFD0 so, decode, and unpack the bits here.
    let odd = odd_depth_of(&payload);
    if let Some(odd) = &odd {
        set_ifd0_tag(&mut payload, Tag::BitsPerSample, 8)?;
        set_ifd0_tag(&mut payload, Tag::ImageWidth, odd.row_bytes as u32)?;
    }
    let payload = &payload[..];
    let err = |e: TiffError| tiff_error(e, req);
    let budget = usize::try_from(req.max_alloc_bytes).unwrap_or(usize::MAX);
    let mut limits = Limits::default();
    limits.decoding_buffer_size = budget;
    limits.intermediate_buffer_size = budget;
    let mut decoder = Decoder::new(Cursor::new(payload)).map_err(err)?.with_limits(limits);

    let (mut width, height) = decoder.dimensions().map_err(err)?;
    if let Some(odd) = &odd {
        width = odd.width;
    }
    check_pixels("tiff", width.into(), height.into(), req)?;
    if width == 0 || height == 0 {
        return Err(fail(Rule::ImageMalformed, None, format!("TIFF: the image is {width}x{height}")));
    }

    // A camera's RAW file is a TIFF too, whose first image is often a thumbnail: decoding that
    // would pass a thumbnail off as the picture. Refuse it as RAW data instead.
    if let Some(ifd) = raw_data_ifd(&mut decoder) {
        return Err(fail(
            Rule::ImageIsRaw,
            None,
            format!("the TIFF holds camera raw data (CFA or linear raw samples in IFD {ifd})"),
        ));
    }
    let compression = decoder.find_tag_unsigned::<u16>(Tag::Compression).ok().flatten();
    if compression == Some(CompressionMethod::JPEG.to_u16()) {
        // The tiff crate reports it as an unknown method; say which feature it is.
        return Err(unsupported("JPEG-in-TIFF with old-style JPEG compression (6)".into()));
    }
    let colour_type = decoder.colortype().map_err(err)?;
    let (colour, ycbcr) = match colour_type {
        ColorType::Gray(_) => (Colour::L, false),
        ColorType::GrayA(_) | ColorType::Multiband { num_samples: 2, .. } => (Colour::La, false),
        ColorType::RGB(_) => (Colour::Rgb, false),
        ColorType::RGBA(_) => (Colour::Rgba, false),
        ColorType::CMYK(_) => (Colour::Cmyk, false),
        ColorType::CMYKA(_) => (Colour::Cmyka, false),
        ColorType::YCbCr(8) => (Colour::Rgb, true),
        ColorType::Multiband { num_samples, .. } => return Err(unsupported(format!("{num_samples} bands per pixel"))),
        other => return Err(unsupported(format!("{other:?} pixels"))),
    };
    let bits = colour_type.bit_depth();
    // Metadata is read before the pixels, and a broken tag loses the metadata, not the image.
    let orientation = match decoder.find_tag_unsigned::<u16>(Tag::Orientation) {
        Ok(Some(o @ 1..=8)) => o as u8,
        _ => 1,
    };
    let icc_profile = decoder
        .find_tag(Tag::IccProfile)
        .ok()
        .flatten()
        .and_then(|v| v.into_u8_vec().ok())
        .filter(|p| p.len() as u64 <= sandload_abi::image::MAX_ICC_BYTES);

    let picture = |layout: Layout, pixels: Region| Picture {
        format: if payload[2] == b'+' || payload[3] == b'+' { "bigtiff" } else { "tiff" }.into(),
        width: u64::from(width),
        height: u64::from(height),
        layout,
        pixels,
        orientation,
        icc_profile: icc_profile.clone(),
    };
    let planar = decoder.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).ok().flatten() == Some(2);
    if planar && decoder.get_chunk_type() == ChunkType::Tile && colour.channels() > 1 && bits >= 8 && !ycbcr {
        // tiff 0.11 asserts (panics) in `read_image_to_buffer` on tiled planar images: its
        // whole-image readout slices each plane's buffer past its end. Read tile by tile.
        let (sample, bytes) = planar_tiles(&mut decoder, req, (width, height), colour.channels() as usize)?;
        return Ok(picture(Layout::new(colour, sample), picture::leak(bytes)));
    }

    let mut result = DecodingResult::U8(Vec::new());
    let buffer = decoder.read_image_to_buffer(&mut result).map_err(err)?;
    if result.as_buffer(0).byte_len() < buffer.complete_len {
        // The decoder read one plane only, because all of them would not fit its buffer limit.
        return Err(fail(
            Rule::DecodeLimit,
            Some(req.max_alloc_bytes),
            format!(
                "TIFF: {width}x{height} {colour_type:?} needs {} bytes, over the decoder's max_alloc {}",
                buffer.complete_len, req.max_alloc_bytes
            ),
        ));
    }

    let channels = colour.channels() as usize;
    let (w, h) = (width as usize, height as usize);
    let planes = buffer.planes;
    // Generic over the sample type, so a function rather than a closure.
    fn leak_interleaved<T: Copy + Default>(
        v: Vec<T>,
        planes: usize,
        pixels: usize,
        channels: usize,
    ) -> Result<Region, GuestError> {
        Ok(picture::leak(interleave(v, planes, pixels, channels)?))
    }
    macro_rules! interleaved {
        ($v:expr) => {
            leak_interleaved($v, planes, w * h, channels)
        };
    }
    let (sample, region) = match result {
        DecodingResult::U8(v) if odd.is_some() => {
            let odd = odd.as_ref().expect("just matched");
            let samples = odd.unpack(&v, h).ok_or_else(|| {
                fail(Rule::ImageMalformed, None, "TIFF: the decoder returned a short image".to_string())
            })?;
            return Ok(picture(Layout::L16, picture::leak(samples)));
        }
        DecodingResult::U8(v) if palette.is_some() || bits < 8 => {
            if !matches!(bits, 1 | 2 | 4 | 8) || buffer.planes > 1 {
                return Err(unsupported(format!("{bits}-bit samples in {} planes", buffer.planes)));
            }
            let samples =
                if bits < 8 { unpack_low_bits(&v, w, h, channels, bits)? } else { interleave(v, 1, w * h, 1)? };
            match &palette {
                Some(colormap) => {
                    let rgb = samples.iter().flat_map(|&i| colormap.rgb(i)).collect();
                    return Ok(picture(Layout::Rgb8, picture::leak::<u8>(rgb)));
                }
                None => (Sample::U8, picture::leak(samples)),
            }
        }
        DecodingResult::U8(v) if ycbcr => {
            let mut rgb = interleave(v, buffer.planes, w * h, channels)?;
            ycbcr_to_rgb(&mut rgb);
            (Sample::U8, picture::leak(rgb))
        }
        DecodingResult::U8(v) => (Sample::U8, interleaved!(v)?),
        DecodingResult::U16(v) => (Sample::U16, interleaved!(v)?),
        DecodingResult::U32(v) => (Sample::U32, interleaved!(v)?),
        DecodingResult::U64(v) => (Sample::U64, interleaved!(v)?),
        DecodingResult::I8(v) => (Sample::I8, interleaved!(v)?),
        DecodingResult::I16(v) => (Sample::I16, interleaved!(v)?),
        DecodingResult::I32(v) => (Sample::I32, interleaved!(v)?),
        DecodingResult::I64(v) => (Sample::I64, interleaved!(v)?),
        DecodingResult::F16(v) => (Sample::F16, interleaved!(v.into_iter().map(|x| x.to_bits()).collect())?),
        DecodingResult::F32(v) => (Sample::F32, interleaved!(v)?),
        DecodingResult::F64(v) => (Sample::F64, interleaved!(v)?),
    };
    let layout = Layout { colour, sample, bits: if bits < 8 { bits } else { Layout::new(colour, sample).bits } };
    if ycbcr && sample != Sample::U8 {
        return Err(unsupported(format!("{bits}-bit YCbCr")));
    }
    Ok(picture(layout, region))
}

/// The sample type of a decoded chunk.
fn sample_of(result: &DecodingResult) -> Sample {
    match result {
        DecodingResult::U8(_) => Sample::U8,
        DecodingResult::U16(_) => Sample::U16,
        DecodingResult::U32(_) => Sample::U32,
        DecodingResult::U64(_) => Sample::U64,
        DecodingResult::I8(_) => Sample::I8,
        DecodingResult::I16(_) => Sample::I16,
        DecodingResult::I32(_) => Sample::I32,
        DecodingResult::I64(_) => Sample::I64,
        DecodingResult::F16(_) => Sample::F16,
        DecodingResult::F32(_) => Sample::F32,
        DecodingResult::F64(_) => Sample::F64,
    }
}

/// A tiled planar image, read one tile of one plane at a time and interleaved into
/// `width x height x channels` samples (as little-endian bytes).
fn planar_tiles(
    decoder: &mut Decoder<Cursor<&[u8]>>,
    req: &Request,
    (width, height): (u32, u32),
    channels: usize,
) -> Result<(Sample, Vec<u8>), GuestError> {
    let err = |e: TiffError| tiff_error(e, req);
    let (tw, th) = decoder.chunk_dimensions();
    if tw == 0 || th == 0 {
        return Err(fail(Rule::ImageMalformed, None, format!("TIFF: tiles of {tw}x{th}")));
    }
    let across = width.div_ceil(tw);
    let per_plane = across * height.div_ceil(th);
    let tiles = decoder.tile_count().map_err(err)?;
    if u64::from(tiles) < u64::from(per_plane) * channels as u64 {
        return Err(fail(
            Rule::ImageMalformed,
            None,
            format!("TIFF: {tiles} tiles for {channels} planes of {per_plane}"),
        ));
    }
    let (w, h) = (width as usize, height as usize);
    let mut out: Vec<u8> = Vec::new();
    let mut sample = None;
    for plane in 0..channels {
        for tile in 0..per_plane {
            let index = plane as u32 * per_plane + tile;
            let (dw, dh) = decoder.chunk_data_dimensions(index);
            let mut chunk = decoder.read_chunk(index).map_err(err)?;
            let kind = sample_of(&chunk);
            let bps = kind.bytes() as usize;
            if out.is_empty() {
                let need = (w * h).checked_mul(channels * bps).filter(|&n| n as u64 <= req.max_alloc_bytes);
                let need = need.ok_or_else(|| {
                    fail(
                        Rule::DecodeLimit,
                        Some(req.max_alloc_bytes),
                        format!("TIFF: {width}x{height}x{channels} samples over the decoder's max_alloc"),
                    )
                })?;
                out = vec![0; need];
                sample = Some(kind);
            }
            if sample != Some(kind) {
                return Err(fail(Rule::ImageMalformed, None, "TIFF: tiles of different sample types".to_string()));
            }
            let bytes = chunk.as_buffer(0);
            let bytes = bytes.as_bytes();
            let (dw, dh) = (dw as usize, dh as usize);
            if bytes.len() < dw * dh * bps {
                return Err(fail(Rule::ImageMalformed, None, format!("TIFF: tile {index} is short")));
            }
            let (x0, y0) = ((tile % across * tw) as usize, (tile / across * th) as usize);
            for row in 0..dh.min(h.saturating_sub(y0)) {
                for col in 0..dw.min(w.saturating_sub(x0)) {
                    let from = (row * dw + col) * bps;
                    let to = (((y0 + row) * w + x0 + col) * channels + plane) * bps;
                    out[to..to + bps].copy_from_slice(&bytes[from..from + bps]);
                }
            }
        }
    }
    let sample = sample.ok_or_else(|| fail(Rule::ImageMalformed, None, "TIFF: no tiles".to_string()))?;
    Ok((sample, out))
}

/// A palette image's colour map: `3 x 2^bits` 16-bit entries, reds then greens then blues.
struct Palette {
    map: Vec<u16>,
    entries: usize,
}

impl Palette {
    /// The 8-bit RGB of index `i` (the top byte of each 16-bit entry, as Pillow reads it).
    fn rgb(&self, i: u8) -> [u8; 3] {
        let i = usize::from(i);
        [0, 1, 2].map(|c| (self.map[c * self.entries + i] >> 8) as u8)
    }
}

/// The colour map of IFD0, if it is a palette image (PhotometricInterpretation 3).
fn palette_of(payload: &[u8], req: &Request) -> Result<Option<Palette>, GuestError> {
    let Ok(mut decoder) = Decoder::new(Cursor::new(payload)) else { return Ok(None) };
    if decoder.find_tag_unsigned::<u16>(Tag::PhotometricInterpretation).ok().flatten() != Some(3) {
        return Ok(None);
    }
    let bits = decoder.find_tag_unsigned::<u16>(Tag::BitsPerSample).ok().flatten().unwrap_or(1);
    if !matches!(bits, 1 | 2 | 4 | 8) {
        return Err(unsupported(format!("{bits}-bit palette images")));
    }
    let entries = 1usize << bits;
    let map = decoder.find_tag_unsigned_vec::<u16>(Tag::ColorMap).map_err(|e| tiff_error(e, req))?;
    match map {
        Some(map) if map.len() == 3 * entries => Ok(Some(Palette { map, entries })),
        Some(map) => Err(fail(
            Rule::ImageMalformed,
            None,
            format!("TIFF: a {bits}-bit palette image's ColorMap has {} entries, not {}", map.len(), 3 * entries),
        )),
        None => Err(fail(Rule::ImageMalformed, None, "TIFF: a palette image without a ColorMap".to_string())),
    }
}

/// 9- to 15-bit grey samples in strips, read as 8-bit rows of `row_bytes` (see `decode`).
struct OddDepth {
    width: u32,
    bits: u8,
    row_bytes: usize,
}

impl OddDepth {
    /// The samples of `height` rows of packed `bits`-bit values (most significant first, rows
    /// padded to whole bytes), as u16s.
    fn unpack(&self, packed: &[u8], height: usize) -> Option<Vec<u16>> {
        let rows = packed.get(..self.row_bytes.checked_mul(height)?)?;
        let bits = u32::from(self.bits);
        let mut out = Vec::with_capacity(self.width as usize * height);
        for row in rows.chunks_exact(self.row_bytes) {
            let (mut acc, mut have) = (0u32, 0u32);
            let mut bytes = row.iter();
            for _ in 0..self.width {
                while have < bits {
                    acc = (acc << 8) | u32::from(*bytes.next()?);
                    have += 8;
                }
                have -= bits;
                out.push(((acc >> have) & ((1 << bits) - 1)) as u16);
                acc &= (1 << have) - 1;
            }
        }
        Some(out)
    }
}

/// IFD0 as 9- to 15-bit grey in uncompressed, LZW or Deflate strips without a predictor, the
/// layout [`OddDepth`] reads; `None` for anything else (which the tiff crate then judges).
fn odd_depth_of(payload: &[u8]) -> Option<OddDepth> {
    let mut decoder = Decoder::new(Cursor::new(payload)).ok()?;
    let mut tag = |t: Tag| decoder.find_tag_unsigned::<u32>(t).ok().flatten();
    let bits = tag(Tag::BitsPerSample)?;
    let grey = matches!(tag(Tag::PhotometricInterpretation), Some(0 | 1));
    let one_sample = tag(Tag::SamplesPerPixel).unwrap_or(1) == 1;
    let plain = matches!(tag(Tag::Compression).unwrap_or(1), 1 | 5 | 8 | 0x80B2);
    let no_predictor = tag(Tag::Predictor).unwrap_or(1) == 1;
    let strips = tag(Tag::TileWidth).is_none();
    let width = tag(Tag::ImageWidth)?;
    if !(9..=15).contains(&bits) || !(grey && one_sample && plain && no_predictor && strips) {
        return None;
    }
    let row_bytes = (width as usize).checked_mul(bits as usize)?.div_ceil(8);
    Some(OddDepth { width, bits: bits as u8, row_bytes })
}

/// Rewrites the value of `tag` (a SHORT or LONG, stored inline) in IFD0, in place: how a palette
/// image's indices and odd-depth rows are handed to the tiff crate as grey.
fn set_ifd0_tag(payload: &mut [u8], tag: Tag, value: u32) -> Result<(), GuestError> {
    let broken = || fail(Rule::ImageMalformed, None, format!("TIFF: IFD0's {tag:?} could not be rewritten"));
    let big_endian = payload.starts_with(b"MM");
    let bigtiff = payload.get(2..4) == Some(if big_endian { &[0, 43] } else { &[43, 0] });
    let read = |bytes: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &b) in bytes.iter().enumerate() {
            v |= u64::from(b) << (8 * if big_endian { bytes.len() - 1 - i } else { i });
        }
        v
    };
    let field = |at: usize, len: usize| payload.get(at..at.checked_add(len)?).map(read);
    let (ifd, count_len, entry_len, value_at) = if bigtiff {
        (field(8, 8).ok_or_else(broken)?, 8, 20, 12)
    } else {
        (field(4, 4).ok_or_else(broken)?, 2, 12, 8)
    };
    let ifd = usize::try_from(ifd).map_err(|_| broken())?;
    let count = field(ifd, count_len).ok_or_else(broken)?;
    for i in 0..count.min(4096) as usize {
        let entry = ifd + count_len + i * entry_len;
        if field(entry, 2).ok_or_else(broken)? != u64::from(tag.to_u16()) {
            continue;
        }
        let at = entry + value_at;
        let bytes: Vec<u8> = match field(entry + 2, 2).ok_or_else(broken)? {
            3 => {
                let v = u16::try_from(value).map_err(|_| broken())?;
                if big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
            }
            4 => {
                if big_endian {
                    value.to_be_bytes().to_vec()
                } else {
                    value.to_le_bytes().to_vec()
                }
            }
            _ => return Err(broken()),
        };
        payload.get_mut(at..at + bytes.len()).ok_or_else(broken)?.copy_from_slice(&bytes);
        return Ok(());
    }
    Err(broken())
}

/// The most directories [`raw_data_ifd`] looks at (IFD chain and SubIFDs together).
const MAX_DIRECTORIES: usize = 32;

/// The number (in walk order) of the first directory that holds CFA (32803) or linear raw
/// (34892) samples, looking through the IFD chain and SubIFDs (where DNG and most maker formats
/// put them). Unreadable directories are skipped: this only decides whether to refuse.
fn raw_data_ifd(decoder: &mut Decoder<Cursor<&[u8]>>) -> Option<usize> {
    let mut queue: Vec<IfdPointer> = decoder.ifd_pointer().into_iter().collect();
    let mut seen = Vec::new();
    while let Some(ptr) = queue.pop() {
        if seen.contains(&ptr.0) || seen.len() >= MAX_DIRECTORIES {
            continue;
        }
        seen.push(ptr.0);
        let Ok(dir) = decoder.read_directory(ptr) else { continue };
        let mut tags = decoder.read_directory_tags(&dir);
        if let Ok(Some(32803 | 34892)) = tags.find_tag_unsigned::<u16>(Tag::PhotometricInterpretation) {
            return Some(seen.len() - 1);
        }
        if let Ok(Some(sub)) = tags.find_tag(Tag::SubIfd) {
            queue.extend(sub.into_ifd_vec().unwrap_or_default().into_iter().take(MAX_DIRECTORIES));
        }
        queue.extend(dir.next());
    }
    None
}

/// `samples` with channels interleaved (the decoder gives one plane per channel when
/// `planes > 1`), cut to `pixels x channels`.
fn interleave<T: Copy + Default>(
    samples: Vec<T>,
    planes: usize,
    pixels: usize,
    channels: usize,
) -> Result<Vec<T>, GuestError> {
    let need = pixels.checked_mul(channels).ok_or_else(|| unsupported("an image this large".into()))?;
    if samples.len() < need {
        return Err(fail(
            Rule::ImageMalformed,
            None,
            format!("TIFF: the decoder returned {} samples for {need}", samples.len()),
        ));
    }
    if planes <= 1 {
        let mut samples = samples;
        samples.truncate(need);
        return Ok(samples);
    }
    if planes != channels {
        return Err(unsupported(format!("{planes} planes for {channels} channels")));
    }
    let mut out = vec![T::default(); need];
    for (c, plane) in samples.chunks_exact(pixels).take(planes).enumerate() {
        for (i, &s) in plane.iter().enumerate() {
            out[i * channels + c] = s;
        }
    }
    Ok(out)
}

/// Unpacks 1-, 2- or 4-bit samples (rows padded to whole bytes, most significant bits first, as
/// TIFF stores them) into one byte each, keeping their values.
fn unpack_low_bits(packed: &[u8], w: usize, h: usize, channels: usize, bits: u8) -> Result<Vec<u8>, GuestError> {
    let per_row = w * channels;
    let row_bytes = (per_row * usize::from(bits)).div_ceil(8);
    if packed.len() < row_bytes * h {
        return Err(fail(Rule::ImageMalformed, None, "TIFF: the decoder returned a short image".to_string()));
    }
    let per_byte = 8 / usize::from(bits);
    let mask = (1u8 << bits) - 1;
    let mut out = Vec::with_capacity(per_row * h);
    for row in packed.chunks_exact(row_bytes).take(h) {
        out.extend((0..per_row).map(|i| {
            let shift = 8 - usize::from(bits) * (i % per_byte + 1);
            (row[i / per_byte] >> shift) & mask
        }));
    }
    Ok(out)
}

/// Converts JPEG's YCbCr (JFIF, full range) to RGB in place, as libjpeg does for Pillow and
/// libtiff: the `tiff` crate hands JPEG-in-TIFF pixels over in the file's colour space.
fn ycbcr_to_rgb(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(3) {
        let (y, cb, cr) = (f32::from(px[0]), f32::from(px[1]) - 128.0, f32::from(px[2]) - 128.0);
        let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        px[0] = clamp(y + 1.402 * cr);
        px[1] = clamp(y - 0.344_136 * cb - 0.714_136 * cr);
        px[2] = clamp(y + 1.772 * cb);
    }
}
