//! Sharded checkpoints: a valid model opens; every rule of the index and across shards is
//! broken once by a file written here, and each refusal names the index, the rule and the shard
//! or tensor involved.

mod common;

use std::path::{Path, PathBuf};

use cap_std::{ambient_authority, fs::Dir};
use common::{sandbox, sandbox_with};
use sandload::sharded::rules;
use sandload::{Dtype, Error, Limit, Limits};
use sandload_samples::{self as samples, Tensor};

const INDEX: &str = "model.safetensors.index.json";
const SHARD_1: &str = "model-00001-of-00002.safetensors";
const SHARD_2: &str = "model-00002-of-00002.safetensors";

/// A fresh directory holding `files`.
fn model_dir(test: &str, files: &[(&str, Vec<u8>)]) -> (PathBuf, Dir) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sharded-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    for (name, bytes) in files {
        std::fs::write(path.join(name), bytes).unwrap();
    }
    let dir = Dir::open_ambient_dir(&path, ambient_authority()).unwrap();
    (path, dir)
}

fn shard(names: &[&str]) -> Vec<u8> {
    let tensors: Vec<Tensor> = names.iter().map(|n| Tensor::patterned(n, Dtype::F32, &[2, 3])).collect();
    samples::safetensors(&tensors, &[])
}

/// An index mapping each (tensor, shard) pair, with `total_size` if given.
fn index(map: &[(&str, &str)], total_size: Option<u64>) -> Vec<u8> {
    let weight_map: Vec<String> = map.iter().map(|(t, s)| format!("{t:?}: {s:?}")).collect();
    let metadata = total_size.map_or(String::new(), |n| format!("\"metadata\": {{\"total_size\": {n}}}, "));
    format!("{{{metadata}\"weight_map\": {{{}}}}}", weight_map.join(", ")).into_bytes()
}

/// The standard model: a and b in shard 1, c in shard 2, 24 bytes each.
fn valid_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (SHARD_1, shard(&["a", "b"])),
        (SHARD_2, shard(&["c"])),
        (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], Some(72))),
    ]
}

fn rule_of(err: &Error) -> &'static str {
    match err {
        Error::Malformed { rule, file, .. } => {
            assert_eq!(file, Path::new(INDEX), "{err}");
            rule
        }
        other => panic!("expected a malformed index, got {other}"),
    }
}

#[test]
fn a_valid_sharded_model_opens() {
    let (_path, dir) = model_dir("valid", &valid_files());
    let model = sandbox().open_sharded(&dir, INDEX).unwrap();
    assert_eq!((model.len(), model.shards().len(), model.total_size()), (3, 2, Some(72)));
    for name in ["a", "b", "c"] {
        let t = model.tensor(name).unwrap();
        assert_eq!((t.name, t.shape), (name, &[2u64, 3][..]));
        assert_eq!(t.to_vec::<f32>().unwrap().len(), 6);
    }
    assert!(model.tensor("d").is_none());
    assert_eq!(model.iter().count(), 3);
    assert_eq!(model.receipts().count(), 2);
    assert_eq!(model.shards()[1].file(), Path::new(SHARD_2));
}

#[test]
fn every_cross_shard_rule_is_enforced() {
    let cases: Vec<(&str, Vec<(&str, Vec<u8>)>, &str)> = vec![
        (
            "index-tensor-missing",
            vec![
                (SHARD_1, shard(&["a"])),
                (SHARD_2, shard(&["c"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], None)),
            ],
            rules::INDEX_TENSOR_MISSING,
        ),
        (
            "index-points-elsewhere",
            vec![
                (SHARD_1, shard(&["a", "b"])),
                (SHARD_2, shard(&["c"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_2), ("c", SHARD_2)], None)),
            ],
            rules::INDEX_TENSOR_MISSING,
        ),
        (
            "tensor-in-two-shards",
            vec![
                (SHARD_1, shard(&["a", "b"])),
                (SHARD_2, shard(&["b", "c"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], None)),
            ],
            rules::TENSOR_IN_TWO_SHARDS,
        ),
        (
            "tensor-not-in-index",
            vec![
                (SHARD_1, shard(&["a", "b", "hidden"])),
                (SHARD_2, shard(&["c"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], None)),
            ],
            rules::TENSOR_NOT_IN_INDEX,
        ),
        (
            "shard-missing",
            vec![
                (SHARD_1, shard(&["a", "b"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], None)),
            ],
            rules::SHARD_MISSING,
        ),
        (
            "total-size",
            vec![
                (SHARD_1, shard(&["a", "b"])),
                (SHARD_2, shard(&["c"])),
                (INDEX, index(&[("a", SHARD_1), ("b", SHARD_1), ("c", SHARD_2)], Some(73))),
            ],
            rules::TOTAL_SIZE_MISMATCH,
        ),
    ];
    for (name, files, rule) in cases {
        let (_path, dir) = model_dir(name, &files);
        let err = sandbox().open_sharded(&dir, INDEX).unwrap_err();
        assert_eq!(rule_of(&err), rule, "{name}: {err}");
        assert_eq!(err.kind(), "malformed");
    }
}

