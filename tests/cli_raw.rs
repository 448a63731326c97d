//! The RAW side of the CLI: `inspect` reports RAW files (with `pixels_sha256` under `--digest`),
//! `convert` writes developed PNG/TIFF or raw-sample safetensors, and refuses what it should.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sandload_samples::{self as samples, Dng};
use serde_json::Value;
use sha2::Digest;

fn sandload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandload"))
        .args(args)
        // Share the compiled-guest cache of the other test binaries.
        .env("SANDLOAD_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandload-test-cache"))
        .output()
        .expect("run sandload")
}

fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-raw-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// The first JSON line of `inspect --json` (the last is the summary).
fn first_record(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().expect("a record")).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn inspect_reports_raw_files_with_a_pixel_digest() {
    let dir = tmpdir("inspect");
    let dng = Dng::patterned(64, 40);
    let path = write(&dir, "IMG_0001.dng", &dng.to_bytes());
    let bomb = write(
        &dir,
        "bomb.dng",
        &Dng { declared_size: Some((i32::MAX as u32, 1 << 20)), ..Dng::patterned(8, 8) }.to_bytes(),
    );
    let out = sandload(&["inspect", "--json", "--digest", &path, &bomb]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "two files and the summary");
    assert_eq!(lines[2]["summary"]["rejected"], 1);

    let v = &lines[0];
    assert_eq!((v["verdict"].as_str(), v["format"].as_str()), (Some("accepted"), Some("dng")));
    assert!(v["error"].is_null());
    let raw = &v["raw"];
    assert_eq!(raw["width"], 64);
    assert_eq!(raw["height"], 40);
    assert_eq!(raw["cpp"], 1);
    assert_eq!(raw["cfa"], "RGGB");
    assert_eq!(raw["black_levels"], serde_json::json!([256.0]));
    assert_eq!(raw["white_levels"], serde_json::json!([4351]));
    assert_eq!(raw["make"], "Sandload");
    assert_eq!(raw["model"], "Synthetic 16");
    let le: Vec<u8> = dng.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let want: String = sha2::Sha256::digest(&le).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(raw["pixels_sha256"], want.as_str());
    assert_eq!(v["receipt"]["guest"], "raw-decoder");

    let v = &lines[1];
    assert_eq!((v["verdict"].as_str(), v["format"].as_str()), (Some("rejected"), Some("dng")));
    assert_eq!(v["error"]["kind"], "limit_exceeded");
    assert!(v["raw"].is_null());

    // Without --digest there is no pixel hash.
    let out = sandload(&["inspect", "--json", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = first_record(&out);
    assert!(v["raw"].get("pixels_sha256").is_none());
}

#[test]
fn convert_writes_developed_images_and_raw_safetensors() {
    let dir = tmpdir("convert");
    let dng = Dng::patterned(48, 32);
    let input = write(&dir, "shot.cr2", &dng.to_bytes()); // the name lies; content decides
    for ext in ["png", "tiff"] {
        let output = dir.join(format!("shot.{ext}"));
        let out = sandload(&["convert", &input, "-o", output.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let image = sandload::image::open(&output).unwrap();
        assert_eq!((image.width(), image.height()), (48, 32));
        assert!(image.as_rgb16().is_some(), "developed output is 16-bit RGB");
    }

    let output = dir.join("shot.safetensors");
    let out = sandload(&["convert", &input, "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bytes = std::fs::read(&output).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let raw = st.tensor("raw").unwrap();
    assert_eq!(raw.dtype(), safetensors::Dtype::U16);
    assert_eq!(raw.shape(), &[32, 48]);
    let samples: Vec<u16> = raw.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(samples, dng.samples);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["cfa"], "RGGB");
    assert_eq!(meta["white_levels"], "[4351]");
    assert_eq!(meta["make"], "Sandload");
}

#[test]
fn convert_reencodes_images_and_refuses_what_it_must() {
    let dir = tmpdir("refuse");
    let png = write(&dir, "in.png", &samples::png_image(5, 4));
    let output = dir.join("out.tiff");
    let out = sandload(&["convert", &png, "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sandload::image::open(&output).unwrap().width(), 5);

    // TIFF layouts `image` has no buffer for convert too: 64-bit float grey (BigTIFF) becomes
    // 16-bit RGB, CMYK becomes RGB as Pillow converts it.
    for (name, tiff) in samples::tiff_layouts() {
        let input = write(&dir, &format!("{name}.tif"), &tiff);
        let output = dir.join(format!("{name}.png"));
        let out = sandload(&["convert", &input, "-o", output.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert_eq!(sandload::image::open(&output).unwrap().width(), 5, "{name}");
        std::fs::remove_file(&output).unwrap();
        std::fs::remove_file(&input).unwrap();
    }

    // A pickle is refused (exit 1) and leaves no output behind.
    let pickle = write(&dir, "photo.dng", &samples::malicious_pickle());
    let output = dir.join("never.png");
    let out = sandload(&["convert", &pickle, "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("pickle"), "{}", stderr(&out));
    assert!(!output.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "no temporary file left behind");

    // Usage errors exit 2: unknown output format, image to safetensors.
    let out = sandload(&["convert", &png, "-o", dir.join("x.gif").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = sandload(&["convert", &png, "-o", dir.join("x.safetensors").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn the_raw_decoder_ships_as_a_replaceable_file() {
    // `guest-wasm` writes the bundled (LGPL-2.1, rawler) module out; `--guest` runs a module
    // from a file instead. Here: the one written out, and a hostile test guest in its place.
    let dir = tmpdir("guest");
    let wasm = dir.join("raw-decoder.wasm");
    let out = sandload(&["guest-wasm", "raw-decoder", "-o", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&wasm).unwrap(), sandload::Guest::RawDecoder.bundled_wasm());
    // An unknown guest is a usage error; an unwritable output names the path.
    let out = sandload(&["guest-wasm", "pickle-loader", "-o", wasm.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("raw-decoder"), "{}", stderr(&out));
    let nowhere = dir.join("missing-dir/raw-decoder.wasm");
    let out = sandload(&["guest-wasm", "raw-decoder", "-o", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(nowhere.to_str().unwrap()), "{}", stderr(&out));

    let dng = write(&dir, "shot.dng", &Dng::patterned(32, 16).to_bytes());
    let replacement = format!("raw-decoder={}", wasm.display());
    let out = sandload(&["inspect", "--json", "--guest", &replacement, &dng]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = first_record(&out);
    assert_eq!(report["raw"]["width"], 32);

    let hostile = Path::new(env!("OUT_DIR")).join("hostile.wasm");
    // A file the host sniffs as a DNG (so `inspect` hands it to the RAW guest) that names the attack.
    let attack = write(&dir, "escape.dng", &[samples::tiff(true, None), b"sandload-attack:escape".to_vec()].concat());
    let replacement = format!("raw-decoder={}", hostile.display());
    let out = sandload(&["inspect", "--json", "--guest", &replacement, &attack]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = first_record(&out);
    assert_eq!(report["verdict"], "rejected", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("path_open(fd 3") && !message.contains("ALLOWED"), "{message}");

    for bad in ["raw-decoder", "pickle-loader=x.wasm", "raw-decoder=/nonexistent.wasm"] {
        let out = sandload(&["inspect", "--guest", bad, &dng]);
        assert_eq!(out.status.code(), Some(2), "--guest {bad}: {}", stderr(&out));
    }
}
