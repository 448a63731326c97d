//! A hostile guest, for sandload's own tests: it speaks the raw-decoder ABI (so tests can install
//! it with `SandboxBuilder::replace_guest(Guest::RawDecoder, ..)`) and does what a compromised
//! decoder would do. The "file" it is given names the attack (the whole file, or what follows
//! `sandload-attack:` in it):
//!
//! | file | the guest |
//! |---|---|
//! | `escape` | tries to reach anything outside its memory through WASI (files, directories, preopens, environment, arguments, stdin, sockets) and reports each attempt as a `raw_unsupported` error detail, one `attempt<TAB>outcome` per line |
//! | `alloc` | allocates (and touches) 1 MiB at a time, forever |
//! | `loop` | spins forever without allocating |
//! | `flood` | writes 64 MiB to stderr and to stdout, then traps |
//! | `exit` | calls WASI `proc_exit(0)` mid-call |
//! | `sleep` | `std::thread::sleep` for an hour (WASI `poll_oneoff` on a relative clock, through wasi-libc) |
//! | `poll` | a raw `poll_oneoff` with one subscription: a relative clock, one hour |
//! | `yield` | calls WASI `sched_yield` forever |
//! | `recurse` | unbounded recursion (native wasm stack frames, no linear-memory stack) |
//! | `huge-response` | answers with a well-formed error whose detail is 65 MiB (a response larger than the host accepts) |
//! | `lie-pixels`, `lie-region`, `lie-length`, `lie-cfa`, `lie-levels`, `lie-area` | answers with a frame that breaks one host rule |
//! | `ok` | answers with a valid 4x4 RGGB frame whose samples are `0, 1, .., 15` |
//! | `tiles-ok` | the same frame as 3x3 tiles (2 across, 2 down, padded): answers a request for samples or tiling with the tiling, and a request for tiles with those tiles |
//! | `tiles-lie-geometry`, `tiles-lie-length`, `tiles-lie-metadata` | as `tiles-ok`, but with a tiling that does not cover the image, one sample short, or another width in the answer for tiles |
//! | `stain` | fills 64 MiB of its heap with a marker, then answers like `ok` (leaves a dirty slot) |
//! | `stain-snoop` | both in one instance: the control that `snoop` sees stains |
//! | `snoop` | grows its memory to 96 MiB and reads all of it, reporting how many markers a previous guest left (`raw_unsupported` detail `stains N`) |
//!
//! Raw WASI imports are used rather than `std`, so that it is the host (wasmtime-wasi and its
//! deny-all context) that refuses, not wasi-libc giving up early for lack of a preopen.

use sandload_abi::raw::{Frame, Rect, Region, Request, Response};
use sandload_abi::{GuestError, Rule};

sandload_abi::guest_main!(Request, attack);

mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn fd_prestat_get(fd: u32, buf: *mut u8) -> u16;
        pub fn fd_readdir(fd: u32, buf: *mut u8, len: usize, cookie: u64, used: *mut usize) -> u16;
        pub fn fd_read(fd: u32, iovs: *const [usize; 2], n: usize, read: *mut usize) -> u16;
        pub fn path_open(
            fd: u32,
            dirflags: u32,
            path: *const u8,
            path_len: usize,
            oflags: u16,
            rights_base: u64,
            rights_inheriting: u64,
            fdflags: u16,
            opened: *mut u32,
        ) -> u16;
        pub fn path_create_directory(fd: u32, path: *const u8, path_len: usize) -> u16;
        pub fn environ_sizes_get(count: *mut usize, size: *mut usize) -> u16;
        pub fn args_sizes_get(count: *mut usize, size: *mut usize) -> u16;
        pub fn sock_accept(fd: u32, flags: u16, opened: *mut u32) -> u16;
        pub fn proc_exit(code: u32) -> !;
        pub fn poll_oneoff(subs: *const u8, events: *mut u8, nsubscriptions: usize, nevents: *mut usize) -> u16;
        pub fn sched_yield() -> u16;
    }
}

/// Outcome of one WASI call: errno 0 is success.
fn outcome(errno: u16) -> String {
    if errno == 0 { "ALLOWED".into() } else { format!("denied errno {errno}") }
}

