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
    /// A TorchScript archive (`torch.jit.save`): a zip with `code/` and `constants.pkl`.
    TorchScript,
    /// A Keras 3 `.keras` archive (a zip of `config.json`, `metadata.json`, `model.weights.h5`).
    Keras,
    /// NumPy `.npy`, or an `.npz` zip of them.
    Numpy,
    /// GGUF (llama.cpp), or its GGML/GGJT predecessors.
    Gguf,
    /// HDF5 (e.g. Keras `.h5`).
    Hdf5,
    /// An ONNX `ModelProto` protobuf.
    Onnx,
    /// A TensorFlow `saved_model.pb` (`SavedModel` protobuf).
    SavedModel,
    /// gzip, bzip2, xz, zstd or lz4 compressed data (joblib writes compressed pickles this way).
    Compressed,
    /// Another zip archive.
    Zip,
    /// Another tar archive.
    Tar,
    /// A 7-Zip archive.
    SevenZip,
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
    /// WebP.
    Webp,
    /// A sharded checkpoint's index (`model.safetensors.index.json`): what
    /// [`Sandbox::open_sharded`](crate::Sandbox::open_sharded) reports errors of the index
    /// under. JSON is not sniffed; only that function reads a file as an index.
    SafetensorsIndex,
    /// None of the above.
    Unknown,
}

impl Format {
    /// Every format, for documentation and tests.
    pub const ALL: [Format; 23] = [
        Format::Safetensors,
        Format::Pickle,
        Format::PytorchZip,
        Format::PytorchTar,
        Format::TorchScript,
        Format::Keras,
        Format::Numpy,
        Format::Gguf,
        Format::Hdf5,
        Format::Onnx,
        Format::SavedModel,
        Format::Compressed,
        Format::Zip,
        Format::Tar,
        Format::SevenZip,
        Format::Tiff,
        Format::Dng,
        Format::Raw,
        Format::Png,
        Format::Jpeg,
        Format::Webp,
        Format::SafetensorsIndex,
        Format::Unknown,
    ];

