//! "Accepted" means "only safetensors": a file that satisfies every safetensors rule but is also
//! a pickle, a zip, an HDF5 file or a tar archive that another loader opens is refused. Each
//! polyglot here is proven real by the reference safetensors crate (which accepts it) and, where
//! the standard library can, by CPython itself (which opens it as the other format).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Rng, sandbox};
use sandload::{Dtype, Error, Format, Input};
use sandload_samples::{self as samples, Tensor};

fn reference_accepts(bytes: &[u8]) {
    if let Err(e) = safetensors::SafeTensors::deserialize(bytes) {
        panic!("the reference crate must accept the polyglot: {e}");
    }
}

/// Writes `bytes` to a temporary file and runs `python3 -c script path`, returning stdout.
/// CPython is on every machine this project runs on; its absence is a failure, not a skip.
fn python(bytes: &[u8], script: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:016x}.safetensors", fxhash(bytes)));
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("python3").arg("-c").arg(script).arg(&path).output().expect("python3 must be installed");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3))
}

#[track_caller]
fn assert_polyglot(bytes: Vec<u8>, format: Format, rule: &str, says: &[&str]) -> Error {
    let err = sandbox().open_safetensors(Input::from_bytes(bytes, "model.safetensors")).expect_err("must be refused");
    assert_eq!(err.kind(), "refused_format", "{err}");
    assert_eq!(err.rule(), Some(rule), "{err}");
    match &err {
        Error::Refused { format: f, offset, .. } => {
            assert_eq!(*f, format, "{err}");
            assert!(offset.is_some(), "{err}");
        }
        other => panic!("expected Refused, got {other}"),
    }
    let message = err.to_string();
    assert!(message.starts_with("model.safetensors: refused: this is a safetensors file that is also"), "{message}");
    for needle in says {
        assert!(message.contains(needle), "message lacks {needle:?}: {message}");
    }
    err
}

#[test]
fn pickle_from_byte_zero_really_unpickles_and_is_refused() {
    let file = samples::pickle_polyglot("builtins", "print", "sandload polyglot ran");
    reference_accepts(&file);
    assert!(file[8..8 + 1364].iter().all(|b| (0x20..0x7f).contains(b)), "the header is printable JSON");
    // CPython runs it: `print` is imported and called with the attacker's argument.
    let out = python(&file, "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))");
    assert_eq!(out, "sandload polyglot ran\n");
    assert_polyglot(file, Format::Pickle, "pickle_polyglot", &["builtins.print", "pickle.load"]);

    // The dangerous version is refused the same way, naming what it would import.
    let evil = samples::pickle_polyglot("os", "system", "echo pwned");
    reference_accepts(&evil);
    assert_polyglot(evil, Format::Pickle, "pickle_polyglot", &["os.system"]);
}

#[test]
fn zip_found_from_the_end_really_opens_and_is_refused() {
    let file = samples::zip_polyglot();
    reference_accepts(&file);
    let out =
        python(&file, "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read('model/config.json').decode())");
    assert_eq!(out, "{\"layers\": 2}\n");
    assert_polyglot(file, Format::Zip, "zip_polyglot", &["zipfile", "end-of-central-directory"]);
}

#[test]
fn hdf5_superblock_at_every_power_of_two_is_refused() {
    for at in [512, 1024, 2048, 4096, 8192, 1 << 16, 1 << 20] {
        let file = samples::hdf5_polyglot(at);
        reference_accepts(&file);
        let err = assert_polyglot(file, Format::Hdf5, "hdf5_polyglot", &[&format!("byte {at}")]);
        assert!(matches!(err, Error::Refused { offset: Some(o), .. } if o == at as u64));
    }
    // Not at a power of two: the HDF5 library never looks there, so the file is just safetensors.
    let mut file = samples::hdf5_polyglot(1024);
    let sig = file.windows(8).position(|w| w == b"\x89HDF\r\n\x1a\n").unwrap();
    file.copy_within(sig..sig + 8, sig + 8);
    file[sig..sig + 8].fill(0x11);
    assert!(sandbox().open_safetensors(Input::from_bytes(file, "x.safetensors")).is_ok());
}

#[test]
fn tar_header_in_the_first_block_really_opens_and_is_refused() {
    let file = samples::tar_polyglot();
    reference_accepts(&file);
    let out = python(&file, "import sys, tarfile; print(len(tarfile.open(sys.argv[1], 'r:').getmembers()))");
    assert_eq!(out, "1\n");
    assert_polyglot(file, Format::Tar, "tar_polyglot", &["tar"]);
}

