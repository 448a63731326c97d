//! sandload vs the unsandboxed `safetensors` crate, in the same run.
//!
//! - `tiny/*`: the smallest useful checkpoint (3 tensors), warm: compiled guest, pooled slot.
//!   The difference between the two is sandload's fixed per-file cost.
//! - `cold/*`: a new `Sandbox` (engine, compile, pool) plus the first open.
//! - `1GiB/*`: a 1 GiB file on disk, both sides memory-mapped: open + a view of every tensor,
//!   and open + read every byte.
//! - `100k-tensors/*`: a header with 100,000 tensors (~10 MB of JSON).
//!
//! Run: `cargo bench --bench safetensors`. Set `SANDLOAD_BENCH_QUICK=1` for a short run.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use sandload::{Dtype, Input, Sandbox};
use sandload_samples::{self as samples, Tensor};

fn tiny(c: &mut Criterion) {
    let bytes = samples::small_checkpoint();
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    let shared = bytes::Bytes::from(bytes.clone());
    let mut g = c.benchmark_group("tiny");
    g.bench_function("native", |b| {
        b.iter(|| {
            let st = safetensors::SafeTensors::deserialize(black_box(&bytes)).unwrap();
            black_box(st.tensor("step").unwrap().data().len())
        })
    });
    g.bench_function("sandload", |b| {
        b.iter(|| {
            let ckpt = sandbox.open_safetensors(Input::from_bytes(shared.clone(), "tiny")).unwrap();
            black_box(ckpt.tensor("step").unwrap().data.len())
        })
    });
    let unpooled = Sandbox::builder().pooling(false).build().unwrap();
    unpooled.precompile().unwrap();
    g.bench_function("sandload-unpooled", |b| {
        b.iter(|| black_box(unpooled.open_safetensors(Input::from_bytes(shared.clone(), "tiny")).unwrap().len()))
    });
    g.finish();
}

fn cold(c: &mut Criterion) {
    let bytes = bytes::Bytes::from(samples::small_checkpoint());
    let mut g = c.benchmark_group("cold");
    g.sample_size(10);
    g.bench_function("sandload-new-sandbox-first-open", |b| {
        b.iter(|| {
            let sandbox = Sandbox::new().unwrap();
            black_box(sandbox.open_safetensors(Input::from_bytes(bytes.clone(), "cold")).unwrap().len())
        })
    });
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let cache = cap_std::fs::Dir::open_ambient_dir(&cache, cap_std::ambient_authority()).unwrap();
    g.bench_function("sandload-new-sandbox-first-open-disk-cache", |b| {
        b.iter(|| {
            let sandbox = Sandbox::builder().cache_dir(cache.try_clone().unwrap()).build().unwrap();
            black_box(sandbox.open_safetensors(Input::from_bytes(bytes.clone(), "cold")).unwrap().len())
        })
    });
    g.finish();
}

/// A 1 GiB checkpoint of 64 tensors of 16 MiB, written once under target/.
fn big_file() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-1GiB.safetensors");
    if std::fs::metadata(&path).map(|m| m.len() > 1 << 30).unwrap_or(false) {
        return path;
    }
    let tensors: Vec<Tensor> = (0..64)
        .map(|i| Tensor {
            name: format!("layer.{i}.weight"),
            dtype: Dtype::F32,
            shape: vec![2048, 2048],
            data: Vec::new(),
        })
        .collect();
    let mut header = String::from("{");
    for (i, t) in tensors.iter().enumerate() {
        let (b, e) = (i as u64 * (16 << 20), (i as u64 + 1) * (16 << 20));
        if i > 0 {
            header.push(',');
        }
        header += &format!("\"{}\":{{\"dtype\":\"F32\",\"shape\":[2048,2048],\"data_offsets\":[{b},{e}]}}", t.name);
    }
    header.push('}');
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(&samples::with_header(&header)).unwrap();
    let chunk: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    for _ in 0..64 {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    path
}