    /// The stable name used in JSON output, e.g. `"pytorch-zip"`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
            Format::PytorchZip => "pytorch-zip",
            Format::PytorchTar => "pytorch-tar",
            Format::TorchScript => "torchscript",
            Format::Keras => "keras",
            Format::Numpy => "numpy",
            Format::Gguf => "gguf",
            Format::Hdf5 => "hdf5",
            Format::Onnx => "onnx",
            Format::SavedModel => "tf-savedmodel",
            Format::Compressed => "compressed",
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::SevenZip => "7z",
            Format::Tiff => "tiff",
            Format::Dng => "dng",
            Format::Raw => "raw",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
            Format::SafetensorsIndex => "safetensors-index",
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

/// How many bytes from the start the pickle recogniser walks.
const PICKLE_WINDOW: usize = 64 << 10;

/// Recognises the format of `data` (a whole file) from its content.
///
/// A file is sniffed as safetensors when its first eight bytes can be a header length below
/// 4 GiB (the high four bytes are zero) and the ninth byte is `{` (or the whitespace a
/// non-conforming writer puts there, which the parser then refuses by rule): that test comes
/// first, so a header length whose low bytes happen to spell another format's magic number
/// (`II*\0`, `PK\3\4`, `\xff\xd8\xff`) is still read as safetensors. Whether such a file is
/// *also* another format is decided by [`Sandbox::open_safetensors`](crate::Sandbox::open_safetensors).
///
/// ```
/// use sandload::{sniff, Format};
/// assert_eq!(sniff(b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.").format, Format::Pickle);
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").format, Format::Png);
/// assert_eq!(sniff(b"(dp0\nVw\np1\nI1\ns.").format, Format::Pickle); // protocol 0
/// ```
pub fn sniff(data: &[u8]) -> Sniffed {
    let starts = |magic: &[u8]| data.starts_with(magic);

    if safetensors_shaped(data) {
        return Sniffed::new(Format::Safetensors, "a safetensors file");
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::new(Format::Png, "a PNG image");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Sniffed::new(Format::Jpeg, "a JPEG image");
    }
    if starts(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return Sniffed::new(Format::Webp, "a WebP image");
    }
    if starts(b"GGUF") {
        return Sniffed::new(Format::Gguf, "a GGUF model file (llama.cpp)");
    }
    if starts(b"lmgg") || starts(b"tjgg") || starts(b"fmgg") {
        return Sniffed::new(Format::Gguf, "a legacy GGML/GGJT model file (llama.cpp)");
    }
    if let Some(at) = hdf5_superblock(data) {
        let what = if at == 0 {
            "an HDF5 file (e.g. a Keras .h5 model)".to_string()
        } else {
            format!("an HDF5 file (superblock at byte {at}, e.g. a Keras .h5 model)")
        };
        return Sniffed::new(Format::Hdf5, what);
    }
    if starts(b"\x93NUMPY") {
        return numpy(data);
    }
    if let Some(s) = compressed(data) {
        return s;
    }
    if starts(b"7z\xBC\xAF\x27\x1C") {
        return Sniffed::new(Format::SevenZip, "a 7-Zip archive");
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || zip_end_record(data).is_some() {
        return zip(data);
    }
    if let Some(s) = camera_raw(data) {
        return s;
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return tiff(data);
    }
    if data.get(257..262) == Some(b"ustar") || tar_header_checksum_ok(data) {
        return tar(data);
    }
    if looks_like_saved_model(data) {
        return Sniffed::new(Format::SavedModel, "a TensorFlow SavedModel protobuf (saved_model.pb)");
    }
    if looks_like_onnx(data) {
        return Sniffed::new(Format::Onnx, "an ONNX model");
    }
    if let Some(s) = pickle(data) {
        return s;
    }
    Sniffed::new(Format::Unknown, "a file of unknown format")
}

/// The safetensors shape: a header length whose high four bytes are zero (every header the
/// format allows is under 100 MB), then `{` — or JSON whitespace, which the format forbids there
/// but the reference implementation accepts, or another JSON value inside a header that fits the
/// file — so that the parser can refuse those by name.
fn safetensors_shaped(data: &[u8]) -> bool {
    if data.get(4..8) != Some(&[0, 0, 0, 0]) {
        return false;
    }
    match data.get(8) {
        Some(b'{' | b' ' | b'\t' | b'\n' | b'\r') => true,
        // Another JSON value where the object belongs, inside a header that fits the file: a
        // safetensors file with a wrong header, for the parser to name (`header_json`).
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            le_u64(data, 0).is_some_and(|n| n >= 1 && n.saturating_add(8) <= data.len() as u64)
        }
        _ => false,
    }
}

/// Random access to a file's bytes for the checks that look at fixed offsets (the polyglot
/// rules): a whole buffer, or a file read piece by piece ([`DataAccess::Verdict`]), so that the
/// same code decides on both and a file is never read whole for them.
///
/// [`DataAccess::Verdict`]: crate::DataAccess::Verdict
pub(crate) trait ReadAt {
    /// The file's length.
    fn size(&self) -> usize;
    /// `n` bytes at `at`; `None` when they run past the end. An error only for a file that
    /// cannot be read (never for a buffer).
    fn read(&self, at: usize, n: usize) -> crate::Result<Option<std::borrow::Cow<'_, [u8]>>>;
}

impl ReadAt for [u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn read(&self, at: usize, n: usize) -> crate::Result<Option<std::borrow::Cow<'_, [u8]>>> {
        Ok(at.checked_add(n).and_then(|end| self.get(at..end)).map(std::borrow::Cow::Borrowed))
    }
}

/// Offset of an HDF5 superblock signature where the HDF5 library looks for one: byte 0, then
/// 512, 1024, 2048, ... (every power of two from 512 up to the file's size).
pub(crate) fn hdf5_superblock(data: &[u8]) -> Option<usize> {
    hdf5_superblock_in(data).ok().flatten()
}

/// [`hdf5_superblock`] on any [`ReadAt`].
pub(crate) fn hdf5_superblock_in<R: ReadAt + ?Sized>(data: &R) -> crate::Result<Option<usize>> {
    const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let mut at = 0usize;
    loop {
        let Some(bytes) = data.read(at, SIGNATURE.len())? else { return Ok(None) };
        if *bytes == SIGNATURE[..] {
            return Ok(Some(at));
        }
        at = if at == 0 {
            512
        } else {
            match at.checked_mul(2) {
                Some(next) => next,
                None => return Ok(None),
            }
        };
    }
}

