//! `convert`: a camera RAW file or an image, opened as `inspect` opens it, written as a developed
//! PNG/TIFF or (RAW) as raw-sample safetensors.

use std::path::Path;

use crate::report::printable;
use crate::{Error, Opened, RawImage, Sandbox};
use serde_json::{Value, json};

use super::exit::{EXIT_IO, EXIT_USAGE, status_of};
use super::walk::Target;
use super::write::write_atomically;

/// `convert`: the file is opened as `inspect` opens it ([`Sandbox::open`], one routing decision),
/// so it gets the same verdict; a camera RAW file or an image is then encoded, a checkpoint is a
/// usage error. The output is written to a temporary file beside OUTPUT and renamed into place,
/// so a failed run never leaves a partial file.
pub fn convert(sandbox: &Sandbox, input: &Path, output: &Path) -> u8 {
    match convert_inner(sandbox, input, output) {
        Ok(summary) => {
            eprintln!("{}: {} -> {}", printable(&input.display()), printable(&summary), printable(&output.display()));
            0
        }
        Err(ConvertError::Usage(message)) => {
            eprintln!("sandload: {}", printable(&message));
            EXIT_USAGE
        }
        Err(ConvertError::Internal(message)) => {
            eprintln!("sandload: internal error: {}", printable(&message));
            EXIT_IO
        }
        Err(ConvertError::Rejected(e)) => {
            eprintln!("{}: REJECTED ({}): {}", printable(&input.display()), e.kind(), printable(&e));
            status_of(&e)
        }
    }
}

pub enum ConvertError {
    /// Exit 2: the arguments (or the output path) are wrong.
    Usage(String),
    /// Exit 3: a bug or a broken environment (an encoder failing on validated pixels).
    Internal(String),
    /// Exit 1 if the input was refused, 3 if it could not be read.
    Rejected(Error),
}

impl From<Error> for ConvertError {
    fn from(e: Error) -> Self {
        ConvertError::Rejected(e)
    }
}

pub fn convert_inner(sandbox: &Sandbox, input: &Path, output: &Path) -> Result<String, ConvertError> {
    let ext = output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let image_format = match ext.as_str() {
        "png" => Some(crate::image::ImageFormat::Png),
        "tif" | "tiff" => Some(crate::image::ImageFormat::Tiff),
        "safetensors" => None,
        other => {
            return Err(ConvertError::Usage(format!(
                "output extension {other:?} not supported: use .png, .tiff or .safetensors"
            )));
        }
    };
    // The same targets as `inspect`: a sharded checkpoint (a directory holding its index, or an
    // index file whose content is no other format) is one, and cannot be converted.
    let mut targets = Vec::new();
    super::walk::targets(&[input.to_path_buf()], false, &mut targets);
    let file = match targets.pop() {
        Some(Target::File { dir, name, shown }) => Target::open(&dir, &name, &shown)?,
        Some(Target::Sharded { dir, index, shown, .. }) => match sandbox.open_if_sharded(&dir, &index) {
            Some(Ok(_)) => {
                return Err(ConvertError::Usage(format!(
                    "{} is a sharded safetensors checkpoint (accepted): convert takes camera RAW files and images",
                    printable(&input.display())
                )));
            }
            Some(Err(e)) => return Err(e.into()),
            None => Target::open(&dir, &index, &if shown.is_dir() { shown.join(&index) } else { shown })?,
        },
        Some(Target::Unreachable { error, .. }) => return Err(error.into()),
        None => return Err(ConvertError::Internal("no target for the input".into())),
    };
    // `open` refuses a RAW file or an image larger than the guest's memory before reading it
    // (`max_file_bytes`, `guest_memory_bytes`): a 60 GB input is never read into memory.
    let (encoded, summary) = match sandbox.open(file)? {
        Opened::Raw(raw) => {
            let info = raw.info();
            let summary =
                format!("{} {}x{} RAW ({} {})", raw.receipt().format, info.width, info.height, info.make, info.model);
            match image_format {
                Some(format) => (encode(&crate::image::DynamicImage::ImageRgb16(raw.develop16()?), format)?, summary),
                None => (raw_safetensors(&raw).map_err(ConvertError::Internal)?, summary),
            }
        }
        Opened::Image(decoded) => {
            let Some(format) = image_format else {
                return Err(ConvertError::Usage(format!(
                    "{} is a {} image, not a RAW file: only RAW files convert to .safetensors",
                    printable(&input.display()),
                    decoded.format
                )));
            };
            let summary = format!("{} {}x{}", decoded.format, decoded.pixels.width(), decoded.pixels.height());
            let mut image = decoded.pixels.to_dynamic_image();
            // PNG holds no float samples: 16-bit, clamped to [0, 1] as `image` converts.
            if format == crate::image::ImageFormat::Png && decoded.pixels.layout().sample.is_float() {
                image = match image.color().has_alpha() {
                    true => crate::image::DynamicImage::ImageRgba16(image.to_rgba16()),
                    false => crate::image::DynamicImage::ImageRgb16(image.to_rgb16()),
                };
            }
            (encode(&image, format)?, summary)
        }
        Opened::Checkpoint(_) => {
            return Err(ConvertError::Usage(format!(
                "{} is a safetensors checkpoint (accepted): convert takes camera RAW files and images",
                printable(&input.display())
            )));
        } // Inside the crate `Opened` is matched exhaustively: a kind of file added later fails to
          // compile here rather than being silently encoded.
    };
    write_atomically(output, &encoded).map_err(|e| ConvertError::Usage(format!("{}: {e}", output.display())))?;
    Ok(summary)
}

