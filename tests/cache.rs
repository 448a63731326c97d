//! The compiled-guest cache: a second Sandbox loads instead of compiling, and a corrupt or
//! foreign entry is a miss, never a failure.

use std::time::Instant;

use cap_std::ambient_authority;
use sandload::{Input, Sandbox, samples};

fn cache_dir() -> (std::path::PathBuf, cap_std::fs::Dir) {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    let dir = cap_std::fs::Dir::open_ambient_dir(&path, ambient_authority()).unwrap();
    (path, dir)
}

fn open_with(dir: &cap_std::fs::Dir) -> std::time::Duration {
    let started = Instant::now();
    let sandbox = Sandbox::builder().cache_dir(dir.try_clone().unwrap()).build().unwrap();
    let ckpt = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "c.safetensors")).unwrap();
    assert_eq!(ckpt.len(), 3);
    started.elapsed()
}

#[test]
fn second_sandbox_loads_from_cache_and_corruption_is_a_miss() {
    let (path, dir) = cache_dir();
    let cold = open_with(&dir);
    let entries: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert!(entry.file_name().unwrap().to_str().unwrap().starts_with("safetensors-header-"));
    assert!(entry.extension().is_some_and(|e| e == "cwasm"));

    let warm = open_with(&dir);
    eprintln!("first use: {cold:?} compiling, {warm:?} from cache");

    // A corrupt entry: loading fails, sandload recompiles and overwrites it.
    std::fs::write(entry, b"not a compiled module").unwrap();
    open_with(&dir);
    assert!(std::fs::metadata(entry).unwrap().len() > 1000, "entry was rewritten");
}
