//! The compiled-guest cache: a second Sandbox loads instead of compiling, and a corrupt or
//! foreign entry is a miss, never a failure.

use std::time::Instant;

use cap_std::ambient_authority;
use sandload::{Input, Sandbox};
use sandload_samples as samples;

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

/// A cache directory (mode 0700) holding the entries of a run that compiled two guests: the
/// safetensors-header entry, and the image-decoder one. The image decoder's entry is a valid
/// compiled module with a valid checksum, just not the right one: loaded in place of the
/// safetensors guest, every call would fail. It stands in for an entry someone else planted.
fn populated(name: &str) -> (std::path::PathBuf, cap_std::fs::Dir, std::path::PathBuf, Vec<u8>, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = cap_std::fs::Dir::open_ambient_dir(&path, ambient_authority()).unwrap();
    let sandbox = Sandbox::builder().cache_dir(dir.try_clone().unwrap()).build().unwrap();
    sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "c.safetensors")).unwrap();
    sandbox.decode_image(Input::from_bytes(samples::png_image(4, 4), "i.png")).unwrap();
    let entry = |prefix: &str| {
        let mut found: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found.pop().unwrap()
    };
    let header = entry("safetensors-header-");
    let image = entry("image-decoder-");
    for p in [&header, &image] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "entries are private: {p:?}");
    }
    let names: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    let good = std::fs::read(&header).unwrap();
    let foreign = std::fs::read(&image).unwrap();
    (path, dir, header, good, foreign)
}

/// Opens the small checkpoint through a new Sandbox on `dir`: must work, whatever the cache holds.
fn opens_correctly(dir: &cap_std::fs::Dir) {
    let sandbox = Sandbox::builder().cache_dir(dir.try_clone().unwrap()).build().unwrap();
    let ckpt = sandbox.open_safetensors(Input::from_bytes(samples::small_checkpoint(), "c.safetensors"));
    assert_eq!(ckpt.expect("the planted entry was loaded").len(), 3);
}

#[test]
fn a_bit_flipped_entry_is_not_loaded_and_is_rewritten() {
    let (_path, dir, header, good, _) = populated("flip");
    for at in [good.len() / 3, good.len() / 2, good.len() - 1] {
        let mut tampered = good.clone();
        tampered[at] ^= 0x40;
        std::fs::write(&header, &tampered).unwrap();
        opens_correctly(&dir);
        // Recompiled and rewritten (compilation is deterministic): the checksum caught it.
        assert!(std::fs::read(&header).unwrap() == good, "byte {at} flipped: the tampered entry was kept");
    }
}

#[test]
fn a_group_or_world_writable_cache_directory_is_ignored() {
    use std::os::unix::fs::PermissionsExt;
    for mode in [0o770, 0o707, 0o777] {
        let (path, dir, header, _, foreign) = populated(&format!("dirmode-{mode:o}"));
        std::fs::write(&header, &foreign).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        opens_correctly(&dir);
        assert!(std::fs::read(&header).unwrap() == foreign, "an untrusted directory is not written either");
    }
}

#[test]
fn an_entry_writable_by_others_or_owned_by_someone_else_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let (_path, dir, header, _, foreign) = populated("entry");
    std::fs::write(&header, &foreign).unwrap();
    for mode in [0o620, 0o602, 0o666] {
        std::fs::set_permissions(&header, std::fs::Permissions::from_mode(mode)).unwrap();
        opens_correctly(&dir);
        // Replaced by a fresh, private entry.
        assert_eq!(std::fs::metadata(&header).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&header, &foreign).unwrap();
        std::fs::set_permissions(&header, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Owned by another user: only root can arrange that.
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&header, Some(12345), None).unwrap();
        opens_correctly(&dir);
    } else {
        eprintln!("not root: skipping the foreign-owner case");
    }
    // A symlink to a valid entry elsewhere is not followed.
    std::fs::remove_file(&header).unwrap();
    let elsewhere = header.with_file_name("elsewhere");
    std::fs::write(&elsewhere, &foreign).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &header).unwrap();
    opens_correctly(&dir);
}
