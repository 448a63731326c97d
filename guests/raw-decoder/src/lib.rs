//! sandload guest: decode a camera RAW file with rawler.
//!
//! Input: the whole file (rawler's `decode_file` memory-maps, which WASI lacks, so the host copies
//! the bytes in and rawler reads them from a `RawSource` buffer). Output: the frame's metadata,
//! and the samples (u16 little-endian) left in guest memory for the host to copy once.
//!
//! Before the decoder allocates the image, the declared dimensions of the raw IFD are checked
//! against the pixel limit. Formats without a TIFF raw IFD are bounded by the guest memory cap
//! and checked again after decoding. A decoder panic (rawler has `todo!()`s on odd files) traps,
//! which the host reports as a guest crash.

use rawler::decoders::{FormatHint, RawDecodeParams, WellKnownIFD};
use rawler::formats::tiff::IFD;
use rawler::formats::tiff::Value;
use rawler::rawimage::{BlackLevel, WhiteLevel};
use rawler::rawimage::{RawImageData, RawPhotometricInterpretation};
use rawler::rawsource::RawSource;
use rawler::tags::{DngTag, TiffCommonTag};
use sandload_abi::raw::{Frame, Output, Rect, Request, Response};
use sandload_abi::{GuestError, Rule};

mod ciff_preview;
mod snapshot_alloc;
mod tiles;

sandload_abi::guest_main!(Request, decode, owned);

#[global_allocator]
static ALLOC: snapshot_alloc::SnapshotAlloc = snapshot_alloc::SnapshotAlloc::new();

/// Wizer pre-initialization hook: the host runs it once per sandbox and snapshots the result,
/// so that every file's fresh instance starts with rawler's camera catalogue already built
/// (parsing it from the embedded TOML costs ~100 ms per instance otherwise). It touches no input.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn wizer_initialize() {
    // get_decoder builds the catalogue (a lazy static) before it looks at the (empty) file.
    let _ = rawler::get_decoder(&RawSource::new_from_slice(&[]));
    ALLOC.seal();
}

fn fail(rule: Rule, value: Option<u64>, detail: impl Into<String>) -> GuestError {
    GuestError { rule, offset: None, value, detail: detail.into() }
}

/// Why rawler found no decoder: no container it knows ([`Rule::RawNotRecognised`]), a recognised
/// container of a camera it does not support ([`Rule::RawUnsupported`]), or a recognised container
/// it could not read ([`Rule::RawMalformed`]).
fn identification_error(e: &rawler::RawlerError) -> GuestError {
    match e {
        rawler::RawlerError::Unsupported { what, make, .. }
            if what == "No decoder found" || what.starts_with("Couldn't find a decoder for make") =>
        {
            let detail = if make.is_empty() {
                "no camera RAW format rawler knows (DNG, CR2/CR3/CRW, NEF/NRW, ARW, RAF, ORF, RW2, PEF, SRW, \
                 IIQ, MOS, ERF, KDC/DCR/DCS, MEF, 3FR, MRW, X3F, ARI, QTK, ...)"
                    .to_string()
            } else {
                format!("a TIFF whose Make {make:?} no rawler decoder handles")
            };
            fail(Rule::RawNotRecognised, None, detail)
        }
        other => decode_error(other),
    }
}

/// An intact file of a camera, mode or compression rawler does not support is `RawUnsupported`
/// (with what rawler says: make, model, mode); anything else is a file it could not read.
fn decode_error(e: &rawler::RawlerError) -> GuestError {
    match e {
        rawler::RawlerError::Unsupported { what, make, model, mode } => {
            fail(Rule::RawUnsupported, None, format!("{what} (make {make:?}, model {model:?}, mode {mode:?})"))
        }
        rawler::RawlerError::DecoderFailed(msg) => fail(Rule::RawMalformed, None, format!("rawler: {msg}")),
    }
}

/// Whether rawler's failure message says the file uses something it does not implement.
fn says_unsupported(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("unsupported") || d.contains("not supported") || d.contains("todo")
}

