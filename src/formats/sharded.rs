//! Sharded checkpoints: a `model.safetensors.index.json` and the safetensors files it names.
//!
//! The index is untrusted JSON, parsed in the `shard-index` guest; the host re-checks every file
//! name before it opens anything (only through the caller's `Dir` capability), opens each shard as
//! an ordinary checkpoint (its own guest call, limits and receipt), then checks the shards
//! against the index and against each other.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;
use sandload_abi::shard_index::{Index, Request, Response};

use crate::error::{Error, Result, printable};
use crate::input::{DataAccess, Input};
use crate::limits::{Limit, Limits};
use crate::receipt::Receipt;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::Format;
use crate::verdict::guest_rejection;

use super::safetensors::{Checkpoint, TensorView};

/// Rule names of the checks the host makes across shards (in [`Error::Malformed`] of the index).
pub mod rules {
    /// A shard file name that is not a plain relative path inside the directory (absolute, with
    /// `..`, empty), or that names the index itself.
    pub const SHARD_PATH: &str = "shard_path";
    /// The index names a shard file that does not exist.
    pub const SHARD_MISSING: &str = "shard_missing";
    /// The index assigns a tensor to a shard that does not hold it.
    pub const INDEX_TENSOR_MISSING: &str = "index_tensor_missing";
    /// A shard holds a tensor the index does not list.
    pub const TENSOR_NOT_IN_INDEX: &str = "tensor_not_in_index";
    /// Two shards hold a tensor of the same name.
    pub const TENSOR_IN_TWO_SHARDS: &str = "tensor_in_two_shards";
    /// The index's `metadata.total_size` differs from the bytes of the shards' tensors.
    pub const TOTAL_SIZE_MISMATCH: &str = "total_size_mismatch";
}

/// A validated sharded checkpoint: every shard opened and checked, every tensor the index lists
/// found in exactly the shard it names, and nothing else in the shards.
#[derive(Debug, Clone)]
pub struct ShardedCheckpoint {
    index_file: PathBuf,
    shards: Vec<Checkpoint>,
    /// (tensor name, shard, position in that shard's table), sorted by name.
    by_name: Vec<(String, u32, u32)>,
    metadata: BTreeMap<String, String>,
    total_size: Option<u64>,
}

impl ShardedCheckpoint {
    /// The index file this checkpoint was opened from.
    pub fn index_file(&self) -> &Path {
        &self.index_file
    }

    /// The shards, in the order the index first names them.
    pub fn shards(&self) -> &[Checkpoint] {
        &self.shards
    }

    /// How many tensors the checkpoint holds (over all shards).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The tensor called `name`, from whichever shard holds it.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let i = self.by_name.binary_search_by(|(n, _, _)| n.as_str().cmp(name)).ok()?;
        let (_, shard, _) = &self.by_name[i];
        self.shards[*shard as usize].tensor(name)
    }

    /// Every tensor, shard by shard, each in data-offset order.
    pub fn iter(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// The index's `metadata` entries other than `total_size` (strings as written, other JSON
    /// values as JSON text).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The index's `metadata.total_size`, if it has one (checked against the shards).
    pub fn total_size(&self) -> Option<u64> {
        self.total_size
    }

    /// One receipt per shard, in shard order.
    pub fn receipts(&self) -> impl Iterator<Item = &Receipt> {
        self.shards.iter().map(|s| s.receipt())
    }
}

