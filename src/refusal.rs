//! What a refusal says: the format found, why it is refused, how to convert it, and (for pickles)
//! what unpickling would have done.

use std::path::Path;

use crate::error::Error;
use crate::sniff::{Format, Sniffed};

/// The same remedy for everything that hides a pickle.
const FROM_TORCH: &str = "in a trusted, isolated environment run `sd = torch.load(path, weights_only=True)` \
     then `safetensors.torch.save_file(sd, \"model.safetensors\")`, and open the .safetensors file.";

/// The remedy for a scikit-learn, joblib or NumPy pickle: torch.load is not how those are read.
pub(crate) const FROM_JOBLIB: &str = "in a trusted, isolated environment load it with `joblib.load(path)` \
     (scikit-learn and other joblib files, compressed or not), keep its arrays, and write them with \
     `safetensors.numpy.save_file({\"name\": array, ...}, \"model.safetensors\")`; a fitted estimator is code as \
     well as numbers, so rebuild it from its parameters (or share it with skops) rather than pickle it.";

/// The remedy for a refused pickle whose report names what it imports: the joblib recipe for
/// scikit-learn, joblib and NumPy objects, the torch recipe otherwise.
pub(crate) fn pickle_remedy(imports: &[String]) -> &'static str {
    let from = |prefix: &str| imports.iter().any(|i| i.starts_with(prefix));
    if !from("torch") && (from("sklearn.") || from("joblib.") || from("numpy.") || from("scipy.") || from("pandas.")) {
        FROM_JOBLIB
    } else {
        FROM_TORCH
    }
}

/// The refusal error for a file sniffed as `sniffed` when a checkpoint was expected, or `None`
/// when the file should go on to the safetensors parser (it is safetensors-shaped, or too short
/// to be anything, so that the parser names the rule it breaks).
pub(crate) fn refuse_as_checkpoint(file: &Path, sniffed: &Sniffed, len: u64) -> Option<Error> {
    let (why, remedy) = match sniffed.format {
        Format::Safetensors => return None,
        Format::Unknown if len < 9 => return None,
        format => why_not_a_checkpoint(format),
    };
    Some(refused(file, sniffed, why, remedy))
}

/// Why a format is not accepted as a checkpoint, and how to convert it.
pub(crate) fn why_not_a_checkpoint(format: Format) -> (&'static str, &'static str) {
    match format {
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
        Format::TorchScript => (
            "torch.jit.load compiles and runs the TorchScript code in it and unpickles its constants, so sandload \
             never loads it.",
            "in a trusted, isolated environment run `m = torch.jit.load(path)` then \
             `safetensors.torch.save_file(m.state_dict(), \"model.safetensors\")`, and open the .safetensors file.",
        ),
        Format::Keras => (
            "Loading a .keras archive imports the classes and functions its config names (Lambda layers, custom \
             objects), so sandload never loads it.",
            "in a trusted environment run `m = keras.saving.load_model(path, safe_mode=True)` and write \
             `{w.path: w.numpy() for w in m.weights}` with `safetensors.numpy.save_file`.",
        ),
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
        Format::SavedModel => (
            "A TensorFlow SavedModel is a program (a graph of ops, possibly with py_func and file ops), not a \
             weight file.",
            "in a trusted environment restore it with `tf.saved_model.load` and write its variables with \
             `safetensors.numpy.save_file({v.name: v.numpy() for v in m.variables}, \"model.safetensors\")`.",
        ),
        Format::Compressed => (
            "sandload does not decompress checkpoints, and compressed model files are usually joblib or \
             torch pickles, which can run arbitrary code.",
            FROM_JOBLIB,
        ),
        Format::Zip => (
            "A zip archive is not a checkpoint format sandload accepts (and archives can hide pickles).",
            "extract the archive in a trusted environment and open the .safetensors files it contains.",
        ),
        Format::Tar => (
            "A tar archive is not a checkpoint format sandload accepts (torch.load's legacy path unpickles tar members).",
            "extract the archive in a trusted environment and open the .safetensors files it contains.",
        ),
        Format::SevenZip => (
            "A 7-Zip archive is not a checkpoint format sandload accepts (archives can hide pickles).",
            "extract the archive in a trusted environment and open the .safetensors files it contains.",
        ),
        Format::Tiff | Format::Dng | Format::Raw | Format::Png | Format::Jpeg | Format::Webp => {
            ("It is an image, not a checkpoint.", "open it as an image instead of as a checkpoint.")
        }
        Format::Safetensors | Format::SafetensorsIndex | Format::Unknown => (
            "It is not a safetensors file and not a recognised format.",
            "check what produced it; sandload accepts safetensors checkpoints (a little-endian u64 header length, \
             then a JSON object starting with `{`).",
        ),
    }
}

