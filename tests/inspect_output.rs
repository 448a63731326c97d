//! `sandload inspect` as CI and dataset crawls use it: JSON records checked against the committed
//! JSON Schema, SARIF checked against the OASIS SARIF 2.1.0 schema, recursive walks that stay in
//! their tree, `--jobs`, and images inspected rather than refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sandload::{Dtype, Input};
use sandload_samples::{self as samples, Dng, Tensor};
use serde_json::Value;

mod common;

fn sandload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandload")).args(args).output().expect("run sandload")
}

fn tmpdir(tag: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("inspect-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    samples::png_image(width, height)
}

fn tiff_image() -> Vec<u8> {
    let img = sandload::image::RgbImage::from_fn(7, 5, |x, y| sandload::image::Rgb([x as u8 * 30, y as u8 * 40, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    sandload::image::DynamicImage::ImageRgb8(img).write_to(&mut out, sandload::image::ImageFormat::Tiff).unwrap();
    out.into_inner()
}

/// A directory with one file of every verdict sandload gives: accepted checkpoint, RAW, PNG and
/// TIFF images and a sharded model; refused pickle, PyTorch zip, duplicate key, dimension bomb,
/// truncated PNG; plus a name that is not UTF-8.
fn corpus(dir: &Path) {
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
    w("model.safetensors", &samples::small_checkpoint());
    w("pickle.safetensors", &samples::pickle(2));
    w("evil.pt", &samples::malicious_pickle());
    w("pytorch_model.bin", &samples::pytorch_zip());
    let mut dup = samples::with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
    );
    dup.extend_from_slice(&[1, 2]);
    w("dup.safetensors", &dup);
    w("photo.png", &png(5, 4));
    w("scan.tif", &tiff_image());
    w("broken.png", &png(5, 4)[..40]);
    w("small.dng", &Dng::patterned(64, 48).to_bytes());
    let bomb = Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..Dng::patterned(8, 8) };
    w("bomb.dng", &bomb.to_bytes());
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(b"not-utf8-\xff.safetensors")), samples::small_checkpoint())
        .unwrap();
    let sharded = dir.join("llm");
    std::fs::create_dir_all(&sharded).unwrap();
    let t = |name: &str| Tensor::patterned(name, Dtype::F32, &[2]);
    std::fs::write(sharded.join("model-00001-of-00002.safetensors"), samples::safetensors(&[t("a"), t("b")], &[]))
        .unwrap();
    std::fs::write(sharded.join("model-00002-of-00002.safetensors"), samples::safetensors(&[t("c")], &[])).unwrap();
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        br#"{"metadata": {"total_size": 24}, "weight_map": {"a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    // Not named by the index: reported on its own.
    std::fs::write(sharded.join("extra.safetensors"), samples::small_checkpoint()).unwrap();
}