impl Sandbox {
    /// Opens a sharded checkpoint through its index (`model.safetensors.index.json`), reading the
    /// index and every shard only through `dir`.
    ///
    /// ```
    /// use cap_std::{ambient_authority, fs::Dir};
    /// use sandload_samples::{self as samples, Tensor};
    /// use sandload::{Dtype, Sandbox};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tmp = std::env::temp_dir().join(format!("sandload-doc-sharded-{}", std::process::id()));
    /// std::fs::create_dir_all(&tmp)?;
    /// let t = |name: &str| Tensor::patterned(name, Dtype::F32, &[2, 2]);
    /// std::fs::write(tmp.join("model-00001-of-00002.safetensors"), samples::safetensors(&[t("a")], &[]))?;
    /// std::fs::write(tmp.join("model-00002-of-00002.safetensors"), samples::safetensors(&[t("b")], &[]))?;
    /// std::fs::write(
    ///     tmp.join("model.safetensors.index.json"),
    ///     r#"{"metadata": {"total_size": 32}, "weight_map": {
    ///         "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    /// )?;
    ///
    /// let dir = Dir::open_ambient_dir(&tmp, ambient_authority())?;
    /// let model = Sandbox::new()?.open_sharded(&dir, "model.safetensors.index.json")?;
    /// assert_eq!((model.len(), model.shards().len()), (2, 2));
    /// assert_eq!(model.tensor("b").unwrap().shape, [2, 2]);
    /// # std::fs::remove_dir_all(&tmp)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - [`Error::Malformed`] of the index: a JSON problem (rules `index_json`, `duplicate_key`,
    ///   `index_duplicate_tensor`), a file name that is absolute, climbs out with `..` or names
    ///   the index (`shard_path`), a shard that does not exist (`shard_missing`), a tensor missing
    ///   from the shard the index names (`index_tensor_missing`), in a shard but not in the index
    ///   (`tensor_not_in_index`), in two shards (`tensor_in_two_shards`), or a `total_size` that
    ///   the shards contradict (`total_size_mismatch`). The constants are in [`sharded::rules`](rules).
    /// - [`Error::LimitExceeded`]: the index is larger than `max_header_bytes`, lists more than
    ///   `max_tensors` tensors, or names more than `max_shards` files.
    /// - Whatever [`open_safetensors`](Sandbox::open_safetensors) says about a shard (naming the
    ///   shard), and [`Error::Io`] (a symlink out of `dir` is refused by the capability).
    pub fn open_sharded(&self, dir: &Dir, index: impl AsRef<Path>) -> Result<ShardedCheckpoint> {
        let index_name = index.as_ref().to_path_buf();
        let limits = self.limits();
        let input = Input::open(dir, &index_name)?;
        let len = input.len()?;
        limits.check(Limit::MaxHeaderBytes, len, &index_name)?;
        let bytes = input.contents(len, DataAccess::Read)?;
        self.sharded_from_index(dir, &index_name, &bytes)
    }

    /// [`open_sharded`](Sandbox::open_sharded) of an index already read as `bytes`.
    pub(crate) fn sharded_from_index(&self, dir: &Dir, index: &Path, bytes: &[u8]) -> Result<ShardedCheckpoint> {
        let index_name = index.to_path_buf();
        let limits = self.limits();
        limits.check(Limit::MaxHeaderBytes, bytes.len() as u64, &index_name)?;
        let parsed = self.parse_index(&index_name, bytes)?;

        let mut shards = Vec::with_capacity(parsed.shards.len());
        for name in &parsed.shards {
            let path = shard_path(&index_name, name)?;
            let input = match Input::open(dir, &path) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Err(malformed(
                        &index_name,
                        rules::SHARD_MISSING,
                        format!("shard {:?} does not exist", printable(name)),
                    ));
                }
                other => other?,
            };
            shards.push(self.open_safetensors(input)?);
        }
        check_shards(&index_name, &parsed, shards, limits)
    }

    pub(crate) fn parse_index(&self, file: &Path, bytes: &[u8]) -> Result<Index> {
        let limits = self.limits();
        let request = Request { max_shards: limits.max_shards, max_tensors: limits.max_tensors };
        let mut stats = GuestStats::default();
        let response: Response =
            self.call(Guest::ShardIndex, file, Format::SafetensorsIndex, &request, bytes, &mut stats, |r, _| Ok(r))?;
        response.map_err(|e| guest_rejection(file, Format::SafetensorsIndex, limits, Guest::ShardIndex, e))
    }
}

fn malformed(index: &Path, rule: &'static str, detail: String) -> Error {
    Error::malformed(index, Format::SafetensorsIndex, rule, None, detail)
}