#[test]
fn shard_names_cannot_leave_the_directory_or_name_the_index() {
    for (name, target) in [
        ("dotdot", "../outside.safetensors"),
        ("nested-dotdot", "sub/../../outside.safetensors"),
        ("absolute", "/etc/passwd"),
        ("itself", INDEX),
        ("itself-dot", "./model.safetensors.index.json"),
        ("empty", ""),
    ] {
        let (path, dir) =
            model_dir(name, &[(SHARD_1, shard(&["a"])), (INDEX, index(&[("a", SHARD_1), ("b", target)], None))]);
        // Something for a traversal to find, were it followed.
        std::fs::write(path.parent().unwrap().join("outside.safetensors"), shard(&["b"])).unwrap();
        let err = sandbox().open_sharded(&dir, INDEX).unwrap_err();
        assert_eq!(rule_of(&err), rules::SHARD_PATH, "{name}: {err}");
    }
}

#[test]
fn a_symlink_out_of_the_directory_is_refused_by_the_capability() {
    let (path, dir) =
        model_dir("symlink", &[(SHARD_1, shard(&["a"])), (INDEX, index(&[("a", SHARD_1), ("b", SHARD_2)], None))]);
    let outside = path.parent().unwrap().join(format!("outside-{}.safetensors", std::process::id()));
    std::fs::write(&outside, shard(&["b"])).unwrap();
    std::os::unix::fs::symlink(&outside, path.join(SHARD_2)).unwrap();
    let err = sandbox().open_sharded(&dir, INDEX).unwrap_err();
    assert_eq!(err.kind(), "io", "{err}");
    assert!(err.to_string().contains(SHARD_2), "{err}");
    let _ = std::fs::remove_file(outside);
}

#[test]
fn the_index_itself_is_checked_in_the_guest() {
    let base = valid_files();
    let shards = &base[..2];
    let with_index = |bytes: &[u8]| -> Vec<(&str, Vec<u8>)> {
        let mut files = shards.to_vec();
        files.push((INDEX, bytes.to_vec()));
        files
    };
    for (name, bytes, rule) in [
        ("not-json", b"{\"weight_map\": ".to_vec(), "index_json"),
        ("no-weight-map", b"{\"metadata\": {}}".to_vec(), "index_json"),
        ("non-string-file", br#"{"weight_map": {"a": 1}}"#.to_vec(), "index_json"),
        ("negative-total", br#"{"metadata": {"total_size": -1}, "weight_map": {}}"#.to_vec(), "index_json"),
        ("not-utf8", b"{\"weight_map\": {\"\xff\": \"x\"}}".to_vec(), "index_json"),
        (
            "duplicate-tensor",
            format!(r#"{{"weight_map": {{"a": "{SHARD_1}", "a": "{SHARD_2}"}}}}"#).into_bytes(),
            "index_duplicate_tensor",
        ),
        ("duplicate-key", br#"{"weight_map": {}, "weight_map": {}}"#.to_vec(), "duplicate_key"),
    ] {
        let (_path, dir) = model_dir(name, &with_index(&bytes));
        let err = sandbox().open_sharded(&dir, INDEX).unwrap_err();
        assert_eq!(rule_of(&err), rule, "{name}: {err}");
    }
}

#[test]
fn shard_tensor_and_size_limits_are_enforced() {
    let (_path, dir) = model_dir("limits", &valid_files());
    let one_shard = sandbox_with(Limits::default().with_max_shards(1));
    match one_shard.open_sharded(&dir, INDEX).unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxShards, limit_value: 1, value: 2, .. } => {}
        other => panic!("{other}"),
    }
    let two_tensors = sandbox_with(Limits::default().with_max_tensors(2));
    match two_tensors.open_sharded(&dir, INDEX).unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxTensors, limit_value: 2, .. } => {}
        other => panic!("{other}"),
    }
    let tiny_index = sandbox_with(Limits::default().with_max_header_bytes(16));
    match tiny_index.open_sharded(&dir, INDEX).unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxHeaderBytes, limit_value: 16, .. } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn a_bad_shard_is_refused_under_its_own_name() {
    let mut files = valid_files();
    files[1] = (SHARD_2, samples::pickle(4));
    let (_path, dir) = model_dir("pickle-shard", &files);
    let err = sandbox().open_sharded(&dir, INDEX).unwrap_err();
    assert_eq!(err.kind(), "refused_format", "{err}");
    assert_eq!(err.file(), Some(Path::new(SHARD_2)));
}

#[test]
fn shard_names_are_relative_to_the_index_not_the_capability() {
    // A Hub-cache-like layout: the capability is the repository, the model a level down.
    let (path, dir) = model_dir("nested", &[]);
    std::fs::create_dir_all(path.join("snapshots/abc")).unwrap();
    for (name, bytes) in valid_files() {
        std::fs::write(path.join("snapshots/abc").join(name), bytes).unwrap();
    }
    let model = sandbox().open_sharded(&dir, "snapshots/abc/model.safetensors.index.json").unwrap();
    assert_eq!(model.len(), 3);
    assert_eq!(model.shards()[0].file(), Path::new("snapshots/abc").join(SHARD_1));
    // A decoy at the top must not be what a shard name resolves to.
    std::fs::write(path.join(SHARD_2), shard(&["zzz"])).unwrap();
    assert_eq!(sandbox().open_sharded(&dir, "snapshots/abc/model.safetensors.index.json").unwrap().len(), 3);
    // "../" out of the index's directory is still refused, even though it stays inside `dir`.
    std::fs::write(
        path.join("snapshots/abc").join(INDEX),
        index(&[("a", SHARD_1), ("b", SHARD_1), ("c", &format!("../../{SHARD_2}"))], None),
    )
    .unwrap();
    let err = sandbox().open_sharded(&dir, "snapshots/abc/model.safetensors.index.json").unwrap_err();
    assert!(matches!(&err, Error::Malformed { rule, .. } if *rule == rules::SHARD_PATH), "{err}");
}
