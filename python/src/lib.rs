//! The `sandload._sandload` extension module: a thin layer over the `sandload` crate for the
//! Python package in `py_pkg/sandload`, which builds the safetensors- and rawpy-shaped APIs on
//! top of it.
//!
//! What lives here and why:
//! - every call into a guest runs with the GIL released (`Python::detach`), so one `Sandbox`
//!   serves many Python threads at once;
//! - tensor bytes reach numpy without a copy: an array borrows a [`Bytes`] slice of the mapped
//!   file through a small owner object, and is marked read-only;
//! - a `sandload::Error` becomes an instance of the matching class of `sandload.errors` in one
//!   place ([`to_py_err`]), built from the same flat record the CLI's JSON prints; records
//!   (errors, receipts, RAW metadata, inspect reports) reach Python as dicts built from the typed
//!   values ([`record`]), never as JSON text to parse again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use sandload::report::FileReport;
use sandload::{Bytes, Checkpoint, DataAccess, Input, Limits, Opened, Pixels, RawImage, Sample, ShardedCheckpoint};

/// `sandload.errors._from_record`, looked up once.
static FROM_RECORD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A typed value's record (the fields `inspect --json` prints for it) as Python objects: dicts,
/// lists, str, int, float, bool, None. Integers stay exact (u64 offsets and limits included).
fn record<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    fn convert<'py>(py: Python<'py>, value: serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
        use serde_json::Value;
        Ok(match value {
            Value::Null => py.None().into_bound(py),
            Value::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u.into_pyobject(py)?.into_any(),
                (_, Some(i), _) => i.into_pyobject(py)?.into_any(),
                (_, _, Some(f)) => f.into_pyobject(py)?.into_any(),
                _ => return Err(PyValueError::new_err(format!("number {n} out of range"))),
            },
            Value::String(s) => PyString::new(py, &s).into_any(),
            Value::Array(items) => {
                let items = items.into_iter().map(|v| convert(py, v)).collect::<PyResult<Vec<_>>>()?;
                pyo3::types::PyList::new(py, items)?.into_any()
            }
            Value::Object(fields) => {
                let dict = PyDict::new(py);
                for (k, v) in fields {
                    dict.set_item(k, convert(py, v)?)?;
                }
                dict.into_any()
            }
        })
    }
    let value = serde_json::to_value(value).map_err(|e| PyValueError::new_err(format!("record: {e}")))?;
    convert(py, value)
}

/// The Python exception for a sandload error, the one place errors cross: the class named by the
/// error's kind, carrying the error's record (kind, rule, file, message, limit, offset...).
fn to_py_err(py: Python<'_>, error: sandload::Error) -> PyErr {
    let record = match record(py, &error) {
        Ok(record) => record,
        Err(e) => return PyValueError::new_err(format!("{error} (and its record failed to convert: {e})")),
    };
    // An I/O error also carries its errno, so that Python raises the matching builtin
    // (FileNotFoundError, IsADirectoryError, PermissionError...).
    if let sandload::Error::Io { source, .. } = &error {
        if let Some(errno) = errno_of(source) {
            if let Err(e) = record.set_item("errno", errno) {
                return e;
            }
        }
    }
    let from_record = FROM_RECORD.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("sandload.errors")?.getattr("_from_record")?.unbind())
    });
    match from_record.and_then(|f| f.bind(py).call1((record,))) {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// The errno of an I/O error: the OS's own, else the one its kind stands for.
fn errno_of(e: &std::io::Error) -> Option<i32> {
    use std::io::ErrorKind::*;
    e.raw_os_error().or(match e.kind() {
        NotFound => Some(libc_errno::ENOENT),
        PermissionDenied => Some(libc_errno::EACCES),
        IsADirectory => Some(libc_errno::EISDIR),
        NotADirectory => Some(libc_errno::ENOTDIR),
        _ => None,
    })
}

/// The errno values `errno_of` names (Linux and the BSDs agree on these four).
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
}

trait IntoPyResult<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for sandload::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, e))
    }
}

/// Where an input's bytes come from, taken out of Python objects while the GIL is held.
#[derive(Clone)]
enum Source {
    /// A path the caller named: opened through a capability on its parent directory.
    Path(PathBuf),
    /// Bytes the caller passed (copied once out of the Python object).
    Bytes(Bytes, PathBuf),
}

