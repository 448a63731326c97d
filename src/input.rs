//! Where the untrusted bytes come from: a capability directory, an open file, or memory.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cap_std::fs::Dir;

use crate::error::{Error, Result};
use crate::limits::{Limit, Limits};

/// An untrusted file to open, with the name errors will use for it.
///
/// There is deliberately no constructor from an absolute path: the library only reads what a
/// caller has granted, either a directory capability ([`Input::open`]), an already-open file
/// ([`Input::from_file`]) or bytes ([`Input::from_bytes`]).
#[derive(Debug)]
pub struct Input {
    name: PathBuf,
    source: Source,
}

#[derive(Debug)]
enum Source {
    File(std::fs::File),
    Bytes(Bytes),
}

/// How the bytes of an accepted file reach the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DataAccess {
    /// Memory-map the file and hand out zero-copy [`Bytes`] slices of the mapping.
    ///
    /// # Security
    /// The mapping is shared (`MAP_SHARED`, read-only): it shows the file as it is on disk, not
    /// a snapshot. If the file is truncated while the mapping lives (that is, while the
    /// [`Checkpoint`](crate::Checkpoint) or any [`Bytes`] taken from it is alive), touching the
    /// lost pages raises `SIGBUS` and kills the host process; if it is rewritten in place, tensor
    /// data changes under the caller after validation. Mapping is safe only for files that nobody
    /// else can truncate or write for that whole time: files you own in a directory only you can
    /// write, on a local file system, that no other process of yours modifies. For anything else
    /// (shared or network storage, user uploads, a CLI given arbitrary paths) use
    /// [`DataAccess::Read`].
    #[default]
    Map,
    /// Read the whole file into memory once; later changes to the file cannot affect the data.
    Read,
    /// Read only what the verdict needs, so that memory per file does not grow with the file:
    /// for a safetensors file, the 8-byte prefix, the header and the 64 KiB of tensor data after
    /// it (what the pickle walk reads), the last 72 KiB (where zip readers look), 8 bytes at each
    /// power of two (HDF5) and a few 4-byte reads where a zip record points; the whole file only
    /// when the pickle walk is still undecided at the end of its window and the file fits in
    /// half of `guest_memory_bytes`. The tensor bytes stay in the file: an accepted
    /// [`Checkpoint`](crate::Checkpoint) has its table and metadata,
    /// [`Checkpoint::has_data`](crate::Checkpoint::has_data) is `false`, every
    /// [`TensorView::data`](crate::TensorView::data) is empty, and
    /// [`Checkpoint::read_tensor`](crate::Checkpoint::read_tensor) and
    /// [`Checkpoint::stream_data`](crate::Checkpoint::stream_data) read them from the file
    /// when asked, a tensor or a chunk at a time. RAW files and images are read whole as with
    /// [`DataAccess::Read`] (their guests decode all of them, within `guest_memory_bytes`); any
    /// other file larger than `guest_memory_bytes` is recognised, and refused, from its first
    /// MiB and its last 72 KiB.
    ///
    /// Bytes given with [`Input::from_bytes`] are already in memory: their checkpoint keeps them.
    ///
    /// For scanners that only need verdicts over many or large files (`sandload inspect` uses it).
    Verdict,
}

/// The parent directory of `path` as a capability, and `path`'s name in it: how a program opens a
/// path its user named ([`Input::open`] on the result). A path without a parent is in `.`.
///
/// # Ambient Authority
/// Opens the parent directory by its path: for programs acting on a path their user gave (the
/// CLI, language bindings), not for libraries that were granted a directory.
///
/// # Errors
/// [`Error::Io`] (naming `path`) if `path` has no file name (`/`, `..`) or its parent cannot be
/// opened.
pub fn parent_dir(path: &Path, ambient: cap_std::AmbientAuthority) -> Result<(Dir, PathBuf)> {
    let io_err = |source| Error::Io { file: path.to_path_buf(), source };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open_ambient_dir(parent, ambient).map_err(io_err)?;
    Ok((dir, PathBuf::from(name)))
}

