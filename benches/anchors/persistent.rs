//! The strongest process design sandload is measured against: a pool of long-lived native decoder
//! processes (as glycin 2.x pools its loaders), each locked down and fed one file at a time.
//!
//! Each worker is this bench binary re-executed (role `worker`). Before it takes any file it:
//! maps its shared-memory region (a memfd the parent created and put on descriptor 3), builds
//! rawler's camera catalogue and its one-thread rayon pool by decoding two small DNGs, sets
//! `RLIMIT_AS` (8 GiB), and installs a seccomp filter on all its threads (`TSYNC`) that allows only
//! what decoding in memory needs: `read`/`write` (on the descriptors it has: its pipes), memory
//! management (`mmap`, `munmap`, `mremap`, `mprotect`, `brk`, `madvise`), `futex`, `sched_yield`,
//! signal return and exit. Anything else (`open`, `socket`, `execve`, `clone`, ...) kills the
//! process. `PR_SET_NO_NEW_PRIVS` is set first, as seccomp requires.
//!
//! Per file: the parent copies the bytes into the region's input half and writes their length on
//! the worker's stdin; the worker decodes on one thread (like a guest: one file, one thread),
//! writes the u16 samples into the region's output half and answers `status, length` on its
//! stdout; the parent copies the samples out (the caller owns them, as with sandload). A worker
//! that does not answer within the deadline is killed and replaced; one that dies is replaced.
//!
//! Its weakness, which this anchor keeps (it is the point of measuring it): a worker is reused, so
//! state a hostile file leaves in it (a corrupted allocator, a poisoned cache) is seen by the files
//! after it. Replacing the worker per file would make it the pre-forked anchor.
//!
//! Linux on x86-64 only (the seccomp filter checks that architecture's syscall table).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{command, decode_samples, decode_u16, next_length, raw_fd, write_le};

/// Bytes of shared memory per worker: input half, then output half (sparse: only what is written
/// is ever backed).
const REGION: usize = 1 << 30;
const OUTPUT_AT: usize = REGION / 4;
/// How long a worker may take for one file before it is killed and replaced.
const DEADLINE: Duration = Duration::from_secs(60);
/// The descriptor the worker finds its region on.
const REGION_FD: i32 = 3;

struct Region {
    ptr: *mut u8,
}

// SAFETY: the mapping is process-wide memory; a `Worker` (and so its region) is used by one
// thread at a time (the pool hands it out under a mutex).
unsafe impl Send for Region {}

impl Region {
    fn map(fd: i32) -> Region {
        // SAFETY: maps `REGION` bytes of a memfd at least that long, shared, at an address the
        // kernel picks; unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), REGION, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of the shared region: {}", std::io::Error::last_os_error());
        Region { ptr: ptr.cast() }
    }

    fn slice(&self, at: usize, len: usize) -> &[u8] {
        assert!(at + len <= REGION, "{len} bytes at {at} exceed the shared region");
        // SAFETY: in bounds of the mapping; the other process does not write this range while we
        // read it (the pipe protocol alternates).
        unsafe { std::slice::from_raw_parts(self.ptr.add(at), len) }
    }

    fn slice_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= REGION, "{len} bytes at {at} exceed the shared region");
        // SAFETY: as in `slice`, and we hold `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps what `map` mapped.
        unsafe { libc::munmap(self.ptr.cast(), REGION) };
    }
}

/// One worker process and its region.
struct Worker {
    child: Child,
    to: ChildStdin,
    from: ChildStdout,
    region: Region,
}

