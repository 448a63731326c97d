//! Formats are recognised from content, whatever the file is called, and every checkpoint format
//! but safetensors is refused with what it is, why, and how to convert it.

use std::sync::OnceLock;

use sandload::samples;
use sandload::{Error, Format, Input, Sandbox, sniff};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

#[track_caller]
fn assert_refused(bytes: Vec<u8>, name: &str, format: Format, says: &[&str]) {
    assert_eq!(sniff(&bytes).format, format, "sniff of {name}");
    let err = sandbox().open_safetensors(Input::from_bytes(bytes, name)).expect_err("must be refused");
    match &err {
        Error::Refused { format: f, file, remedy, .. } => {
            assert_eq!(*f, format);
            assert_eq!(file.to_str(), Some(name));
            assert!(!remedy.is_empty());
        }
        other => panic!("{name}: expected Refused, got {other}"),
    }
    let message = err.to_string();
    assert!(message.starts_with(&format!("{name}: refused: this is ")), "{message}");
    for needle in says {
        assert!(message.contains(needle), "{name}: message lacks {needle:?}: {message}");
    }
    assert_eq!(err.kind(), "refused_format");
}

#[test]
fn pickles_of_every_protocol_renamed_to_safetensors() {
    for protocol in 0..=5 {
        assert_refused(
            samples::pickle(protocol),
            "model.safetensors",
            Format::Pickle,
            &["pickle", "arbitrary code", "safetensors.torch.save_file"],
        );
    }
    assert_refused(samples::malicious_pickle(), "weights.safetensors", Format::Pickle, &["never loads pickles"]);
}

#[test]
fn pickle_protocol_is_reported() {
    for protocol in 2..=5 {
        assert!(sniff(&samples::pickle(protocol)).what.contains(&format!("protocol {protocol}")));
    }
}

#[test]
fn pytorch_zip_under_misleading_names() {
    for name in ["model.safetensors", "pytorch_model.bin", "model.pt", "model.ckpt", "model.pth", "README.txt"] {
        assert_refused(
            samples::pytorch_zip(),
            name,
            Format::PytorchZip,
            &["torch.save", "data.pkl", "weights_only=True"],
        );
    }
}

#[test]
fn pytorch_legacy_tar() {
    assert_refused(samples::pytorch_tar(), "model.safetensors", Format::PytorchTar, &["legacy PyTorch tar"]);
}

#[test]
fn numpy_files() {
    assert_refused(
        samples::npy("<f4", &[2], &[0; 8]),
        "a.safetensors",
        Format::Numpy,
        &["NumPy", "allow_pickle=False"],
    );
    assert_refused(samples::npy_object(), "obj.safetensors", Format::Numpy, &["object array", "pickled"]);
    assert_refused(samples::npz(), "arrays.safetensors", Format::Numpy, &[".npz"]);
}

#[test]
fn other_model_formats() {
    assert_refused(samples::gguf(), "model.safetensors", Format::Gguf, &["GGUF"]);
    assert_refused(samples::hdf5(), "model.safetensors", Format::Hdf5, &["HDF5", "h5py"]);
    assert_refused(samples::onnx(), "model.safetensors", Format::Onnx, &["ONNX", "numpy_helper"]);
    assert_refused(samples::zip(&[("notes.txt", b"hi")]), "model.safetensors", Format::Zip, &["zip archive"]);
}

#[test]
fn images_are_not_checkpoints() {
    assert_refused(samples::png(), "x.safetensors", Format::Png, &["image"]);
    assert_refused(samples::jpeg_head(), "x.safetensors", Format::Jpeg, &["image"]);
    assert_refused(samples::tiff(false, None), "x.safetensors", Format::Tiff, &["TIFF"]);
    assert_refused(samples::tiff(true, Some("Canon")), "x.safetensors", Format::Dng, &["DNG"]);
    assert_refused(samples::tiff(false, Some("NIKON CORPORATION")), "x.safetensors", Format::Raw, &["nikon"]);
}

/// Regression (found by the `sniff` fuzz target): the maker named in a refusal came from the
/// file's Make tag, so escape sequences in a hostile file reached terminals and logs.
#[test]
fn sniff_descriptions_never_echo_file_bytes() {
    let hostile = samples::tiff(false, Some("NIKON\x1b[31m\x07\r\nforged log line"));
    let sniffed = sniff(&hostile);
    assert_eq!(sniffed.format, Format::Raw);
    assert_eq!(sniffed.what, "a nikon camera raw image");
    let e = sandbox().open_safetensors(Input::from_bytes(hostile, "x.safetensors")).unwrap_err();
    let message = e.to_string();
    assert!(!message.chars().any(char::is_control), "control characters in {message:?}");
    assert!(!message.contains("forged"), "file bytes echoed in {message:?}");
}

#[test]
fn sniff_recognises_safetensors_and_unknown() {
    assert_eq!(sniff(&samples::small_checkpoint()).format, Format::Safetensors);
    assert_eq!(sniff(b"hello world, this is text.").format, Format::Unknown);
    assert_eq!(sniff(b"").format, Format::Unknown);
    assert_eq!(sniff(&samples::tar(&[("notes.txt", b"hi")])).format, Format::Unknown);
    // A safetensors header length of 0x280 starts with the bytes of a protocol-2 pickle.
    let tricky = samples::with_header(&format!("{{\"__metadata__\":{{\"p\":\"{}\"}}}}", "x".repeat(0x280 - 25)));
    assert_eq!(&tricky[..2], b"\x80\x02");
    assert_eq!(sniff(&tricky).format, Format::Safetensors);
    assert!(sandbox().open_safetensors(Input::from_bytes(tricky, "tricky.safetensors")).is_ok());
}

#[test]
fn format_names_are_the_cli_contract() {
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "safetensors",
            "pickle",
            "pytorch-zip",
            "pytorch-tar",
            "numpy",
            "gguf",
            "hdf5",
            "onnx",
            "zip",
            "tiff",
            "dng",
            "raw",
            "png",
            "jpeg",
            "unknown"
        ]
    );
}
