//! One routing decision: every file of a mixed set gets the same verdict, format, error and guest
//! from the library (`Sandbox::open_if_sharded`, then `Sandbox::open`), from `sandload inspect`
//! and from `sandload convert` (the Python package is compared with the CLI in
//! `python/tests/test_routing.py`). The set aims at the places front ends used to disagree: an
//! index-named pickle, a valid index under a name that is not a safetensors index, a TIFF the RAW
//! guest hands on to the image guest, files too short for the RAW guest, a directory holding a
//! sharded model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sandload::report::FileReport;
use sandload::{Input, Sandbox};
use sandload_samples as samples;
use serde_json::{Value, json};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandload"))
        .args(args)
        // Share the compiled-guest cache of the other test binaries.
        .env("SANDLOAD_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandload-test-cache"))
        .output()
        .expect("run sandload")
}

/// What must agree: the decision, not timings or digests.
fn decision(record: &Value) -> Value {
    let error = &record["error"];
    let receipt = &record["receipt"];
    json!({
        "verdict": record["verdict"],
        "format": record["format"],
        "kind": error["kind"],
        "rule": error["rule"],
        "limit": error["limit"],
        "guest": receipt["guest"],
        "raw": [record["raw"]["width"], record["raw"]["height"]],
        "image": [record["image"]["width"], record["image"]["height"]],
        "tensors": record["tensors"].as_array().map(Vec::len),
        "tensor_count": record["tensor_count"],
        "shards": record["shards"].as_array().map(|s| s.iter().map(decision).collect::<Vec<_>>()),
    })
}

/// The library, as a pipeline embedding it routes a path: a sharded checkpoint by the shared
/// rule, every other file through `open`.
fn library(sandbox: &Sandbox, path: &Path) -> Value {
    let (dir, name) = if path.is_dir() {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).unwrap();
        let index = sandload::shard_index_in(&dir).expect("the corpus's directories hold an index").to_path_buf();
        (dir, index)
    } else {
        sandload::parent_dir(path, ambient_authority()).unwrap()
    };
    let report = match sandbox.open_if_sharded(&dir, &name) {
        Some(result) => FileReport::sharded(path, result, false),
        None => {
            let shown = if path.is_dir() { path.join(&name) } else { path.to_path_buf() };
            let input = Input::open(&dir, &name).unwrap().with_name(&shown);
            let (result, receipt) = sandbox.open_with_receipt(input);
            FileReport::new(&shown, result, Some(receipt), false)
        }
    };
    serde_json::to_value(&report).unwrap()
}

#[test]
fn library_inspect_and_convert_route_every_file_alike() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("routing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let paths: Vec<PathBuf> = samples::mixed_corpus(&dir).unwrap();
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();

    let mut inspect_args = vec!["inspect", "--json", "--jobs", "1"];
    inspect_args.extend(&args);
    let out = cli(&inspect_args);
    assert!(matches!(out.status.code(), Some(1)), "some files are refused: {out:?}");
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r.get("path").is_some())
        .collect();
    assert_eq!(records.len(), paths.len(), "one record per path given: {records:#?}");

    let sandbox = Sandbox::builder().data_access(sandload::DataAccess::Verdict).build().unwrap();
    let output = dir.join("converted.png");
    let mut seen = std::collections::BTreeSet::new();
    for (path, record) in paths.iter().zip(&records) {
        let library = library(&sandbox, path);
        assert_eq!(library["path"], record["path"], "{}", path.display());
        let expected = decision(&library);
        assert_eq!(decision(record), expected, "inspect and the library disagree on {}", path.display());
        seen.insert((expected["verdict"].to_string(), expected["format"].to_string(), expected["guest"].to_string()));

        // convert: the same verdict; an accepted image or RAW file is written, a checkpoint is a
        // usage error, a refusal names the same kind of error.
        let _ = std::fs::remove_file(&output);
        let out = cli(&["convert", path.to_str().unwrap(), "-o", output.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if expected["verdict"] == "accepted" {
            // A checkpoint, one file or sharded, has tensors; RAW files and images do not.
            let checkpoint = !expected["tensors"].is_null() || !expected["tensor_count"].is_null();
            let status = if checkpoint { 2 } else { 0 };
            assert_eq!(out.status.code(), Some(status), "convert {}: {stderr}", path.display());
            assert_eq!(output.exists(), !checkpoint, "{}", path.display());
        } else {
            assert_eq!(out.status.code(), Some(1), "convert {}: {stderr}", path.display());
            let kind = expected["kind"].as_str().unwrap();
            assert!(stderr.contains(&format!("REJECTED ({kind})")), "convert {}: {stderr}", path.display());
            assert!(!output.exists());
        }
    }
    // The set reaches every route: checkpoints, the RAW guest, the image guest (directly and
    // after the RAW guest), refusals before any guest.
    let guests: std::collections::BTreeSet<String> = seen.iter().map(|s| s.2.clone()).collect();
    for guest in ["\"safetensors-header\"", "\"raw-decoder\"", "\"image-decoder\"", "null"] {
        assert!(guests.contains(guest), "no file of the set went to {guest}: {seen:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