impl Source {
    /// `str`/`os.PathLike` (a path), `bytes`/`bytearray`/`memoryview` (the contents, named
    /// `name` in errors, `"<bytes>"` by default), or a binary file object (anything with
    /// `read`, as `open(p, "rb")` and `io.BytesIO`: read to its end, at most `max_file_bytes`,
    /// and named by `name`, else its own `name` attribute, else `"<file>"`).
    fn extract(source: &Bound<'_, PyAny>, name: Option<PathBuf>, limits: &Limits) -> PyResult<Source> {
        let name = || name.clone().unwrap_or_else(|| PathBuf::from("<bytes>"));
        if let Ok(b) = source.cast::<PyBytes>() {
            return Ok(Source::Bytes(Bytes::copy_from_slice(b.as_bytes()), name()));
        }
        if let Ok(b) = source.cast::<PyByteArray>() {
            return Ok(Source::Bytes(Bytes::from(b.to_vec()), name()));
        }
        let py = source.py();
        if source.is_instance(&py.import("builtins")?.getattr("memoryview")?)? {
            let b = source.call_method0("tobytes")?;
            return Ok(Source::Bytes(Bytes::copy_from_slice(b.cast::<PyBytes>()?.as_bytes()), name()));
        }
        let is_path =
            source.is_instance_of::<PyString>() || source.is_instance(&py.import("os")?.getattr("PathLike")?)?;
        if !is_path && source.hasattr("read")? {
            let file_name = source.getattr("name").ok().and_then(|n| n.extract::<String>().ok());
            let shown = match (&name(), file_name) {
                (n, _) if n != Path::new("<bytes>") => n.clone(),
                (_, Some(own)) => PathBuf::from(own),
                _ => PathBuf::from("<file>"),
            };
            // In chunks: `read(n)` on a Python file allocates n bytes up front. One byte past the
            // limit tells a file that is too large from one that fits.
            const CHUNK: u64 = 1 << 20;
            let cap = limits.max_file_bytes.saturating_add(1);
            let mut buf: Vec<u8> = Vec::new();
            while (buf.len() as u64) < cap {
                let want = CHUNK.min(cap - buf.len() as u64);
                let chunk = source.call_method1("read", (want,))?;
                let before = buf.len();
                if let Ok(b) = chunk.cast::<PyBytes>() {
                    buf.extend_from_slice(b.as_bytes());
                } else if let Ok(b) = chunk.cast::<PyByteArray>() {
                    buf.extend_from_slice(&b.to_vec());
                } else if chunk.is_none() {
                    // A non-blocking stream with nothing ready: not something to wait on here.
                    return Err(PyTypeError::new_err(format!("{}: read() returned None", shown.display())));
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "{}: the file object's read() returned {}, not bytes: open the file in binary mode (\"rb\")",
                        shown.display(),
                        chunk.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                    )));
                }
                if buf.len() == before {
                    break; // end of file
                }
            }
            let data = Bytes::from(buf);
            // Over the limit, the sandbox refuses it (`max_file_bytes`, value: the bytes read).
            return Ok(Source::Bytes(data, shown));
        }
        let fspath = py.import("os")?.getattr("fspath")?;
        let path = fspath.call1((source,)).map_err(|_| {
            PyTypeError::new_err(format!(
                "expected a path (str or os.PathLike), bytes-like contents or a binary file object, got {}",
                source.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        let path: PathBuf = if let Ok(s) = path.cast::<PyString>() {
            PathBuf::from(s.to_cow()?.into_owned())
        } else {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(path.cast::<PyBytes>()?.as_bytes()))
        };
        Ok(Source::Path(path))
    }

    /// Opens the input. Needs no GIL: runs inside `detach`, so a slow file system does not
    /// stall other Python threads.
    fn open(self) -> sandload::Result<Input> {
        match self {
            Source::Bytes(bytes, name) => Ok(Input::from_bytes(bytes, name)),
            Source::Path(path) => {
                let (dir, name) = parent_dir(&path)?;
                // Errors name the path as the caller gave it, not its last component.
                let input = Input::open(&dir, name).map_err(|e| match e {
                    sandload::Error::Io { source, .. } => sandload::Error::Io { file: path.clone(), source },
                    other => other,
                })?;
                Ok(input.with_name(path))
            }
        }
    }

    fn shown(&self) -> &Path {
        match self {
            Source::Path(p) => p,
            Source::Bytes(_, name) => name,
        }
    }
}

/// The parent directory of a path the Python caller named, as a capability, and the name in it.
/// The package's one use of ambient authority: the caller chose this path.
fn parent_dir(path: &Path) -> sandload::Result<(cap_std::fs::Dir, PathBuf)> {
    sandload::parent_dir(path, cap_std::ambient_authority())
}

/// What a source is, decided by the library's rule, which the CLI applies too
/// ([`sandload::is_shard_index_name`], [`sandload::shard_index_in`],
/// [`Sandbox::open_if_sharded`](sandload::Sandbox::open_if_sharded)): a sharded checkpoint when
/// it is a directory holding `model.safetensors.index.json` or a file under a
/// `*.safetensors.index.json` name, and that index's content is no format sandload recognises;
/// else a file (an index-named pickle is refused as a pickle; a directory whose index is one
/// opens that index file).
enum Routed {
    Sharded(sandload::Result<ShardedCheckpoint>),
    File(Source),
}

fn route(sandbox: &sandload::Sandbox, source: Source) -> Routed {
    let Source::Path(path) = &source else { return Routed::File(source) };
    let located = if path.is_dir() {
        // The caller named this directory. One without an index is opened as a file, and
        // refused as not a regular file.
        cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .ok()
            .and_then(|dir| sandload::shard_index_in(&dir).map(|index| (dir, index.to_path_buf())))
    } else if sandload::is_shard_index_name(path) {
        parent_dir(path).ok()
    } else {
        None
    };
    let Some((dir, index)) = located else { return Routed::File(source) };
    match sandbox.open_if_sharded(&dir, &index) {
        Some(result) => Routed::Sharded(result),
        None if path.is_dir() => Routed::File(Source::Path(path.join(index))),
        None => Routed::File(source),
    }
}

/// A checkpoint, sharded or not (see [`route`]), with a handle on its file when `keep_file` and
/// it is one file (see [`PyCheckpoint::file`]).
fn open_model(sandbox: &sandload::Sandbox, source: Source, keep_file: bool) -> sandload::Result<(Model, KeptFile)> {
    match route(sandbox, source) {
        Routed::Sharded(result) => Ok((Model::Sharded(result?), None)),
        Routed::File(source) => {
            let (input, file) = open_keeping(source, keep_file)?;
            Ok((Model::Single(sandbox.open_safetensors(input)?), file))
        }
    }
}

/// A second handle on a source's file, for copy-on-write mappings of its tensors.
type KeptFile = Option<Arc<std::fs::File>>;

/// Opens `source`, and keeps a second handle on its file when `keep` (and it is a file).
fn open_keeping(source: Source, keep: bool) -> sandload::Result<(Input, KeptFile)> {
    let input = source.open()?;
    let file = match input.try_clone_file().filter(|_| keep) {
        Some(dup) => {
            Some(Arc::new(dup.map_err(|e| sandload::Error::Io { file: input.name().to_path_buf(), source: e })?))
        }
        None => None,
    };
    Ok((input, file))
}

/// The record `sandload inspect --json` prints for `source` (a sharded checkpoint for an index or
/// a directory holding one, see [`route`]), and what was opened when it was accepted (a sharded
/// checkpoint only has its record).
fn report_and_open(
    sandbox: &sandload::Sandbox,
    source: Source,
    digest: bool,
    keep_file: bool,
) -> (FileReport, Option<Opened>, KeptFile) {
    let shown = source.shown().to_path_buf();
    let source = match route(sandbox, source) {
        Routed::Sharded(result) => return (FileReport::sharded(&shown, result, digest), None, None),
        Routed::File(source) => source,
    };
    let shown = source.shown().to_path_buf();
    match open_keeping(source, keep_file) {
        Ok((input, file)) => match sandbox.open_with_receipt(input) {
            // Reported from a borrow: the opened file is handed to Python as it is, not copied.
            (Ok(opened), receipt) => (FileReport::accepted(&shown, &opened, receipt, digest), Some(opened), file),
            (Err(e), receipt) => (FileReport::new(&shown, Err(e), Some(receipt), digest), None, None),
        },
        Err(e) => (FileReport::new(&shown, Err(e), None, digest), None, None),
    }
}

/// Keeps a [`Bytes`] (a slice of a mapped file, or of a buffer read once) alive for as long as a
/// numpy array borrows it: the array's `base`.
#[pyclass(frozen, module = "sandload._sandload")]
struct BytesOwner {
    data: Bytes,
}

/// A read-only one-dimensional `uint8` array over `data`, without a copy.
fn borrow_bytes(py: Python<'_>, data: Bytes) -> PyResult<Bound<'_, PyArray1<u8>>> {
    let owner = Bound::new(py, BytesOwner { data })?;
    let view: ArrayView1<'_, u8> = ArrayView1::from(&owner.get().data[..]);
    // SAFETY: the array's base object is `owner`, which holds the `Bytes` the view points into;
    // `Bytes` never moves or frees its buffer while a handle to it lives, and the owner is frozen
    // (the field cannot be replaced). The array is made read-only before Python sees it.
    let array = unsafe { PyArray1::borrow_from_array(&view, owner.clone().into_any()) };
    array.readwrite().make_nonwriteable();
    Ok(array)
}

/// A private (copy-on-write) mapping of a range of a checked file: the memory of a writable
/// tensor array. Reading costs nothing until touched, writing copies only the pages written, and
/// writes never reach the file.
#[pyclass(frozen, module = "sandload._sandload")]
struct PrivateMap {
    _map: memmap2::MmapMut,
    ptr: usize,
    len: usize,
}

impl PrivateMap {
    fn new(file: &std::fs::File, start: u64, len: usize) -> std::io::Result<PrivateMap> {
        // The file must still hold the range (a file truncated since it was checked would fault
        // on access instead).
        if file.metadata()?.len() < start + len as u64 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank since it was checked"));
        }
        // SAFETY: a MAP_PRIVATE mapping of a file this process only reads: our writes stay in
        // private pages. As with `data_access="map"`, another process changing the file in place
        // can change pages not yet written (documented), and truncating it would fault; the
        // caller chose mapping.
        #[allow(unsafe_code)]
        let mut map = unsafe { memmap2::MmapOptions::new().offset(start).len(len).map_copy(file)? };
        let ptr = map.as_mut_ptr() as usize;
        Ok(PrivateMap { _map: map, ptr, len })
    }
}

/// A sandbox: the compiled guests, the limits, the instance pool. Safe to share between threads.
#[pyclass(frozen, subclass, module = "sandload._sandload", name = "Sandbox")]
struct PySandbox {
    inner: Arc<sandload::Sandbox>,
    /// `data_access="map"`: checkpoints keep a handle on their file for copy-on-write tensors.
    mapped: bool,
}

#[pymethods]
impl PySandbox {
    /// Builds a sandbox. Every limit defaults to sandload's safe default (see `limits`).
    #[new]
    #[pyo3(signature = (*, max_file_bytes=None, max_header_bytes=None, max_tensors=None, max_pixels=None,
        max_shards=None, guest_memory_bytes=None, guest_time=None, data_access="map", max_concurrent=None,
        cache=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_file_bytes: Option<u64>,
        max_header_bytes: Option<u64>,
        max_tensors: Option<u64>,
        max_pixels: Option<u64>,
        max_shards: Option<u64>,
        guest_memory_bytes: Option<u64>,
        guest_time: Option<f64>,
        data_access: &str,
        max_concurrent: Option<u32>,
        cache: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut limits = Limits::default();
        let set = |value: Option<u64>, field: &mut u64| value.inspect(|&v| *field = v);
        set(max_file_bytes, &mut limits.max_file_bytes);
        set(max_header_bytes, &mut limits.max_header_bytes);
        set(max_tensors, &mut limits.max_tensors);
        set(max_pixels, &mut limits.max_pixels);
        set(max_shards, &mut limits.max_shards);
        set(guest_memory_bytes, &mut limits.guest_memory_bytes);
        if let Some(seconds) = guest_time {
            // NaN, infinities and negatives; `validate` checks the range, as the CLI does.
            limits.guest_time = Duration::try_from_secs_f64(seconds).map_err(|_| {
                PyValueError::new_err(format!("guest_time must be a positive number of seconds, got {seconds}"))
            })?;
        }
        limits.validate().map_err(|e| PyValueError::new_err(e.to_string()))?;
        let access = match data_access {
            "map" => DataAccess::Map,
            "read" => DataAccess::Read,
            other => {
                return Err(PyValueError::new_err(format!("data_access must be \"map\" or \"read\", got {other:?}")));
            }
        };
        let mut builder = sandload::Sandbox::builder();
        builder.limits(limits).data_access(access);
        if let Some(n) = max_concurrent {
            builder.max_concurrent(n);
        }
        // The compiled-guest cache: the per-user one (True, the default), none (False), or a
        // directory the caller names. Without one, every new process compiles every guest again
        // (~8 s for the RAW decoder on 2 cores): a Ray worker's first file would pay it.
        let cache_dir = match cache {
            None => Some(true),
            Some(c) if c.is_instance_of::<pyo3::types::PyBool>() => Some(c.extract::<bool>()?),
            Some(_) => None,
        };
        match (cache_dir, cache) {
            (Some(true), _) => match sandload::user_cache_dir(cap_std::ambient_authority()) {
                Ok(Some(dir)) => {
                    builder.cache_dir(dir);
                }
                Ok(None) => {}
                Err(why) => PyErr::warn(
                    py,
                    &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
                    &std::ffi::CString::new(why).unwrap_or_default(),
                    1,
                )?,
            },
            (Some(false), _) => {}
            (None, Some(path)) => {
                let path = PathBuf::from(py.import("os")?.getattr("fsdecode")?.call1((path,))?.extract::<String>()?);
                let dir = cap_std::fs::Dir::open_ambient_dir(&path, cap_std::ambient_authority())
                    .map_err(|source| to_py_err(py, sandload::Error::Io { file: path.clone(), source }))?;
                builder.cache_dir(dir);
            }
            (None, None) => unreachable!("cache is None only when not given"),
        }
        // Building compiles (or loads from the cache) every guest: seconds, without the GIL.
        let inner = py.detach(|| builder.build()).py(py)?;
        Ok(PySandbox { inner: Arc::new(inner), mapped: access == DataAccess::Map })
    }

    /// The limits in force, as a dict (sizes in bytes, `guest_time` in seconds).
    #[getter]
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let l = self.inner.limits();
        let d = PyDict::new(py);
        d.set_item("max_file_bytes", l.max_file_bytes)?;
        d.set_item("max_header_bytes", l.max_header_bytes)?;
        d.set_item("max_tensors", l.max_tensors)?;
        d.set_item("max_pixels", l.max_pixels)?;
        d.set_item("max_shards", l.max_shards)?;
        d.set_item("guest_memory_bytes", l.guest_memory_bytes)?;
        d.set_item("guest_time", l.guest_time.as_secs_f64())?;
        Ok(d)
    }

    /// Opens a safetensors checkpoint (refusing everything else). A directory holding
    /// `model.safetensors.index.json`, or a file under a `*.safetensors.index.json` name, whose
    /// content is no other format, is opened as a sharded checkpoint: shards only inside the
    /// index's directory (the CLI's rule: [`route`]).
    #[pyo3(signature = (source, name=None))]
    fn _open_checkpoint(
        &self,
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        name: Option<PathBuf>,
    ) -> PyResult<PyCheckpoint> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let sandbox = self.inner.clone();
        let keep = self.mapped;
        let (model, file) = py.detach(move || open_model(&sandbox, source, keep)).py(py)?;
        Ok(PyCheckpoint { inner: model, file })
    }

    /// Decodes a camera RAW file.
    #[pyo3(signature = (source, name=None))]
    fn _decode_raw(&self, py: Python<'_>, source: &Bound<'_, PyAny>, name: Option<PathBuf>) -> PyResult<PyRawFrame> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let (sandbox, kept) = (self.inner.clone(), source.clone());
        let raw = py.detach(move || sandbox.decode_raw(source.open()?)).py(py)?;
        Ok(PyRawFrame { inner: raw, sandbox: self.inner.clone(), source: kept })
    }

    /// Decodes a PNG, JPEG, TIFF or WebP image: `(pixels, format, orientation, icc_profile,
    /// receipt)`, pixels as H x W (grey) or H x W x C.
    #[pyo3(signature = (source, name=None))]
    fn _decode_image<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'_, PyAny>,
        name: Option<PathBuf>,
    ) -> PyResult<(Bound<'py, PyAny>, String, u16, Option<Bound<'py, PyBytes>>, Bound<'py, PyAny>)> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let sandbox = self.inner.clone();
        let decoded = py.detach(move || sandbox.decode_image(source.open()?)).py(py)?;
        let receipt = record(py, &decoded.receipt)?;
        let pixels = image_array(py, decoded.pixels)?;
        let icc = decoded.icc_profile.as_deref().map(|p| PyBytes::new(py, p));
        Ok((pixels, decoded.format, decoded.orientation, icc, receipt))
    }

    /// What `sandload inspect --json` prints for the file (one record, as a dict); a
    /// directory holding `model.safetensors.index.json`, or an index file, is one sharded
    /// checkpoint.
    #[pyo3(signature = (source, digest=false, name=None))]
    fn _inspect<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'_, PyAny>,
        digest: bool,
        name: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let sandbox = self.inner.clone();
        let (report, _, _) = py.detach(move || report_and_open(&sandbox, source, digest, false));
        record(py, &report)
    }

    /// [`_inspect`](PySandbox::_inspect) and [`_open`](PySandbox::_open) in one guest run:
    /// `(record, kind, opened)`, `kind`/`opened` None when the file was rejected (or is a
    /// sharded checkpoint, which has only its record).
    #[pyo3(signature = (source, digest=false, name=None))]
    fn _open_report<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'_, PyAny>,
        digest: bool,
        name: Option<PathBuf>,
    ) -> PyResult<(Bound<'py, PyAny>, Option<&'static str>, Option<Bound<'py, PyAny>>)> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let (sandbox, kept, keep) = (self.inner.clone(), source.clone(), self.mapped);
        let (report, opened, file) = py.detach(move || report_and_open(&sandbox, source, digest, keep));
        let record = record(py, &report)?;
        let (kind, opened) = match opened {
            None => (None, None),
            Some(opened) => {
                let (kind, object) = opened_object(py, opened, &self.inner, kept, file)?;
                (Some(kind), Some(object))
            }
        };
        Ok((record, kind, opened))
    }

    /// Opens whatever the content says the file is: `("checkpoint", Checkpoint)`,
    /// `("raw", RawFrame)` or `("image", (pixels, format, orientation, icc_profile, receipt))`.
    #[pyo3(signature = (source, name=None))]
    fn _open<'py>(
        &self,
        py: Python<'py>,
        source: &Bound<'_, PyAny>,
        name: Option<PathBuf>,
    ) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
        let source = Source::extract(source, name, self.inner.limits())?;
        let (sandbox, kept, keep) = (self.inner.clone(), source.clone(), self.mapped);
        let (opened, file) = py
            .detach(move || {
                let (input, file) = open_keeping(source, keep)?;
                sandbox.open(input).map(|opened| (opened, file))
            })
            .py(py)?;
        opened_object(py, opened, &self.inner, kept, file)
    }

    /// Number of guest calls running right now (for tests and monitoring).
    #[getter]
    fn guests_running(&self) -> u32 {
        self.inner.guests_running()
    }
}

