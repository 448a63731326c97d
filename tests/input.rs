//! Inputs come only through capabilities: a `Dir` grants its subtree and nothing else, and
//! anything but a regular file is refused before it can block or mislead the reader.

use std::sync::OnceLock;

use cap_std::ambient_authority;
use sandload::{DataAccess, Error, Input, Sandbox};
use sandload_samples as samples;

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

/// A directory tree: `<root>/granted/model.safetensors` and `<root>/secret.safetensors`.
fn tree() -> (std::path::PathBuf, cap_std::fs::Dir) {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "input-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(root.join("granted/sub")).unwrap();
    std::fs::write(root.join("granted/model.safetensors"), samples::small_checkpoint()).unwrap();
    std::fs::write(root.join("secret.safetensors"), samples::small_checkpoint()).unwrap();
    let dir = cap_std::fs::Dir::open_ambient_dir(root.join("granted"), ambient_authority()).unwrap();
    (root, dir)
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[track_caller]
fn assert_io(result: Result<Input, Error>, what: &str) -> std::io::Error {
    match result {
        Err(Error::Io { source, .. }) => source,
        Err(other) => panic!("{what}: expected Io, got {other}"),
        Ok(_) => panic!("{what}: must be refused"),
    }
}

#[test]
fn a_file_inside_the_granted_dir_opens() {
    let (_root, dir) = tree();
    let ckpt = sandbox().open_safetensors(Input::open(&dir, "model.safetensors").unwrap()).unwrap();
    assert_eq!(ckpt.len(), 3);
    assert_eq!(ckpt.file().to_str(), Some("model.safetensors"));
    // `sub/../model.safetensors` stays inside: allowed.
    assert!(Input::open(&dir, "sub/../model.safetensors").is_ok());
}

#[test]
fn dot_dot_out_of_the_dir_is_refused() {
    let (_root, dir) = tree();
    let e = assert_io(Input::open(&dir, "../secret.safetensors"), "..");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert_io(Input::open(&dir, "sub/../../secret.safetensors"), "sub/../..");
}

#[test]
fn absolute_paths_are_refused() {
    let (root, dir) = tree();
    let abs = root.join("secret.safetensors");
    assert_io(Input::open(&dir, &abs), "absolute");
    assert_io(Input::open(&dir, "/etc/passwd"), "/etc/passwd");
}

#[test]
fn symlinks_leaving_the_dir_are_refused() {
    let (root, dir) = tree();
    std::os::unix::fs::symlink(root.join("secret.safetensors"), root.join("granted/link-out")).unwrap();
    std::os::unix::fs::symlink("../secret.safetensors", root.join("granted/link-rel")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("granted/zero")).unwrap();
    std::os::unix::fs::symlink("/proc/self/mem", root.join("granted/mem")).unwrap();
    for name in ["link-out", "link-rel", "zero", "mem"] {
        assert_io(Input::open(&dir, name), name);
    }
    // A symlink that stays inside is followed.
    std::os::unix::fs::symlink("model.safetensors", root.join("granted/link-in")).unwrap();
    assert!(sandbox().open_safetensors(Input::open(&dir, "link-in").unwrap()).is_ok());
}

#[test]
fn directories_and_fifos_are_refused_without_blocking() {
    let (root, dir) = tree();
    let e = assert_io(Input::open(&dir, "sub"), "directory");
    assert!(e.to_string().contains("directory"), "{e}");
    let fifo = root.join("granted/fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    // Opening a FIFO for reading would block forever with no writer: it must be refused first.
    let e = assert_io(Input::open(&dir, "fifo"), "fifo");
    assert!(e.to_string().contains("FIFO"), "{e}");
}

#[test]
fn open_files_and_both_data_access_modes_agree() {
    let (root, _dir) = tree();
    let path = root.join("granted/model.safetensors");
    let mapped = sandbox().open_safetensors(Input::from_file(std::fs::File::open(&path).unwrap(), "m")).unwrap();
    let reader = Sandbox::builder().data_access(DataAccess::Read).build().unwrap();
    let read = reader.open_safetensors(Input::from_file(std::fs::File::open(&path).unwrap(), "r")).unwrap();
    let bytes = sandbox().open_safetensors(Input::from_bytes(std::fs::read(&path).unwrap(), "b")).unwrap();
    for name in ["embed.weight", "layer0.bias", "step"] {
        let (a, b, c) = (mapped.tensor(name).unwrap(), read.tensor(name).unwrap(), bytes.tensor(name).unwrap());
        assert_eq!(a.data, b.data);
        assert_eq!(a.data, c.data);
        assert_eq!((a.dtype, a.shape), (b.dtype, b.shape));
    }
}

#[test]
fn empty_file_is_malformed_not_a_crash() {
    let (root, dir) = tree();
    std::fs::write(root.join("granted/empty"), b"").unwrap();
    let err = sandbox().open_safetensors(Input::open(&dir, "empty").unwrap()).unwrap_err();
    assert_eq!(err.rule(), Some("header_too_small"), "{err}");
}

#[test]
fn tensor_data_is_zero_copy() {
    let (_root, dir) = tree();
    let ckpt = sandbox().open_safetensors(Input::open(&dir, "model.safetensors").unwrap()).unwrap();
    let a = ckpt.tensor("embed.weight").unwrap().data;
    let b = ckpt.tensor("layer0.bias").unwrap().data;
    // Both views point into one buffer, back to back, as in the file.
    assert_eq!(a.as_ptr() as usize + a.len(), b.as_ptr() as usize);
}

#[test]
fn a_file_changing_while_it_is_read_gives_a_verdict_or_a_typed_error() {
    // A writer keeps growing, truncating and restoring the file while the reader opens it. With
    // `DataAccess::Read` the file is read once into memory and judged on that copy: every open
    // is either the valid checkpoint, exactly, or a typed error naming the file. (With
    // `DataAccess::Map`, a truncation under a live mapping raises SIGBUS: documented there.)
    let (root, dir) = tree();
    let path = root.join("granted/model.safetensors");
    let valid = samples::small_checkpoint();
    let reference = sandbox().open_safetensors(Input::from_bytes(valid.clone(), "reference")).unwrap();
    let reader = Sandbox::builder().data_access(DataAccess::Read).build().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut accepted, mut refused) = (0, std::collections::BTreeMap::<String, usize>::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::unix::fs::FileExt;
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                match i % 3 {
                    0 => file.set_len((valid.len() / 2) as u64).unwrap(),
                    1 => file.write_all_at(&[0u8; 4096], file.metadata().unwrap().len()).unwrap(),
                    _ => {
                        file.set_len(0).unwrap();
                        file.write_all_at(&valid, 0).unwrap();
                    }
                }
                i += 1;
            }
        });
        for _ in 0..400 {
            let result = Input::open(&dir, "model.safetensors").and_then(|input| reader.open_safetensors(input));
            match result {
                Ok(ckpt) => {
                    accepted += 1;
                    for name in ["embed.weight", "layer0.bias", "step"] {
                        assert_eq!(ckpt.tensor(name).unwrap().data, reference.tensor(name).unwrap().data);
                    }
                }
                Err(e) => {
                    assert!(matches!(e, Error::Io { .. }) || e.is_rejection(), "{e}");
                    assert_eq!(e.file().and_then(|f| f.to_str()), Some("model.safetensors"), "{e}");
                    *refused.entry(e.kind().to_string()).or_default() += 1;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    eprintln!("while the file changed: {accepted} opens accepted it intact, refused: {refused:?}");
    assert!(!refused.is_empty(), "the writer never raced the reader");
}
