//! Format detection from content, never from the file name.
//!
//! Sniffing runs on the host because it must pick the guest: it is bounded, allocation-light
//! comparison of magic numbers plus walks of at most a few hundred zip/tar/TIFF directory entries,
//! every read through `slice::get` so that no input can index out of bounds. It is a fuzz target.

use std::fmt;

/// A file format sandload recognises. `name()` values are the CLI's JSON `format` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// safetensors: 8-byte little-endian header length, then a JSON object.
    Safetensors,
    /// A Python pickle, protocols 0-5 (also PyTorch's pre-1.6 "legacy" format).
    Pickle,
    /// A `torch.save` zip archive (`*/data.pkl` plus storages).
    PytorchZip,
    /// PyTorch's legacy tar layout (`sys_info`, `pickle`, `storages`, `tensors`).
    PytorchTar,
    /// NumPy `.npy`, or an `.npz` zip of them.
    Numpy,
    /// GGUF (llama.cpp), or its GGML/GGJT predecessors.
    Gguf,
    /// HDF5 (e.g. Keras `.h5`).
    Hdf5,
    /// An ONNX `ModelProto` protobuf.
    Onnx,
    /// Another zip archive.
    Zip,
    /// A TIFF that is neither DNG nor a camera RAW.
    Tiff,
    /// Adobe DNG (a TIFF with a DNGVersion tag).
    Dng,
    /// A camera maker's RAW container (CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...).
    Raw,
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// None of the above.
    Unknown,
}

impl Format {
    /// Every format, for documentation and tests.
    pub const ALL: [Format; 15] = [
        Format::Safetensors,
        Format::Pickle,
        Format::PytorchZip,
        Format::PytorchTar,
        Format::Numpy,
        Format::Gguf,
        Format::Hdf5,
        Format::Onnx,
        Format::Zip,
        Format::Tiff,
        Format::Dng,
        Format::Raw,
        Format::Png,
        Format::Jpeg,
        Format::Unknown,
    ];

    /// The stable name used in JSON output, e.g. `"pytorch-zip"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
            Format::PytorchZip => "pytorch-zip",
            Format::PytorchTar => "pytorch-tar",
            Format::Numpy => "numpy",
            Format::Gguf => "gguf",
            Format::Hdf5 => "hdf5",
            Format::Onnx => "onnx",
            Format::Zip => "zip",
            Format::Tiff => "tiff",
            Format::Dng => "dng",
            Format::Raw => "raw",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of [`sniff`]: the format and, where it matters, a detail in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// The recognised format.
    pub format: Format,
    /// What the file is, in words, e.g. `"a Python pickle (protocol 4)"`.
    pub what: String,
}

impl Sniffed {
    fn new(format: Format, what: impl Into<String>) -> Sniffed {
        Sniffed { format, what: what.into() }
    }
}

/// How far into a zip central directory or a tar stream sniffing walks.
const MAX_ENTRIES: usize = 512;

/// Recognises the format of `data` (a whole file) from its content.
///
/// ```
/// use sandload::{sniff, Format};
/// assert_eq!(sniff(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.").format, Format::Pickle);
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").format, Format::Png);
/// ```
pub fn sniff(data: &[u8]) -> Sniffed {
    let starts = |magic: &[u8]| data.starts_with(magic);

    if starts(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::new(Format::Png, "a PNG image");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Sniffed::new(Format::Jpeg, "a JPEG image");
    }
    if starts(b"GGUF") {
        return Sniffed::new(Format::Gguf, "a GGUF model file (llama.cpp)");
    }
    if starts(b"lmgg") || starts(b"tjgg") || starts(b"fmgg") {
        return Sniffed::new(Format::Gguf, "a legacy GGML/GGJT model file (llama.cpp)");
    }
    if [0usize, 512, 1024, 2048].iter().any(|&at| data.get(at..at + 8) == Some(b"\x89HDF\r\n\x1a\n")) {
        return Sniffed::new(Format::Hdf5, "an HDF5 file (e.g. a Keras .h5 model)");
    }
    if starts(b"\x93NUMPY") {
        return numpy(data);
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return zip(data);
    }
    if let Some(s) = camera_raw(data) {
        return s;
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return tiff(data);
    }
    // Checked before pickles: a safetensors header length such as 0x0280 starts with the bytes of
    // a protocol-2 pickle, but a pickle never has seven bytes of small length then '{'.
    if looks_like_safetensors(data) {
        return Sniffed::new(Format::Safetensors, "a safetensors file");
    }
    if let [0x80, proto @ 2..=5, ..] = data {
        return Sniffed::new(Format::Pickle, format!("a Python pickle (protocol {proto})"));
    }
    if data.get(257..262) == Some(b"ustar") {
        return tar(data);
    }
    if looks_like_text_pickle(data) {
        return Sniffed::new(Format::Pickle, "a Python pickle (protocol 0 or 1)");
    }
    if looks_like_onnx(data) {
        return Sniffed::new(Format::Onnx, "an ONNX model");
    }
    Sniffed::new(Format::Unknown, "a file of unknown format")
}

fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// A u64 header length (any value: the guest reports the precise rule) followed by `{`.
fn looks_like_safetensors(data: &[u8]) -> bool {
    data.get(8) == Some(&b'{') && le_u64(data, 0).is_some_and(|n| n >= 2)
}

/// Protocol 0/1 pickles have no header: they start with an opcode and end with STOP ('.'),
/// usually right after an opcode that finishes a container or a call.
fn looks_like_text_pickle(data: &[u8]) -> bool {
    // MARK, EMPTY_DICT/LIST/TUPLE, GLOBAL, INST, LIST, DICT, INT, BININT*, LONG, NONE, FLOAT,
    // STRING, UNICODE, SHORT_BINSTRING, BINSTRING, BINUNICODE.
    const FIRST: &[u8] = b"(}])cilIJKLMNFSVUTX";
    // SETITEM(S), APPEND(S), TUPLE, BUILD, REDUCE, LIST, DICT, NONE, POP, memo PUT's newline.
    const BEFORE_STOP: &[u8] = b"satbRludeN0\n";
    match data {
        [first, .., penultimate, b'.'] => FIRST.contains(first) && BEFORE_STOP.contains(penultimate),
        _ => false,
    }
}

fn numpy(data: &[u8]) -> Sniffed {
    // .npy v1: magic, 2 version bytes, u16 header length, then a Python dict literal.
    let header_len = le_u16(data, 8).unwrap_or(0) as usize;
    let header = data.get(10..10 + header_len.min(4096)).unwrap_or(&[]);
    let header = String::from_utf8_lossy(header);
    if header.contains("'descr': '|O'") || header.contains("\"descr\": \"|O\"") {
        Sniffed::new(Format::Numpy, "a NumPy .npy object array (its elements are pickled Python objects)")
    } else {
        Sniffed::new(Format::Numpy, "a NumPy .npy array")
    }
}

fn zip(data: &[u8]) -> Sniffed {
    let names = zip_names(data);
    let has = |pred: &dyn Fn(&str) -> bool| names.iter().any(|n| pred(n));
    if has(&|n| n == "data.pkl" || n.ends_with("/data.pkl")) {
        return Sniffed::new(Format::PytorchZip, "a PyTorch zip checkpoint (torch.save), whose data.pkl is a pickle");
    }
    if !names.is_empty() && names.iter().all(|n| n.ends_with(".npy") || n.ends_with('/')) {
        return Sniffed::new(Format::Numpy, "a NumPy .npz archive of .npy arrays");
    }
    if has(&|n| n.ends_with(".pkl") || n.ends_with(".pickle")) {
        return Sniffed::new(Format::Zip, "a zip archive containing pickle files");
    }
    Sniffed::new(Format::Zip, "a zip archive")
}

/// Entry names from the first local header and the central directory (bounded walk).
fn zip_names(data: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut push = |name: &[u8]| {
        if names.len() < MAX_ENTRIES {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    };
    if data.starts_with(b"PK\x03\x04") {
        if let Some(len) = le_u16(data, 26) {
            if let Some(name) = data.get(30..30 + len as usize) {
                push(name);
            }
        }
    }
    // End of central directory: within the last 64 KiB + 22 bytes.
    let tail_start = data.len().saturating_sub(65_536 + 22);
    let Some(eocd) = data[tail_start..].windows(4).rposition(|w| w == b"PK\x05\x06").map(|p| p + tail_start) else {
        return names;
    };
    let mut cd_offset = le_u32(data, eocd + 16).map(u64::from);
    if cd_offset == Some(u64::from(u32::MAX)) {
        // zip64: the locator sits 20 bytes before the EOCD and points at the zip64 EOCD record.
        cd_offset = eocd
            .checked_sub(20)
            .filter(|&loc| data.get(loc..loc + 4) == Some(b"PK\x06\x07"))
            .and_then(|loc| le_u64(data, loc + 8))
            .and_then(|rec| usize::try_from(rec).ok())
            .filter(|&rec| data.get(rec..rec + 4) == Some(b"PK\x06\x06"))
            .and_then(|rec| le_u64(data, rec + 48));
    }
    let Some(mut at) = cd_offset.and_then(|o| usize::try_from(o).ok()) else {
        return names;
    };
    for _ in 0..MAX_ENTRIES {
        if data.get(at..at + 4) != Some(b"PK\x01\x02") {
            break;
        }
        let (Some(n), Some(x), Some(c)) = (le_u16(data, at + 28), le_u16(data, at + 30), le_u16(data, at + 32)) else {
            break;
        };
        if let Some(name) = data.get(at + 46..at + 46 + n as usize) {
            push(name);
        }
        at += 46 + n as usize + x as usize + c as usize;
    }
    names
}

fn tar(data: &[u8]) -> Sniffed {
    const TORCH_MEMBERS: [&str; 4] = ["sys_info", "pickle", "storages", "tensors"];
    let mut at = 0usize;
    for _ in 0..MAX_ENTRIES {
        let Some(header) = data.get(at..at + 512) else { break };
        if header.get(257..262) != Some(b"ustar") {
            break;
        }
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]);
        let name = name.trim_start_matches("./");
        if TORCH_MEMBERS.contains(&name) {
            return Sniffed::new(Format::PytorchTar, "a legacy PyTorch tar checkpoint, whose members are pickles");
        }
        // Size: octal ASCII in bytes 124..136.
        let size = std::str::from_utf8(&header[124..136])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
        let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else { break };
        let Some(next) = size.checked_add(511).map(|s| s / 512 * 512).and_then(|s| s.checked_add(at + 512)) else {
            break;
        };
        at = next;
    }
    Sniffed::new(Format::Unknown, "a tar archive (not a PyTorch checkpoint)")
}

