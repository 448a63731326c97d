//! RAW decode: sandload (rawler in the `raw-decoder` guest) vs rawler called natively in-process,
//! in the same run, on generated uncompressed 16-bit DNGs of 12 MP (4000x3000) and 24 MP
//! (6000x4000). Both sides start from the file's bytes in memory and end with the u16 samples.
//! Also: developing the 12 MP frame (demosaic + white balance + colour matrix) on the host.
//!
//! rawler parallelises some decoders with rayon; the guest decodes on one thread (WASI has no
//! threads), so `native-rawler-1-thread` is the like-for-like baseline and `native-rawler` the
//! in-process default on this machine.
//!
//! Peak host RSS of each path is measured in a separate process by `examples/raw_rss.rs`.
//!
//! Run: `cargo bench --bench raw`. Set `SANDLOAD_BENCH_QUICK=1` for a short run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;
use sandload::samples::Dng;
use sandload::{Input, Sandbox};

fn native_decode(bytes: &[u8]) -> usize {
    let source = RawSource::new_from_slice(bytes);
    let decoder = rawler::get_decoder(&source).unwrap();
    let image = decoder.raw_image(&source, &RawDecodeParams::default(), false).unwrap();
    match image.data {
        rawler::RawImageData::Integer(v) => v.len(),
        rawler::RawImageData::Float(v) => v.len(),
    }
}

fn decode(c: &mut Criterion) {
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    // The keep-resident lever, measured in the same run: the default keeps 2 MiB of each slot
    // resident; this one keeps RAW-sized memories (the guest grows to ~4x the file).
    let keep_256mib = Sandbox::builder().keep_resident(256 << 20).build().unwrap();
    keep_256mib.precompile().unwrap();
    for (name, w, h) in [("12MP", 4000, 3000), ("24MP", 6000, 4000)] {
        let bytes = bytes::Bytes::from(Dng::patterned(w, h).to_bytes());
        let mut g = c.benchmark_group(format!("raw-{name}"));
        g.sample_size(10).measurement_time(Duration::from_secs(if quick() { 3 } else { 15 }));
        g.bench_function("native-rawler", |b| b.iter(|| black_box(native_decode(&bytes))));
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        g.bench_function("native-rawler-1-thread", |b| {
            b.iter(|| one_thread.install(|| black_box(native_decode(&bytes))))
        });
        g.bench_function("sandload", |b| {
            b.iter(|| {
                black_box(sandbox.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().len())
            })
        });
        g.bench_function("sandload-keep-256MiB", |b| {
            b.iter(|| {
                black_box(
                    keep_256mib.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().len(),
                )
            })
        });
        g.finish();
    }
    let raw = sandbox.decode_raw(Input::from_bytes(Dng::patterned(4000, 3000).to_bytes(), "dev.dng")).unwrap();
    let mut g = c.benchmark_group("raw-12MP-outputs");
    g.sample_size(10);
    g.bench_function("bayer-planes", |b| b.iter(|| black_box(raw.bayer_planes().unwrap().data.len())));
    g.bench_function("develop16", |b| b.iter(|| black_box(raw.develop16().unwrap().len())));
    g.finish();
}

fn quick() -> bool {
    std::env::var_os("SANDLOAD_BENCH_QUICK").is_some()
}

mod report;

criterion_group!(benches, decode);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |group, native| report::Pair { group, native, sandload: "sandload" };
    report::print_ratios(
        "raw",
        &[
            pair("raw-12MP", "native-rawler"),
            pair("raw-12MP", "native-rawler-1-thread"),
            pair("raw-24MP", "native-rawler"),
            pair("raw-24MP", "native-rawler-1-thread"),
            // keep_resident(256 MiB) vs the default 2 MiB (ratio < 1: keeping more helps).
            report::Pair { group: "raw-12MP", native: "sandload", sandload: "sandload-keep-256MiB" },
            report::Pair { group: "raw-24MP", native: "sandload", sandload: "sandload-keep-256MiB" },
        ],
    );
}