/// The Python object for what `Sandbox::open` accepted from `source`, with its kind's name.
fn opened_object<'py>(
    py: Python<'py>,
    opened: Opened,
    sandbox: &Arc<sandload::Sandbox>,
    source: Source,
    file: KeptFile,
) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
    Ok(match opened {
        Opened::Checkpoint(c) => {
            ("checkpoint", Bound::new(py, PyCheckpoint { inner: Model::Single(c), file })?.into_any())
        }
        Opened::Raw(r) => {
            ("raw", Bound::new(py, PyRawFrame { inner: r, sandbox: sandbox.clone(), source })?.into_any())
        }
        Opened::Image(d) => {
            let receipt = record(py, &d.receipt)?;
            let icc = d.icc_profile.as_deref().map(|p| PyBytes::new(py, p));
            let pixels = image_array(py, d.pixels)?;
            ("image", (pixels, d.format, d.orientation, icc, receipt).into_pyobject(py)?.into_any())
        }
        _ => return Err(PyValueError::new_err("sandload opened a kind of file this package does not know")),
    })
}

/// An image's pixels as an owned numpy array (moved, not copied), H x W or H x W x C.
/// `data` as an `(h, w)` array for one channel, `(h, w, channels)` otherwise.
fn shaped<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    (h, w, channels): (usize, usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let flat = data.into_pyarray(py);
    Ok(if channels == 1 { flat.reshape([h, w])?.into_any() } else { flat.reshape([h, w, channels])?.into_any() })
}

