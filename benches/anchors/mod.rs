//! What a cautious user would build instead of sandload, for the benches to compare against in
//! the same run: rawler isolated in a process.
//!
//! - [`ChildPerFile`]: a fresh process per file (spawn + rlimits, as process-based loaders do).
//!   The child is this bench binary re-executed; it reads the file's bytes from stdin, decodes
//!   them with rawler (its default rayon pool) and writes the u16 samples to stdout.
//! - [`PreForked`]: a zygote process started once, which warms rawler up (its camera catalogue)
//!   and then forks one child per file; the child decodes, writes the samples and exits, so a
//!   hostile file can only take down its own child. Fork-after-warm-up is the cheapest process
//!   isolation there is: no exec, no catalogue parse, copy-on-write memory.
//!
//! - [`PersistentPool`]: long-lived, seccomp-locked native workers fed over shared memory (see
//!   `persistent`): the fastest process design, and the one that reuses a process across files.
//!
//! The first two get the bytes over a pipe and return the samples over one, as sandload copies the bytes
//! into its guest and the samples out. Both set `RLIMIT_AS` (8 GiB) and `RLIMIT_CPU` (60 s) in
//! the child. A bench's `main` must call [`serve_if_child`] first.

#![allow(dead_code)] // each bench uses part of it

use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;

mod persistent;

pub use persistent::PersistentPool;

const CHILD_ENV: &str = "SANDLOAD_BENCH_CHILD";

/// Does this process's job and exits if it was started as an anchor's child.
pub fn serve_if_child() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("decode") => {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes).expect("reading the file from stdin");
            let samples = decode_samples(&bytes);
            let mut out = raw_fd(1);
            out.write_all(&samples).expect("writing the samples");
            std::process::exit(0);
        }
        Ok("zygote") => zygote(),
        Ok("worker") => persistent::worker(),
        _ => {}
    }
}

/// rawler's samples as little-endian bytes (what sandload's `RawImage::samples` holds).
pub fn decode_samples(bytes: &[u8]) -> Vec<u8> {
    let samples = decode_u16(bytes);
    let mut out = vec![0u8; samples.len() * 2];
    write_le(&samples, &mut out);
    out
}

/// rawler's samples, decoded natively.
pub fn decode_u16(bytes: &[u8]) -> Vec<u16> {
    let source = RawSource::new_from_slice(bytes);
    let decoder = rawler::get_decoder(&source).expect("a RAW file");
    let image = decoder.raw_image(&source, &RawDecodeParams::default(), false).expect("decodes");
    match image.data {
        rawler::RawImageData::Integer(v) => v,
        rawler::RawImageData::Float(_) => panic!("float RAW"),
    }
}

/// `samples` as little-endian bytes into `out` (exactly twice as long). A plain loop the compiler
/// turns into a copy on little-endian machines: the anchors must not pay for a slow conversion.
fn write_le(samples: &[u16], out: &mut [u8]) {
    for (pair, s) in out.chunks_exact_mut(2).zip(samples) {
        pair.copy_from_slice(&s.to_le_bytes());
    }
}

/// The next u64 length prefix on `input`; exits the process when the parent closed it (the
/// worker protocols' end).
fn next_length(input: &mut impl Read) -> usize {
    let mut len = [0u8; 8];
    if input.read_exact(&mut len).is_err() {
        std::process::exit(0);
    }
    u64::from_le_bytes(len) as usize
}

/// An unbuffered handle on a standard descriptor, never closed by us.
fn raw_fd(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: 0 and 1 are open for the life of the process; ManuallyDrop never closes them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

fn set_limits() -> std::io::Result<()> {
    for (resource, value) in [(libc::RLIMIT_AS, 8u64 << 30), (libc::RLIMIT_CPU, 60)] {
        let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
        // SAFETY: setrlimit reads the struct we pass; it is async-signal-safe (pre_exec, fork).
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn command(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the bench binary"));
    command.env(CHILD_ENV, role).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    command
}

/// rawler in a new process per file.
pub struct ChildPerFile;

impl ChildPerFile {
    pub fn decode(&self, bytes: &[u8]) -> Vec<u8> {
        let mut command = command("decode");
        // SAFETY: set_limits only calls setrlimit, which is async-signal-safe.
        unsafe { command.pre_exec(set_limits) };
        let mut child = command.spawn().expect("spawning the decoder process");
        // The child reads all of stdin before it writes: write, close, then read.
        child.stdin.take().unwrap().write_all(bytes).expect("sending the file");
        let mut samples = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut samples).expect("reading the samples");
        assert!(child.wait().expect("waiting for the decoder").success(), "the decoder process failed");
        samples
    }
}

/// A warmed-up zygote that forks one decoder process per file.
pub struct PreForked {
    zygote: Child,
    to: ChildStdin,
    from: ChildStdout,
}

impl PreForked {
    pub fn start() -> PreForked {
        let mut zygote = command("zygote").spawn().expect("spawning the zygote");
        let to = zygote.stdin.take().unwrap();
        let mut from = zygote.stdout.take().unwrap();
        let mut ready = [0u8; 1];
        from.read_exact(&mut ready).expect("the zygote's ready byte");
        PreForked { zygote, to, from }
    }

    pub fn decode(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.to.write_all(&(bytes.len() as u64).to_le_bytes()).unwrap();
        self.to.write_all(bytes).unwrap();
        let mut tag = [0u8; 1];
        self.from.read_exact(&mut tag).unwrap();
        assert_eq!(tag[0], 1, "the forked decoder died before answering");
        let mut len = [0u8; 8];
        self.from.read_exact(&mut len).unwrap();
        let mut samples = vec![0u8; u64::from_le_bytes(len) as usize];
        self.from.read_exact(&mut samples).unwrap();
        let mut status = [0u8; 5];
        self.from.read_exact(&mut status).unwrap();
        assert_eq!(status, [0; 5], "the forked decoder failed");
        samples
    }
}

impl Drop for PreForked {
    fn drop(&mut self) {
        let _ = self.zygote.kill();
        let _ = self.zygote.wait();
    }
}

/// The zygote: warm up, then per file (u64 length + bytes on stdin) fork a child that decodes
/// and writes `1, u64 length, samples`; after reaping it, write `0, i32 wait status`.
fn zygote() -> ! {
    // Build rawler's camera catalogue once, before any fork (that is the point of pre-forking).
    let _ = rawler::get_decoder(&RawSource::new_from_slice(&[]));
    let (mut input, mut output) = (raw_fd(0), raw_fd(1));
    output.write_all(&[0]).unwrap();
    loop {
        let mut bytes = vec![0u8; next_length(&mut *input)];
        input.read_exact(&mut bytes).unwrap();
        // SAFETY: the zygote is single-threaded (it never started rayon or any other thread), so
        // the child is a complete copy of it.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let _ = set_limits();
                let samples = decode_samples(&bytes);
                let mut answer = vec![1u8];
                answer.extend_from_slice(&(samples.len() as u64).to_le_bytes());
                output.write_all(&answer).unwrap();
                output.write_all(&samples).unwrap();
                // SAFETY: leaves the child without running the zygote's exit handlers.
                unsafe { libc::_exit(0) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                let mut answer = vec![0u8];
                answer.extend_from_slice(&status.to_le_bytes());
                output.write_all(&answer).unwrap();
            }
        }
    }
}
