//! The library's modules form layers, and imports point down them only: a module may use what a
//! lower layer defines, never what a higher one does (so there are no import cycles between
//! modules). The order is the one `src/lib.rs` declares its modules in; this reads every file of
//! the library and fails on the first reference that points up.
//!
//! Paths inside attributes (`#[serde(serialize_with = "crate::report::serialize::micros")]`) are
//! not imports: they name how a type is written by the report layer, and compile only with it.

use std::path::{Path, PathBuf};

/// Top-level modules, lowest layer first. Modules of one layer do not use each other, except in
/// the foundation, whose error type names the types it carries (`Format`, `Limit`,
/// `PickleReport`).
const LAYERS: &[&[&str]] = &[
    &["error", "limits", "input", "sniff", "refusal", "receipt", "trace"],
    &["sandbox"],
    &["verdict"],
    &["formats"],
    &["outputs"],
    &["route"],
    &["open"],
    &["async_api", "report"],
    // The command line (feature `cli`), which the binary and the Python package run.
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            library_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().unwrap();
            if name != "main.rs" && name != "lib.rs" {
                out.push(path);
            }
        }
    }
}

/// The top-level module a file under `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::X` a file's code (not its attributes or comments) refers to.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // Open brackets of an attribute that spans lines.
    let mut in_attribute = 0i32;
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if in_attribute > 0 || code.starts_with("#[") {
            in_attribute += code.matches('[').count() as i32 - code.matches(']').count() as i32;
            continue;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `crate::Error` and friends: the public face re-exports, which the check below
            // resolves to where they are defined.
            found.push((n + 1, name));
            rest = after;
        }
    }
    found
}

/// Where a name re-exported at the crate root (`crate::Error`) is defined, read from lib.rs.
fn root_reexport(lib: &str, name: &str) -> Option<String> {
    lib.lines().filter_map(|l| l.trim().strip_prefix("pub use ")).find_map(|l| {
        let module = l.split("::").next()?;
        let names = l.trim_end_matches(';');
        let exported = names.rsplit("::").next()?.trim_matches(|c| c == '{' || c == '}');
        exported
            .split(',')
            .map(str::trim)
            .any(|n| n == name || n.ends_with(&format!(" as {name}")))
            .then(|| module.to_string())
    })
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut files = Vec::new();
    library_files(&src, &mut files);
    assert!(files.len() > 20, "read {} files", files.len());
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer(&module) else { panic!("{} is in no layer: add {module} to LAYERS", file.display()) };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, name) in references(&text) {
            let target = if layer(&name).is_some() {
                name.clone()
            } else {
                match root_reexport(&lib, &name) {
                    Some(module) => module,
                    None => continue, // a crate-root item that is not a module (e.g. a macro)
                }
            };
            if target == module {
                continue;
            }
            let Some(theirs) = layer(&target) else { continue };
            let allowed = theirs < own || (theirs == own && own == 0);
            if !allowed {
                upward
                    .push(format!("{}:{line}: {module} (layer {own}) uses {target} (layer {theirs})", file.display()));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up the layers:\n{}", upward.join("\n"));
}

#[test]
fn every_module_is_in_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        let line = line.trim();
        let Some(name) = line.strip_prefix("mod ").or_else(|| line.strip_prefix("pub mod ")) else { continue };
        let name = name.trim_end_matches(';').trim_end_matches(" {");
        // `fuzzing` (feature-gated) re-exports entry points for the fuzz targets; it is no layer.
        if name == "fuzzing" {
            continue;
        }
        assert!(layer(name).is_some(), "module {name} is in no layer");
    }
}
