//! Tiled raw images decoded a range of tiles at a time, so that the host can spread one file's
//! tiles over parallel guest calls (rawler decodes them with rayon natively; a guest has one
//! thread).
//!
//! Only what rawler's own DNG path would decode tile by tile with nothing applied after it: lossless
//! JPEG tiles (compression 7) of unsigned 16-bit-or-less samples, without a linearisation table or
//! interleaving, and not the 8-bit JPEG variants rawler hands to another decoder. Each tile is
//! decoded exactly as rawler's `decode_tiles` does (the same decompressor, the same line width),
//! so the host's stitching reproduces `plain_image_from_ifd` bit for bit.

use rawler::decompressors::Decompressor;
use rawler::decompressors::ljpeg::LJpegDecompressor;
use rawler::formats::tiff::IFD;
use rawler::rawsource::RawSource;
use rawler::tags::{DngTag, TiffCommonTag, TiffTag};
use sandload_abi::raw::Tiling;
use sandload_abi::{GuestError, Rule};

/// How `raw` is tiled, if its tiles can be decoded separately (see the module doc).
pub fn tiling(raw: &IFD, cpp: usize) -> Option<Tiling> {
    fn first<T: TiffTag>(raw: &IFD, tag: T) -> Option<u32> {
        raw.get_entry(tag).map(|e| e.force_u32(0))
    }
    let value = |tag| first(raw, tag);
    let compression = value(TiffCommonTag::Compression)?;
    let bits = value(TiffCommonTag::BitsPerSample)?;
    let sample_format = value(TiffCommonTag::SampleFormat).unwrap_or(1);
    let photometric = value(TiffCommonTag::PhotometricInt)?;
    let interleaved = first(raw, DngTag::ColumnInterleaveFactor).unwrap_or(1) != 1
        || first(raw, DngTag::RowInterleaveFactor).unwrap_or(1) != 1;
    // rawler sends 8-bit greyscale and YCbCr "ModernJPEG" to its lossy JPEG decoder.
    if compression != 7
        || !(9..=16).contains(&bits)
        || sample_format != 1
        || photometric == 6
        || interleaved
        || raw.has_entry(TiffCommonTag::Linearization)
        || !(1..=4).contains(&cpp)
    {
        return None;
    }
    let (width, height) = (value(TiffCommonTag::ImageWidth)? as u64, value(TiffCommonTag::ImageLength)? as u64);
    let (tile_width, tile_height) = (value(TiffCommonTag::TileWidth)? as u64, value(TiffCommonTag::TileLength)? as u64);
    if width == 0 || height == 0 || tile_width == 0 || tile_height == 0 {
        return None;
    }
    let tiling =
        Tiling { tile_width, tile_height, across: width.div_ceil(tile_width), down: height.div_ceil(tile_height) };
    let offsets = raw.get_entry(TiffCommonTag::TileOffsets)?.count() as u64;
    (offsets == tiling.across * tiling.down).then_some(tiling)
}

/// Tiles `first .. first + count` of `raw`, decoded one after the other (padding included).
pub fn decode(
    source: &RawSource,
    raw: &IFD,
    tiling: &Tiling,
    cpp: usize,
    first: u32,
    count: u32,
) -> Result<Vec<u16>, GuestError> {
    let fail = |detail: String| GuestError { rule: Rule::RawMalformed, offset: None, value: None, detail };
    let sources = raw.tile_data(source).map_err(|e| fail(format!("tiles: {e}")))?;
    let (first, count) = (first as usize, count as usize);
    let end = first.checked_add(count).filter(|&end| end <= sources.len() && count > 0);
    let Some(end) = end else {
        return Err(GuestError {
            rule: Rule::BadRequest,
            offset: None,
            value: None,
            detail: format!("tiles {first}..+{count} asked of {} tiles", sources.len()),
        });
    };
    let line = tiling.tile_width as usize * cpp;
    let tile_len = line * tiling.tile_height as usize;
    let mut out = vec![0u16; tile_len * count];
    for (tile, src) in out.chunks_exact_mut(tile_len).zip(&sources[first..end]) {
        LJpegDecompressor::new().decompress(src, 0, tile.chunks_exact_mut(line), line).map_err(fail)?;
    }
    Ok(out)
}