fn schema(path: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validate(validator: &jsonschema::Validator, record: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator.iter_errors(record).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

/// The committed schema is what the report types generate (bless a change with
/// `SANDLOAD_BLESS=1`, and raise `SCHEMA_VERSION` if a field was renamed or removed).
#[test]
fn committed_schema_is_current() {
    let generated = sandload::report::json_schema();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/inspect.schema.json");
    if std::env::var_os("SANDLOAD_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&generated).unwrap() + "\n").unwrap();
    }
    assert_eq!(schema("schema/inspect.schema.json"), generated, "schema/inspect.schema.json is stale");
    // `sandload schema` prints the same.
    let out = sandload(&["schema"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), generated);
}

/// Every record `inspect --json --digest -r` writes over the corpus validates against the
/// committed schema, and the last one is a summary whose counts match the records.
#[test]
fn json_records_match_the_schema() {
    let dir = tmpdir("json");
    corpus(&dir);
    let out = sandload(&["inspect", "--json", "--digest", "-r", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let records = lines(&out);
    let validator = jsonschema::validator_for(&schema("schema/inspect.schema.json")).unwrap();
    for record in &records {
        validate(&validator, record).unwrap_or_else(|e| panic!("{e}\n{record}"));
        assert_eq!(record["schema_version"], 1);
    }
    let (summary, files) = records.split_last().unwrap();
    let summary = &summary["summary"];
    assert_eq!(summary["files"].as_u64(), Some(files.len() as u64));
    let count = |verdict: &str| files.iter().filter(|r| r["verdict"] == verdict).count() as u64;
    assert_eq!(summary["accepted"].as_u64(), Some(count("accepted")));
    assert_eq!(summary["rejected"].as_u64(), Some(count("rejected")));
    assert_eq!(summary["by_kind"]["refused_format"].as_u64(), Some(3), "{summary}");
    // In name order; the sharded model is one record with its shards inside, plus the file its
    // index does not name.
    let names: Vec<String> = files
        .iter()
        .map(|r| Path::new(r["path"].as_str().unwrap()).strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "bomb.dng",
            "broken.png",
            "dup.safetensors",
            "evil.pt",
            "llm/model.safetensors.index.json",
            "llm/extra.safetensors",
            "model.safetensors",
            "not-utf8-\u{fffd}.safetensors",
            "photo.png",
            "pickle.safetensors",
            "pytorch_model.bin",
            "scan.tif",
            "small.dng",
        ]
    );
    let by_name = |n: &str| &files[names.iter().position(|x| x == n).unwrap()];
    let model = by_name("llm/model.safetensors.index.json");
    assert_eq!((model["verdict"].as_str(), model["tensor_count"].as_u64()), (Some("accepted"), Some(3)));
    assert_eq!(model["shards"].as_array().unwrap().len(), 2);
    let photo = by_name("photo.png");
    assert_eq!(photo["verdict"], "accepted", "{photo}");
    assert_eq!((photo["image"]["width"].as_u64(), photo["image"]["height"].as_u64()), (Some(5), Some(4)));
    assert_eq!(photo["image"]["pixels_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(by_name("scan.tif")["image"]["color_type"], "Rgb8");
    assert_eq!(by_name("broken.png")["verdict"], "rejected");
    assert_eq!(by_name("bomb.dng")["error"]["limit"], "max_pixels");
    assert_eq!(by_name("dup.safetensors")["error"]["rule"], "duplicate_key");
    assert!(by_name("evil.pt")["pickle"]["imports"].as_array().unwrap().iter().any(|i| i == "os.system"));
    assert_eq!(by_name("small.dng")["raw"]["width"], 64);

    // The validator is not vacuous: a record with a wrong verdict, an unknown field or a missing
    // key fails.
    let mut bad = files[0].clone();
    bad["verdict"] = "maybe".into();
    assert!(validate(&validator, &bad).is_err());
    let mut bad = files[0].clone();
    bad["surprise"] = 1.into();
    assert!(validate(&validator, &bad).is_err());
    let mut bad = files[0].clone();
    bad.as_object_mut().unwrap().remove("format");
    assert!(validate(&validator, &bad).is_err());
}

/// `--format sarif` is one SARIF 2.1.0 log, valid against the OASIS schema, with one result per
/// rejected input whose rule id is the error's rule name (or kind).
#[test]
fn sarif_matches_the_sarif_schema() {
    let dir = tmpdir("sarif");
    corpus(&dir);
    let out = sandload(&["inspect", "--format", "sarif", "-r", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = lines(&out);
    assert_eq!(docs.len(), 1, "one SARIF document");
    let log = &docs[0];
    let validator = jsonschema::validator_for(&schema("tests/data/sarif-schema-2.1.0.json")).unwrap();
    validate(&validator, log).unwrap_or_else(|e| panic!("{e}\n{log}"));
    let results = log["runs"][0]["results"].as_array().unwrap();
    let json = lines(&sandload(&["inspect", "--json", "-r", dir.to_str().unwrap()]));
    let rejected: Vec<&Value> = json.iter().filter(|r| r["verdict"] == "rejected").collect();
    assert_eq!(results.len(), rejected.len());
    let rule_ids: Vec<&str> = results.iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert!(rule_ids.contains(&"duplicate_key"), "{rule_ids:?}");
    assert!(rule_ids.contains(&"refused_format"), "{rule_ids:?}");
    let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for r in results {
        assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"], r["ruleId"]);
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
        assert!(uri.starts_with("file:///") && !uri.contains(' '), "{uri}");
    }
    // The non-UTF-8 name is percent-encoded, not dropped.
    assert!(results.iter().all(|r| !r["message"]["text"].as_str().unwrap().contains("not-utf8")));
    // Not vacuous: a result without a message fails the schema.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0].as_object_mut().unwrap().remove("message");
    assert!(validate(&validator, &bad).is_err());
}

/// A recursive walk stays in its tree: a symlink out of it is not followed (an I/O error naming
/// the link), a symlinked directory inside it is skipped, a symlink to a file inside the tree (as
/// a Hub cache's snapshots link to its blobs) is followed.
#[test]
fn recursive_walks_stay_inside_the_tree() {
    let outside = tmpdir("outside");
    std::fs::write(outside.join("secret.safetensors"), samples::small_checkpoint()).unwrap();
    let root = tmpdir("walk");
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("snapshots/rev")).unwrap();
    std::fs::write(root.join("blobs/0123abcd"), samples::small_checkpoint()).unwrap();
    std::os::unix::fs::symlink("../../blobs/0123abcd", root.join("snapshots/rev/model.safetensors")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.safetensors"), root.join("escape.safetensors")).unwrap();
    std::os::unix::fs::symlink("../../blobs/../../", root.join("snapshots/rev/up")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("outside-dir")).unwrap();
    std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
    let out = sandload(&["inspect", "--json", "-r", root.to_str().unwrap()]);
    let records = lines(&out);
    let files = &records[..records.len() - 1];
    let by = |suffix: &str| files.iter().find(|r| r["path"].as_str().unwrap().ends_with(suffix));
    assert_eq!(by("snapshots/rev/model.safetensors").unwrap()["verdict"], "accepted");
    assert_eq!(by("blobs/0123abcd").unwrap()["verdict"], "accepted");
    let escape = by("escape.safetensors").expect("the escaping link is reported");
    assert_eq!(escape["error"]["kind"], "io", "{escape}");
    assert!(files.iter().all(|r| !r["path"].as_str().unwrap().contains("secret")), "never read outside");
    // Links that lead out of the tree are reported, whatever they point at; a link to a
    // directory inside it is skipped (no cycles).
    for link in ["outside-dir", "snapshots/rev/up"] {
        assert_eq!(by(link).unwrap_or_else(|| panic!("{link} is reported"))["error"]["kind"], "io");
    }
    assert!(by("loop").is_none(), "a symlinked directory inside the tree is skipped");
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!(out.status.code(), Some(3), "an unreadable input wins over accepted ones");
    // Without -r a plain directory is a usage-level I/O error that says to use -r.
    let out = sandload(&["inspect", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--recursive"));
}

/// `--jobs 2` over one sandbox gives the same records, in the same order, as one job.
#[test]
fn jobs_keep_the_order_and_the_verdicts() {
    let dir = tmpdir("jobs");
    corpus(&dir);
    let strip = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .map(|mut r| {
                // Timings and peak memory differ from run to run.
                if let Some(o) = r.as_object_mut() {
                    o.remove("receipt");
                    if let Some(shards) = o.get_mut("shards").and_then(Value::as_array_mut) {
                        shards.iter_mut().for_each(|s| drop(s.as_object_mut().unwrap().remove("receipt")));
                    }
                }
                r
            })
            .collect()
    };
    let one = strip(lines(&sandload(&["inspect", "--json", "--digest", "-r", dir.to_str().unwrap()])));
    let two = strip(lines(&sandload(&["inspect", "--json", "--digest", "-r", "--jobs", "2", dir.to_str().unwrap()])));
    assert_eq!(one, two);
    let out = sandload(&["inspect", "--jobs", "0", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// The library's `open` accepts images as images; a TIFF no RAW decoder claims is one.
#[test]
fn open_decodes_images() {
    let sandbox = common::sandbox();
    for (name, bytes, format) in [("a.png", png(3, 2), "png"), ("b.tif", tiff_image(), "tiff")] {
        match sandbox.open(Input::from_bytes(bytes, name)).unwrap() {
            sandload::Opened::Image(image) => assert_eq!(image.format, format),
            other => panic!("{name}: {other:?}"),
        }
    }
}
