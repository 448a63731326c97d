//! Writing outputs atomically, without trusting the output directory's other entries.

use std::io::Write;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Writes `bytes` to `path` atomically and without trusting its directory's other entries.
///
/// The temporary file is created through a `Dir` of the output's directory with cap-tempfile:
/// an anonymous `O_TMPFILE` (or, where that is missing, an `O_EXCL` file with a random name), mode
/// 0600, so no name an attacker can predict is ever opened: a symlink planted there cannot
/// redirect the write and a FIFO cannot block it. It is written, fsynced, linked under a random
/// name, renamed over `path` (a symlink at `path` is replaced, not followed) and the directory is
/// fsynced, so after a crash there is the old file or the whole new one. The output keeps mode
/// 0600: decoded user data stays private until its owner shares it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use cap_std::fs::PermissionsExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("output has no file name"))?;
    let dir = Dir::open_ambient_dir(parent, ambient_authority())?;
    let mut tmp = cap_tempfile::TempFile::new(&dir)?;
    tmp.as_file().set_permissions(cap_std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On error the temporary file is removed (or was never linked) by TempFile's drop.
    tmp.replace(name)?;
    sync_dir(&dir)
}

/// fsyncs the directory `dir` itself (cap-std directory handles may be `O_PATH`, which cannot
/// be synced: open it for reading first).
pub fn sync_dir(dir: &Dir) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}
