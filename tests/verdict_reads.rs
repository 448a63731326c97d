//! `DataAccess::Verdict`: a checkpoint's verdict from the parts of the file it needs, never the
//! tensor bytes, so that memory per file does not grow with the file. The CLI inspects with it;
//! its peak RSS on a 4 GiB (sparse) checkpoint is measured against a 1 MiB one, and every
//! polyglot is refused exactly as when the file is read whole.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sandload::{DataAccess, Dtype, Error, Input, Limits, Sandbox};
use sandload_samples::{self as samples, Tensor};
use sha2::{Digest, Sha256};

fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("verdict-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn verdict_sandbox() -> Sandbox {
    let mut builder = Sandbox::builder();
    builder.data_access(DataAccess::Verdict).cache_dir(common::cache_dir());
    builder.build().unwrap()
}

fn open_file(sandbox: &Sandbox, dir: &Path, name: &str) -> sandload::Result<sandload::Checkpoint> {
    let dir = Dir::open_ambient_dir(dir, ambient_authority()).unwrap();
    sandbox.open_safetensors(Input::open(&dir, name)?)
}

/// A safetensors file of one U8 tensor of `size` zero bytes, written sparse (set_len), with a
/// header padded so its length's low byte is 0x40 (not a pickle opcode: the walk stops at once).
fn sparse_checkpoint(path: &Path, size: u64) {
    let mut header = format!("{{\"w\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[0,{size}]}}}}");
    while header.len() % 256 != 0x40 {
        header.push(' ');
    }
    let file = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &file, &(header.len() as u64).to_le_bytes()).unwrap();
    std::io::Write::write_all(&mut &file, header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + size).unwrap();
}

/// Runs the CLI and returns its JSON record and its peak RSS in bytes (`wait4`'s rusage).
fn inspect(path: &Path, digest: bool) -> (serde_json::Value, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandload"));
    cmd.env("SANDLOAD_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandload-test-cache"));
    cmd.args(["inspect", "--json"]);
    if digest {
        cmd.arg("--digest");
    }
    let out = cmd.arg(path).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = out.id() as libc::pid_t;
    let mut stdout = out.stdout.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
    let mut status = 0;
    // SAFETY: an out-parameter for the child this test spawned; wait4 reaps it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    (record, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn inspect_memory_does_not_grow_with_the_checkpoint() {
    let dir = tmpdir("rss");
    let (small, big) = (dir.join("small.safetensors"), dir.join("big.safetensors"));
    sparse_checkpoint(&small, 1 << 20);
    sparse_checkpoint(&big, 4 << 30);
    inspect(&small, false); // fills the compiled-guest cache
    let (record, small_rss) = inspect(&small, false);
    assert_eq!(record["verdict"], "accepted", "{record}");
    let (record, big_rss) = inspect(&big, false);
    assert_eq!(record["verdict"], "accepted", "{record}");
    assert_eq!(record["tensors"][0]["shape"][0], 4u64 << 30);
    // The bound: the CLI's own footprint plus the header, 1 MiB of head and 72 KiB of tail.
    eprintln!("peak RSS: 1 MiB checkpoint {} MiB, 4 GiB checkpoint {} MiB", small_rss >> 20, big_rss >> 20);
    assert!(big_rss < small_rss + (32 << 20), "4 GiB: {big_rss} bytes, 1 MiB: {small_rss} bytes");

    // --digest streams the tensor bytes in 1 MiB pieces: the same bound, the right digest.
    let (record, digest_rss) = inspect(&big, true);
    let mut zeros = Sha256::new();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(4 << 10) {
        zeros.update(&chunk);
    }
    let expected: String = zeros.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(record["tensors"][0]["sha256"], expected.as_str(), "{record}");
    eprintln!("peak RSS with --digest: {} MiB", digest_rss >> 20);
    assert!(digest_rss < small_rss + (32 << 20), "--digest on 4 GiB: {digest_rss} bytes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_accepted_checkpoint_keeps_its_bytes_in_the_file() {
    let dir = tmpdir("lazy");
    let a: Vec<u8> = (0..24u8).collect();
    let file = samples::safetensors(
        &[
            Tensor { name: "a".into(), dtype: Dtype::U8, shape: vec![4, 6], data: a.clone() },
            Tensor::patterned("b", Dtype::F32, &[3, 5]),
        ],
        &[("format", "pt")],
    );
    std::fs::write(dir.join("m.safetensors"), &file).unwrap();
    let lazy = open_file(&verdict_sandbox(), &dir, "m.safetensors").unwrap();
    let whole = common::sandbox().open_safetensors(Input::from_bytes(file, "m.safetensors")).unwrap();
    assert!(!lazy.has_data() && whole.has_data());
    assert_eq!((lazy.tensors(), lazy.metadata()), (whole.tensors(), whole.metadata()));
    for view in whole.iter() {
        assert_eq!(lazy.read_tensor(view.name).unwrap().unwrap(), view.data);
        assert!(lazy.tensor(view.name).unwrap().data.is_empty());
    }
    assert_eq!(lazy.read_tensor("missing").unwrap(), None);
    let (mut streamed, mut at) = (Vec::new(), 0u64);
    lazy.stream_data(7, |offset, piece| {
        assert_eq!(offset, at);
        at += piece.len() as u64;
        streamed.extend_from_slice(piece);
    })
    .unwrap();
    let concatenated: Vec<u8> = whole.iter().flat_map(|v| v.data.to_vec()).collect();
    assert_eq!(streamed, concatenated);
    // Conversions of an empty view say why, never convert nothing.
    let err = lazy.tensor("a").unwrap().to_vec::<u8>().unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }) && err.to_string().contains("DataAccess::Verdict"), "{err}");
    assert!(lazy.tensor("a").unwrap().slice(&[0..1]).is_err());
    // A file truncated after validation: a read error, never other bytes.
    std::fs::OpenOptions::new().write(true).open(dir.join("m.safetensors")).unwrap().set_len(40).unwrap();
    assert_eq!(lazy.read_tensor("b").unwrap_err().kind(), "io");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every polyglot class is refused with the same rule whether the file is read whole or in the