/// Where Python's `zipfile` finds an end-of-central-directory record (`_EndRecData`): in the last
/// 22 bytes, else the last `PK\5\6` in the final 64 KiB + 22 bytes with a whole 22-byte record
/// after it. Returns the record's offset.
pub(crate) fn zip_end_record(data: &[u8]) -> Option<usize> {
    const RECORD: usize = 22;
    let len = data.len();
    let last = len.checked_sub(RECORD)?;
    if data.get(last..last + 4) == Some(b"PK\x05\x06") && data.get(len - 2..) == Some(&[0, 0]) {
        return Some(last);
    }
    let search_from = len.saturating_sub((1 << 16) + RECORD);
    let tail = data.get(search_from..)?;
    let at = tail.windows(4).rposition(|w| w == b"PK\x05\x06")? + search_from;
    (at <= last).then_some(at)
}

/// How far from the end a zip reader may find an end-of-central-directory record. Python's
/// `zipfile` reads the last 64 KiB + 22 bytes. torch's miniz (`mz_zip_reader_locate_header_sig`)
/// scans back in 4 KiB buffers, stepping 4,093 bytes, and gives up only after searching a buffer
/// that starts 65,557 bytes or more from the end, so it reaches up to 69,650 bytes back; the
/// window adds a buffer's worth more.
pub(crate) const ZIP_END_WINDOW: usize = (1 << 16) + 22 + 2 * 4096;

/// The offset of an end-of-central-directory record through which Python's `zipfile` or
/// torch's miniz would open `data` as an archive with members. Every `PK\5\6` in the last
/// [`ZIP_END_WINDOW`] bytes with a whole 22-byte record after it is tried (each reader takes
/// the last one in its own window; trying all is a superset of both), and it counts when a zip64
/// locator sits right before it, or a central-directory entry signature sits where `zipfile`
/// puts the directory (the record's offset minus the directory's size) or where miniz reads it
/// (the offset the record stores).
pub(crate) fn zip_reader_opens<R: ReadAt + ?Sized>(data: &R) -> crate::Result<Option<usize>> {
    const RECORD: usize = 22;
    let Some(last) = data.size().checked_sub(RECORD) else { return Ok(None) };
    let from = data.size().saturating_sub(ZIP_END_WINDOW);
    let Some(tail) = data.read(from, data.size() - from)? else { return Ok(None) };
    let tail_u32 = |at: usize| le_u32(&tail, at.checked_sub(from)?);
    let entry_at = |at: Option<usize>| -> crate::Result<bool> {
        let Some(at) = at else { return Ok(false) };
        Ok(data.read(at, 4)?.is_some_and(|sig| *sig == *b"PK\x01\x02"))
    };
    for eocd in (from..=last).rev() {
        if tail.get(eocd - from..eocd - from + 4) != Some(b"PK\x05\x06") {
            continue;
        }
        if let Some(loc) = eocd.checked_sub(20) {
            if data.read(loc, 4)?.is_some_and(|sig| *sig == *b"PK\x06\x07") {
                return Ok(Some(eocd));
            }
        }
        let size_cd = tail_u32(eocd + 12).map_or(0, |n| n as usize);
        let stored = tail_u32(eocd + 16).and_then(|n| usize::try_from(n).ok());
        if (size_cd >= 46 && entry_at(eocd.checked_sub(size_cd))?) || entry_at(stored)? {
            return Ok(Some(eocd));
        }
    }
    Ok(None)
}

/// True when the first 512 bytes are a tar header whose checksum `tarfile` accepts (the
/// unsigned or the signed byte sum, with the checksum field counted as spaces; the field read by
/// [`tarfile_nti`]).
pub(crate) fn tar_header_checksum_ok(data: &[u8]) -> bool {
    let Some(block) = data.get(..512) else { return false };
    tar_block_checksum_ok(block)
}

/// [`tar_header_checksum_ok`] of a 512-byte block.
pub(crate) fn tar_block_checksum_ok(block: &[u8]) -> bool {
    if block.len() != 512 {
        return false;
    }
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let Some(stored) = tarfile_nti(&block[148..156]) else { return false };
    let unsigned: i128 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i128::from(b) }).sum();
    let signed: i128 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i128::from(b as i8) }).sum();
    stored == unsigned || stored == signed
}

