//! Generators of real files: valid safetensors, pickles of every protocol, PyTorch zip and tar
//! checkpoints, NumPy files, and the magic-number heads of the other formats.
//!
//! The test suite, the fuzz seed corpus, the benchmarks and the README example all build their
//! inputs here, so no binary blob of unknown origin is needed anywhere. Every generator writes
//! the format's real byte layout (CRC-checked zip entries, ustar headers, pickle opcodes); the
//! pickles were checked against CPython's `pickle.loads` when written.

use crate::Dtype;

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
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    // zlib stream of the one scanline [filter 0, pixel 0x80], stored block.
    chunk(&mut out, b"IDAT", &[0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x80, 0x00, 0x81, 0x00, 0x81]);
    chunk(&mut out, b"IEND", &[]);
    out
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