fn escape() -> String {
    let mut report = Vec::<(String, String)>::new();
    let mut note = |attempt: String, result: String| report.push((attempt, result));
    // Every descriptor a preopen could hide behind (0-2 are stdio).
    for fd in 0..64u32 {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is the 8-byte prestat the call writes.
        let errno = unsafe { wasi::fd_prestat_get(fd, buf.as_mut_ptr()) };
        if errno == 0 || fd == 3 {
            note(format!("fd_prestat_get({fd})"), outcome(errno));
        }
    }
    const O_CREAT: u16 = 1;
    const O_DIRECTORY: u16 = 2;
    const ALL_RIGHTS: u64 = u64::MAX >> 35; // the 29 rights of preview1
    for fd in [0u32, 1, 2, 3, 4, 5] {
        for (path, oflags) in [
            ("/etc/passwd", 0),
            ("../secret", 0),
            ("..", O_DIRECTORY),
            (".", O_DIRECTORY),
            ("/proc/self/mem", 0),
            ("/dev/zero", 0),
            ("written-by-guest", O_CREAT),
        ] {
            let mut opened = 0u32;
            // SAFETY: path pointer/length describe a live str; `opened` is a valid out-pointer.
            let errno = unsafe {
                wasi::path_open(fd, 1, path.as_ptr(), path.len(), oflags, ALL_RIGHTS, ALL_RIGHTS, 0, &mut opened)
            };
            note(format!("path_open(fd {fd}, {path:?})"), outcome(errno));
        }
        // SAFETY: path pointer/length describe a live str.
        let errno = unsafe { wasi::path_create_directory(fd, "made-by-guest".as_ptr(), 13) };
        note(format!("path_create_directory(fd {fd})"), outcome(errno));
        let mut buf = [0u8; 256];
        let mut used = 0usize;
        // SAFETY: `buf` and `used` are valid for the call.
        let errno = unsafe { wasi::fd_readdir(fd, buf.as_mut_ptr(), buf.len(), 0, &mut used) };
        note(format!("fd_readdir(fd {fd})"), outcome(errno));
        let mut accepted = 0u32;
        // SAFETY: `accepted` is a valid out-pointer.
        let errno = unsafe { wasi::sock_accept(fd, 0, &mut accepted) };
        note(format!("sock_accept(fd {fd})"), outcome(errno));
    }
    let (mut count, mut size) = (0usize, 0usize);
    // SAFETY: valid out-pointers.
    let errno = unsafe { wasi::environ_sizes_get(&mut count, &mut size) };
    note(
        "environ_sizes_get".into(),
        if errno == 0 && count > 0 {
            format!("ALLOWED {count} variables")
        } else {
            format!("denied: {count} variables")
        },
    );
    // SAFETY: valid out-pointers.
    let errno = unsafe { wasi::args_sizes_get(&mut count, &mut size) };
    note(
        "args_sizes_get".into(),
        if errno == 0 && count > 0 {
            format!("ALLOWED {count} arguments")
        } else {
            format!("denied: {count} arguments")
        },
    );
    let mut buf = [0u8; 64];
    let iov = [buf.as_mut_ptr() as usize, buf.len()];
    let mut read = 0usize;
    // SAFETY: one iovec over `buf`; `read` is a valid out-pointer.
    let errno = unsafe { wasi::fd_read(0, &iov, 1, &mut read) };
    note(
        "fd_read(stdin)".into(),
        if errno == 0 && read > 0 {
            format!("ALLOWED {read} bytes")
        } else {
            format!("denied: errno {errno}, {read} bytes")
        },
    );
    // Through wasi-libc and std too, as ordinary guest code would try it.
    for path in ["/etc/passwd", "..", "/"] {
        note(
            format!("std::fs::metadata({path:?})"),
            match std::fs::metadata(path) {
                Ok(_) => "ALLOWED".into(),
                Err(e) => format!("denied: {e}"),
            },
        );
    }
    note(
        "std::env::var(\"HOME\")".into(),
        match std::env::var("HOME") {
            Ok(v) => format!("ALLOWED {v}"),
            Err(e) => format!("denied: {e}"),
        },
    );
    report.iter().map(|(a, r)| format!("{a}\t{r}\n")).collect()
}

fn reject(detail: String) -> GuestError {
    GuestError { rule: Rule::RawUnsupported, offset: None, value: None, detail }
}