impl Input {
    /// Opens `path` relative to the capability `dir`.
    ///
    /// This corresponds to [`cap_std::fs::Dir::open`]: only paths inside `dir` resolve (`..` out of
    /// it, absolute paths and symlinks leaving it fail with `PermissionDenied`). The file is opened
    /// with `O_NONBLOCK | O_NOCTTY` and what was opened is checked with `fstat`: anything but a
    /// regular file (a directory, a FIFO, a socket, a device) is refused. There is no `stat`
    /// before the open, so swapping the path for a FIFO at any moment can neither block the
    /// caller nor slip a non-file through.
    ///
    /// # Errors
    /// [`Error::Io`] if the path escapes `dir`, does not exist, or is not a regular file (the
    /// message then starts with "not a regular file").
    pub fn open(dir: &Dir, path: impl AsRef<Path>) -> Result<Input> {
        use cap_std::fs::OpenOptionsExt;
        use rustix::fs::OFlags;
        let path = path.as_ref();
        let mut options = cap_std::fs::OpenOptions::new();
        // Non-blocking: opening a FIFO for reading with no writer returns at once (and is then
        // refused below) instead of waiting forever; no controlling terminal from a tty.
        options.read(true).custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32);
        let file = dir.open_with(path, &options).map_err(|e| Error::io(path, e))?.into_std();
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            // A directory says so in its kind too (EISDIR for the Python package's IsADirectoryError).
            let kind = if meta.is_dir() { std::io::ErrorKind::IsADirectory } else { std::io::ErrorKind::InvalidInput };
            return Err(Error::io(
                path,
                std::io::Error::new(kind, format!("not a regular file: {}", describe(&meta.file_type()))),
            ));
        }
        Ok(Input { name: path.to_path_buf(), source: Source::File(file) })
    }

    /// Wraps a file the caller already opened. `name` is used in errors.
    pub fn from_file(file: impl Into<std::fs::File>, name: impl Into<PathBuf>) -> Input {
        Input { name: name.into(), source: Source::File(file.into()) }
    }

    /// Wraps bytes already in memory. `name` is used in errors.
    pub fn from_bytes(bytes: impl Into<Bytes>, name: impl Into<PathBuf>) -> Input {
        Input { name: name.into(), source: Source::Bytes(bytes.into()) }
    }

    /// Replaces the name errors use (e.g. with the full path the user typed).
    pub fn with_name(mut self, name: impl Into<PathBuf>) -> Input {
        self.name = name.into();
        self
    }

    /// A second handle on the opened file (the same open file description), `None` for bytes:
    /// for a caller that maps parts of the file later, e.g. copy-on-write views of tensors, and
    /// must see the very file that was checked, not whatever the path names by then.
    ///
    /// # Errors
    /// The `dup` failing (out of file descriptors).
    pub fn try_clone_file(&self) -> Option<std::io::Result<std::fs::File>> {
        match &self.source {
            Source::File(f) => Some(f.try_clone()),
            Source::Bytes(_) => None,
        }
    }

    /// The name errors use for this input.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Length in bytes (from `fstat` for files).
    pub(crate) fn len(&self) -> Result<u64> {
        match &self.source {
            Source::Bytes(b) => Ok(b.len() as u64),
            Source::File(f) => {
                let meta = f.metadata().map_err(|e| Error::io(&self.name, e))?;
                if !meta.is_file() {
                    return Err(Error::io(
                        &self.name,
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
                    ));
                }
                Ok(meta.len())
            }
        }
    }

    /// The whole content, `len` bytes, as one buffer (mapped or read, per `access`).
    pub(crate) fn contents(self, len: u64, access: DataAccess) -> Result<Bytes> {
        let name = self.name;
        let file = match self.source {
            Source::Bytes(b) => return Ok(b),
            Source::File(f) => f,
        };
        let size = usize::try_from(len).map_err(|_| {
            Error::io(
                &name,
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, "file larger than the address space"),
            )
        })?;
        if size == 0 {
            return Ok(Bytes::new());
        }
        match access {
            DataAccess::Map => {
                // SAFETY: memmap2's `map` is a read-only MAP_SHARED mapping: nothing in this
                // process writes through it, but another process can still change or truncate
                // the file underneath it (changed bytes, or SIGBUS on the lost pages). The caller
                // chose `DataAccess::Map`, whose documentation states when that is acceptable.
                #[allow(unsafe_code)]
                let map =
                    unsafe { memmap2::MmapOptions::new().len(size).map(&file) }.map_err(|e| Error::io(&name, e))?;
                Ok(Bytes::from_owner(map))
            }
            DataAccess::Read | DataAccess::Verdict => {
                let mut buf = Vec::new();
                buf.try_reserve_exact(size).map_err(|_| {
                    Error::io(
                        &name,
                        std::io::Error::new(std::io::ErrorKind::OutOfMemory, "cannot allocate file buffer"),
                    )
                })?;
                (&file).seek(SeekFrom::Start(0)).map_err(|e| Error::io(&name, e))?;
                let mut reader = (&file).take(len);
                reader.read_to_end(&mut buf).map_err(|e| Error::io(&name, e))?;
                let mut probe = [0u8; 1];
                let grew = (&file).read(&mut probe).map_err(|e| Error::io(&name, e))? > 0;
                if buf.len() != size || grew {
                    return Err(Error::io(
                        &name,
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file changed size while it was read"),
                    ));
                }
                Ok(Bytes::from(buf))
            }
        }
    }
}