pub fn encode(image: &crate::image::DynamicImage, format: crate::image::ImageFormat) -> Result<Vec<u8>, ConvertError> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).map_err(|e| ConvertError::Internal(format!("encoding {format:?}: {e}")))?;
    Ok(out.into_inner())
}

/// The samples as one U16 tensor `raw` of shape [height, width] (or [height, width, cpp]), with
/// the frame's metadata as strings (the format's metadata is a string map).
pub fn raw_safetensors(raw: &RawImage) -> Result<Vec<u8>, String> {
    let info = raw.info();
    let mut shape = vec![info.height, info.width];
    if info.cpp > 1 {
        shape.push(info.cpp);
    }
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U16, shape, raw.samples())
        .map_err(|e| format!("building the tensor: {e}"))?;
    let text = |v: Value| v.to_string();
    let mut metadata = std::collections::HashMap::from([
        ("format".to_string(), "sandload-raw".to_string()),
        ("source_format".to_string(), info.format.name().to_string()),
        ("decoder".to_string(), info.decoder.clone()),
        ("cfa".to_string(), info.cfa.as_ref().map_or(String::new(), |c| c.name())),
        ("cfa_width".to_string(), info.cfa.as_ref().map_or(0, |c| c.width).to_string()),
        ("cfa_height".to_string(), info.cfa.as_ref().map_or(0, |c| c.height).to_string()),
        ("black_levels".to_string(), text(json!(info.black_levels))),
        ("black_width".to_string(), info.black_width.to_string()),
        ("black_height".to_string(), info.black_height.to_string()),
        ("white_levels".to_string(), text(json!(info.white_levels))),
        ("wb_coeffs".to_string(), text(json!(info.wb_coeffs))),
        ("xyz_to_cam".to_string(), text(json!(info.xyz_to_cam))),
        ("bits_per_sample".to_string(), info.bits_per_sample.to_string()),
        ("orientation".to_string(), info.orientation.to_string()),
        ("make".to_string(), info.make.clone()),
        ("model".to_string(), info.model.clone()),
        ("active_area".to_string(), text(json!(info.active_area.map(|r| [r.x, r.y, r.width, r.height])))),
        ("crop_area".to_string(), text(json!(info.crop_area.map(|r| [r.x, r.y, r.width, r.height])))),
    ]);
    if let Some(iso) = info.iso {
        metadata.insert("iso".into(), iso.to_string());
    }
    if let Some((n, d)) = info.exposure_time {
        metadata.insert("exposure_time".into(), format!("{n}/{d}"));
    }
    if let Some(t) = &info.timestamp {
        metadata.insert("timestamp".into(), t.clone());
    }
    safetensors::serialize([("raw", view)], Some(metadata)).map_err(|e| format!("writing safetensors: {e}"))
}