fn sum_bytes(data: &[u8]) -> u64 {
    data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).fold(0, u64::wrapping_add)
}

fn one_gib(c: &mut Criterion) {
    let path = big_file();
    let dir = cap_std::fs::Dir::open_ambient_dir(path.parent().unwrap(), cap_std::ambient_authority()).unwrap();
    let name = path.file_name().unwrap().to_owned();
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    let mut g = c.benchmark_group("1GiB");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("open+views/native-mmap", |b| {
        b.iter(|| {
            let file = std::fs::File::open(&path).unwrap();
            let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
            let st = safetensors::SafeTensors::deserialize(&map).unwrap();
            black_box(st.iter().map(|(_, v)| v.data().len()).sum::<usize>())
        })
    });
    g.bench_function("open+views/sandload", |b| {
        b.iter(|| {
            let ckpt = sandbox.open_safetensors(Input::open(&dir, &name).unwrap()).unwrap();
            black_box(ckpt.iter().map(|t| t.data.len()).sum::<usize>())
        })
    });
    g.bench_function("open+read-all/native-mmap", |b| {
        b.iter(|| {
            let file = std::fs::File::open(&path).unwrap();
            let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
            let st = safetensors::SafeTensors::deserialize(&map).unwrap();
            black_box(st.iter().map(|(_, v)| sum_bytes(v.data())).fold(0, u64::wrapping_add))
        })
    });
    g.bench_function("open+read-all/sandload", |b| {
        b.iter(|| {
            let ckpt = sandbox.open_safetensors(Input::open(&dir, &name).unwrap()).unwrap();
            black_box(ckpt.iter().map(|t| sum_bytes(&t.data)).fold(0, u64::wrapping_add))
        })
    });
    g.finish();
}

fn many_tensors(c: &mut Criterion) {
    let tensors: Vec<Tensor> =
        (0..100_000).map(|i| Tensor::patterned(&format!("model.layers.{i}.mlp.weight"), Dtype::F16, &[2])).collect();
    let bytes = samples::safetensors(&tensors, &[]);
    let shared = bytes::Bytes::from(bytes.clone());
    let sandbox = Sandbox::new().unwrap();
    sandbox.precompile().unwrap();
    let mut g = c.benchmark_group("100k-tensors");
    g.sample_size(10);
    g.bench_function("native", |b| b.iter(|| black_box(safetensors::SafeTensors::deserialize(&bytes).unwrap().len())));
    g.bench_function("sandload", |b| {
        b.iter(|| black_box(sandbox.open_safetensors(Input::from_bytes(shared.clone(), "100k")).unwrap().len()))
    });
    g.finish();
}

/// First use without criterion's warm-up: process-level cold start of one Sandbox.
fn first_use(_c: &mut Criterion) {
    let bytes = bytes::Bytes::from(samples::small_checkpoint());
    let started = Instant::now();
    let sandbox = Sandbox::new().unwrap();
    let built = started.elapsed();
    sandbox.open_safetensors(Input::from_bytes(bytes.clone(), "first")).unwrap();
    let first = started.elapsed();
    let again = Instant::now();
    sandbox.open_safetensors(Input::from_bytes(bytes, "second")).unwrap();
    eprintln!("first use: Sandbox::new {:?}, + first open {:?} (second open {:?})", built, first, again.elapsed());
}

fn config() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("SANDLOAD_BENCH_QUICK").is_some() {
        c.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
    } else {
        c
    }
}

mod report;

criterion_group! { name = benches; config = config(); targets = first_use, tiny, cold, many_tensors, one_gib }

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let pair = |group, native, sandload| report::Pair { group, native, sandload };
    report::print_ratios(
        "safetensors",
        &[
            pair("tiny", "native", "sandload"),
            pair("tiny", "native", "sandload-unpooled"),
            pair("1GiB", "open+views/native-mmap", "open+views/sandload"),
            pair("1GiB", "open+read-all/native-mmap", "open+read-all/sandload"),
            pair("100k-tensors", "native", "sandload"),
        ],
    );
}
