//! The `sandload inspect` contract: JSON lines, verdicts, exit codes.

use std::path::Path;
use std::process::{Command, Output};

use sandload_samples as samples;
use serde_json::Value;

fn sandload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandload")).args(args).output().expect("run sandload")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// The per-file records of `inspect --json`, after checking that the last line is the summary
/// and that it counts them.
fn json_lines(out: &Output) -> Vec<Value> {
    let mut lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary record");
    assert_eq!(summary["summary"]["files"].as_u64(), Some(lines.len() as u64), "{summary}");
    lines
}

#[test]
fn accepted_file_json() {
    let tmp = tmpdir();
    let good = write(&tmp, "model.safetensors", &samples::small_checkpoint());
    let out = sandload(&["inspect", "--json", "--digest", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["path"], good.as_str());
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["format"], "safetensors");
    assert!(v["error"].is_null());
    let tensors = v["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 3);
    assert_eq!(tensors[0]["name"], "embed.weight");
    assert_eq!(tensors[0]["dtype"], "F32");
    assert_eq!(tensors[0]["shape"], serde_json::json!([4, 8]));
    let sha = tensors[0]["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    // The digest is of the tensor's bytes.
    let expected = samples::Tensor::patterned("embed.weight", sandload::Dtype::F32, &[4, 8]).data;
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(&expected).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, want);
    assert_eq!(v["metadata"]["format"], "pt");

    // Without --digest there is no sha256.
    let out = sandload(&["inspect", "--json", &good]);
    assert!(json_lines(&out)[0]["tensors"][0].get("sha256").is_none());
}

#[test]
fn mixed_inputs_exit_3_with_one_line_each() {
    let tmp = tmpdir();
    let good = write(&tmp, "good.safetensors", &samples::small_checkpoint());
    let pickle = write(&tmp, "evil.safetensors", &samples::malicious_pickle());
    let zip = write(&tmp, "pytorch_model.bin", &samples::pytorch_zip());
    let missing = tmp.join("missing.safetensors").to_str().unwrap().to_string();
    let out = sandload(&["inspect", "--json", &good, &pickle, &zip, &missing]);
    // A file that could not be read (3) outranks a refused one (1).
    assert_eq!(out.status.code(), Some(3));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["verdict"], "accepted");
    assert_eq!(lines[1]["verdict"], "rejected");
    assert_eq!(lines[1]["format"], "pickle");
    assert_eq!(lines[1]["error"]["kind"], "refused_format");
    assert!(lines[1]["error"]["message"].as_str().unwrap().contains("safetensors.torch.save_file"));
    assert_eq!(lines[2]["format"], "pytorch-zip");
    assert_eq!(lines[3]["error"]["kind"], "io");
}

