//! Writes the seed corpora of the fuzz targets: valid files of every kind sandload opens, and one
//! file per adversarial case the test suite checks (each rule broken, bombs, cycles, truncation),
//! so that a campaign starts at the interesting edges instead of rediscovering the formats.
//!
//! ```sh
//! cargo run --release --example fuzz_corpus -- fuzz/corpus
//! ```
//! writes `fuzz/corpus/<target>/<case>` for the targets `sniff`, `safetensors`, `raw`, `image` and
//! `shard_index`
//! (`guest_output` is structure-aware and starts from nothing).

use std::path::Path;

use sandload::Dtype;
use sandload_samples::{self as samples, Dng, Tensor, with_header};

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);

    let checkpoints = safetensors_cases();
    let raws = raw_cases();
    let images = image_cases();
    let others = other_formats();

    let mut written = 0;
    let mut write = |target: &str, cases: &[(String, Vec<u8>)]| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in cases {
            std::fs::write(dir.join(name), bytes)?;
            written += 1;
        }
        Ok(())
    };
    write("safetensors", &checkpoints)?;
    write("raw", &raws)?;
    write("image", &images)?;
    write("shard_index", &shard_index_cases())?;
    // Sniffing sees everything.
    for cases in [&checkpoints, &raws, &images, &others] {
        write("sniff", cases)?;
    }
    println!("wrote {written} seed files under {}", root.display());
    Ok(())
}

