//! Formats are recognised from content, whatever the file is called, and every checkpoint format
//! but safetensors is refused with what it is, why, and how to convert it.

use std::sync::OnceLock;

use sandload::{Error, Format, Input, Sandbox, sniff};
use sandload_samples as samples;

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
    assert_eq!(sniff(&samples::tar(&[("notes.txt", b"hi")])).format, Format::Tar);
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
            "torchscript",
            "keras",
            "numpy",
            "gguf",
            "hdf5",
            "onnx",
            "tf-savedmodel",
            "compressed",
            "zip",
            "tar",
            "7z",
            "tiff",
            "dng",
            "raw",
            "png",
            "jpeg",
            "webp",
            "safetensors-index",
            "unknown"
        ]
    );
}

/// Protocol 0 and 1 pickles start with whatever opcode their first object needs: recognition
/// walks the opcodes instead of matching a table of first bytes.
#[test]
fn text_pickles_starting_with_any_opcode() {
    for (what, bytes) in [
        ("MARK", &b"(lp0\nI1\naI2\na."[..]),
        ("GLOBAL", b"cos\nsystem\n(S'echo hi'\ntR."),
        ("EMPTY_LIST", b"]q\x00(K\x01K\x02e."),
        ("EMPTY_DICT", b"}q\x00X\x01\x00\x00\x00aq\x01K\x01s."),
        ("INT", b"I42\n."),
        ("STRING", b"S'hello'\np0\n."),
        ("UNICODE", b"Vhello\np0\n."),
        ("NONE", b"N."),
        ("LONG", b"L12345678901234567890L\n."),
        ("BININT1", b"K\x07."),
        ("EMPTY_TUPLE", b")."),
        ("FLOAT", b"F1.5\n."),
    ] {
        assert_eq!(sniff(bytes).format, Format::Pickle, "{what}");
        assert_refused(bytes.to_vec(), "model.safetensors", Format::Pickle, &["pickle"]);
    }
}

#[test]
fn compressed_pickles_are_refused() {
    for (kind, magic) in [
        ("gzip", &b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"[..]),
        ("bzip2", b"BZh91AY&SY"),
        ("xz", b"\xfd7zXZ\x00\x00\x04"),
        ("zstd", b"\x28\xb5\x2f\xfd\x24\x00"),
        ("lz4", b"\x04\x22\x4d\x18\x64\x40"),
    ] {
        let mut bytes = magic.to_vec();
        bytes.resize(64, 0x5a);
        assert_refused(bytes, "model.joblib.safetensors", Format::Compressed, &[kind, "joblib"]);
    }
}

#[test]
fn torchscript_keras_and_savedmodel_are_refused() {
    let torchscript = samples::zip(&[
        ("archive/data.pkl", &samples::pickle(2)),
        ("archive/code/__torch__/model.py", b"def forward(self, x):\n  return x\n"),
        ("archive/constants.pkl", &samples::pickle(2)),
        ("archive/version", b"3\n"),
    ]);
    assert_refused(torchscript, "model.safetensors", Format::TorchScript, &["TorchScript", "torch.jit.load"]);
    let keras = samples::zip(&[
        ("metadata.json", b"{\"keras_version\": \"3.0.0\"}"),
        ("config.json", b"{\"class_name\": \"Sequential\"}"),
        ("model.weights.h5", &samples::hdf5()),
    ]);
    assert_refused(keras, "model.safetensors", Format::Keras, &["Keras", "safe_mode"]);
    // saved_model.pb: schema version 1, one MetaGraphDef with a meta_info_def and a graph_def.
    let mut meta_graph = vec![0x0a, 4, 0x0a, 2, b'v', b'1', 0x12, 3, 0x0a, 1, b'x'];
    meta_graph.extend_from_slice(&[0x2a, 2, 0x0a, 0]);
    let mut saved_model = vec![0x08, 0x01, 0x12, meta_graph.len() as u8];
    saved_model.extend_from_slice(&meta_graph);
    assert_refused(saved_model, "saved_model.safetensors", Format::SavedModel, &["SavedModel", "tf.saved_model.load"]);
}

/// An ONNX file as exporters write it: ir_version, producer, graph (with a node and an
/// initializer), opset_import — and one with the fields in another order.
#[test]
fn realistic_onnx_is_refused() {
    fn field(key: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![key];
        let mut len = payload.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(payload);
        out
    }
    let node = [field(0x0a, b"x"), field(0x12, b"y"), field(0x22, b"Relu")].concat();
    let initializer = [vec![0x08, 1, 0x10, 1], field(0x42, b"w"), field(0x4a, &[0u8; 400])].concat();
    let graph = [field(0x0a, &node), field(0x12, b"main_graph"), field(0x2a, &initializer)].concat();
    let head = [vec![0x08, 0x08], field(0x12, b"pytorch"), field(0x1a, b"2.1.0")].concat();
    let opset = field(0x42, &[0x10, 17]);
    let onnx = [head.clone(), field(0x3a, &graph), opset.clone()].concat();
    assert_refused(onnx, "model.safetensors", Format::Onnx, &["ONNX"]);
    let reordered = [opset, field(0x3a, &graph), head].concat();
    assert_refused(reordered, "model.safetensors", Format::Onnx, &["ONNX"]);
}

#[test]
fn unknown_files_say_so() {
    let err = sandbox()
        .open_safetensors(Input::from_bytes(b"just some text, no model here".to_vec(), "notes.safetensors"))
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("not a safetensors file and not a recognised format"), "{message}");
    assert_eq!(err.kind(), "refused_format");
}