/// Decoded pixels as a numpy array shaped as Pillow's `np.asarray(Image.open(path))`: `(h, w)`
/// for grey, `(h, w, channels)` otherwise. The dtype is Pillow's where Pillow keeps every value
/// (bool for bilevel, 2/4-bit grey scaled to uint8, uint8, uint16 grey, int32 for signed 16 and
/// 32-bit grey, float32) and the file's own type where Pillow would lose some (16-bit RGB(A)
/// stays uint16, Pillow keeps the top byte; uint32 stays uint32, Pillow wraps it into int32;
/// int8 stays int8; 64-bit and half floats, 64-bit integers, which Pillow does not open).
fn image_array(py: Python<'_>, pixels: Pixels) -> PyResult<Bound<'_, PyAny>> {
    fn le<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        bytes.chunks_exact(N).map(|b| from(b.try_into().expect("N bytes"))).collect()
    }
    let layout = pixels.layout();
    let dims = (pixels.height() as usize, pixels.width() as usize, layout.channels() as usize);
    let bits = layout.bits;
    let bytes = pixels.into_bytes();
    match layout.sample {
        Sample::U8 if bits == 1 => shaped(py, bytes.into_iter().map(|v| v != 0).collect::<Vec<bool>>(), dims),
        Sample::U8 if bits < 8 => {
            let scale = 255 / ((1u8 << bits) - 1);
            shaped(py, bytes.into_iter().map(|v| v * scale).collect(), dims)
        }
        Sample::U8 => shaped(py, bytes, dims),
        Sample::I8 => shaped(py, bytes.into_iter().map(|v| v as i8).collect::<Vec<i8>>(), dims),
        Sample::U16 => shaped(py, le(&bytes, u16::from_le_bytes), dims),
        Sample::I16 => shaped(py, le(&bytes, |b| i32::from(i16::from_le_bytes(b))), dims),
        Sample::U32 => shaped(py, le(&bytes, u32::from_le_bytes), dims),
        Sample::I32 => shaped(py, le(&bytes, i32::from_le_bytes), dims),
        Sample::U64 => shaped(py, le(&bytes, u64::from_le_bytes), dims),
        Sample::I64 => shaped(py, le(&bytes, i64::from_le_bytes), dims),
        // numpy's float16 through its bits (rust-numpy's `half` feature is not worth a build).
        Sample::F16 => shaped(py, le(&bytes, u16::from_le_bytes), dims)?.call_method1("view", ("float16",)),
        Sample::F32 => shaped(py, le(&bytes, f32::from_le_bytes), dims),
        Sample::F64 => shaped(py, le(&bytes, f64::from_le_bytes), dims),
        _ => {
            Err(PyValueError::new_err(format!("sandload returned {} pixels this package does not know", layout.name())))
        }
    }
}

