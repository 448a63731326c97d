//! Peak host RSS of one RAW decode, natively (rawler in-process) or through sandload, measured
//! in a fresh process so that nothing else inflates it. Used for the numbers in the README.
//!
//! ```sh
//! cargo run --release --example raw_rss -- sandload 4000 3000
//! cargo run --release --example raw_rss -- native 4000 3000
//! ```

use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;
use sandload_samples::Dng;

fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, w, h) = match &args[..] {
        [mode, w, h] => (mode.as_str(), w.parse().expect("width"), h.parse().expect("height")),
        _ => {
            eprintln!("usage: raw_rss native|sandload WIDTH HEIGHT");
            std::process::exit(2);
        }
    };
    let bytes = Dng::patterned(w, h).to_bytes();
    let sandbox = (mode == "sandload").then(|| {
        let s = sandload::Sandbox::new().unwrap();
        s.precompile().unwrap();
        s
    });
    let baseline = status("VmRSS:");
    let started = std::time::Instant::now();
    let samples = match &sandbox {
        Some(sandbox) => {
            let raw = sandbox.decode_raw(sandload::Input::from_bytes(bytes.clone(), "rss.dng")).unwrap();
            raw.samples().len() / 2
        }
        None => {
            let source = RawSource::new_from_slice(&bytes);
            let decoder = rawler::get_decoder(&source).unwrap();
            let image = decoder.raw_image(&source, &RawDecodeParams::default(), false).unwrap();
            image.width * image.height * image.cpp
        }
    };
    let elapsed = started.elapsed();
    println!(
        "{mode} {w}x{h}: {samples} samples in {:.1} ms; file {} MiB; RSS before decode {baseline} MiB, peak {} MiB",
        elapsed.as_secs_f64() * 1e3,
        bytes.len() >> 20,
        status("VmHWM:")
    );
}