impl Worker {
    fn start() -> Worker {
        // SAFETY: memfd_create with a static name; the descriptor is owned below.
        let fd = unsafe { libc::memfd_create(c"sandload-anchor".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is ours.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall on our descriptor.
        assert_eq!(unsafe { libc::ftruncate(fd, REGION as libc::off_t) }, 0, "ftruncate of the region");
        let mut command = command("worker");
        command.env("RAYON_NUM_THREADS", "1");
        let raw = memfd.as_raw_fd();
        // SAFETY: dup2 and setrlimit are async-signal-safe. dup2 onto 3 clears close-on-exec.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(raw, REGION_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let limit = libc::rlimit { rlim_cur: 8 << 30, rlim_max: 8 << 30 };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut child = command.spawn().expect("spawning a persistent worker");
        let to = child.stdin.take().unwrap();
        let mut from = child.stdout.take().unwrap();
        let mut ready = [0u8; 1];
        from.read_exact(&mut ready).expect("the worker's ready byte (did seccomp kill it during set-up?)");
        let region = Region::map(memfd.as_raw_fd());
        Worker { child, to, from, region }
    }

    /// Decodes `bytes`; `None` if the worker died or ran out of time (it is then unusable).
    fn decode(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        assert!(bytes.len() <= OUTPUT_AT, "file larger than the region's input half");
        self.region.slice_mut(0, bytes.len()).copy_from_slice(bytes);
        self.to.write_all(&(bytes.len() as u64).to_le_bytes()).ok()?;
        let mut poll = libc::pollfd { fd: self.from.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd on our pipe.
        if unsafe { libc::poll(&mut poll, 1, DEADLINE.as_millis() as i32) } != 1 {
            return None;
        }
        let mut answer = [0u8; 9];
        self.from.read_exact(&mut answer).ok()?;
        let len = u64::from_le_bytes(answer[1..].try_into().unwrap()) as usize;
        // The worker is untrusted: its length is checked against the region before use.
        if answer[0] != 0 || len > REGION - OUTPUT_AT {
            return None;
        }
        Some(self.region.slice(OUTPUT_AT, len).to_vec())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `workers` persistent workers; each call takes a free one (waiting if none is free).
pub struct PersistentPool {
    free: Mutex<Vec<Worker>>,
    freed: Condvar,
}

impl PersistentPool {
    pub fn start(workers: usize) -> PersistentPool {
        PersistentPool { free: Mutex::new((0..workers).map(|_| Worker::start()).collect()), freed: Condvar::new() }
    }

    /// The samples of `bytes`, decoded by a pooled worker. Panics if the worker fails (a bench
    /// only feeds it valid files); the failed worker is replaced first.
    pub fn decode(&self, bytes: &[u8]) -> Vec<u8> {
        let mut worker = {
            let mut free = self.free.lock().unwrap();
            loop {
                if let Some(w) = free.pop() {
                    break w;
                }
                free = self.freed.wait(free).unwrap();
            }
        };
        let samples = worker.decode(bytes);
        if samples.is_none() {
            worker = Worker::start();
        }
        self.free.lock().unwrap().push(worker);
        self.freed.notify_one();
        samples.expect("the persistent worker failed on a valid file")
    }
}

/// The worker process: set up, lock down, then serve files until stdin closes.
pub(super) fn worker() -> ! {
    let mut region = Region::map(REGION_FD);
    // A long-lived worker keeps its heap: without this glibc hands each frame-sized buffer back to
    // the kernel when it is freed and page-faults it in again for the next file (~12k faults, two
    // thirds of a 12 MP decode's time here), which an in-process decoder's reused heap never pays.
    // SAFETY: mallopt only sets allocator parameters; no allocation is in flight on another
    // thread (the worker is single-threaded until rawler's pool starts below).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    // Warm up before the lockdown: rawler's catalogue, its rayon pool (thread creation is denied
    // afterwards), both DNG paths.
    for lossless_jpeg in [false, true] {
        let dng = sandload_samples::Dng { lossless_jpeg, ..sandload_samples::Dng::patterned(64, 64) };
        decode_samples(&dng.to_bytes());
    }
    lock_down();
    let (mut input, mut output) = (raw_fd(0), raw_fd(1));
    output.write_all(&[0]).unwrap();
    loop {
        let len = next_length(&mut *input);
        let samples = decode_u16(region.slice(0, len.min(OUTPUT_AT)));
        let out_len = samples.len() * 2;
        let fits = out_len <= REGION - OUTPUT_AT;
        if fits {
            write_le(&samples, region.slice_mut(OUTPUT_AT, out_len));
        }
        let mut answer = [u8::from(!fits); 9];
        answer[1..].copy_from_slice(&(out_len as u64).to_le_bytes());
        output.write_all(&answer).unwrap();
    }
}

/// seccomp: the syscalls decoding in memory needs, on every thread of the process; anything else
/// kills it.
fn lock_down() {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let allowed = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigreturn,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    let stmt = |code, k| libc::sock_filter { code, jt: 0, jf: 0, k };
    let mut program = vec![
        // seccomp_data.arch (offset 4): anything but x86-64 is killed (no 32-bit syscall table).
        stmt(LD_W_ABS, 4),
        libc::sock_filter { code: JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        // seccomp_data.nr (offset 0)
        stmt(LD_W_ABS, 0),
    ];
    for nr in allowed {
        // If equal, skip the kill below and land on the allow.
        program.push(libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: nr as u32 });
        program.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    }
    program.push(stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: prctl and seccomp with a valid filter program that outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "PR_SET_NO_NEW_PRIVS");
        let done = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(done, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}