enum Model {
    Single(Checkpoint),
    Sharded(ShardedCheckpoint),
}

/// A validated checkpoint (one file, or every shard of a sharded one).
#[pyclass(frozen, module = "sandload._sandload", name = "Checkpoint")]
struct PyCheckpoint {
    inner: Model,
    /// A handle on the (single) file that was checked, when the sandbox maps files: tensors are
    /// then mapped from it privately (copy-on-write) for writable arrays. `None` for bytes,
    /// `data_access="read"` and sharded checkpoints, whose writable arrays are copies.
    file: KeptFile,
}

impl PyCheckpoint {
    fn view(&self, name: &str) -> PyResult<sandload::TensorView<'_>> {
        let view = match &self.inner {
            Model::Single(c) => c.tensor(name),
            Model::Sharded(s) => s.tensor(name),
        };
        view.ok_or_else(|| PyKeyError::new_err(name.to_string()))
    }
}

#[pymethods]
impl PyCheckpoint {
    /// The tensor names, sorted (as `safetensors.safe_open.keys()` gives them).
    fn keys(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.inner {
            Model::Single(c) => c.tensors().iter().map(|t| t.name.clone()).collect(),
            Model::Sharded(s) => s.iter().map(|t| t.name.to_string()).collect(),
        };
        names.sort_unstable();
        names
    }