/// The Compression values of `root` and every IFD below it (at most 16), without repeats.
fn compressions_in(root: &IFD) -> Vec<u32> {
    let mut found = Vec::new();
    let mut stack = vec![root];
    let mut seen = 0;
    while let Some(ifd) = stack.pop() {
        seen += 1;
        if seen > 16 {
            break;
        }
        if let Some(c) = ifd.get_entry(TiffCommonTag::Compression).map(|e| e.force_u32(0)) {
            if !found.contains(&c) {
                found.push(c);
            }
        }
        stack.extend(ifd.sub_ifds().values().flatten());
    }
    found
}

/// A TIFF/DNG compression number with its name, where it has a well-known one.
fn compression_name(c: u32) -> String {
    let name = match c {
        1 => "uncompressed",
        7 => "JPEG / lossless JPEG",
        9 => "VC-5, GoPro GPR",
        8 => "Deflate",
        34892 => "lossy JPEG (DNG)",
        34713 => "Nikon NEF",
        52546 => "JPEG XL (DNG 1.7)",
        _ => return c.to_string(),
    };
    format!("{c} ({name})")
}

/// Declared pixels of an IFD (width x height).
fn declared_pixels(ifd: &IFD) -> Option<(u64, u64)> {
    let w = ifd.get_entry(TiffCommonTag::ImageWidth)?.force_u32(0) as u64;
    let h = ifd.get_entry(TiffCommonTag::ImageLength)?.force_u32(0) as u64;
    Some((w, h))
}

