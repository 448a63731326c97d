//! Writes a small set of sample files into a directory, for trying `sandload inspect`:
//! a valid checkpoint, a pickle renamed to `.safetensors`, a PyTorch zip, a header with a
//! duplicated tensor name, a 12-megapixel DNG, and a DNG whose dimensions are a bomb.
//!
//! ```sh
//! cargo run --release --example make_samples -- target/samples
//! cargo run --release -- inspect target/samples/*
//! ```

use sandload_samples as samples;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).unwrap_or_else(|| "target/samples".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let duplicate = samples::with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
    );
    let mut duplicate = duplicate;
    duplicate.extend_from_slice(&[1, 2]);
    // 4000x3000 RGGB, 12 bits above a black level of 256: the size of a 12 MP camera's output.
    let dng = samples::Dng::patterned(4000, 3000);
    // Natively, rawler aborts the process on this one (it tries to allocate 2^63 bytes).
    let bomb =
        samples::Dng { declared_size: Some((i32::MAX as u32, i32::MAX as u32)), ..samples::Dng::patterned(8, 8) };
    let files: [(&str, Vec<u8>); 6] = [
        ("model.safetensors", samples::small_checkpoint()),
        ("pickle-renamed.safetensors", samples::malicious_pickle()),
        ("pytorch_model.bin", samples::pytorch_zip()),
        ("duplicate-name.safetensors", duplicate),
        ("camera-12mp.dng", dng.to_bytes()),
        ("dimension-bomb.dng", bomb.to_bytes()),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} sample files to {}", files.len(), dir.display());
    Ok(())
}