/// A tar number field exactly as CPython's `tarfile.nti` reads it (3.9 to 3.14): base-256 when
/// the first byte is `0o200` or `0o377`; else the bytes before the first NUL, decoded as ASCII,
/// then `int(s.strip() or "0", 8)`. `str.strip()` also removes `\x1c`-`\x1f`, and `int(x, 8)`
/// takes a sign, a `0o` prefix and single underscores between digits (and after the prefix).
/// `None` where `tarfile` raises `InvalidHeaderError`.
pub(crate) fn tarfile_nti(field: &[u8]) -> Option<i128> {
    if let Some((&first @ (0o200 | 0o377), rest)) = field.split_first() {
        let n = rest.iter().fold(0i128, |n, &b| (n << 8) | i128::from(b));
        return Some(if first == 0o377 { n - (1i128 << (8 * rest.len())) } else { n });
    }
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    if !text.is_ascii() {
        return None;
    }
    // Python's whitespace among ASCII characters (str.isspace): what strip() and int() skip.
    let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ');
    let start = text.iter().position(|b| !space(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !space(b)).map_or(start, |e| e + 1);
    let text = &text[start..end];
    if text.is_empty() {
        return Some(0);
    }
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    // After a `0o` prefix one underscore may come before the first digit.
    let digits = match text {
        [b'0', b'o' | b'O', rest @ ..] => rest.strip_prefix(b"_").unwrap_or(rest),
        _ => text,
    };
    let mut n: i128 = 0;
    let mut after_digit = false;
    for &b in digits {
        match b {
            b'0'..=b'7' => {
                // Eight bytes of octal digits cannot overflow i128.
                n = n * 8 + i128::from(b - b'0');
                after_digit = true;
            }
            b'_' if after_digit => after_digit = false,
            _ => return None,
        }
    }
    // Empty digits, or a trailing underscore.
    if !after_digit {
        return None;
    }
    Some(if negative { -n } else { n })
}

/// Compression containers: joblib writes its pickles compressed with each of these.
fn compressed(data: &[u8]) -> Option<Sniffed> {
    let starts = |magic: &[u8]| data.starts_with(magic);
    let kind = if starts(&[0x1f, 0x8b]) {
        "gzip"
    } else if starts(b"BZh") && data.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        "bzip2"
    } else if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        "xz"
    } else if starts(&[0x28, 0xB5, 0x2F, 0xFD]) {
        "zstd"
    } else if starts(&[0x04, 0x22, 0x4D, 0x18]) {
        "lz4"
    } else if starts(b"ZF") && data.get(2) == Some(&0x78) {
        // joblib's own zlib container (`ZF` + zlib stream).
        "joblib zlib"
    } else {
        return None;
    };
    Some(Sniffed::new(
        Format::Compressed,
        format!("{kind}-compressed data (e.g. a joblib or compressed pickle checkpoint)"),
    ))
}