/// The refusal of a file that is valid safetensors *and* something another loader opens.
pub(crate) fn refuse_polyglot(
    file: &Path,
    format: Format,
    what: String,
    rule: &'static str,
    offset: Option<u64>,
) -> Error {
    let (why, remedy): (&'static str, &'static str) = match format {
        Format::Pickle => (
            "pickle.load, joblib.load and torch.load's legacy path would read it from byte 0 as a pickle and \
             import or call Python objects before failing, so sandload never accepts it.",
            POLYGLOT_REMEDY,
        ),
        Format::Zip => (
            "Python's zipfile (Keras, numpy.load of .npz) or torch.load's zip reader (miniz) would open it as an \
             archive from its end, so the same bytes mean two different things to two loaders.",
            POLYGLOT_REMEDY,
        ),
        Format::Hdf5 => (
            "The HDF5 library searches for its superblock at byte 0 and every power of two from 512, so h5py and \
             Keras would open it as an HDF5 file.",
            POLYGLOT_REMEDY,
        ),
        Format::Compressed => (
            "joblib.load picks a decompressor from a file's first bytes alone and unpickles what comes out as it \
             decompresses, so a deflate stream that starts in the header and ends in the tensor data runs its pickle.",
            POLYGLOT_REMEDY,
        ),
        _ => (
            "tarfile accepts its first 512 bytes as a tar header, so torch.load's legacy path would open it as a \
             tar archive of pickles.",
            POLYGLOT_REMEDY,
        ),
    };
    Error::Refused { file: file.to_path_buf(), format, what, rule: Some(rule), offset, pickle: None, why, remedy }
}

/// The tensor bytes of a polyglot were written to be read as another format: rewrite them.
const POLYGLOT_REMEDY: &str = "re-save the tensors from a trusted source with `safetensors.torch.save_file` (or \
     `save_file`); a file written that way from real weights is never also another format.";

fn refused(file: &Path, sniffed: &Sniffed, why: &'static str, remedy: &'static str) -> Error {
    Error::Refused {
        file: file.to_path_buf(),
        format: sniffed.format,
        what: sniffed.what.clone(),
        rule: None,
        offset: None,
        pickle: None,
        why,
        remedy,
    }
}

/// The refusal of a file in which the image guest recognises no image (rule
/// `image_not_recognised`).
pub(crate) fn refuse_not_image(file: &Path, format: Format, detail: &str) -> Error {
    let (why, remedy) = not_an_image(format);
    Error::Refused {
        file: file.to_path_buf(),
        format,
        what: format!("not an image ({})", crate::error::printable(detail)),
        rule: Some("image_not_recognised"),
        offset: None,
        pickle: None,
        why,
        remedy,
    }
}

/// The refusal of a TIFF that the image guest found camera raw data in (rule `image_is_raw`).
pub(crate) fn refuse_raw_as_image(file: &Path, format: Format, detail: &str) -> Error {
    Error::Refused {
        file: file.to_path_buf(),
        format,
        what: format!("camera RAW data ({})", crate::error::printable(detail)),
        rule: Some("image_is_raw"),
        offset: None,
        pickle: None,
        why: "It is camera RAW data, which needs a RAW decoder; its first image is at most a thumbnail.",
        remedy: "decode it with `Sandbox::decode_raw` (or `Sandbox::raw_preview` for its embedded preview).",
    }
}

/// The refusal error for a file sniffed as `sniffed` when a camera RAW image was expected, or
/// `None` when the file should go on to the RAW decoder (DNG, maker RAW, TIFF-based, unknown).
pub(crate) fn refuse_as_raw(file: &Path, sniffed: &Sniffed) -> Option<Error> {
    let (why, remedy): (&'static str, &'static str) = match sniffed.format {
        Format::Dng | Format::Raw | Format::Tiff | Format::SafetensorsIndex | Format::Unknown => return None,
        Format::Png | Format::Jpeg | Format::Webp => {
            ("It is an already-developed image, not camera RAW data.", "decode it with `Sandbox::decode_image`.")
        }
        _ => not_an_image(sniffed.format),
    };
    Some(refused(file, sniffed, why, remedy))
}

