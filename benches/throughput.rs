//! Throughput of N threads sharing one `Sandbox` over a mixed corpus (safetensors checkpoints,
//! 1 MP DNGs, PNGs), against the same threads calling the native parsers (`safetensors`,
//! rawler, `image`) in-process. Each thread takes the next file from a shared counter until the
//! corpus is done; one iteration = the whole corpus.
//!
//! Group `raw-corpus`: 12 MP DNGs only (half uncompressed, half lossless JPEG), as many threads
//! as cores sharing one `Sandbox`, against native rawler decoding the same files one after the
//! other with its rayon pool (`native-rayon`, what an in-process pipeline does) and against as
//! many threads calling rawler natively, and against a pool of as many persistent, seccomp-locked
//! native workers (`anchors::PersistentPool`, the strongest process design) fed by as many threads.
//!
//! Run: `cargo bench --bench throughput`. Set `SANDLOAD_BENCH_QUICK=1` for a short run.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rawler::decoders::RawDecodeParams;
use rawler::rawsource::RawSource;
use sandload::{Format, Input, Opened, Sandbox};
use sandload_samples::{self as samples, Dng};

/// The corpus: (name, format, bytes).
fn corpus() -> Vec<(String, Format, Bytes)> {
    let mut files = Vec::new();
    for i in 0..48 {
        files.push((format!("model-{i}.safetensors"), Format::Safetensors, Bytes::from(samples::small_checkpoint())));
    }
    for i in 0..8 {
        files.push((format!("photo-{i}.png"), Format::Png, Bytes::from(samples::png_image(256, 256))));
    }
    for i in 0..8 {
        files.push((format!("shot-{i}.dng"), Format::Dng, Bytes::from(Dng::patterned(1024, 1024).to_bytes())));
    }
    files
}

fn native(format: Format, bytes: &[u8]) -> usize {
    match format {
        Format::Safetensors => safetensors::SafeTensors::deserialize(bytes).unwrap().len(),
        Format::Png => sandload::image::load_from_memory(bytes).unwrap().width() as usize,
        Format::Dng => {
            let source = RawSource::new_from_slice(bytes);
            let decoder = rawler::get_decoder(&source).unwrap();
            decoder.raw_image(&source, &RawDecodeParams::default(), false).unwrap().width
        }
        other => unreachable!("{other}"),
    }
}

fn sandboxed(sandbox: &Sandbox, format: Format, name: &str, bytes: &Bytes) -> usize {
    let input = Input::from_bytes(bytes.clone(), name);
    match format {
        Format::Png => sandbox.decode_image(input).unwrap().pixels.width() as usize,
        _ => match sandbox.open(input).unwrap() {
            Opened::Checkpoint(c) => c.len(),
            Opened::Raw(r) => r.info().width,
            _ => unreachable!(),
        },
    }
}

/// Runs `work` over every file of `corpus` on `threads` threads.
fn run(threads: usize, corpus: &[(String, Format, Bytes)], work: &(dyn Fn(&(String, Format, Bytes)) -> usize + Sync)) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(file) = corpus.get(next.fetch_add(1, Ordering::Relaxed)) {
                    black_box(work(file));
                }
            });
        }
    });
}

fn throughput(c: &mut Criterion) {
    let corpus = corpus();
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    let mut g = c.benchmark_group("mixed-corpus");
    g.throughput(Throughput::Elements(corpus.len() as u64));
    g.sample_size(10);
    if std::env::var_os("SANDLOAD_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    }
    for threads in [1, 2, 4] {
        g.bench_with_input(BenchmarkId::new("native", threads), &threads, |b, &n| {
            b.iter(|| run(n, &corpus, &|(_, format, bytes)| native(*format, bytes)))
        });
        g.bench_with_input(BenchmarkId::new("sandload", threads), &threads, |b, &n| {
            b.iter(|| run(n, &corpus, &|(name, format, bytes)| sandboxed(&sandbox, *format, name, bytes)))
        });
    }
    g.finish();

    let raw = raw_corpus();
    let cores = cores();
    let mut g = c.benchmark_group("raw-corpus");
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.sample_size(10);
    if std::env::var_os("SANDLOAD_BENCH_QUICK").is_some() {
        g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    }
    g.bench_function("native-rayon", |b| b.iter(|| run(1, &raw, &|(_, format, bytes)| native(*format, bytes))));
    g.bench_with_input(BenchmarkId::new("native", cores), &cores, |b, &n| {
        b.iter(|| run(n, &raw, &|(_, format, bytes)| native(*format, bytes)))
    });
    g.bench_with_input(BenchmarkId::new("sandload", cores), &cores, |b, &n| {
        b.iter(|| run(n, &raw, &|(name, format, bytes)| sandboxed(&sandbox, *format, name, bytes)))
    });
    let pool = anchors::PersistentPool::start(cores);
    for (_, _, bytes) in &raw {
        assert_eq!(pool.decode(bytes), anchors::decode_samples(bytes), "persistent worker's samples");
    }
    g.bench_with_input(BenchmarkId::new("persistent-worker", cores), &cores, |b, &n| {
        b.iter(|| run(n, &raw, &|(_, _, bytes)| pool.decode(bytes).len()))
    });
    g.finish();
}

/// 12 MP DNGs, half of them lossless JPEG.
fn raw_corpus() -> Vec<(String, Format, Bytes)> {
    (0..8)
        .map(|i| {
            let dng = Dng { lossless_jpeg: i % 2 == 1, ..Dng::patterned(4000, 3000) };
            (format!("shot-{i}.dng"), Format::Dng, Bytes::from(dng.to_bytes()))
        })
        .collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

mod anchors;
mod report;

criterion_group!(benches, throughput);

fn main() {
    anchors::serve_if_child();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |native, sandload| report::Pair { group: "mixed-corpus", native, sandload };
    let n = cores();
    let native_cores: &'static str = format!("native/{n}").leak();
    let sandload_cores: &'static str = format!("sandload/{n}").leak();
    let persistent_cores: &'static str = format!("persistent-worker/{n}").leak();
    let raw = |native| report::Pair { group: "raw-corpus", native, sandload: sandload_cores };
    report::print_ratios(
        "throughput",
        &[
            pair("native/1", "sandload/1"),
            pair("native/2", "sandload/2"),
            pair("native/4", "sandload/4"),
            // Time per corpus, so files/s is the inverse: sandload's files/s is 1/ratio of
            // native's. Target: sandload on all cores >= 0.8x native-rayon's files/s (ratio <= 1.25).
            raw("native-rayon"),
            raw(native_cores),
            raw(persistent_cores),
        ],
    );
}