/// A valid 4x4 RGGB frame with samples 0..16 (u16 little-endian), left in guest memory.
fn frame() -> Frame {
    let samples: Vec<u8> = (0u16..16).flat_map(u16::to_le_bytes).collect();
    let samples = samples.leak();
    Frame {
        decoder: "hostile".into(),
        width: 4,
        height: 4,
        cpp: 1,
        bits_per_sample: 16,
        cfa: vec![0, 1, 1, 2],
        cfa_width: 2,
        cfa_height: 2,
        black_levels: vec![0.0],
        black_width: 1,
        black_height: 1,
        white_levels: vec![15],
        wb_coeffs: [1.0, 1.0, 1.0, f32::NAN],
        xyz_to_cam: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0; 3]],
        active_area: None,
        crop_area: None,
        orientation: 1,
        make: "sandload".into(),
        model: "hostile".into(),
        iso: None,
        exposure_time: None,
        timestamp: None,
        lens_make: None,
        lens_model: None,
        f_number: None,
        focal_length: None,
        samples: Some(Region { ptr: samples.as_ptr() as u32, len: samples.len() as u32 }),
        preview: None,
        tiling: None,
    }
}

/// What a `tiles-*` attack lies about.
#[derive(PartialEq)]
enum Lie {
    None,
    /// A tiling that does not cover the image.
    Geometry,
    /// One sample short in its answer to a request for tiles.
    Length,
    /// Another image size in its answer to a request for tiles.
    Metadata,
}