/// Decodes `payload` (a whole RAW file), which rawler reads in place.
pub fn decode(req: Request, payload: Vec<u8>) -> Response {
    let source = RawSource::new_from_shared_vec(std::sync::Arc::new(payload));
    let params = RawDecodeParams::default();
    // rawler identifies the container itself (magic numbers, TIFF Make tags, file sizes of
    // headerless formats): the host keeps no list of makers or formats.
    let decoder = rawler::get_decoder(&source).map_err(|e| identification_error(&e))?;

    let raw_ifd = decoder.ifd(WellKnownIFD::Raw).ok().flatten();
    if let Some(raw_ifd) = &raw_ifd {
        if let Some((w, h)) = declared_pixels(raw_ifd) {
            if w * h > req.max_pixels {
                return Err(fail(
                    Rule::PixelLimit,
                    Some(w * h),
                    format!("raw IFD declares {w}x{h} = {} pixels, over max_pixels {}", w * h, req.max_pixels),
                ));
            }
        }
    }

    // Only `Samples` decodes the pixel data: metadata and previews ask rawler for a "dummy" image
    // (dimensions, levels, colour data, no samples), which its decoders build without touching
    // the pixel data (the DNG one since our patch: ../vendor/rawler/PATCHES.md).
    // A DNG in tiles the guest can decode separately is answered with its tiling instead of its
    // samples when the host offers to decode ranges of tiles in parallel calls.
    let mut tiling = match req.output {
        Output::SamplesOrTiling | Output::Tiles { .. } if decoder.format_hint() == FormatHint::DNG => {
            raw_ifd.as_ref().and_then(|ifd| {
                let cpp = ifd.get_entry(TiffCommonTag::SamplesPerPixel).map_or(1, |e| e.force_usize(0));
                tiles::tiling(ifd, cpp)
            })
        }
        _ => None,
    };
    let dummy = match req.output {
        Output::Samples => false,
        Output::SamplesOrTiling => tiling.is_some(),
        Output::Metadata | Output::Preview | Output::Tiles { .. } => true,
    };
    let raw_image = |dummy: bool| {
        decoder.raw_image(&source, &params, dummy).map_err(|e| match decode_error(&e) {
            // rawler reports some intact files it cannot decode as failures ("TODO: Unsupported DNG
            // compression", "NEF compression .. is not supported"): say so, naming the camera and the
            // compression the file uses.
            err if err.rule == Rule::RawMalformed && says_unsupported(&err.detail) => {
                // The root IFD's own tags: rawler's camera metadata needs the raw IFD it could not use.
                let root = decoder.ifd(WellKnownIFD::Root).ok().flatten();
                let text = |tag| {
                    let entry = root.as_ref().and_then(|r| r.get_entry(tag)).and_then(|e| e.as_string().cloned());
                    entry.map_or("?".to_string(), |t| t.trim_end_matches('\0').to_string())
                };
                let (make, model) = (text(TiffCommonTag::Make), text(TiffCommonTag::Model));
                let compressions = root.as_ref().map(|root| compressions_in(root));
                let compressions = compressions.filter(|c| !c.is_empty()).map_or("unknown".to_string(), |c| {
                    c.iter().map(|c| compression_name(*c)).collect::<Vec<_>>().join(", ")
                });
                fail(
                    Rule::RawUnsupported,
                    None,
                    format!("{} (make {make:?}, model {model:?}, compression {compressions})", err.detail),
                )
            }
            err => err,
        })
    };
    let mut image = raw_image(dummy)?;
    // rawler takes the black level of cameras with masked (optically black) areas from those
    // pixels when neither the camera catalogue nor the file gives one; a dummy image has no
    // pixels, so it gets a placeholder of 0 (a Canon G2 CRW: 0 instead of ~32). Metadata must not
    // depend on how it was asked for: such files decode their samples for the real level.
    if dummy && !image.blackareas.is_empty() && image.blacklevel == BlackLevel::default() {
        image = raw_image(false)?;
        if req.output == Output::SamplesOrTiling {
            // The samples are decoded now: answer with them.
            tiling = None;
        } else {
            image.data = RawImageData::Integer(Vec::new());
        }
    }

    let pixels = (image.width as u64).saturating_mul(image.height as u64);
    if pixels > req.max_pixels {
        return Err(fail(
            Rule::PixelLimit,
            Some(pixels),
            format!("decoded image has {pixels} pixels, over max_pixels {}", req.max_pixels),
        ));
    }

    if let Some(raw_ifd) = &raw_ifd {
        linearise_lossy_dng(raw_ifd, &mut image)?;
    }
    kodak_dc120(&source, &mut image);

    let (cfa, cfa_width, cfa_height) = match &image.photometric {
        RawPhotometricInterpretation::Cfa(config) if image.cpp == 1 => {
            let c = &config.cfa;
            let mut pattern = Vec::with_capacity(c.width * c.height);
            for row in 0..c.height {
                for col in 0..c.width {
                    pattern.push(c.color_at(row, col) as u8);
                }
            }
            (pattern, c.width as u64, c.height as u64)
        }
        _ => (Vec::new(), 0, 0),
    };

    let rect =
        |r: &rawler::imgop::Rect| Rect { x: r.p.x as u64, y: r.p.y as u64, width: r.d.w as u64, height: r.d.h as u64 };
    let metadata = decoder.raw_metadata(&source, &params).ok();
    let exif = metadata.as_ref().map(|m| &m.exif);

    let wants_samples = match req.output {
        Output::Samples => true,
        Output::SamplesOrTiling => tiling.is_none(),
        _ => false,
    };
    let samples = match std::mem::replace(&mut image.data, RawImageData::Integer(Vec::new())) {
        // wasm32 is little-endian, so the decoder's own u16 buffer already is the wire format.
        RawImageData::Integer(data) if wants_samples => Some(picture::leak(data)),
        RawImageData::Integer(_) => None,
        RawImageData::Float(_) => {
            return Err(fail(Rule::RawUnsupported, None, "floating-point RAW data is not supported"));
        }
    };
    let samples = match (req.output, &tiling, &raw_ifd) {
        (Output::Tiles { first, count }, Some(tiling), Some(raw)) => {
            Some(picture::leak(tiles::decode(&source, raw, tiling, image.cpp, first, count)?))
        }
        (Output::Tiles { .. }, _, _) => {
            return Err(fail(Rule::BadRequest, None, "tiles asked of an image that is not in separable tiles"));
        }
        _ => samples,
    };
    let preview = match req.output {
        Output::Preview => match preview(decoder.as_ref(), &source, &params, req.max_pixels)? {
            Some(found) => Some(found),
            None => ciff_jpeg(source.buf(), req.max_pixels)?,
        },
        _ => None,
    };

    Ok(Frame {
        decoder: format!("{:?}", decoder.format_hint()).to_lowercase(),
        width: image.width as u64,
        height: image.height as u64,
        cpp: image.cpp as u64,
        bits_per_sample: image.bps as u64,
        cfa,
        cfa_width,
        cfa_height,
        black_levels: image.blacklevel.levels.iter().map(|r| r.as_f32()).collect(),
        black_width: image.blacklevel.width as u64,
        black_height: image.blacklevel.height as u64,
        white_levels: image.whitelevel.0.clone(),
        wb_coeffs: image.wb_coeffs,
        xyz_to_cam: xyz_to_cam(&image),
        active_area: image.active_area.as_ref().map(rect),
        crop_area: image.crop_area.as_ref().map(rect),
        orientation: image.orientation.to_u16(),
        make: image.make.clone(),
        model: image.model.clone(),
        iso: exif.and_then(|e| e.iso_speed.or(e.iso_speed_ratings.map(u32::from))),
        exposure_time: exif.and_then(|e| e.exposure_time).map(|r| (r.n, r.d)),
        timestamp: exif.and_then(|e| e.date_time_original.clone()),
        lens_make: exif.and_then(|e| e.lens_make.clone()),
        lens_model: exif.and_then(|e| e.lens_model.clone()),
        f_number: exif.and_then(|e| e.fnumber).map(|r| (r.n, r.d)),
        focal_length: exif.and_then(|e| e.focal_length).map(|r| (r.n, r.d)),
        samples,
        preview,
        tiling,
    })
}