/// Pickles have no magic number: walk the opcodes from byte 0, as `pickle.load` would, without
/// executing anything. A pickle is a walk that reaches STOP, or that reaches an opcode which
/// imports or calls, or that is still valid at the end of the window after a run of opcodes.
fn pickle(data: &[u8]) -> Option<Sniffed> {
    use sandload_abi::pickle::{End, WalkLimits, walk};
    let window = &data[..data.len().min(PICKLE_WINDOW)];
    // Recognition only names what a refused file is, so it reads the file as both unpicklers
    // read a whole pickle, without the pure-Python reading of a last line at the end of the file
    // (which would call a 10-byte "cposix\ns{}" a pickle that imports `posix.s{`). The gate that
    // accepts files applies that reading too (the safetensors-header guest).
    let w = walk(window, &WalkLimits::default());
    let recognised = match w.end {
        End::Stop => true,
        End::Truncated | End::OpLimit | End::Ambiguous => w.has_effects() || (window.len() < data.len() && w.ops >= 16),
        End::Invalid => w.has_effects() && w.ops >= 3,
    };
    if !recognised {
        return None;
    }
    let what = match w.protocol {
        Some(p) => format!("a Python pickle (protocol {p})"),
        None => "a Python pickle (protocol 0 or 1)".to_string(),
    };
    Some(Sniffed::new(Format::Pickle, what))
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
    let base = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
    if has(&|n| base(n) == "constants.pkl" || n.starts_with("code/") || n.contains("/code/")) {
        return Sniffed::new(
            Format::TorchScript,
            "a TorchScript archive (torch.jit.save): its code/ is TorchScript and its .pkl files are pickles",
        );
    }
    if has(&|n| n == "data.pkl" || n.ends_with("/data.pkl")) {
        return Sniffed::new(Format::PytorchZip, "a PyTorch zip checkpoint (torch.save), whose data.pkl is a pickle");
    }
    if has(&|n| n == "config.json") && has(&|n| n == "model.weights.h5" || n == "metadata.json") {
        return Sniffed::new(
            Format::Keras,
            "a Keras .keras model archive (its config can name Lambda layers and custom objects to import)",
        );
    }
    if !names.is_empty() && names.iter().all(|n| n.ends_with(".npy") || n.ends_with('/')) {
        return Sniffed::new(Format::Numpy, "a NumPy .npz archive of .npy arrays");
    }
    if has(&|n| n.ends_with(".pkl") || n.ends_with(".pickle") || n.ends_with(".joblib")) {
        return Sniffed::new(Format::Zip, "a zip archive containing pickle files");
    }
    // By content, whatever the member is called (a pickle named data.txt).
    if let Some(entry) = zip_entries(data).iter().find(|e| zip_member(data, e).is_some_and(|m| pickle(m).is_some())) {
        return Sniffed::new(
            Format::Zip,
            format!("a zip archive containing a pickle (member {})", member_label(&entry.name)),
        );
    }
    Sniffed::new(Format::Zip, "a zip archive")
}

/// A member name from the file, quoted for a description: control and bidi characters escaped,
/// and cut so that the description stays one short line whatever the archive names its members
/// (the sniff fuzz target found a name of 16 NULs escaping to a 157-byte description).
fn member_label(name: &str) -> String {
    const MAX: usize = 48;
    let quoted = format!("{:?}", crate::error::printable(name));
    if quoted.len() <= MAX {
        return quoted;
    }
    let mut cut = MAX - 4;
    while !quoted.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...\"", &quoted[..cut])
}

/// Entry names from the first local header and the central directory.
fn zip_names(data: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    if data.starts_with(b"PK\x03\x04") {
        let first = le_u16(data, 26).and_then(|len| data.get(30..30 + usize::from(len)));
        names.extend(first.map(|name| String::from_utf8_lossy(name).into_owned()));
    }
    names.extend(zip_entries(data).into_iter().map(|entry| entry.name));
    names.truncate(MAX_ENTRIES);
    names
}

