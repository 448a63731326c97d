//! A refused pickle says what unpickling it would have done — the globals it imports and the
//! calls it makes — found by walking its opcodes in the `pickle-scan` guest, never by running it.
//! The pickles here are written by CPython itself where it matters (`pickle.dumps` of objects
//! whose `__reduce__` names the callables real checkpoints and real attacks use).

mod common;

use std::process::Command;

use common::sandbox;
use sandload::{Error, Format, Input};
use sandload_samples as samples;

fn refuse(bytes: Vec<u8>) -> Error {
    sandbox().open_safetensors(Input::from_bytes(bytes, "model.safetensors")).expect_err("must be refused")
}

/// `pickle.dumps(obj, protocol)` in CPython, where `obj` is built by `setup` (Python source that
/// assigns `obj`). Only dumps: nothing is ever loaded.
fn cpython_pickle(setup: &str, protocol: u8) -> Vec<u8> {
    let script =
        format!("import pickle, sys\n{setup}\nsys.stdout.buffer.write(pickle.dumps(obj, protocol={protocol}))");
    let out = Command::new("python3").arg("-c").arg(&script).output().expect("python3 must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A state dict as `torch.save` pickles it: an OrderedDict of tensors rebuilt by
/// `torch._utils._rebuild_tensor_v2` from persistent storages (modules faked so that CPython can
/// write the same opcodes without torch installed).
const STATE_DICT: &str = r#"
import collections, types, sys
torch = types.ModuleType("torch"); utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch; sys.modules["torch._utils"] = utils
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"; utils._rebuild_tensor_v2 = _rebuild_tensor_v2
class FloatStorage: pass
FloatStorage.__module__ = "torch"; torch.FloatStorage = FloatStorage
class T:
    def __init__(self, key): self.key = key
    def __reduce__(self): return (_rebuild_tensor_v2, (self.key, 0, (2, 2), (2, 1), False, collections.OrderedDict()))
obj = collections.OrderedDict([("w", T("0")), ("b", T("1"))])
"#;

const EVIL: &str = r#"
import os
class Evil:
    def __reduce__(self): return (os.system, ("echo pwned",))
obj = {"weight": Evil()}
"#;

#[test]
fn a_malicious_pickle_names_what_it_would_run() {
    let err = refuse(samples::malicious_pickle());
    let report = err.pickle_report().expect("a report");
    assert_eq!(report.imports, ["os.system"]);
    assert_eq!((report.calls, report.verdict_hint(), report.complete), (1, "imports code", true));
    assert!(
        err.to_string().contains("unpickling it would import os.system and make 1 call (code: os.system)"),
        "{err}"
    );
}

#[test]
fn cpython_pickles_of_every_protocol() {
    for protocol in 0..=5u8 {
        let evil = refuse(cpython_pickle(EVIL, protocol));
        let report = evil.pickle_report().expect("a report");
        // posix.system on Linux: os.system's __module__.
        assert!(report.imports.iter().any(|i| i.ends_with(".system")), "protocol {protocol}: {report:?}");
        assert_eq!((report.calls, report.verdict_hint()), (1, "imports code"), "protocol {protocol}");
        assert_eq!(report.protocol, (protocol >= 2).then_some(protocol), "protocol {protocol}");

        let state = refuse(cpython_pickle(STATE_DICT, protocol));
        let report = state.pickle_report().expect("a report");
        assert_eq!(report.verdict_hint(), "tensors only", "protocol {protocol}: {report:?}");
        assert!(report.imports.contains(&"torch._utils._rebuild_tensor_v2".to_string()), "{report:?}");
        assert!(report.imports.contains(&"collections.OrderedDict".to_string()), "{report:?}");
        assert!(report.calls >= 2, "{report:?}");
    }
}

#[test]
fn the_pickles_inside_pytorch_files_are_walked() {
    let evil = cpython_pickle(EVIL, 2);
    let zip = samples::zip(&[("archive/data.pkl", &evil), ("archive/version", b"3\n"), ("archive/data/0", &[0; 16])]);
    let err = refuse(zip);
    assert!(matches!(err, Error::Refused { format: Format::PytorchZip, .. }), "{err}");
    let report = err.pickle_report().expect("a report");
    assert_eq!(report.streams, ["archive/data.pkl"]);
    assert_eq!(report.verdict_hint(), "imports code");

    let state = cpython_pickle(STATE_DICT, 2);
    let tar = samples::tar(&[("sys_info", &samples::pickle(2)), ("pickle", &state), ("storages", &samples::pickle(2))]);
    let err = refuse(tar);
    assert!(matches!(err, Error::Refused { format: Format::PytorchTar, .. }), "{err}");
    let report = err.pickle_report().expect("a report");
    assert_eq!(report.streams, ["sys_info", "pickle", "storages"]);
    assert_eq!(report.verdict_hint(), "tensors only", "{report:?}");

    let err = refuse(samples::npy_object());
    assert_eq!(err.pickle_report().expect("a report").streams, ["object array"]);
}

#[test]
fn a_pickle_polyglot_reports_its_imports() {
    let err = refuse(samples::pickle_polyglot("builtins", "exec", "print(1)"));
    assert_eq!(err.rule(), Some("pickle_polyglot"));
    let report = err.pickle_report().expect("a report");
    assert_eq!(report.imports, ["builtins.exec"]);
    assert_eq!(report.verdict_hint(), "imports code");
}

#[test]
fn files_without_a_reachable_pickle_have_no_report() {
    assert!(refuse(samples::gguf()).pickle_report().is_none());
    assert!(refuse(samples::png()).pickle_report().is_none());
}
