//! `inspect --format sarif`: one SARIF 2.1.0 log for the run, with one result per rejected input
//! (rule id = the error's rule name, or its kind when it names no rule), so that code-scanning
//! UIs (GitHub, GitLab, VS Code's SARIF viewer) list the refused files of a repository or
//! dataset. Checked against the OASIS SARIF 2.1.0 schema by `tests/sarif.rs`.

use std::collections::BTreeMap;

use crate::report::FileReport;
use serde_json::{Value, json};

const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// A path as a URI reference (RFC 3986): relative paths stay relative (with `uriBaseId`
/// `%SRCROOT%`: the directory the run started in), absolute ones become `file://` URIs;
/// every byte outside the unreserved set and `/` is percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    if path.starts_with('/') { format!("file://{out}") } else { out }
}

/// What each rule means, for the log's rule list (the first message seen for a rule id is not a
/// description; these are).
fn describe(rule: &str, kind: &str) -> String {
    let text = match rule {
        "refused_format" => "A format sandload never loads (a pickle, a PyTorch or TorchScript file, ...).",
        "limit_exceeded" => "The file exceeds a configured limit.",
        "guest_trap" => "The parser crashed inside the sandbox.",
        "guest_timeout" => "The parser ran past its deadline.",
        "guest_out_of_memory" => "The parser needed more than its memory cap.",
        "io" => "The file could not be read.",
        "unsupported" => "The file is valid but not supported.",
        "internal" => "sandload failed (a bug or a broken environment).",
        "pickle_polyglot" | "zip_polyglot" | "hdf5_polyglot" | "tar_polyglot" | "compressed_polyglot" => {
            "The file is valid safetensors and also another loadable format (a polyglot)."
        }
        "raw_not_recognised" => "No RAW decoder recognises the file.",
        _ => "",
    };
    if text.is_empty() { format!("The file breaks the rule `{rule}` ({kind}).") } else { text.to_string() }
}

/// The SARIF log for the reports of one run.
pub fn log(reports: &[FileReport]) -> Value {
    let mut rules: BTreeMap<String, String> = BTreeMap::new();
    let mut results = Vec::new();
    for report in reports {
        let Some(e) = &report.error else { continue };
        let rule = e.rule().unwrap_or(e.kind()).to_string();
        rules.entry(rule.clone()).or_insert_with(|| describe(&rule, e.kind()));
        results.push(json!({
            "ruleId": rule,
            "level": if e.is_rejection() { "error" } else { "warning" },
            "kind": "fail",
            "message": { "text": e.to_string() },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": uri(&report.path), "uriBaseId": if report.path.starts_with('/') { Value::Null } else { json!("%SRCROOT%") } },
                },
            }],
            "properties": {
                "kind": e.kind(),
                "format": report.format.name(),
                "schema_version": report.schema_version,
            },
        }));
    }
    // `uriBaseId` is omitted for absolute URIs (serde_json has no "skip null", so strip it).
    for result in &mut results {
        if let Some(loc) = result.pointer_mut("/locations/0/physicalLocation/artifactLocation") {
            if loc["uriBaseId"].is_null() {
                loc.as_object_mut().expect("object").remove("uriBaseId");
            }
        }
    }
    // Results point at rules by index as well as id, as GitHub code scanning prefers.
    let index: BTreeMap<&String, usize> = rules.keys().enumerate().map(|(i, k)| (k, i)).collect();
    for result in &mut results {
        let id = result["ruleId"].as_str().expect("string").to_string();
        result["ruleIndex"] = json!(index[&id]);
    }
    let rules: Vec<Value> =
        rules.iter().map(|(id, text)| json!({ "id": id, "name": id, "shortDescription": { "text": text } })).collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "sandload",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                },
            },
            "results": results,
        }],
    })
}