fn tar(data: &[u8]) -> Sniffed {
    const TORCH_MEMBERS: [&str; 4] = ["sys_info", "pickle", "storages", "tensors"];
    if tar_members(data).iter().any(|(name, _, _)| TORCH_MEMBERS.contains(&name.as_str())) {
        return Sniffed::new(Format::PytorchTar, "a legacy PyTorch tar checkpoint, whose members are pickles");
    }
    Sniffed::new(Format::Tar, "a tar archive (not a PyTorch checkpoint)")
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

/// Whether `data` starts as a plain TIFF or BigTIFF file (either byte order), the container of
/// ordinary TIFF pictures and of most maker RAW formats (NEF, ARW, PEF, ...), but not of those
/// with a signature of their own (CR2, ORF, RW2).
pub(crate) fn is_tiff_container(data: &[u8]) -> bool {
    let tiff = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"].iter().any(|sig| data.starts_with(*sig));
    tiff && data.get(8..10) != Some(b"CR")
}

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

/// One top-level protobuf field: (field number, wire type, payload of a length-delimited field).
fn protobuf_fields(data: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
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
    let mut fields = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if fields.len() >= MAX_ENTRIES {
            return None;
        }
        let key = varint(data, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        let payload: &[u8] = match wire {
            0 => {
                varint(data, &mut at)?;
                &[]
            }
            2 => {
                let len = usize::try_from(varint(data, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&e| e <= data.len())?;
                let payload = &data[at..end];
                at = end;
                payload
            }
            _ => return None,
        };
        fields.push((field, wire, payload));
    }
    Some(fields)
}

/// ONNX has no magic: the whole file must parse as top-level `ModelProto` fields (each a known
/// field number with its wire type, lengths inside the file) and include a graph or an opset.
fn looks_like_onnx(data: &[u8]) -> bool {
    // 1 ir_version, 5 model_version (varints); 2-4, 6 strings, 7 graph, 8 opset_import,
    // 14 metadata_props, 20 training_info, 25 functions, 26 configuration.
    const VARINT_FIELDS: [u64; 2] = [1, 5];
    const LEN_FIELDS: [u64; 10] = [2, 3, 4, 6, 7, 8, 14, 20, 25, 26];
    let Some(fields) = protobuf_fields(data) else { return false };
    fields.len() >= 2
        && fields.iter().all(|&(f, w, _)| (w == 0 && VARINT_FIELDS.contains(&f)) || (w == 2 && LEN_FIELDS.contains(&f)))
        && fields.iter().any(|&(f, _, _)| f == 7 || f == 8)
}

/// A TensorFlow `SavedModel`: optional field 1 (schema version), then field-2 `MetaGraphDef`s,
/// each starting with one of that message's own fields (meta_info_def, graph_def, saver_def,
/// collection_def, signature_def, asset_file_defs, object_graph_def).
fn looks_like_saved_model(data: &[u8]) -> bool {
    const META_GRAPH_KEYS: [u8; 7] = [0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a];
    let Some(fields) = protobuf_fields(data) else { return false };
    let mut graphs = 0;
    for &(field, wire, payload) in &fields {
        match (field, wire) {
            (1, 0) => {}
            (2, 2) if payload.first().is_some_and(|b| META_GRAPH_KEYS.contains(b)) => graphs += 1,
            _ => return false,
        }
    }
    graphs > 0
}

/// The byte ranges of the pickles inside a file sniffed as `format`, for the pickle report: the
/// file itself for a pickle (all of its concatenated pickles), the stored `.pkl` members of a
/// zip (PyTorch, TorchScript), the members of a legacy PyTorch tar, the payload of a NumPy
/// object array. Each range is cut to `max_len`; at most `max_streams` ranges.
pub(crate) fn pickle_streams(
    data: &[u8],
    format: Format,
    max_len: usize,
    max_streams: usize,
) -> Vec<(String, std::ops::Range<usize>)> {
    let cut = |start: usize, len: usize| start..start.saturating_add(len.min(max_len)).min(data.len());
    let mut streams = Vec::new();
    match format {
        Format::Pickle => streams.push(("pickle".to_string(), cut(0, data.len()))),
        Format::PytorchZip | Format::TorchScript | Format::Zip | Format::Numpy | Format::Keras
            if zip_end_record(data).is_some() =>
        {
            // By content, not by name: every stored member that walks as a pickle (`.pkl` or a
            // pickle called anything else), and the payload of each `.npy` member holding an
            // object array (`.npz`).
            for entry in zip_entries(data) {
                let Some(member) = zip_member_range(data, &entry) else { continue };
                let bytes = &data[member.clone()];
                if let Some(start) = npy_object_payload(bytes) {
                    let start = member.start + start;
                    streams.push((format!("{} (object array)", entry.name), cut(start, member.end - start)));
                } else if entry.name.ends_with(".pkl") || pickle(bytes).is_some() {
                    streams.push((entry.name, cut(member.start, member.len())));
                }
            }
        }
        Format::PytorchTar => {
            for (name, start, size) in tar_members(data) {
                streams.push((name, cut(start, size)));
            }
        }
        Format::Numpy => {
            if let Some(start) = npy_object_payload(data) {
                streams.push(("object array".to_string(), cut(start, data.len() - start)));
            }
        }
        _ => {}
    }
    streams.retain(|(_, r)| !r.is_empty());
    streams.truncate(max_streams);
    streams
}

/// Where the pickled elements of a `.npy` object array start (after its header), if `data` is one.
fn npy_object_payload(data: &[u8]) -> Option<usize> {
    if !data.starts_with(b"\x93NUMPY") {
        return None;
    }
    // Version 1 has a u16 header length at 8, versions 2 and 3 a u32.
    let header_end = match data.get(6) {
        Some(1) => le_u16(data, 8).map(|n| 10 + usize::from(n)),
        _ => le_u32(data, 8).and_then(|n| usize::try_from(n).ok()?.checked_add(12)),
    };
    let start = header_end.filter(|&s| s < data.len())?;
    let header = String::from_utf8_lossy(&data[..start]);
    (header.contains("'|O'") || header.contains("\"|O\"")).then_some(start)
}

/// The bytes of a stored (uncompressed) zip member, from its local header; `None` for a
/// compressed member or offsets outside the file.
fn zip_member_range(data: &[u8], entry: &ZipEntry) -> Option<std::ops::Range<usize>> {
    if entry.method != 0 {
        return None;
    }
    // The local header repeats the name and has its own extra field.
    let local = entry.local_offset;
    if local.checked_add(4).and_then(|e| data.get(local..e)) != Some(b"PK\x03\x04") {
        return None;
    }
    let n = le_u16(data, local.checked_add(26)?)?;
    let x = le_u16(data, local.checked_add(28)?)?;
    let start = local.checked_add(30 + usize::from(n) + usize::from(x))?;
    let end = start.checked_add(entry.size)?.min(data.len());
    (start <= end).then_some(start..end)
}

fn zip_member<'a>(data: &'a [u8], entry: &ZipEntry) -> Option<&'a [u8]> {
    zip_member_range(data, entry).map(|r| &data[r])
}