/// The refusal error for a file sniffed as `sniffed` (whose first bytes are `head`) when a
/// PNG/JPEG/TIFF/WebP image was expected, or `None` when the file should go on to the image
/// decoder. A plain TIFF container that names a camera maker goes on too: cameras write
/// ordinary RGB TIFFs, and the image guest refuses one that holds raw data (`image_is_raw`).
pub(crate) fn refuse_as_image(file: &Path, sniffed: &Sniffed, head: &[u8]) -> Option<Error> {
    let (why, remedy): (&'static str, &'static str) = match sniffed.format {
        Format::Png | Format::Jpeg | Format::Tiff | Format::Webp | Format::SafetensorsIndex | Format::Unknown => {
            return None;
        }
        Format::Raw if crate::sniff::is_tiff_container(head) => return None,
        Format::Dng | Format::Raw => (
            "It is camera RAW data, which needs a RAW decoder.",
            "decode it with `Sandbox::decode_raw` (or `Sandbox::raw_preview` for its embedded JPEG).",
        ),
        _ => not_an_image(sniffed.format),
    };
    Some(refused(file, sniffed, why, remedy))
}

/// Why a checkpoint or archive is refused where an image was expected.
fn not_an_image(format: Format) -> (&'static str, &'static str) {
    match format {
        Format::Pickle | Format::PytorchZip | Format::PytorchTar | Format::TorchScript | Format::Compressed => (
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

/// The refusal of a file the RAW decoder's own identification does not recognise (and that the
/// sniffer did not recognise as anything else either).
pub(crate) fn refuse_not_raw(file: &Path, format: Format, detail: &str) -> Error {
    let (what, why, remedy): (String, &'static str, &'static str) = match format {
        Format::Tiff => (
            "a TIFF image".into(),
            "It is not camera RAW data: no RAW decoder recognises it.",
            "decode it with `Sandbox::decode_image`.",
        ),
        _ => (
            "a file of unknown format".into(),
            "It is not a safetensors file and not a recognised format: no camera RAW decoder recognises it either.",
            "check what produced it; sandload accepts safetensors checkpoints and decodes DNG, the camera RAW \
             formats rawler supports, and PNG/JPEG/TIFF/WebP images.",
        ),
    };
    Error::Refused {
        file: file.to_path_buf(),
        format,
        what: format!("{what} ({})", crate::error::printable(detail)),
        rule: Some("raw_not_recognised"),
        offset: None,
        pickle: None,
        why,
        remedy,
    }
}

/// The globals `torch.load(weights_only=True)` allows for plain tensors and state dicts: a pickle
/// importing nothing else is reported as "tensors only".
const TENSOR_GLOBALS: &[&str] = &[
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.ComplexFloatStorage",
    "torch.ComplexDoubleStorage",
    "torch.device",
    "torch.Size",
    "torch.float32",
    "torch.float16",
    "torch.bfloat16",
    "torch.float64",
    "torch.int64",
    "torch.int32",
    "torch.int16",
    "torch.int8",
    "torch.uint8",
    "torch.bool",
];

/// What unpickling a refused file would do, without doing it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct PickleReport {
    /// The highest pickle protocol declared (`PROTO`), if any.
    pub protocol: Option<u8>,
    /// The globals it would import, as `module.name`, in order of first appearance (escaped for
    /// terminals and logs; at most a few dozen).
    pub imports: Vec<String>,
    /// Calls it would make (`REDUCE`, `BUILD`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`).
    pub calls: u64,
    /// Persistent loads (`PERSID`, `BINPERSID`): how PyTorch files point at tensor storages.
    pub persistent_loads: u64,
    /// The pickle streams walked (`pickle`, `archive/data.pkl`, a tar member name, ...).
    pub streams: Vec<String>,
    /// Whether every stream was walked to where unpickling would stop; `false` when a stream was
    /// longer than the bytes examined or hit the opcode budget (the imports may then be partial).
    pub complete: bool,
}

impl PickleReport {
    /// `"tensors only"` when it imports nothing beyond what `torch.load(weights_only=True)`
    /// allows for tensors and state dicts, else `"imports code"`. A hint for triage: the file is
    /// refused either way.
    pub fn verdict_hint(&self) -> &'static str {
        if self.dangerous_imports().next().is_none() { "tensors only" } else { "imports code" }
    }

    /// The imports outside the tensor-only set, e.g. `os.system`, `builtins.exec`.
    pub fn dangerous_imports(&self) -> impl Iterator<Item = &str> {
        self.imports.iter().map(String::as_str).filter(|i| !TENSOR_GLOBALS.contains(i))
    }

    /// One line for messages: protocol, imports, calls.
    pub(crate) fn summary(&self) -> String {
        let imports = if self.imports.is_empty() { "nothing".to_string() } else { self.imports.join(", ") };
        let dangerous: Vec<&str> = self.dangerous_imports().collect();
        let mut s = format!(
            "unpickling it would import {imports} and make {} call{}",
            self.calls,
            if self.calls == 1 { "" } else { "s" }
        );
        if !dangerous.is_empty() {
            s += &format!(" (code: {})", dangerous.join(", "));
        }
        if !self.complete {
            s += " (partial: the walk stopped before the end)";
        }
        s
    }
}