/// The `ok` frame as a tiled image: 3x3 tiles, 2 across and 2 down (padded past the 4x4 image).
/// Asked for samples or tiling it answers with the tiling; asked for tiles it answers with them,
/// each padding sample `0xFFFF` and each image sample its index in the image (so the host's
/// stitched frame is `0, 1, .., 15` exactly when it places and crops every tile right).
fn tiled(req: Request, lie: Lie) -> Frame {
    use sandload_abi::raw::{Output, Tiling};
    let across = if lie == Lie::Geometry { 3 } else { 2 };
    let tiling = Tiling { tile_width: 3, tile_height: 3, across, down: 2 };
    let mut frame = Frame { tiling: Some(tiling), samples: None, ..frame() };
    if let Output::Tiles { first, count } = req.output {
        let mut samples: Vec<u8> = Vec::new();
        for tile in first..first + count {
            let (tx, ty) = (tile % 2, tile / 2);
            for y in 0..3 {
                for x in 0..3 {
                    let (px, py) = (tx * 3 + x, ty * 3 + y);
                    let value = if px < 4 && py < 4 { (py * 4 + px) as u16 } else { 0xFFFF };
                    samples.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        if lie == Lie::Length {
            samples.truncate(samples.len() - 2);
        }
        if lie == Lie::Metadata {
            frame.width = 3;
        }
        let samples = samples.leak();
        frame.samples = Some(Region { ptr: samples.as_ptr() as u32, len: samples.len() as u32 });
    }
    frame
}

/// One WASI preview-1 `subscription` (48 bytes): a relative clock of `timeout_ns` on the monotonic
/// clock. Layout: userdata u64 @0, tag u8 @8 (0 = clock), clock id u32 @16, timeout u64 @24,
/// precision u64 @32, flags u16 @40 (0 = relative).
#[repr(C, align(8))]
struct Subscription([u8; 48]);

fn clock_subscription(timeout_ns: u64) -> Subscription {
    let mut sub = [0u8; 48];
    sub[..8].copy_from_slice(&0x5EE9u64.to_le_bytes());
    sub[8] = 0;
    sub[16..20].copy_from_slice(&1u32.to_le_bytes()); // CLOCKID_MONOTONIC
    sub[24..32].copy_from_slice(&timeout_ns.to_le_bytes());
    Subscription(sub)
}

/// Recursion the compiler cannot turn into a loop: every frame keeps values live across the call.
#[inline(never)]
fn recurse(depth: u64, a: u64, b: u64) -> u64 {
    let (x, y) = (std::hint::black_box(a.wrapping_mul(depth)), std::hint::black_box(b ^ depth));
    let below = recurse(std::hint::black_box(depth + 1), y, x);
    std::hint::black_box(below.wrapping_add(x).wrapping_mul(y | 1))
}

/// The attack a file names: the bytes after `sandload-attack:` (so that a file can also look like
/// a DNG to the host's content sniffing), or the whole file.
/// What `stain` writes and `snoop` looks for: 16 bytes no guest writes by accident.
const STAIN: &[u8; 16] = b"\xA7sandload-stain\x5E";

/// Grows linear memory to 96 MiB, then counts STAIN markers anywhere in it: memory a previous
/// guest of the same pool slot dirtied must come back zeroed.
fn snoop() -> usize {
    const PAGE: usize = 65536;
    let pages = core::arch::wasm32::memory_size(0);
    let want = (96 << 20) / PAGE;
    if pages < want {
        core::arch::wasm32::memory_grow(0, want - pages);
    }
    let end = core::arch::wasm32::memory_size(0) * PAGE;
    let mut found = 0;
    let mut at = STAIN.len();
    while at + STAIN.len() <= end {
        // SAFETY: inside linear memory (below memory_size), never address 0; volatile reads so
        // that the compiler cannot assume anything about memory this program never wrote.
        let word = unsafe { core::ptr::read_volatile(at as *const [u8; 16]) };
        if &word == STAIN {
            found += 1;
        }
        at += STAIN.len();
    }
    found
}

fn attack_name(file: &[u8]) -> &[u8] {
    const MARKER: &[u8] = b"sandload-attack:";
    match file.windows(MARKER.len()).position(|w| w == MARKER) {
        Some(at) => &file[at + MARKER.len()..],
        None => file,
    }
}

fn attack(req: Request, file: &[u8]) -> Response {
    match attack_name(file) {
        b"tiles-ok" => Ok(tiled(req, Lie::None)),
        b"tiles-lie-geometry" => Ok(tiled(req, Lie::Geometry)),
        b"tiles-lie-length" => Ok(tiled(req, Lie::Length)),
        b"tiles-lie-metadata" => Ok(tiled(req, Lie::Metadata)),
        b"escape" => Err(reject(escape())),
        b"alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page, so the memory is really committed.
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        b"loop" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        b"flood" => {
            use std::io::Write;
            let chunk = vec![b'!'; 1 << 20];
            for _ in 0..64 {
                let _ = std::io::stderr().write_all(&chunk);
                let _ = std::io::stdout().write_all(&chunk);
            }
            panic!("flooded stderr and stdout with 64 MiB each");
        }
        // SAFETY: proc_exit does not return; nothing is left borrowed.
        b"exit" => unsafe { wasi::proc_exit(0) },
        b"sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Err(reject("slept for an hour".into()))
        }
        b"poll" => {
            let sub = clock_subscription(3600 * 1_000_000_000);
            let mut event = [0u64; 4]; // one 32-byte event
            let mut n = 0usize;
            // SAFETY: one subscription in, room for one event out, `n` a valid out-pointer.
            let errno = unsafe { wasi::poll_oneoff(sub.0.as_ptr(), event.as_mut_ptr().cast(), 1, &mut n) };
            Err(reject(format!("poll_oneoff for an hour returned errno {errno}, {n} events")))
        }
        b"yield" => loop {
            // SAFETY: no arguments.
            std::hint::black_box(unsafe { wasi::sched_yield() });
        },
        b"recurse" => Err(reject(format!("recursion ended: {}", recurse(0, 1, 2)))),
        b"huge-response" => Err(reject("x".repeat(65 << 20))),
        b"ok" => Ok(frame()),
        b"stain" => {
            let mut stain = vec![0u8; 64 << 20];
            for chunk in stain.chunks_exact_mut(STAIN.len()) {
                chunk.copy_from_slice(STAIN);
            }
            std::hint::black_box(&stain);
            // Leaked on purpose: the instance ends with the marker in its memory.
            std::mem::forget(stain);
            Ok(frame())
        }
        b"snoop" => Err(reject(format!("stains {}", snoop()))),
        // The control: the snoop does see a stain in its own instance.
        b"stain-snoop" => {
            let mut stain = vec![0u8; 64 << 20];
            for chunk in stain.chunks_exact_mut(STAIN.len()) {
                chunk.copy_from_slice(STAIN);
            }
            std::hint::black_box(&stain);
            Err(reject(format!("stains {}", snoop())))
        }
        b"lie-pixels" => Ok(Frame { width: 1 << 31, height: 1 << 31, ..frame() }),
        b"lie-region" => Ok(Frame { samples: Some(Region { ptr: u32::MAX - 7, len: 32 }), ..frame() }),
        b"lie-length" => {
            let f = frame();
            let region = f.samples.unwrap();
            Ok(Frame { samples: Some(Region { len: region.len - 2, ..region }), ..f })
        }
        b"lie-cfa" => Ok(Frame { cfa: vec![0, 1, 1, 7], ..frame() }),
        b"lie-levels" => Ok(Frame { black_levels: vec![100.0], white_levels: vec![15], ..frame() }),
        b"lie-area" => Ok(Frame { crop_area: Some(Rect { x: 2, y: 2, width: 4, height: 4 }), ..frame() }),
        _ => Err(reject(format!("unknown attack: {} bytes", file.len()))),
    }
}