/// One central-directory entry of a zip.
struct ZipEntry {
    name: String,
    local_offset: usize,
    size: usize,
    method: u16,
}

/// The central directory's entries, found from the end record as `zipfile` finds it (zip64
/// included; bounded walk; every offset from the file checked, so values near `u64::MAX` cannot
/// overflow).
fn zip_entries(data: &[u8]) -> Vec<ZipEntry> {
    let mut entries = Vec::new();
    let slice = |at: usize, len: usize| at.checked_add(len).and_then(|end| data.get(at..end));
    let Some(eocd) = zip_end_record(data) else { return entries };
    let mut cd_offset = le_u32(data, eocd + 16).map(u64::from);
    if cd_offset == Some(u64::from(u32::MAX)) {
        // zip64: the locator sits 20 bytes before the EOCD and points at the zip64 EOCD record.
        cd_offset = eocd
            .checked_sub(20)
            .filter(|&loc| slice(loc, 4) == Some(b"PK\x06\x07"))
            .and_then(|loc| le_u64(data, loc.checked_add(8)?))
            .and_then(|rec| usize::try_from(rec).ok())
            .filter(|&rec| slice(rec, 4) == Some(b"PK\x06\x06"))
            .and_then(|rec| le_u64(data, rec.checked_add(48)?));
    }
    let Some(mut at) = cd_offset.and_then(|o| usize::try_from(o).ok()) else { return entries };
    for _ in 0..MAX_ENTRIES {
        if slice(at, 4) != Some(b"PK\x01\x02") {
            break;
        }
        let u16_at = |off: usize| at.checked_add(off).and_then(|p| le_u16(data, p));
        let u32_at = |off: usize| at.checked_add(off).and_then(|p| le_u32(data, p));
        let (Some(method), Some(size), Some(n), Some(x), Some(c), Some(local)) =
            (u16_at(10), u32_at(20), u16_at(28), u16_at(30), u16_at(32), u32_at(42))
        else {
            break;
        };
        let (n, x, c) = (usize::from(n), usize::from(x), usize::from(c));
        if let (Some(name), Ok(size), Ok(local)) =
            (at.checked_add(46).and_then(|p| slice(p, n)), usize::try_from(size), usize::try_from(local))
        {
            entries.push(ZipEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                local_offset: local,
                size,
                method,
            });
        }
        match at.checked_add(46 + n + x + c) {
            Some(next) => at = next,
            None => break,
        }
    }
    entries
}

/// (name, data offset, size) of each member of a tar (bounded walk).
fn tar_members(data: &[u8]) -> Vec<(String, usize, usize)> {
    let mut members = Vec::new();
    let mut at = 0usize;
    for _ in 0..MAX_ENTRIES {
        let Some(header) = at.checked_add(512).and_then(|end| data.get(at..end)) else { break };
        if header.get(257..262) != Some(b"ustar") && !tar_header_checksum_ok(header) {
            break;
        }
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).trim_start_matches("./").to_string();
        let size = tarfile_nti(&header[124..136]).and_then(|s| usize::try_from(s).ok());
        let Some(size) = size else { break };
        let start = at + 512;
        if header[156] == b'0' || header[156] == 0 {
            members.push((name, start, size));
        }
        let Some(next) = size.checked_add(511).map(|s| s / 512 * 512).and_then(|s| s.checked_add(start)) else {
            break;
        };
        at = next;
    }
    members
}