/// pieces the verdict needs.
#[test]
fn polyglots_are_refused_the_same_from_pieces() {
    let dir = tmpdir("polyglots");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("pickle", samples::pickle_polyglot("os", "system", "x")),
        ("pure-python", samples::pickle_polyglot_after(b"F 1.5 \n0", "os", "system", "x")),
        ("gzip", samples::gzip_polyglot("os", "system", "x")),
        ("zip", samples::zip_polyglot()),
        ("zip-miniz", samples::zip_polyglot_trailing(66_000)),
        ("hdf5-512", samples::hdf5_polyglot(512)),
        ("hdf5-1m", samples::hdf5_polyglot(1 << 20)),
        ("hdf5-4m", samples::hdf5_polyglot(4 << 20)),
        ("tar", samples::tar_polyglot()),
        ("tar-0o", samples::tar_polyglot_spelled(|s| format!("0o{s:06o}"))),
    ];
    let lazy = verdict_sandbox();
    for (name, bytes) in files {
        let whole = common::sandbox().open_safetensors(Input::from_bytes(bytes.clone(), name)).unwrap_err();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let pieces = open_file(&lazy, &dir, name).unwrap_err();
        assert_eq!((whole.rule(), whole.kind()), (pieces.rule(), pieces.kind()), "{name}: {whole} / {pieces}");
        assert!(whole.rule().is_some_and(|r| r.ends_with("_polyglot")), "{name}: {whole}");
    }
    // Not safetensors, and larger than the guest's memory: recognised from its first MiB.
    let limits = Limits::default().with_guest_memory_bytes(64 << 20);
    let mut builder = Sandbox::builder();
    builder.data_access(DataAccess::Verdict).limits(limits).cache_dir(common::cache_dir());
    let small_guest = builder.build().unwrap();
    let pickle = dir.join("big.pkl");
    std::fs::write(&pickle, samples::pickle(4)).unwrap();
    std::fs::OpenOptions::new().append(true).open(&pickle).unwrap().set_len(100 << 20).unwrap();
    let d = Dir::open_ambient_dir(&dir, ambient_authority()).unwrap();
    let err = small_guest.open(Input::open(&d, "big.pkl").unwrap()).unwrap_err();
    assert_eq!(err.kind(), "refused_format", "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