/// `model.safetensors.index.json` files: a Hub-shaped valid one, and one per rule the guest
/// enforces (duplicates, non-string file names, a bad `total_size`, no `weight_map`).
fn shard_index_cases() -> Vec<(String, Vec<u8>)> {
    let valid = r#"{
  "metadata": {"total_size": 24, "format": "pt"},
  "weight_map": {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.mlp.down_proj.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors"
  }
}"#;
    [
        ("valid", valid),
        ("duplicate-tensor", r#"{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}"#),
        ("duplicate-top-key", r#"{"weight_map": {"a": "x.safetensors"}, "weight_map": {"b": "y.safetensors"}}"#),
        ("duplicate-metadata-key", r#"{"metadata": {"k": 1, "k": 2}, "weight_map": {}}"#),
        ("file-not-a-string", r#"{"weight_map": {"a": 7}}"#),
        ("total-size-negative", r#"{"metadata": {"total_size": -1}, "weight_map": {}}"#),
        ("no-weight-map", r#"{"metadata": {}}"#),
        ("escaping-names", r#"{"weight_map": {"a": "../../etc/passwd", "b": "/abs.safetensors", "c": "model.safetensors.index.json"}}"#),
    ]
    .into_iter()
    .map(|(name, json)| (name.to_string(), json.as_bytes().to_vec()))
    .collect()
}

fn safetensors_cases() -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    for dtype in Dtype::ALL {
        let shape: &[u64] = &[2, 2];
        cases.push((
            format!("valid-{}", dtype.name()),
            samples::safetensors(&[Tensor::patterned("w", dtype, shape)], &[]),
        ));
    }
    cases.push(("valid-small".into(), samples::small_checkpoint()));
    // Regression seeds, one per polyglot kind the gate refuses (tests/polyglot.rs).
    cases.push(("polyglot-pickle".into(), samples::pickle_polyglot("os", "system", "echo pwned")));
    cases.push(("polyglot-zip".into(), samples::zip_polyglot()));
    cases.push(("polyglot-hdf5-4096".into(), samples::hdf5_polyglot(4096)));
    cases.push(("polyglot-tar".into(), samples::tar_polyglot()));
    // One seed per hole class of issue 21 (python/tests/test_loaders.py proves each with the real
    // loader). The gzip class is not here: its header alone is 560 KB, which would raise the
    // target's input length for every run; tests/polyglot.rs and the Python tests cover it.
    let preludes: [(&str, &[u8]); 5] = [
        ("float-space", b"F 1.5 \n0"),
        ("float-underscore", b"F1_0.5\n0"),
        ("memo-key-over-64-bits", b"Np99999999999999999999\n0"),
        ("short-frame", b"\x95\x00\x10\x00\x00\x00\x00\x00\x00"),
        ("inst-without-mark", b"ibuiltins\nopen\n"),
    ];
    for (what, prelude) in preludes {
        cases.push((
            format!("polyglot-pure-python-{what}"),
            samples::pickle_polyglot_after(prelude, "os", "system", "x"),
        ));
    }
    cases.push((
        "polyglot-pure-python-global-at-eof".into(),
        samples::pickle_polyglot_after(b"cos\nsystemX", "", "", ""),
    ));
    cases.push(("polyglot-tar-0o".into(), samples::tar_polyglot_spelled(|s| format!("0o{s:06o}"))));
    cases.push(("polyglot-tar-plus".into(), samples::tar_polyglot_spelled(|s| format!("+{s:06o} "))));
    cases.push(("polyglot-zip-miniz-window".into(), samples::zip_polyglot_trailing(66_000)));
    cases.push((
        "header-leading-space".into(),
        with_header(" {\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"),
    ));
    cases.push(("valid-empty".into(), samples::safetensors(&[], &[])));
    cases.push(("valid-metadata".into(), samples::safetensors(&[], &[("format", "pt"), ("k", "v")])));
    cases.push((
        "valid-scalar-and-empty".into(),
        samples::safetensors(
            &[Tensor::patterned("s", Dtype::I64, &[]), Tensor::patterned("e", Dtype::F32, &[0, 3])],
            &[],
        ),
    ));
    // One file per rule the guest and host enforce.
    let bad_headers = [
        ("header-json-syntax", "{\"a\":"),
        ("header-not-object", "[1,2,3]"),
        (
            "duplicate-key",
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        ),
        ("duplicate-metadata-key", r#"{"__metadata__":{"a":"1","a":"2"}}"#),
        ("unknown-dtype", r#"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#),
        ("invalid-offset", r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#),
        (
            "hole",
            r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#,
        ),
        ("shape-overflow", r#"{"w":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#),
        ("misaligned-f4", r#"{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}"#),
        ("size-mismatch", r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#),
        ("incomplete-coverage", r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#),
        ("metadata-not-strings", r#"{"__metadata__":{"a":1}}"#),
        ("deep-nesting", &"[".repeat(10_000)),
    ];
    for (name, header) in bad_headers {
        let mut file = with_header(header);
        if name == "size-mismatch" || name == "hole" {
            file.extend_from_slice(&[0; 4]);
        }
        cases.push((name.into(), file));
    }
    let mut not_utf8 = with_header("{\"\u{e9}\":1}");
    let at = not_utf8.iter().position(|&b| b == 0xC3).expect("the é");
    not_utf8[at] = 0xFF;
    cases.push(("header-not-utf8".into(), not_utf8));
    let mut past_eof = samples::small_checkpoint();
    past_eof[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("header-past-eof".into(), past_eof));
    cases.push(("header-too-small".into(), vec![8, 0, 0, 0]));
    let mut truncated = samples::small_checkpoint();
    truncated.truncate(truncated.len() - 3);
    cases.push(("truncated-data".into(), truncated));
    cases
}

fn raw_cases() -> Vec<(String, Vec<u8>)> {
    let small = || Dng::patterned(32, 24);
    let mut cases = vec![
        ("dng-uncompressed".to_string(), small().to_bytes()),
        ("dng-lossless-jpeg".into(), Dng { lossless_jpeg: true, ..small() }.to_bytes()),
        ("dng-active-area".into(), Dng { active_area: Some([2, 2, 22, 30]), ..small() }.to_bytes()),
        ("dng-preview".into(), Dng { preview: Some((4, 3, vec![128; 36])), ..small() }.to_bytes()),
        ("dng-bggr".into(), Dng { cfa: [2, 1, 1, 0], ..small() }.to_bytes()),
        ("dng-wb".into(), Dng { as_shot_neutral: [0.5, 1.0, 0.7], ..small() }.to_bytes()),
        (
            "dng-dimension-bomb".into(),
            Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..small() }.to_bytes(),
        ),
        ("dng-over-pixel-limit".into(), Dng { declared_size: Some((4096, 4096)), ..small() }.to_bytes()),
        ("dng-strips-past-eof".into(), Dng { strip_offset: Some(1 << 30), ..small() }.to_bytes()),
        ("dng-ifd-cycle".into(), Dng { self_loop: true, ..small() }.to_bytes()),
        ("tiff-plain".into(), samples::tiff(false, None)),
        ("tiff-camera-make".into(), samples::tiff(false, Some("NIKON CORPORATION"))),
    ];
    let linear_samples = (0..8 * 6 * 3).map(|i| (i * 300) as u16).collect();
    let linear = Dng { cpp: 3, samples: linear_samples, ..Dng::new(8, 6, vec![0; 8 * 6]) };
    cases.push(("dng-linear".into(), linear.to_bytes()));
    let whole = small().to_bytes();
    for keep in [8, 64, whole.len() / 2, whole.len() - 1] {
        cases.push((format!("dng-truncated-{keep}"), whole[..keep].to_vec()));
    }
    cases
}

fn image_cases() -> Vec<(String, Vec<u8>)> {
    let rgba: Vec<u8> =
        (0..4).flat_map(|y| std::iter::once(0).chain((0..4 * 4).map(move |i| (i * 17 + y) as u8))).collect();
    let layouts = samples::tiff_layouts().into_iter().map(|(name, bytes)| (name.to_string(), bytes));
    let mut cases = vec![
        ("png-rgb".to_string(), samples::png_image(5, 4)),
        ("png-rgba".into(), samples::png_with_header(4, 4, 6, &rgba)),
        ("png-dimension-bomb".into(), samples::png_with_header(1 << 20, 1 << 20, 2, &[0; 8])),
        ("jpeg-dimension-bomb".into(), samples::jpeg_with_dimensions(65_000, 65_000)),
        ("jpeg-head".into(), samples::jpeg_head()),
        ("tiff".into(), samples::tiff(false, None)),
    ];
    cases.extend(layouts);
    cases
}

fn other_formats() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = (0..=5).map(|p| (format!("pickle-p{p}"), samples::pickle(p))).collect();
    cases.extend([
        ("pickle-malicious".to_string(), samples::malicious_pickle()),
        ("pytorch-zip".into(), samples::pytorch_zip()),
        ("pytorch-tar".into(), samples::pytorch_tar()),
        ("npz".into(), samples::npz()),
        ("npy-object".into(), samples::npy_object()),
        ("gguf".into(), samples::gguf()),
        ("hdf5".into(), samples::hdf5()),
        ("onnx".into(), samples::onnx()),
        ("zip".into(), samples::zip(&[("a.txt", b"hello")])),
        ("tar".into(), samples::tar(&[("a.txt", b"hello")])),
    ]);
    cases
}