#[test]
fn malformed_reports_rule() {
    let tmp = tmpdir();
    let mut f = samples::with_header(r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#);
    f.extend_from_slice(&[0; 9]);
    let bad = write(&tmp, "trailing.safetensors", &f);
    let out = sandload(&["inspect", "--json", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let v = &json_lines(&out)[0];
    assert_eq!(v["error"]["kind"], "malformed");
    assert_eq!(v["error"]["rule"], "incomplete_coverage");
}

#[test]
fn limits_flags_apply() {
    let tmp = tmpdir();
    let good = write(&tmp, "model.safetensors", &samples::small_checkpoint());
    let out = sandload(&["inspect", "--json", "--max-file-size", "10", &good]);
    assert_eq!(out.status.code(), Some(1));
    let v = &json_lines(&out)[0];
    assert_eq!(v["error"]["kind"], "limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_file_bytes is 10"));

    let out = sandload(&["inspect", "--json", "--max-memory", "4194304", "--timeout", "0.5", &good]);
    assert_eq!(out.status.code(), Some(0));
    let v = &json_lines(&out)[0];
    assert_eq!(v["receipt"]["limits"]["guest_memory_bytes"], 4194304);
    assert_eq!(v["receipt"]["limits"]["guest_time_ms"], 500);
}

#[test]
fn human_output_and_usage_errors() {
    let tmp = tmpdir();
    let good = write(&tmp, "model.safetensors", &samples::small_checkpoint());
    let out = sandload(&["inspect", &good]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("accepted safetensors, 3 tensors"), "{text}");
    assert!(text.contains("embed.weight F32 [4, 8]"), "{text}");

    assert_eq!(sandload(&["inspect"]).status.code(), Some(2), "no paths");
    assert_eq!(sandload(&["inspect", "--bogus", &good]).status.code(), Some(2));
    assert_eq!(sandload(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(sandload(&["inspect", "--timeout", "-1", &good]).status.code(), Some(2));
}

/// A fresh directory under cargo's per-target temp dir (the CLI takes real paths).
fn tmpdir() -> std::path::PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let unique = format!("cli-{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let path = base.join(unique);
    std::fs::create_dir_all(&path).unwrap();
    path
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `inspect` says what a refused pickle would have done: JSON `"pickle"`, and a DANGER line in
/// the human output naming the imports that are code. A pickle polyglot is refused with its rule.
#[test]
fn refused_pickles_report_their_imports() {
    let tmp = tmpdir();
    let evil = write(&tmp, "evil.safetensors", &samples::malicious_pickle());
    let polyglot = write(&tmp, "polyglot.safetensors", &samples::pickle_polyglot("builtins", "exec", "1"));
    let out = sandload(&["inspect", "--json", &evil, &polyglot]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["format"], "pickle");
    assert_eq!(lines[0]["pickle"]["imports"], serde_json::json!(["os.system"]));
    assert_eq!(lines[0]["pickle"]["calls"], 1);
    assert_eq!(lines[0]["pickle"]["verdict_hint"], "imports code");
    assert_eq!(lines[1]["verdict"], "rejected");
    assert_eq!(lines[1]["error"]["rule"], "pickle_polyglot");
    assert_eq!(lines[1]["pickle"]["imports"], serde_json::json!(["builtins.exec"]));

    let out = sandload(&["inspect", &evil]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("DANGER: unpickling it would import os.system"), "{text}");

    // A pickle that only rebuilds data: no DANGER line, "tensors only".
    let plain = write(&tmp, "plain.bin", &samples::pickle(2));
    let out = sandload(&["inspect", "--json", &plain]);
    assert_eq!(json_lines(&out)[0]["pickle"]["verdict_hint"], "tensors only");
    let out = sandload(&["inspect", &plain]);
    assert!(!String::from_utf8(out.stdout).unwrap().contains("DANGER"));
}

/// `inspect` given a sharded model's directory or its index: one verdict for the model and one
/// line per shard; a broken model is rejected with the cross-shard rule; the new limit flags work.
#[test]
fn sharded_models_are_inspected_as_one() {
    use sandload::Dtype;
    use sandload_samples::Tensor;
    let tmp = tmpdir();
    let t = |name: &str| Tensor::patterned(name, Dtype::F32, &[2]);
    write(&tmp, "model-00001-of-00002.safetensors", &samples::safetensors(&[t("a"), t("b")], &[]));
    write(&tmp, "model-00002-of-00002.safetensors", &samples::safetensors(&[t("c")], &[]));
    let index = write(
        &tmp,
        "model.safetensors.index.json",
        br#"{"metadata": {"total_size": 24}, "weight_map": {"a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#,
    );
    let dir = tmp.to_str().unwrap();
    for path in [dir, index.as_str()] {
        let out = sandload(&["inspect", path]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("accepted sharded checkpoint, 3 tensors in 2 shards, total_size 24 bytes"), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("accepted safetensors, ")).count(), 2, "{text}");
    }
    let out = sandload(&["inspect", "--json", dir]);
    let report = &json_lines(&out)[0];
    assert_eq!((report["verdict"].as_str(), report["tensor_count"].as_u64()), (Some("accepted"), Some(3)));
    assert_eq!(report["shards"].as_array().unwrap().len(), 2);
    // One shard too many for --max-shards 1: a limit, exit 1.
    let out = sandload(&["inspect", "--json", "--max-shards", "1", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out)[0]["error"]["kind"], "limit_exceeded");
    // The index claims a size the shards contradict.
    write(&tmp, "model.safetensors.index.json", br#"{"metadata": {"total_size": 25}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#);
    let out = sandload(&["inspect", "--json", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out)[0]["error"]["rule"], "total_size_mismatch");
    // A pickle under an index's name is still reported as a pickle.
    let pickle = write(&tmp, "evil.safetensors.index.json", &samples::pickle(2));
    let out = sandload(&["inspect", "--json", &pickle]);
    assert_eq!(json_lines(&out)[0]["format"], "pickle");
}
