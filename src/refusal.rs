//! Why each non-safetensors checkpoint format is refused, and how to convert it.

use std::path::Path;

use crate::error::Error;
use crate::sniff::{Format, Sniffed};

/// The same remedy for everything that hides a pickle.
const FROM_TORCH: &str = "in a trusted, isolated environment run `sd = torch.load(path, weights_only=True)` \
     then `safetensors.torch.save_file(sd, \"model.safetensors\")`, and open the .safetensors file.";

/// The refusal error for a file sniffed as `sniffed` when a checkpoint was expected, or `None`
/// when the file should go on to the safetensors parser.
pub(crate) fn refuse_as_checkpoint(file: &Path, sniffed: &Sniffed) -> Option<Error> {
    let (why, remedy): (&'static str, &'static str) = match sniffed.format {
        Format::Safetensors | Format::Unknown => return None,
        Format::Pickle => (
            "Unpickling runs arbitrary code chosen by whoever made the file, so sandload never loads pickles.",
            FROM_TORCH,
        ),
        Format::PytorchZip => {
            ("torch.load unpickles its data.pkl, which can run arbitrary code, so sandload never loads it.", FROM_TORCH)
        }
        Format::PytorchTar => {
            ("torch.load unpickles its members, which can run arbitrary code, so sandload never loads it.", FROM_TORCH)
        }
        Format::Numpy => (
            "NumPy files are not accepted as checkpoints, and object arrays are pickles that can run code.",
            "in a trusted environment run `a = numpy.load(path, allow_pickle=False)` then \
             `safetensors.numpy.save_file({\"tensor\": a}, \"model.safetensors\")` (for .npz, one entry per array).",
        ),
        Format::Gguf => (
            "GGUF is not an accepted checkpoint format here (its metadata parsers are a large attack surface).",
            "load the tensors with the `gguf` Python package in a trusted environment and write them with \
             `safetensors.numpy.save_file`, or download the model's safetensors release.",
        ),
        Format::Hdf5 => (
            "HDF5 models (Keras .h5) can carry Lambda layers with marshalled Python bytecode, and HDF5 is not accepted.",
            "read the weight datasets with h5py in a trusted environment and write them with \
             `safetensors.numpy.save_file`.",
        ),
        Format::Onnx => (
            "ONNX models are graphs, not weight files, and their external-data references can name arbitrary paths.",
            "extract initializers with `onnx.numpy_helper.to_array` in a trusted environment and write them with \
             `safetensors.numpy.save_file`.",
        ),
        Format::Zip => (
            "A zip archive is not a checkpoint format sandload accepts (and archives can hide pickles).",
            "extract the archive in a trusted environment and open the .safetensors files it contains.",
        ),
        Format::Tiff | Format::Dng | Format::Raw | Format::Png | Format::Jpeg => {
            ("It is an image, not a checkpoint.", "open it as an image instead of as a checkpoint.")
        }
    };
    Some(Error::Refused { file: file.to_path_buf(), format: sniffed.format, what: sniffed.what.clone(), why, remedy })
}

/// The refusal error for a file sniffed as `sniffed` when a camera RAW image was expected, or
/// `None` when the file should go on to the RAW decoder (DNG, maker RAW, TIFF-based, unknown).
pub(crate) fn refuse_as_raw(file: &Path, sniffed: &Sniffed) -> Option<Error> {
    let (why, remedy): (&'static str, &'static str) = match sniffed.format {
        Format::Dng | Format::Raw | Format::Tiff | Format::Unknown => return None,
        Format::Png | Format::Jpeg => {
            ("It is an already-developed image, not camera RAW data.", "decode it with `Sandbox::decode_image`.")
        }
        _ => not_an_image(sniffed.format),
    };
    Some(Error::Refused { file: file.to_path_buf(), format: sniffed.format, what: sniffed.what.clone(), why, remedy })
}

/// The refusal error for a file sniffed as `sniffed` when a PNG/JPEG/TIFF/WebP image was
/// expected, or `None` when the file should go on to the image decoder.
pub(crate) fn refuse_as_image(file: &Path, sniffed: &Sniffed) -> Option<Error> {
    let (why, remedy): (&'static str, &'static str) = match sniffed.format {
        Format::Png | Format::Jpeg | Format::Tiff | Format::Unknown => return None,
        Format::Dng | Format::Raw => (
            "It is camera RAW data, which needs a RAW decoder.",
            "decode it with `Sandbox::decode_raw` (or `Sandbox::raw_preview` for its embedded JPEG).",
        ),
        _ => not_an_image(sniffed.format),
    };
    Some(Error::Refused { file: file.to_path_buf(), format: sniffed.format, what: sniffed.what.clone(), why, remedy })
}

/// Why a checkpoint or archive is refused where an image was expected.
fn not_an_image(format: Format) -> (&'static str, &'static str) {
    match format {
        Format::Pickle | Format::PytorchZip | Format::PytorchTar => (
            "It is not an image, and it contains a pickle, which can run arbitrary code, so it is never loaded.",
            "if it is a model, convert it to safetensors (see `Sandbox::open_safetensors`).",
        ),
        Format::Safetensors => {
            ("It is a safetensors checkpoint, not an image.", "open it with `Sandbox::open_safetensors`.")
        }
        _ => {
            ("It is not an image format sandload decodes.", "convert it to PNG, TIFF or DNG in a trusted environment.")
        }
    }
}