    /// The tensor names in the order of their data (shard by shard for a sharded checkpoint).
    fn _offset_keys(&self) -> Vec<String> {
        match &self.inner {
            Model::Single(c) => c.tensors().iter().map(|t| t.name.clone()).collect(),
            Model::Sharded(s) => s.iter().map(|t| t.name.to_string()).collect(),
        }
    }

    /// `(dtype name, shape)` of one tensor.
    fn _info(&self, name: &str) -> PyResult<(&'static str, Vec<u64>)> {
        let view = self.view(name)?;
        Ok((view.dtype.name(), view.shape.to_vec()))
    }

    /// The tensor's bytes as a read-only `uint8` array sharing the checkpoint's buffer.
    fn _bytes<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let view = self.view(name)?;
        borrow_bytes(py, view.data)
    }

    /// The tensor's bytes as a writable array of its own: a private (copy-on-write) mapping of
    /// the checked file's range when there is one, so that nothing is copied until a page is
    /// written and writes never reach the file or another array; a copy otherwise.
    fn _writable<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let view = self.view(name)?;
        let (Model::Single(checkpoint), Some(file)) = (&self.inner, &self.file) else {
            return Ok(PyArray1::from_slice(py, &view.data));
        };
        let info = checkpoint.tensors().iter().find(|t| t.name == name).expect("the view exists");
        let (begin, end) = info.data_offsets;
        let len = usize::try_from(end - begin).map_err(|_| PyValueError::new_err("tensor larger than memory"))?;
        if len == 0 {
            return Ok(PyArray1::zeros(py, 0, false));
        }
        let start = 8 + checkpoint.header_len() + begin;
        let owner = py
            .detach(|| PrivateMap::new(file, start, len))
            .map_err(|e| to_py_err(py, sandload::Error::Io { file: checkpoint.file().to_path_buf(), source: e }))?;
        let (ptr, len) = (owner.ptr, owner.len);
        let owner = Bound::new(py, owner)?;
        // SAFETY: `ptr..ptr + len` is the private mapping `owner` holds (frozen, never moved or
        // unmapped while it lives), and the array's base object is `owner`. Only numpy writes to
        // it; nothing on the Rust side reads or borrows it.
        #[allow(unsafe_code)]
        let array = unsafe {
            let view = ArrayView1::from_shape_ptr(len, ptr as *const u8);
            PyArray1::borrow_from_array(&view, owner.into_any())
        };
        Ok(array)
    }

    /// The box `ranges` (one `(start, stop)` per leading dimension) of a tensor: its bytes
    /// (shared with the file when contiguous) and its shape.
    fn _slice<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        ranges: Vec<(u64, u64)>,
    ) -> PyResult<(Bound<'py, PyArray1<u8>>, Vec<u64>)> {
        let view = self.view(name)?;
        let ranges: Vec<_> = ranges.into_iter().map(|(a, b)| a..b).collect();
        let part = view.slice(&ranges).py(py)?;
        Ok((borrow_bytes(py, part.data)?, part.shape))
    }

    /// The header's `__metadata__` (the index's `metadata` for a sharded checkpoint), or None.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let map = match &self.inner {
            Model::Single(c) => c.metadata(),
            Model::Sharded(s) => Some(s.metadata()),
        };
        map.map(|m| {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, v)?;
            }
            Ok(d)
        })
        .transpose()
    }

    /// The receipts (one per file read), as dicts.
    fn _receipts<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let receipts: Vec<&sandload::Receipt> = match &self.inner {
            Model::Single(c) => vec![c.receipt()],
            Model::Sharded(s) => s.receipts().collect(),
        };
        receipts.into_iter().map(|r| record(py, r)).collect()
    }

    /// The file (the index file for a sharded checkpoint).
    #[getter]
    fn file(&self) -> PathBuf {
        match &self.inner {
            Model::Single(c) => c.file().to_path_buf(),
            Model::Sharded(s) => s.index_file().to_path_buf(),
        }
    }

    fn __len__(&self) -> usize {
        match &self.inner {
            Model::Single(c) => c.len(),
            Model::Sharded(s) => s.len(),
        }
    }
}