/// A shard's path relative to the directory, if `name` is a plain relative path that is not the
/// index itself: the name joined to the index's own directory. The `Dir` capability would refuse an escape anyway; refusing it by name first
/// makes it the index's fault, with a rule, rather than an I/O error.
fn shard_path(index: &Path, name: &str) -> Result<PathBuf> {
    let bad = |why: &str| malformed(index, rules::SHARD_PATH, format!("shard {:?} {why}", printable(name)));
    let path = Path::new(name);
    if name.is_empty() || name.contains('\0') {
        return Err(bad("is not a file name"));
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(bad("climbs out of the directory with \"..\"")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("is an absolute path")),
        }
    }
    // Shard names are relative to the index's own directory (as `transformers` resolves them),
    // which may be a subdirectory of `dir` (e.g. a Hub cache's `snapshots/<revision>/`).
    let index_normal: PathBuf = index.components().filter(|c| *c != Component::CurDir).collect();
    let base = index_normal.parent().unwrap_or(Path::new(""));
    let normal: PathBuf = base.join(path.components().filter(|c| *c != Component::CurDir).collect::<PathBuf>());
    if normal == index_normal {
        return Err(bad("is the index itself"));
    }
    Ok(normal)
}

/// The cross-shard checks, then the name index.
fn check_shards(
    index_file: &Path,
    index: &Index,
    shards: Vec<Checkpoint>,
    _limits: &Limits,
) -> Result<ShardedCheckpoint> {
    let expected: HashMap<&str, u32> = index.tensors.iter().map(|(name, shard)| (name.as_str(), *shard)).collect();
    let mut found: HashMap<&str, u32> = HashMap::with_capacity(expected.len());
    let mut total = 0u64;
    for (s, shard) in shards.iter().enumerate() {
        let s = s as u32;
        for tensor in shard.tensors() {
            let name = tensor.name.as_str();
            if let Some(&other) = found.get(name) {
                return Err(malformed(
                    index_file,
                    rules::TENSOR_IN_TWO_SHARDS,
                    format!(
                        "tensor {:?} is in both {:?} and {:?}",
                        printable(name),
                        printable(&index.shards[other as usize]),
                        printable(&index.shards[s as usize])
                    ),
                ));
            }
            found.insert(name, s);
            match expected.get(name) {
                None => {
                    return Err(malformed(
                        index_file,
                        rules::TENSOR_NOT_IN_INDEX,
                        format!(
                            "shard {:?} holds tensor {:?}, which the index does not list",
                            printable(&index.shards[s as usize]),
                            printable(name)
                        ),
                    ));
                }
                Some(&want) if want != s => {
                    return Err(malformed(
                        index_file,
                        rules::INDEX_TENSOR_MISSING,
                        format!(
                            "the index puts tensor {:?} in {:?}, but it is in {:?}",
                            printable(name),
                            printable(&index.shards[want as usize]),
                            printable(&index.shards[s as usize])
                        ),
                    ));
                }
                Some(_) => {}
            }
            total = total.saturating_add(tensor.data_offsets.1 - tensor.data_offsets.0);
        }
    }
    if let Some((name, shard)) = index.tensors.iter().find(|(name, _)| !found.contains_key(name.as_str())) {
        return Err(malformed(
            index_file,
            rules::INDEX_TENSOR_MISSING,
            format!(
                "the index puts tensor {:?} in {:?}, which does not hold it",
                printable(name),
                printable(&index.shards[*shard as usize])
            ),
        ));
    }
    if let Some(claimed) = index.total_size {
        if claimed != total {
            return Err(malformed(
                index_file,
                rules::TOTAL_SIZE_MISMATCH,
                format!("metadata total_size is {claimed} but the shards' tensors hold {total} bytes"),
            ));
        }
    }
    let mut by_name: Vec<(String, u32, u32)> = Vec::with_capacity(found.len());
    for (s, shard) in shards.iter().enumerate() {
        for (i, tensor) in shard.tensors().iter().enumerate() {
            by_name.push((tensor.name.clone(), s as u32, i as u32));
        }
    }
    by_name.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(ShardedCheckpoint {
        index_file: index_file.to_path_buf(),
        shards,
        by_name,
        metadata: index.metadata.iter().cloned().collect(),
        total_size: index.total_size,
    })
}