fn describe(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

impl Input {
    /// `len` bytes at `offset`, read without moving a shared cursor (`pread`), or fewer where
    /// the input ends. Nothing else is kept, so a caller reads a large file piece by piece.
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        match &self.source {
            Source::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                Ok(b.slice(start..start.saturating_add(len).min(b.len())))
            }
            Source::File(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = Vec::new();
                buf.try_reserve_exact(len).map_err(|_| {
                    Error::io(
                        &self.name,
                        std::io::Error::new(std::io::ErrorKind::OutOfMemory, "cannot allocate read buffer"),
                    )
                })?;
                buf.resize(len, 0);
                let mut filled = 0;
                while filled < len {
                    match f.read_at(&mut buf[filled..], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io(&self.name, e)),
                    }
                }
                buf.truncate(filled);
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Exactly `len` bytes at `offset`: a file that is now shorter than it was when its length
    /// was read changed under the reader, which is an I/O error.
    pub(crate) fn read_exact_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let bytes = self.read_at(offset, len)?;
        if bytes.len() != len {
            return Err(Error::io(
                &self.name,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file changed size while it was read"),
            ));
        }
        Ok(bytes)
    }

    /// Whether the input is already in memory (then reading it whole costs nothing).
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.source, Source::Bytes(_))
    }

    /// The whole content for a guest that needs all of it (image decoders): refused with
    /// [`Error::LimitExceeded`] before any read when it exceeds `max_file_bytes`, or cannot fit
    /// in the guest's memory cap, which must also hold the decoded pixels.
    pub(crate) fn read_for_guest(self, limits: &Limits, access: DataAccess) -> Result<(PathBuf, Bytes)> {
        let file = self.name().to_path_buf();
        let len = self.len()?;
        limits.check(Limit::MaxFileBytes, len, &file)?;
        limits.check(Limit::GuestMemoryBytes, len, &file)?;
        let data = self.contents(len, access)?;
        Ok((file, data))
    }
}

impl Input {
    /// Reads the whole content into memory (no mapping), refusing it first if it is larger than
    /// `limits.max_file_bytes`. For callers that look at the bytes themselves, e.g. to
    /// [`sniff`](crate::sniff) them before choosing what to open them as.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] or [`Error::Io`].
    pub fn read_all(self, limits: &Limits) -> Result<Bytes> {
        let len = self.len()?;
        limits.check(Limit::MaxFileBytes, len, &self.name)?;
        self.contents(len, DataAccess::Read)
    }

    /// Reads the whole content into memory (no mapping) for a guest that decodes the file whole
    /// (RAW files, images): refused before anything is read when it is larger than
    /// `limits.max_file_bytes` or than the guest's memory cap `limits.guest_memory_bytes`,
    /// which must hold it as well as what is decoded from it. This is what `sandload convert`
    /// reads its input with.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] (naming the limit) or [`Error::Io`].
    pub fn read_for_decoding(self, limits: &Limits) -> Result<Bytes> {
        self.read_for_guest(limits, DataAccess::Read).map(|(_, data)| data)
    }
}
