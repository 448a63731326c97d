//! The CLI against a hostile environment: planted temporary names, files changing under it,
//! absurd options, names that try to forge a terminal or a log, and the exit-status contract.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandload::{Dtype, Limits, Sandbox};
use sandload_samples::{self as samples, Dng, Tensor};
use serde_json::Value;

fn sandload_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandload"));
    // Share the compiled-guest cache of the other CLI tests.
    cmd.env("SANDLOAD_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandload-test-cache"));
    cmd
}

fn sandload(args: &[&str]) -> Output {
    sandload_cmd().args(args).output().expect("run sandload")
}

fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-hardening-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

// ---- 1. convert's output -------------------------------------------------------------------

/// The old code wrote to `.{name}.sandload-{pid}.tmp`: a symlink planted there redirected the
/// write to any file the user can write, and a FIFO there blocked the process forever. Pids are
/// predictable, so plant both for a range of them, and race the planting against the decode.
#[test]
fn convert_ignores_symlinks_and_fifos_at_predictable_temp_names() {
    let dir = tmpdir("plant");
    let input = write(&dir, "shot.dng", &Dng::patterned(64, 48).to_bytes());
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let plant = |pid: u32| {
        for name in ["out.png", "out2.png"] {
            let tmp = dir.join(format!(".{name}.sandload-{pid}.tmp"));
            if pid % 2 == 0 {
                let _ = std::os::unix::fs::symlink(&victim, &tmp);
            } else {
                let _ = Command::new("mkfifo").arg(&tmp).status();
            }
        }
    };
    // The next pids the system will hand out, planted before the run...
    let base = std::process::id();
    for pid in base..base + 400 {
        plant(pid);
    }
    for output in ["out.png", "out2.png"] {
        let output = dir.join(output);
        let mut child = sandload_cmd()
            .args(["convert", &input, "-o", output.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // ... and the child's own, during the decode.
        plant(child.id());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("convert blocked on a planted temporary name");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "the symlink target was written");
        let image = sandload::image::open(&output).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
        let meta = std::fs::symlink_metadata(&output).unwrap();
        assert!(meta.is_file(), "the output is a regular file, not a followed symlink");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "output is private");
    }
}