fn camera_raw(data: &[u8]) -> Option<Sniffed> {
    let starts = |magic: &[u8]| data.starts_with(magic);
    let what = if data.get(4..12) == Some(b"ftypcrx ") {
        "a Canon CR3 raw image"
    } else if starts(b"FUJIFILMCCD-RAW") {
        "a Fujifilm RAF raw image"
    } else if starts(b"IIRO") || starts(b"IIRS") || starts(b"MMOR") {
        "an Olympus ORF raw image"
    } else if starts(b"IIU\0") {
        "a Panasonic RW2 raw image"
    } else if starts(b"II\x1a\0\0\0HEAPCCDR") {
        "a Canon CRW raw image"
    } else if starts(b"\0MRM") {
        "a Minolta MRW raw image"
    } else if starts(b"FOVb") {
        "a Sigma X3F raw image"
    } else if (starts(b"II*\0") || starts(b"MM\0*")) && data.get(8..10) == Some(b"CR") {
        "a Canon CR2 raw image"
    } else {
        return None;
    };
    Some(Sniffed::new(Format::Raw, what))
}

/// Camera makers whose TIFF-based RAW files (NEF, ARW, PEF, SRW, 3FR, IIQ, ...) carry their name in
/// the IFD0 Make tag.
const CAMERA_MAKERS: [&str; 16] = [
    "canon",
    "nikon",
    "sony",
    "pentax",
    "olympus",
    "panasonic",
    "fujifilm",
    "leica",
    "samsung",
    "hasselblad",
    "phase one",
    "sigma",
    "kodak",
    "minolta",
    "ricoh",
    "mamiya",
];

fn tiff(data: &[u8]) -> Sniffed {
    let big_endian = data.starts_with(b"MM");
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    if u16_at(2) == Some(43) {
        return Sniffed::new(Format::Tiff, "a BigTIFF image");
    }
    let mut make = None;
    if let Some(ifd) = u32_at(4).and_then(|o| usize::try_from(o).ok()) {
        let count = u16_at(ifd).unwrap_or(0) as usize;
        for i in 0..count.min(MAX_ENTRIES) {
            let Some(entry) = ifd.checked_add(2 + 12 * i) else { break };
            let Some(tag) = u16_at(entry) else { break };
            match tag {
                50706 => return Sniffed::new(Format::Dng, "an Adobe DNG raw image"),
                271 => {
                    let len = u32_at(entry + 4).unwrap_or(0) as usize;
                    let at = if len <= 4 { Some(entry + 8) } else { u32_at(entry + 8).map(|o| o as usize) };
                    make = at.and_then(|at| data.get(at..at.checked_add(len.min(64))?));
                }
                _ => {}
            }
        }
    }
    if let Some(make) = make {
        let make = String::from_utf8_lossy(make).to_ascii_lowercase();
        // Name the maker from our own list, never with the file's bytes: those reach terminals
        // and logs through error messages (the sniff fuzz target found control characters).
        if let Some(maker) = CAMERA_MAKERS.iter().find(|m| make.contains(*m)) {
            return Sniffed::new(Format::Raw, format!("a {maker} camera raw image"));
        }
    }
    Sniffed::new(Format::Tiff, "a TIFF image")
}

/// ONNX has no magic: walk the first protobuf fields of a `ModelProto` (ir_version first, then
/// known field numbers with valid wire types).
fn looks_like_onnx(data: &[u8]) -> bool {
    fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *data.get(*at)?;
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    // ModelProto fields: 1 ir_version, 2-6 strings, 7 graph, 8 opset_import, 14 metadata_props,
    // 20 training_info, 25 functions, 26 configuration.
    const LEN_FIELDS: [u64; 10] = [2, 3, 4, 6, 7, 8, 14, 20, 25, 26];
    let mut at = 0usize;
    if data.first() != Some(&0x08) {
        return false;
    }
    at += 1;
    match varint(data, &mut at) {
        Some(1..=20) => {}
        _ => return false,
    }
    let mut fields = 1;
    while fields < 4 && at < data.len() {
        let Some(key) = varint(data, &mut at) else { return false };
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (5, 0) => {
                if varint(data, &mut at).is_none() {
                    return false;
                }
            }
            (f, 2) if LEN_FIELDS.contains(&f) => {
                let Some(len) = varint(data, &mut at).and_then(|l| usize::try_from(l).ok()) else { return false };
                let Some(end) = at.checked_add(len).filter(|&e| e <= data.len()) else { return false };
                at = end;
            }
            _ => return false,
        }
        fields += 1;
    }
    fields >= 2
}
