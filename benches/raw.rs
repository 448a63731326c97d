//! RAW decode: sandload (rawler in the `raw-decoder` guest) against, in the same run, rawler
//! called natively in-process (with its rayon pool and on one thread) and the isolation a
//! cautious user would build instead: rawler in a child process per file, in a pre-forked
//! worker, and in a pool of persistent seccomp-locked workers (see `anchors`). Every path starts from the file's bytes in memory and ends with the
//! u16 samples in the caller's memory.
//!
//! Files (generated DNGs, 16-bit): 1 MP (the fixed cost of a call), 12 MP (4000x3000) and 24 MP
//! (6000x4000), each uncompressed and lossless-JPEG (what cameras write), and 12 and 24 MP in
//! 256x256 lossless-JPEG tiles (as cameras and Adobe's converter write them: native rawler decodes
//! the tiles on all cores, sandload in parallel guest calls; `sandload-one-call` is one call). Also: `raw_info` against
//! `decode_raw` on 24 MP, keep_resident(2 MiB) against the default (the lever that removes most
//! page faults), and the host outputs of a 12 MP frame.
//!
//! The guest decodes on one thread (WASI has no threads), so `native-rawler-1-thread` is the
//! like-for-like baseline and `native-rawler` the in-process default on this machine.
//!
//! Peak host RSS of each path is measured in a separate process by `examples/raw_rss.rs`.
//!
//! Run: `cargo bench --bench raw`. Set `SANDLOAD_BENCH_QUICK=1` for a short run.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;
use sandload::{Input, Sandbox};
use sandload_samples::Dng;

mod anchors;
mod report;

fn native_decode(bytes: &[u8]) -> usize {
    let source = RawSource::new_from_slice(bytes);
    let decoder = rawler::get_decoder(&source).unwrap();
    let image = decoder.raw_image(&source, &RawDecodeParams::default(), false).unwrap();
    match image.data {
        rawler::RawImageData::Integer(v) => v.len(),
        rawler::RawImageData::Float(v) => v.len(),
    }
}

/// The files: group name and bytes.
fn files() -> Vec<(&'static str, Bytes)> {
    let dng = |w, h, ljpeg| Bytes::from(Dng { lossless_jpeg: ljpeg, ..Dng::patterned(w, h) }.to_bytes());
    let tiled =
        |w, h| Bytes::from(Dng { lossless_jpeg: true, tiles: Some((256, 256)), ..Dng::patterned(w, h) }.to_bytes());
    vec![
        ("raw-1MP", dng(1024, 1024, false)),
        ("raw-12MP", dng(4000, 3000, false)),
        ("raw-24MP", dng(6000, 4000, false)),
        ("raw-1MP-ljpeg", dng(1024, 1024, true)),
        ("raw-12MP-ljpeg", dng(4000, 3000, true)),
        ("raw-24MP-ljpeg", dng(6000, 4000, true)),
        ("raw-12MP-ljpeg-tiled", tiled(4000, 3000)),
        ("raw-24MP-ljpeg-tiled", tiled(6000, 4000)),
    ]
}

fn decode(c: &mut Criterion) {
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    // The keep-resident lever, in the same run: 2 MiB per slot (the default before it was raised)
    // hands every RAW guest's memory back to the kernel after each file.
    let keep_2mib = Sandbox::builder().keep_resident(2 << 20).build().unwrap();
    keep_2mib.precompile().unwrap();
    // Tiled files in one guest call (the lever this measures: tiles in parallel calls).
    let one_call = Sandbox::builder().parallel_tiles(false).build().unwrap();
    one_call.precompile().unwrap();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let child = anchors::ChildPerFile;
    let mut pre_forked = anchors::PreForked::start();
    let persistent = anchors::PersistentPool::start(1);
    let secs = if quick() { 3 } else { 10 };

    for (name, bytes) in files() {
        // Every path must produce the same samples, or the comparison means nothing.
        let expected = sandbox.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().clone();
        assert_eq!(anchors::decode_samples(&bytes), expected, "{name}: native");
        assert_eq!(child.decode(&bytes), expected, "{name}: child process");
        assert_eq!(pre_forked.decode(&bytes), expected, "{name}: pre-forked");
        assert_eq!(persistent.decode(&bytes), expected, "{name}: persistent worker");

        let mut g = c.benchmark_group(name);
        g.sample_size(10).measurement_time(Duration::from_secs(secs));
        g.bench_function("native-rawler", |b| b.iter(|| black_box(native_decode(&bytes))));
        g.bench_function("native-rawler-1-thread", |b| {
            b.iter(|| one_thread.install(|| black_box(native_decode(&bytes))))
        });
        g.bench_function("sandload", |b| {
            b.iter(|| {
                black_box(sandbox.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().len())
            })
        });
        if !name.contains("ljpeg") {
            g.bench_function("sandload-keep-2MiB", |b| {
                b.iter(|| {
                    black_box(
                        keep_2mib.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().len(),
                    )
                })
            });
        }
        if name.ends_with("tiled") {
            g.bench_function("sandload-one-call", |b| {
                b.iter(|| {
                    black_box(
                        one_call.decode_raw(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().samples().len(),
                    )
                })
            });
        }
        if name.starts_with("raw-24MP") {
            g.bench_function("sandload-raw-info", |b| {
                b.iter(|| black_box(sandbox.raw_info(Input::from_bytes(bytes.clone(), "bench.dng")).unwrap().width))
            });
        }
        g.bench_function("child-process", |b| b.iter(|| black_box(child.decode(&bytes).len())));
        g.bench_function("pre-forked", |b| b.iter(|| black_box(pre_forked.decode(&bytes).len())));
        g.bench_function("persistent-worker", |b| b.iter(|| black_box(persistent.decode(&bytes).len())));
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

criterion_group!(benches, decode);

fn main() {
    anchors::serve_if_child();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let mut pairs = Vec::new();
    for (group, _) in files() {
        for native in ["native-rawler", "native-rawler-1-thread", "child-process", "pre-forked", "persistent-worker"] {
            pairs.push(report::Pair { group, native, sandload: "sandload" });
        }
        // keep_resident(2 MiB) against the default (ratio > 1: keeping memory resident helps).
        pairs.push(report::Pair { group, native: "sandload", sandload: "sandload-keep-2MiB" });
        // Tiles in parallel calls against one call (ratio < 1: splitting helps).
        pairs.push(report::Pair { group, native: "sandload-one-call", sandload: "sandload" });
        // raw_info against decode_raw (target: <= 0.10).
        pairs.push(report::Pair { group, native: "sandload", sandload: "sandload-raw-info" });
    }
    report::print_ratios("raw", &pairs);
}