/// A decoded camera RAW frame.
#[pyclass(frozen, module = "sandload._sandload", name = "RawFrame")]
struct PyRawFrame {
    inner: RawImage,
    /// The sandbox and input it came from, for the embedded preview (another guest run, on the
    /// same bytes; a path is read again).
    sandbox: Arc<sandload::Sandbox>,
    source: Source,
}

#[pymethods]
impl PyRawFrame {
    /// The samples as a read-only `uint16` array of `height x width x cpp` values, flat, sharing
    /// the decoded buffer (little-endian; the package views it with the right shape).
    fn _samples<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        borrow_bytes(py, self.inner.samples().clone())
    }

    /// The frame's metadata (`sandload::RawInfo`), as a dict.
    fn _info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        record(py, self.inner.info())
    }

    /// The receipt, as a dict.
    fn _receipt<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        record(py, self.inner.receipt())
    }

    /// Half-resolution Bayer planes, float32 `4 x h x w` (R, G1, G2, B).
    fn bayer_planes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let raw = &self.inner;
        let planes = py.detach(|| raw.bayer_planes()).py(py)?;
        let (h, w) = (planes.height, planes.width);
        Ok(planes.data.into_pyarray(py).reshape([4, h, w])?.into_any())
    }

    /// The largest embedded preview, decoded in the `raw-decoder` guest (`h x w x c` array), or
    /// None if the file has none.
    fn _thumbnail<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (sandbox, source) = (self.sandbox.clone(), self.source.clone());
        let found = py.detach(move || sandbox.raw_preview(source.open()?)).py(py)?;
        found.map(|(_, image)| image_array(py, image.pixels)).transpose()
    }

    /// The image developed as LibRaw develops it (`sandload::PostProcess`), `h x w x 3` `uint8`
    /// or `uint16`. The package maps rawpy's options onto these arguments.
    #[pyo3(signature = (*, demosaic, half_size, white_balance, user_wb, output_color, gamma, auto_bright,
        bright, output_bps, user_flip, user_black, user_sat, no_auto_scale, adjust_maximum_thr))]
    #[allow(clippy::too_many_arguments)]
    fn _postprocess<'py>(
        &self,
        py: Python<'py>,
        demosaic: &str,
        half_size: bool,
        white_balance: &str,
        user_wb: Option<[f32; 4]>,
        output_color: &str,
        gamma: (f64, f64),
        auto_bright: Option<f64>,
        bright: f64,
        output_bps: u8,
        user_flip: Option<u8>,
        user_black: Option<u32>,
        user_sat: Option<u32>,
        no_auto_scale: bool,
        adjust_maximum_thr: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        use sandload::{Demosaic, OutputColor, PostProcess, WhiteBalance};
        let bad = |what: &str, value: &str| PyValueError::new_err(format!("unknown {what} {value:?}"));
        let opts = PostProcess {
            white_balance: match (white_balance, user_wb) {
                (_, Some(m)) => WhiteBalance::User(m),
                ("daylight", None) => WhiteBalance::Daylight,
                ("camera", None) => WhiteBalance::Camera,
                ("auto", None) => WhiteBalance::Auto,
                (other, None) => return Err(bad("white balance", other)),
            },
            demosaic: match demosaic {
                "linear" => Demosaic::Linear,
                "ahd" => Demosaic::Ahd,
                other => return Err(bad("demosaic", other)),
            },
            half_size,
            output_color: match output_color {
                "raw" => OutputColor::Raw,
                "srgb" => OutputColor::Srgb,
                "adobe" => OutputColor::Adobe,
                "wide" => OutputColor::Wide,
                "prophoto" => OutputColor::ProPhoto,
                "xyz" => OutputColor::Xyz,
                "aces" => OutputColor::Aces,
                "p3d65" => OutputColor::P3D65,
                "rec2020" => OutputColor::Rec2020,
                other => return Err(bad("output colour", other)),
            },
            gamma,
            auto_bright,
            bright,
            output_bits: output_bps,
            flip: user_flip,
            user_black,
            user_sat,
            no_auto_scale,
            adjust_maximum_thr,
        };
        let raw = &self.inner;
        let pixels = py.detach(|| raw.postprocess(&opts)).py(py)?;
        let dims = (pixels.height() as usize, pixels.width() as usize, 3);
        if output_bps == 8 {
            shaped(py, pixels.into_bytes(), dims)
        } else {
            let values: Vec<u16> =
                pixels.as_bytes().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            shaped(py, values, dims)
        }
    }
}

/// Writers of the files the Rust test suite uses, for the Python tests and examples (the same
/// DNGs, PNGs, TIFFs and bombs; pickles and safetensors files come from the real Python packages).
/// `sandload._sandload.samples` (feature `test-samples`): the Rust suite's file generators, so
/// that the package's tests write the same files; not part of the package's API.
#[cfg(feature = "test-samples")]
#[pymodule(name = "samples")]
mod samples {
    use super::*;
    use sandload_samples as samples;