/// A lossy DNG (Compression 34892) holds perceptually encoded 8-bit samples that its
/// `OpcodeList2` maps back to linear: apply the maps as the DNG SDK and LibRaw do, so that the
/// frame is 16-bit linear data with white level 65535 (rawler 0.8 returns the 8-bit samples).
fn linearise_lossy_dng(raw_ifd: &IFD, image: &mut rawler::RawImage) -> Result<(), GuestError> {
    if raw_ifd.get_entry(TiffCommonTag::Compression).map(|e| e.force_u32(0)) != Some(34892) {
        return Ok(());
    }
    let Some(list) = raw_ifd.get_entry(DngTag::OpcodeList2).and_then(|e| match &e.value {
        Value::Undefined(bytes) | Value::Byte(bytes) => Some(bytes.clone()),
        _ => None,
    }) else {
        return Ok(());
    };
    let cpp = image.cpp;
    let black: Vec<f64> = image.blacklevel.levels.iter().take(cpp).map(|r| f64::from(r.as_f32())).collect();
    let white: Vec<f64> = image.whitelevel.0.iter().map(|w| f64::from(*w)).collect();
    let (width, height) = (image.width, image.height);
    let data = match &mut image.data {
        RawImageData::Integer(data) => data.as_mut_slice(),
        RawImageData::Float(_) => return Ok(()),
    };
    match dng_opcodes::apply(&list, data, width, height, cpp, &black, &white) {
        Ok(true) => {
            image.whitelevel = WhiteLevel(vec![65535; cpp]);
            image.blacklevel = BlackLevel::zero(1, 1, cpp);
            image.bps = 16;
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => Err(fail(Rule::RawMalformed, None, format!("DNG OpcodeList2: {e}"))),
    }
}

/// Two rawler 0.8 bugs on the Kodak DC120, fixed as LibRaw reads the camera:
/// - its KDC decoder reports as-shot white balance 1, 1, 1, which the file does not record: the
///   multipliers are unknown (so that `use_camera_wb` falls back to grey world, as in LibRaw);
/// - `RawImage::new` prefers the camera catalogue's white level (255) to the one its DC120 JPEG
///   decoder sets (`0xFF << 1`, the range of that decoder's output, which reaches above 255), so
///   bright samples sat above white: the decoder's level is restored.
fn kodak_dc120(source: &RawSource, image: &mut rawler::RawImage) {
    if image.camera.clean_model != "DC120" {
        return;
    }
    image.wb_coeffs = [f32::NAN; 4];
    // The raw data's IFD is the one with a CFAPattern, as rawler's KDC decoder finds it.
    let Ok(tiff) = rawler::formats::tiff::GenericTiffReader::new_with_buffer(source.buf(), 0, 0, None) else {
        return;
    };
    use rawler::formats::tiff::reader::TiffReader;
    let raw = tiff.find_ifds_with_tag(TiffCommonTag::CFAPattern).into_iter().next();
    if raw.and_then(|ifd| ifd.get_entry(TiffCommonTag::Compression)).map(|e| e.force_u32(0)) == Some(7) {
        image.whitelevel = WhiteLevel(vec![0xFF << 1; image.cpp]);
    }
}

/// The largest embedded image rawler can extract (preview, else full-size JPEG, else thumbnail).
fn preview(
    decoder: &dyn rawler::decoders::Decoder,
    source: &RawSource,
    params: &RawDecodeParams,
    max_pixels: u64,
) -> Result<Option<sandload_abi::image::Picture>, GuestError> {
    let malformed = |e: rawler::RawlerError| fail(Rule::RawMalformed, None, format!("embedded preview: {e}"));
    let found = match decoder.preview_image(source, params).map_err(malformed)? {
        Some(image) => Some(image),
        None => match decoder.full_image(source, params).map_err(malformed)? {
            Some(image) => Some(image),
            None => decoder.thumbnail_image(source, params).map_err(malformed)?,
        },
    };
    let Some(image) = found else { return Ok(None) };
    let pixels = u64::from(image.width()) * u64::from(image.height());
    if pixels > max_pixels {
        return Err(fail(
            Rule::PixelLimit,
            Some(pixels),
            format!("embedded preview has {pixels} pixels, over max_pixels {max_pixels}"),
        ));
    }
    // The RAW file's own orientation (in `RawInfo`) applies to its preview; rawler hands over
    // pixels only, no ICC profile.
    Ok(Some(picture::picture("preview", image, 0, None)))
}

/// A Canon CRW's embedded JPEG (rawler 0.8 extracts none from CIFF files), its size checked
/// against the pixel limit before it is decoded.
fn ciff_jpeg(file: &[u8], max_pixels: u64) -> Result<Option<sandload_abi::image::Picture>, GuestError> {
    use image::ImageDecoder;
    let Some(jpeg) = ciff_preview::jpeg(file) else { return Ok(None) };
    let malformed = |e: image::ImageError| fail(Rule::RawMalformed, None, format!("embedded CRW preview: {e}"));
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg)).map_err(malformed)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(fail(
            Rule::PixelLimit,
            Some(pixels),
            format!("embedded preview has {pixels} pixels, over max_pixels {max_pixels}"),
        ));
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(malformed)?;
    Ok(Some(picture::picture("preview", image, 0, None)))
}

/// The XYZ -> camera matrix: the file's D65 `ColorMatrix` if it has one (DNG), else any
/// illuminant's (chosen deterministically), else rawler's camera-catalog matrix.
fn xyz_to_cam(image: &rawler::RawImage) -> [[f32; 3]; 4] {
    use rawler::imgop::xyz::Illuminant;
    let matrix = image.color_matrix.get(&Illuminant::D65).or_else(|| {
        let mut all: Vec<_> = image.color_matrix.iter().collect();
        all.sort_by_key(|(illuminant, _)| format!("{illuminant:?}"));
        all.first().map(|(_, m)| *m)
    });
    match matrix {
        Some(m) if !m.is_empty() && m.len() % 3 == 0 && m.len() <= 12 => {
            let mut out = [[0.0; 3]; 4];
            for (row, chunk) in out.iter_mut().zip(m.chunks_exact(3)) {
                row.copy_from_slice(chunk);
            }
            out
        }
        _ => image.xyz_to_cam,
    }
}