#[cfg(test)]
mod tests {
    use super::{Format, sniff, tarfile_nti};
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// `tarfile.nti` itself, on fields aimed at its parser: whitespace Python strips and Rust's
    /// `trim` does not (`\x1c`-`\x1f`), signs, `0o` prefixes, underscores, NULs, non-ASCII,
    /// base-256. A machine without `python3` fails this test rather than skipping it.
    #[test]
    fn number_fields_read_as_tarfile_reads_them() {
        const ALPHABET: &[u8] = b"0123456789_oO+- \t\n\x0b\x0c\r\x1c\x1d\x1e\x1fx\x00\x80\xff";
        let mut state = 0x7A12_F1E1_D5u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut fields: Vec<[u8; 8]> = Vec::new();
        for _ in 0..20_000 {
            let mut f = [0u8; 8];
            for b in &mut f {
                *b = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
            }
            // Mostly short numbers padded the way writers pad them.
            let len = (next() % 9) as usize;
            for b in &mut f[len..] {
                *b = [0u8, b' '][(next() % 2) as usize];
            }
            fields.push(f);
        }
        for s in ["0o17", "-0O1_7", "\x1c17\x1f", "0o_17", "0_7", "_7", "7_", "1__7", "+17", "0o", "- 7", "   "] {
            let mut f = [0u8; 8];
            f[..s.len()].copy_from_slice(s.as_bytes());
            fields.push(f);
        }
        fields.push([0o377, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        fields.push([0o200, 0, 0, 0, 0, 0, 0x12, 0x34]);
        let script = "import sys, tarfile\nfor line in sys.stdin:\n    try: print(tarfile.nti(bytes.fromhex(line.strip())))\n    except tarfile.InvalidHeaderError: print('invalid')\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is required for this test");
        let input: String =
            fields.iter().map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        let answers: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(answers.len(), fields.len());
        let mut valid = 0;
        for (f, python) in fields.iter().zip(&answers) {
            let ours = tarfile_nti(f).map_or("invalid".to_string(), |n| n.to_string());
            assert_eq!(&ours, python, "field {f:?}");
            valid += usize::from(python != "invalid");
        }
        assert!(valid > 2_000 && valid < fields.len() - 2_000, "{valid} valid fields: the test needs both kinds");
    }

    /// A stored zip member that is a pickle, found by content under a central-directory name
    /// made of characters that escape long (NULs, bidi overrides, 4-byte characters): the
    /// description names the member, escaped, and stays within the fuzz target's 128 bytes.
    #[test]
    fn zip_member_names_are_cut_in_descriptions() {
        let pickle = b"\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01K\x01s.";
        for cd_name in ["\0".repeat(16), "\u{202e}".repeat(40), "\u{1F600}".repeat(40), "w".repeat(300), "a.txt".into()]
        {
            let local_name = b"archive/data.bin";
            let mut zip = Vec::new();
            zip.extend_from_slice(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0");
            zip.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&[0, 0]);
            zip.extend_from_slice(local_name);
            zip.extend_from_slice(pickle);
            let cd = zip.len();
            zip.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0\0\0\0\0");
            zip.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(cd_name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&[0; 16]); // extra, comment, disk, attributes, local offset 0
            zip.extend_from_slice(cd_name.as_bytes());
            let cd_len = zip.len() - cd;
            zip.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
            zip.extend_from_slice(&(cd_len as u32).to_le_bytes());
            zip.extend_from_slice(&(cd as u32).to_le_bytes());
            zip.extend_from_slice(&[0, 0]);
            let sniffed = sniff(&zip);
            assert_eq!(sniffed.format, Format::Zip, "{cd_name:?}");
            assert!(sniffed.what.starts_with("a zip archive containing a pickle (member \""), "{}", sniffed.what);
            assert!(sniffed.what.len() <= 128, "{} bytes: {}", sniffed.what.len(), sniffed.what);
            assert!(sniffed.what.chars().all(|c| !c.is_control()), "{}", sniffed.what);
            if cd_name == "a.txt" {
                assert!(sniffed.what.ends_with("(member \"a.txt\")"), "{}", sniffed.what);
            }
        }
    }
}