/// A symlink at the output path itself is replaced, never followed.
#[test]
fn convert_replaces_a_symlink_at_the_output_instead_of_following_it() {
    let dir = tmpdir("outlink");
    let input = write(&dir, "in.png", &samples::png_image(6, 5));
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let output = dir.join("out.png");
    std::os::unix::fs::symlink(&victim, &output).unwrap();
    let out = sandload(&["convert", &input, "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&output).unwrap().is_file());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "no temporary file left behind: {names:?}");
}

/// `convert` decodes the whole file in a guest: an input larger than the guest's memory is
/// refused from its size, before it is read (the old code read it all first, then failed).
#[test]
fn convert_refuses_an_input_larger_than_guest_memory_before_reading_it() {
    let dir = tmpdir("big");
    let path = dir.join("huge.png");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"\x89PNG\r\n\x1a\n").unwrap();
    file.set_len(8 << 30).unwrap(); // sparse: 8 GiB that cost nothing on disk
    let output = dir.join("out.png");
    for command in ["convert", "inspect"] {
        let started = Instant::now();
        let mut args = vec![command, path.to_str().unwrap(), "--max-memory", "67108864"];
        if command == "convert" {
            args.extend(["-o", output.to_str().unwrap()]);
        }
        let out = sandload(&args);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let said = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(said.contains("guest_memory_bytes is 67108864"), "{command}: {said}");
        assert!(started.elapsed() < Duration::from_secs(20), "{command} read the file: {:?}", started.elapsed());
    }
    assert!(!output.exists());
    // Zeros are no image: routed to the checkpoint path, which reads only its head, and refused
    // as a file of unknown format by both commands alike.
    let zeros = dir.join("zeros.png");
    std::fs::File::create(&zeros).unwrap().set_len(8 << 30).unwrap();
    let started = Instant::now();
    let out = sandload(&["convert", zeros.to_str().unwrap(), "-o", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown format"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "it read the file: {:?}", started.elapsed());
    assert!(!output.exists());
}

// ---- 3. files changing under the CLI -------------------------------------------------------

/// Another process truncating and rewriting the checkpoint while `inspect` runs: a mapped file
/// would kill the CLI with SIGBUS; read, it is a verdict or an I/O error, never a signal.
#[test]
fn inspect_survives_a_file_truncated_while_it_is_read() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tmpdir("truncate");
    let tensors: Vec<Tensor> =
        (0..8).map(|i| Tensor::patterned(&format!("layer{i}.weight"), Dtype::F32, &[512, 512])).collect();
    let full = samples::safetensors(&tensors, &[]);
    let path = dir.join("model.safetensors");
    std::fs::write(&path, &full).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path, full) = (Arc::clone(&stop), path.clone(), full.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(Ordering::Relaxed) {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                // Short for a while (what a mapped reader would fault on), then whole again.
                f.set_len(4096).unwrap();
                std::thread::sleep(Duration::from_millis(3));
                f.set_len(0).unwrap();
                (&f).write_all(&full).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let path = path.to_str().unwrap().to_string();
    let args: Vec<&str> = ["inspect", "--digest"].into_iter().chain(std::iter::repeat_n(path.as_str(), 20)).collect();
    for _ in 0..5 {
        let out = sandload(&args);
        assert_eq!(out.status.signal(), None, "killed by a signal: {}", stderr(&out));
        assert!(matches!(out.status.code(), Some(0 | 1 | 3)), "{:?}: {}", out.status, stderr(&out));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

// ---- 5. options and arithmetic -------------------------------------------------------------

#[test]
fn absurd_timeouts_and_memory_caps_are_usage_errors_not_panics() {
    let dir = tmpdir("options");
    let good = write(&dir, "model.safetensors", &samples::small_checkpoint());
    for timeout in ["1e19", "1e300", "inf", "-inf", "nan", "NaN", "-1", "0", "1e-12", "18446744073709551616"] {
        let out = sandload(&["inspect", "--timeout", timeout, &good]);
        assert_eq!(out.status.code(), Some(2), "--timeout {timeout}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "--timeout {timeout}: {}", stderr(&out));
    }
    for memory in ["4294967297", "18446744073709551615", "0"] {
        let out = sandload(&["inspect", "--max-memory", memory, &good]);
        assert_eq!(out.status.code(), Some(2), "--max-memory {memory}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "--max-memory {memory}: {}", stderr(&out));
    }
    // The largest accepted values work.
    let out = sandload(&["inspect", "--timeout", "31536000", "--max-memory", "4294967296", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `Duration::MAX` is a valid `guest_time` ("no deadline") and must not overflow `Instant + _`.
#[test]
fn guest_time_duration_max_does_not_panic() {
    let sandbox = Sandbox::with_limits(Limits::default().with_guest_time(Duration::MAX)).unwrap();
    let ckpt = sandbox.open_safetensors(sandload::Input::from_bytes(samples::small_checkpoint(), "m")).unwrap();
    assert_eq!(ckpt.len(), 3);
}

// ---- 6. output cannot forge a terminal or a log --------------------------------------------

const HOSTILE: [char; 14] = [
    '\u{1b}', '\u{9b}', '\u{7f}', '\u{85}', '\u{202e}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{061c}', '\u{200e}',
    '\u{200f}', '\n', '\r', '\u{2028}',
];

fn assert_clean(text: &str, what: &str) {
    for c in HOSTILE.iter().filter(|c| **c != '\n') {
        assert!(!text.contains(*c), "{what}: raw U+{:04X} in output: {text:?}", *c as u32);
    }
}

#[test]
fn names_metadata_and_paths_are_escaped_in_human_and_json_output() {
    let dir = tmpdir("escape");
    let evil_name = "w\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}txt.exe\u{2066}\u{200f}\u{061c}\u{7f}\u{85}";
    let evil_key = "k\u{1b}[31m\u{202e}";
    let evil_value = "v\u{9b}1A\nFAKE: accepted\u{2028}\u{202a}";
    let file = samples::safetensors(
        &[Tensor::patterned(evil_name, Dtype::U8, &[2])],
        &[(evil_key, evil_value), ("format", "pt")],
    );
    // A path with a newline, an escape and a bidi override in it.
    let name = "model\n\u{1b}[1Aok\u{202e}.safetensors";
    let path = dir.join(name);
    std::fs::write(&path, &file).unwrap();
    let path = path.to_str().unwrap();
    let missing = dir.join("gone\u{1b}]0;x\u{7}\n\u{9b}.safetensors");
    let missing = missing.to_str().unwrap();

    let out = sandload(&["inspect", path, missing]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_clean(&text, "human");
    // One line per file plus one per tensor and metadata entry: no forged line breaks.
    assert_eq!(text.lines().count(), 1 + 1 + 2 + 1, "{text}");
    assert!(text.contains("\\u{1b}[2J"), "{text}");
    assert!(text.contains("\\u{202e}"), "{text}");
    assert!(text.contains("model\\n\\u{1b}[1Aok"), "{text}");
    assert!(text.contains("gone\\u{1b}]0;x\\u{7}\\n\\u{9b}"), "{text}");

    let out = sandload(&["inspect", "--json", path, missing]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_clean(&text, "json");
    assert!(text.contains("\\u009b") && text.contains("\\u202e") && text.contains("\\u007f"), "{text}");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "two files and the summary");
    // Escaping changes the bytes, not the values.
    assert_eq!(lines[0]["path"], path);
    assert_eq!(lines[0]["tensors"][0]["name"], evil_name);
    assert_eq!(lines[0]["metadata"][evil_key], evil_value);
    assert_eq!(lines[1]["path"], missing);
    assert_eq!(lines[1]["error"]["kind"], "io");

    // convert's messages too.
    let out = sandload(&["convert", path, "-o", dir.join("x.png").to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert_clean(&stderr(&out), "convert stderr");
}

#[test]
fn camera_make_and_model_are_escaped() {
    let dir = tmpdir("camera");
    // The library escapes make and model itself; U+200F and U+061C were missing from its set.
    let dng = Dng {
        make: "Evil\u{1b}[2J\u{9b}\u{200f}".into(),
        model: "M\u{202e}1\n2\u{061c}\u{200e}".into(),
        ..Dng::patterned(16, 8)
    };
    let path = write(&dir, "cam.dng", &dng.to_bytes());
    let out = sandload(&["inspect", &path]);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_clean(&text, "human RAW");
    assert_eq!(text.lines().count(), 1, "{text}");
    let out = sandload(&["inspect", "--json", &path]);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_clean(&text, "json RAW");
    let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_clean(v["raw"]["model"].as_str().unwrap(), "model");
    assert_clean(v["raw"]["make"].as_str().unwrap(), "make");
}

// ---- 7. exit status ------------------------------------------------------------------------

#[test]
fn exit_status_contract() {
    let dir = tmpdir("status");
    let good = write(&dir, "good.safetensors", &samples::small_checkpoint());
    let pickle = write(&dir, "evil.safetensors", &samples::malicious_pickle());
    let missing = dir.join("missing.safetensors").to_str().unwrap().to_string();
    let subdir = dir.join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    let subdir = subdir.to_str().unwrap();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();

    let code = |args: &[&str]| {
        let out = sandload(args);
        assert!(out.status.code().is_some(), "{args:?}: {:?}", out.status);
        out.status.code().unwrap()
    };
    assert_eq!(code(&["inspect", &good]), 0);
    assert_eq!(code(&["inspect", &good, &pickle]), 1, "refused");
    assert_eq!(code(&["inspect", &missing]), 3, "missing file");
    assert_eq!(code(&["inspect", subdir]), 3, "a directory");
    assert_eq!(code(&["inspect", fifo]), 3, "a FIFO");
    assert_eq!(code(&["inspect", &pickle, &missing, &good]), 3, "3 wins over 1");
    assert_eq!(code(&["inspect", &missing, &pickle]), 3, "3 wins over 1, in any order");
    assert_eq!(code(&["inspect", "--json", &good, &pickle, subdir]), 3);
    assert_eq!(code(&["inspect", "--bogus", &good]), 2);
    assert_eq!(code(&["inspect"]), 2);

    let png = dir.join("out.png");
    let png = png.to_str().unwrap();
    let image = write(&dir, "in.png", &samples::png_image(4, 4));
    assert_eq!(code(&["convert", &image, "-o", png]), 0);
    assert_eq!(code(&["convert", &pickle, "-o", png]), 1);
    assert_eq!(code(&["convert", &missing, "-o", png]), 3);
    assert_eq!(code(&["convert", subdir, "-o", png]), 3);
    assert_eq!(code(&["convert", &image, "-o", dir.join("x.gif").to_str().unwrap()]), 2);

    // --help documents the contract.
    let help = String::from_utf8(sandload(&["--help"]).stdout).unwrap();
    for line in ["Exit status:", "0  every input was accepted", "1  some input was refused", "2  usage error", "3  "] {
        assert!(help.contains(line), "--help lacks {line:?}:\n{help}");
    }
}
