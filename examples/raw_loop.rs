//! Decodes one generated DNG many times, natively or through sandload, and prints the median
//! time per call (and, for sandload, the guest's share and peak memory). A harness for `perf`:
//!
//! ```sh
//! cargo run --release --example raw_loop -- sandload 4000 3000 50 [ljpeg] [info]
//! perf record -g target/release/examples/raw_loop sandload 4000 3000 200
//! ```

use std::time::{Duration, Instant};

use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;
use sandload::{Input, Sandbox};
use sandload_samples::Dng;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, w, h, n, rest @ ..] = &args[..] else {
        eprintln!("usage: raw_loop native|sandload WIDTH HEIGHT CALLS [ljpeg] [info]");
        std::process::exit(2);
    };
    let (w, h, n): (u32, u32, usize) = (w.parse().unwrap(), h.parse().unwrap(), n.parse().unwrap());
    let ljpeg = rest.iter().any(|a| a == "ljpeg");
    let info_only = rest.iter().any(|a| a == "info");
    let bytes = bytes::Bytes::from(Dng { lossless_jpeg: ljpeg, ..Dng::patterned(w, h) }.to_bytes());
    let mut builder = Sandbox::builder();
    if let Some(keep) = std::env::var("SANDLOAD_KEEP_RESIDENT_MIB").ok().and_then(|v| v.parse::<usize>().ok()) {
        builder.keep_resident(keep << 20);
    }
    let sandbox = builder.build().unwrap();
    sandbox.precompile().unwrap();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut times = Vec::with_capacity(n);
    let mut guest = Duration::ZERO;
    let mut peak = 0;
    for _ in 0..n {
        let started = Instant::now();
        match mode.as_str() {
            "native" => {
                let len = one_thread.install(|| {
                    let source = RawSource::new_from_slice(&bytes);
                    let decoder = rawler::get_decoder(&source).unwrap();
                    decoder.raw_image(&source, &RawDecodeParams::default(), info_only).unwrap().width
                });
                std::hint::black_box(len);
            }
            _ if info_only => {
                std::hint::black_box(sandbox.raw_info(Input::from_bytes(bytes.clone(), "loop.dng")).unwrap());
            }
            _ => {
                let raw = sandbox.decode_raw(Input::from_bytes(bytes.clone(), "loop.dng")).unwrap();
                guest += raw.receipt().guest_time;
                peak = peak.max(raw.receipt().guest_peak_memory_bytes);
                std::hint::black_box(raw.samples().len());
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{mode} {w}x{h}{}: median {:.3} ms over {n} calls (file {:.1} MiB); guest {:.3} ms/call, peak guest memory {} MiB",
        if ljpeg { " ljpeg" } else { "" },
        times[n / 2].as_secs_f64() * 1e3,
        bytes.len() as f64 / (1 << 20) as f64,
        guest.as_secs_f64() * 1e3 / n as f64,
        peak >> 20,
    );
}