#[test]
fn header_must_begin_with_a_brace_and_pad_with_spaces_only() {
    for (header, rule) in [
        (" {\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "header_start"),
        ("\n{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "header_start"),
        ("\t{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "header_start"),
        ("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\n", "header_padding"),
        ("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}  \t ", "header_padding"),
    ] {
        let mut file = samples::with_header(header);
        file.push(7);
        reference_accepts(&file);
        let err = sandbox().open_safetensors(Input::from_bytes(file, "pad.safetensors")).unwrap_err();
        assert_eq!((err.kind(), err.rule()), ("malformed", Some(rule)), "{header:?}: {err}");
        assert!(matches!(err, Error::Malformed { format: Format::Safetensors, .. }), "{err}");
    }
    // Trailing spaces are the format's padding.
    let mut file = samples::with_header("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}     ");
    file.push(7);
    let ckpt = sandbox().open_safetensors(Input::from_bytes(file, "ok.safetensors")).unwrap();
    assert_eq!(ckpt.receipt().format, Format::Safetensors);
}

/// Header lengths whose low bytes spell another format's magic number (TIFF, BigTIFF, RW2, zip,
/// JPEG) are safetensors all the same: the reference accepts them, and so must sandload.
#[test]
fn header_lengths_that_spell_other_magic_numbers_are_accepted() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for (what, magic) in [
        ("TIFF II*\\0", *b"II*\0"),
        ("BigTIFF II+\\0", *b"II+\0"),
        ("RW2 IIU\\0", *b"IIU\0"),
        ("zip PK\\3\\4", *b"PK\x03\x04"),
        ("JPEG ff d8 ff", [0xff, 0xd8, 0xff, 0x00]),
    ] {
        let n = u32::from_le_bytes(magic) as usize;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let mut header = String::from("{\"w\":{\"dtype\":\"U8\",\"shape\":[4096],\"data_offsets\":[0,4096]}}");
        header.push_str(&" ".repeat(n - header.len()));
        let mut file = samples::with_header(&header);
        assert_eq!(file[..4], magic, "{what}");
        file.extend_from_slice(&data);
        reference_accepts(&file);
        let ckpt = sandbox()
            .open_safetensors(Input::from_bytes(file, "magic.safetensors"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((ckpt.len(), ckpt.receipt().format), (1, Format::Safetensors), "{what}");
    }
}

/// No false refusals: files written by the reference writer (`safetensors::serialize`, which is
/// also what `safetensors.torch.save_file` / `save_file` call) are all accepted, over header
/// lengths covering every residue mod 256 the writer produces and tensor data of the kinds real
/// checkpoints hold (random weights, zeros, ones, small integers, text-like bytes).
#[test]
fn files_from_the_reference_writer_are_never_refused() {
    let mut rng = Rng(0x5AFE_7E45_0125_2026);
    let words = ["model", "layers", "self_attn", "q_proj", "mlp", "down_proj", "weight", "bias", "norm", "embed"];
    let dtypes = [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::I64, Dtype::U8, Dtype::I8, Dtype::F64, Dtype::BOOL];
    let mut residues = std::collections::BTreeSet::new();
    let files = 3000;
    for i in 0..files {
        let count = 1 + rng.below(12) as usize;
        let mut tensors = Vec::new();
        for t in 0..count {
            let depth = 1 + rng.below(5);
            let mut name: Vec<String> = (0..depth).map(|_| words[rng.below(10) as usize].to_string()).collect();
            name.push(format!("{t}{}", "x".repeat(rng.below(9) as usize)));
            let dtype = dtypes[rng.below(dtypes.len())];
            let shape: Vec<u64> =
                (0..rng.below(3) + 1).map(|_| rng.below(if i % 10 == 0 { 200 } else { 24 }) as u64).collect();
            let len = dtype.byte_len(&shape).unwrap() as usize;
            let data: Vec<u8> = match rng.below(6) {
                0 => vec![0; len],
                1 => (0..len)
                    .map(|k| {
                        if k % 4 == 3 {
                            0x3f
                        } else if k % 4 == 2 {
                            0x80
                        } else {
                            0
                        }
                    })
                    .collect(),
                2 => (0..len).map(|_| rng.below(8) as u8).collect(),
                3 => (0..len).map(|_| b'a' + rng.below(26) as u8).collect(),
                _ => (0..len).map(|_| rng.next() as u8).collect(),
            };
            tensors.push(Tensor { name: name.join("."), dtype, shape, data });
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|t| {
                let dtype: safetensors::Dtype = serde_json::from_str(&format!("\"{}\"", t.dtype.name())).unwrap();
                let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                (t.name.clone(), safetensors::tensor::TensorView::new(dtype, shape, &t.data).unwrap())
            })
            .collect();
        let metadata = (i % 3 == 0).then(|| {
            std::collections::HashMap::from([
                ("format".to_string(), "pt".to_string()),
                ("i".to_string(), i.to_string()),
            ])
        });
        let Ok(file) = safetensors::serialize(views, metadata) else { continue };
        residues.insert(file[0]);
        if let Err(e) = sandbox().open_safetensors(Input::from_bytes(file.clone(), Path::new("ref.safetensors"))) {
            panic!(
                "file {i} written by the reference writer refused: {e}\nheader: {:?}",
                String::from_utf8_lossy(&file[..file.len().min(400)])
            );
        }
    }
    // The writer pads headers to multiples of 8: all 32 residues of the low byte must be covered,
    // including the ones that are pickle opcodes ('(' '0' 'P' 'X' 'h' 'p' and 0x80..0x98).
    assert_eq!(residues.len(), 32, "covered low bytes: {residues:?}");
}

/// joblib picks its decompressor from the first bytes: a header length `1f 8b 08 00` is a gzip
/// header, and stored deflate blocks in the JSON carry the stream to a pickle in the tensor data.
/// Proven with CPython's `gzip` and pure-Python unpickler (joblib's) here; with joblib itself in
/// `python/tests/test_loaders.py`.
#[test]
fn gzip_prefix_really_decompresses_to_a_pickle_and_is_refused() {
    let file = samples::gzip_polyglot("builtins", "print", "sandload gzip polyglot ran");
    reference_accepts(&file);
    let out = python(&file, "import gzip, pickle, sys; pickle._Unpickler(gzip.open(sys.argv[1])).load()");
    assert_eq!(out, "sandload gzip polyglot ran\n");
    assert_polyglot(file, Format::Compressed, "compressed_polyglot", &["gzip", "joblib"]);
}

/// What only the pure-Python unpickler (joblib, pandas' fallback) accepts, before a payload the
/// C unpickler never reaches: each file is run by `pickle._Unpickler`, refused by `pickle.load`,
/// and refused by sandload.
#[test]
fn pickles_only_the_pure_python_unpickler_runs_are_refused() {
    let preludes: [(&str, &[u8]); 4] = [
        ("float with spaces", b"F 1.5 \n0"),
        ("float with underscores", b"F1_0.5\n0"),
        ("memo key over 64 bits", b"Np99999999999999999999\n0"),
        ("frame longer than the file", b"\x95\x00\x10\x00\x00\x00\x00\x00\x00"),
    ];
    for (what, prelude) in preludes {
        let file = samples::pickle_polyglot_after(prelude, "builtins", "print", "ran");
        reference_accepts(&file);
        let out = python(
            &file,
            "import pickle, sys\n\
             try: pickle.load(open(sys.argv[1], 'rb')); print('C ran')\n\
             except Exception: pass\n\
             pickle._Unpickler(open(sys.argv[1], 'rb')).load()",
        );
        assert_eq!(out, "ran\n", "{what}");
        assert_polyglot(file, Format::Pickle, "pickle_polyglot", &["builtins.print"]);
    }
    // A GLOBAL whose name runs to the end of the file: readline()[:-1] gives "system".
    let file = samples::pickle_polyglot_after(b"cos\nsystemX", "", "", "");
    reference_accepts(&file);
    let out = python(
        &file,
        "import pickle, sys\n\
         class U(pickle._Unpickler):\n    def find_class(self, m, n): print(m, n); raise SystemExit\n\
         U(open(sys.argv[1], 'rb')).load()",
    );
    assert_eq!(out, "os system\n");
    assert_polyglot(file, Format::Pickle, "pickle_polyglot", &["os.system"]);
}

/// `tarfile.nti` reads the checksum as `int(s.strip(), 8)`: a `0o` prefix, a sign, underscores.
#[test]
fn tar_checksums_spelled_as_python_reads_them_open_and_are_refused() {
    let spellings: [fn(u32) -> String; 3] =
        [|s| format!("0o{s:06o}"), |s| format!("+{s:06o} "), |s| format!("{:03o}_{:03o} ", s >> 9, s & 0o777)];
    for spell in spellings {
        let file = samples::tar_polyglot_spelled(spell);
        reference_accepts(&file);
        let out = python(&file, "import sys, tarfile; print(len(tarfile.open(sys.argv[1]).getmembers()) > 0)");
        assert_eq!(out, "True\n", "{:?}", String::from_utf8_lossy(&file[148..156]));
        assert_polyglot(file, Format::Tar, "tar_polyglot", &["tar"]);
    }
}

/// torch.load reads zips with miniz, which finds an end record up to about 69.6 KB from the end,
/// beyond the 64 KiB + 22 bytes `zipfile` reads, and reads the directory at the stored offset.
#[test]
fn a_zip_only_miniz_finds_is_refused() {
    let file = samples::zip_polyglot_trailing(66_000);
    reference_accepts(&file);
    let out = python(
        &file,
        "import sys, zipfile\ntry: zipfile.ZipFile(sys.argv[1]); print('zipfile opened')\nexcept zipfile.BadZipFile: print('no')",
    );
    assert_eq!(out, "no\n");
    assert_polyglot(file, Format::Zip, "zip_polyglot", &["miniz"]);
    // Beyond both readers' windows it is only safetensors.
    let file = samples::zip_polyglot_trailing(80_000);
    assert!(sandbox().open_safetensors(Input::from_bytes(file, "model.safetensors")).is_ok());
}