    /// A DNG of a `width x height` mosaic of a smooth 12-bit pattern (black 256, white 4351).
    #[pyfunction]
    #[pyo3(signature = (width, height, *, lossless_jpeg=false, cfa=None, active_area=None, black_level=None,
        white_level=None, declared_size=None, make=None, model=None, orientation=1, color_matrix=None,
        as_shot_neutral=None))]
    #[allow(clippy::too_many_arguments)]
    fn dng<'py>(
        py: Python<'py>,
        width: u32,
        height: u32,
        lossless_jpeg: bool,
        cfa: Option<[u8; 4]>,
        active_area: Option<[u32; 4]>,
        black_level: Option<u16>,
        white_level: Option<u16>,
        declared_size: Option<(u32, u32)>,
        make: Option<String>,
        model: Option<String>,
        orientation: u16,
        color_matrix: Option<[f32; 9]>,
        as_shot_neutral: Option<[f32; 3]>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if width.checked_mul(height).is_none_or(|n| n > 64 << 20) {
            return Err(PyValueError::new_err("at most 64 M pixels"));
        }
        let mut dng = samples::Dng::patterned(width, height);
        dng.lossless_jpeg = lossless_jpeg;
        dng.active_area = active_area;
        dng.declared_size = declared_size;
        dng.orientation = orientation;
        if let Some(cfa) = cfa {
            dng.cfa = cfa;
        }
        if let Some(m) = color_matrix {
            dng.color_matrix = m;
        }
        if let Some(n) = as_shot_neutral {
            dng.as_shot_neutral = n;
        }
        if let Some(b) = black_level {
            dng.black_level = b;
        }
        if let Some(w) = white_level {
            dng.white_level = w;
        }
        if let Some(m) = make {
            dng.make = m;
        }
        if let Some(m) = model {
            dng.model = m;
        }
        Ok(PyBytes::new(py, &dng.to_bytes()))
    }

    /// A DNG's sample values as `samples.dng` writes them (row-major `uint16`), to compare with.
    #[pyfunction]
    fn dng_samples<'py>(py: Python<'py>, width: u32, height: u32) -> Bound<'py, PyArray1<u16>> {
        samples::Dng::patterned(width, height).samples.into_pyarray(py)
    }

    /// A 16-bit grey lossless JPEG (SOF3) of `samples` (`width x height` of them, row-major).
    #[pyfunction]
    fn lossless_jpeg<'py>(
        py: Python<'py>,
        width: u32,
        height: u32,
        samples: Vec<u16>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if samples.len() != width as usize * height as usize {
            return Err(PyValueError::new_err("samples must hold width x height values"));
        }
        Ok(PyBytes::new(py, &samples::lossless_jpeg(width, height, &samples)))
    }

    /// A `width x height` RGB PNG.
    #[pyfunction]
    fn png<'py>(py: Python<'py>, width: u32, height: u32) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::png_image(width, height))
    }

    /// A PNG whose header claims `width x height` pixels of `color_type` over the given
    /// (uncompressed) scanlines: a decompression bomb when the claim is large.
    #[pyfunction]
    fn png_with_header<'py>(
        py: Python<'py>,
        width: u32,
        height: u32,
        color_type: u8,
        scanlines: &[u8],
    ) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::png_with_header(width, height, color_type, scanlines))
    }

    /// A JPEG header claiming `width x height` (no image data).
    #[pyfunction]
    fn jpeg_with_dimensions<'py>(py: Python<'py>, width: u16, height: u16) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::jpeg_with_dimensions(width, height))
    }

    /// A safetensors file that is also a pickle read from byte 0 (`module.name(arg)`).
    #[pyfunction]
    fn pickle_polyglot<'py>(py: Python<'py>, module: &str, name: &str, arg: &str) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::pickle_polyglot(module, name, arg))
    }

    /// A safetensors file that is also a zip archive.
    #[pyfunction]
    fn zip_polyglot<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::zip_polyglot())
    }

    /// A minimal HDF5 superblock (a Keras `.h5` file's start).
    #[pyfunction]
    fn hdf5<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::hdf5())
    }

    /// A GGUF file's start.
    #[pyfunction]
    fn gguf<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &samples::gguf())
    }

    /// Writes the Rust suite's mixed set (one file of every route and verdict, a sharded model,
    /// index-named pickles) into `dir`; returns the paths to inspect, in order.
    #[pyfunction]
    fn mixed_corpus(dir: PathBuf) -> PyResult<Vec<PathBuf>> {
        samples::mixed_corpus(&dir).map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
    }
}

/// The extension module.
/// Runs the `sandload` command line (`sandload::cli::run`) on `argv` (program name first) and
/// returns its exit status: the same records, messages and statuses as the Rust binary.
#[pyfunction]
fn _cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> u8 {
    py.detach(move || sandload::cli::run(argv))
}

#[pymodule]
fn _sandload(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_cli_main, m)?)?;
    m.add_class::<PySandbox>()?;
    m.add_class::<PyCheckpoint>()?;
    m.add_class::<PyRawFrame>()?;
    m.add_class::<BytesOwner>()?;
    m.add_class::<PrivateMap>()?;
    #[cfg(feature = "test-samples")]
    m.add_wrapped(pyo3::wrap_pymodule!(samples))?;
    m.add("ABI_VERSION", sandload_abi::ABI_VERSION)?;
    Ok(())
}
