//! The inputs of an `inspect` run: the paths given, and with `--recursive` every file under the
//! directories given, walked through cap-std.
//!
//! A walk never leaves the directory it was given: entries are listed and opened relative to an
//! open `Dir`, symlinked directories are not descended into (no cycles), and a symlinked
//! file is opened through the same `Dir`, which resolves it only inside the tree (a
//! Hugging Face cache's `snapshots/<rev>/x -> ../../blobs/<hash>` works when the walk starts at
//! the cache's root; a link out of the tree is reported as an I/O error, never followed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Input, SHARD_INDEX_FILE, is_shard_index_name, shard_index_in};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// One thing to report on.
pub enum Target {
    /// A file, opened through `dir`.
    File {
        /// The directory capability the file is opened through.
        dir: Arc<Dir>,
        /// Its name in `dir`.
        name: PathBuf,
        /// The path shown in reports.
        shown: PathBuf,
    },
    /// A sharded checkpoint's index, opened through `dir`.
    Sharded {
        /// The directory holding the index (and its shards).
        dir: Arc<Dir>,
        /// The index's name in `dir`.
        index: PathBuf,
        /// The path shown in reports.
        shown: PathBuf,
        /// In a recursive walk, the other `.safetensors` files beside the index, as (name, shown
        /// path): those the model's shards cover are reported as part of the model, the rest
        /// (or all, if the model is rejected) on their own.
        siblings: Vec<(PathBuf, PathBuf)>,
    },
    /// A path that could not be reached (reported as an I/O error).
    Unreachable { shown: PathBuf, error: Error },
}

impl Target {
    /// Opens a file target's input.
    pub fn open(dir: &Dir, name: &Path, shown: &Path) -> Result<Input, Error> {
        let input = Input::open(dir, name).map_err(|e| match e {
            Error::Io { source, .. } => Error::Io { file: shown.to_path_buf(), source },
            other => other,
        })?;
        Ok(input.with_name(shown))
    }
}

/// The parent directory of a path named on the command line, and the name in it.
pub fn split(path: &Path) -> Result<(Arc<Dir>, PathBuf), Error> {
    // The CLI's one use of ambient authority: the user named this path on the command line.
    let (dir, name) = crate::parent_dir(path, ambient_authority())?;
    Ok((Arc::new(dir), name))
}

/// The targets for the paths given: a file under an index name is a sharded target (the caller
/// still lets its content decide: [`crate::Sandbox::open_if_sharded`]), a directory is a
/// sharded checkpoint if it holds [`SHARD_INDEX_FILE`], or with `recursive` every file under it.
/// Both rules are the library's ([`is_shard_index_name`], [`shard_index_in`]), shared with the
/// Python package.
pub fn targets(paths: &[PathBuf], recursive: bool, out: &mut Vec<Target>) {
    for path in paths {
        if path.is_dir() {
            match Dir::open_ambient_dir(path, ambient_authority()) {
                Err(source) => out
                    .push(Target::Unreachable { shown: path.clone(), error: Error::Io { file: path.clone(), source } }),
                Ok(dir) => {
                    let dir = Arc::new(dir);
                    if recursive {
                        walk(&dir, Path::new(""), path, out);
                    } else if let Some(index) = shard_index_in(&dir) {
                        out.push(Target::Sharded {
                            dir,
                            index: index.to_path_buf(),
                            shown: path.clone(),
                            siblings: Vec::new(),
                        });
                    } else {
                        out.push(Target::Unreachable {
                            shown: path.clone(),
                            error: Error::Io {
                                file: path.clone(),
                                source: std::io::Error::new(
                                    std::io::ErrorKind::InvalidInput,
                                    format!(
                                        "is a directory without {SHARD_INDEX_FILE} (use --recursive to inspect every file in it)"
                                    ),
                                ),
                            },
                        });
                    }
                }
            }
            continue;
        }
        match split(path) {
            Err(error) => out.push(Target::Unreachable { shown: path.clone(), error }),
            Ok((dir, name)) => {
                if is_shard_index_name(&name) {
                    out.push(Target::Sharded { dir, index: name, shown: path.clone(), siblings: Vec::new() });
                } else {
                    out.push(Target::File { dir, name, shown: path.clone() });
                }
            }
        }
    }
}

/// Every file under `rel` in `root` (shown as `shown`), in name order so runs are reproducible;
/// index files become sharded targets. Everything is opened relative to `root`, so a symlink
/// anywhere below resolves against the whole tree and never outside it.
fn walk(root: &Arc<Dir>, rel: &Path, shown: &Path, out: &mut Vec<Target>) {
    let listing = if rel.as_os_str().is_empty() { root.entries() } else { root.read_dir(rel) };
    let entries = match listing {
        Ok(entries) => entries,
        Err(source) => {
            out.push(Target::Unreachable {
                shown: shown.to_path_buf(),
                error: Error::Io { file: shown.to_path_buf(), source },
            });
            return;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry.and_then(|e| Ok((e.file_name(), e.file_type()?))) {
            Ok((name, kind)) => names.push((name, kind)),
            Err(source) => out.push(Target::Unreachable {
                shown: shown.to_path_buf(),
                error: Error::Io { file: shown.to_path_buf(), source },
            }),
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    // A directory holding a sharded checkpoint's index: its `.safetensors` files go with the
    // (first) index, which reports the ones its shards cover once, as part of the model.
    let has_index = names.iter().any(|(n, k)| !k.is_dir() && is_shard_index_name(Path::new(n)));
    let mut siblings = Vec::new();
    if has_index {
        names.retain(|(n, k)| {
            let shard = !k.is_dir() && n.to_str().is_some_and(|n| n.ends_with(".safetensors"));
            if shard {
                siblings.push((rel.join(n), shown.join(n)));
            }
            !shard
        });
    }
    for (name, kind) in names {
        let (path, rel_path) = (shown.join(&name), rel.join(&name));
        if kind.is_dir() {
            // `file_type` does not follow symlinks: this is a real directory inside the tree.
            walk(root, &rel_path, &path, out);
        } else if kind.is_symlink() && root.metadata(&rel_path).is_ok_and(|m| m.is_dir()) {
            // A link to a directory is skipped (no cycles, no second copy of a subtree). A link
            // to a file is opened through `root`, which refuses to resolve it outside the tree.
            continue;
        } else {
            out.push(file_target(root, rel_path, path, &mut siblings));
        }
    }
}

fn file_target(dir: &Arc<Dir>, name: PathBuf, shown: PathBuf, siblings: &mut Vec<(PathBuf, PathBuf)>) -> Target {
    if is_shard_index_name(&name) {
        Target::Sharded { dir: Arc::clone(dir), index: name, shown, siblings: std::mem::take(siblings) }
    } else {
        Target::File { dir: Arc::clone(dir), name, shown }
    }
}
