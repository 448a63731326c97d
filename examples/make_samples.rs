//! Writes a small set of sample files into a directory, for trying `sandload inspect`:
//! a valid checkpoint, a pickle renamed to `.safetensors`, a PyTorch zip, and a header with a
//! duplicated tensor name.
//!
//! ```sh
//! cargo run --release --example make_samples -- target/samples
//! cargo run --release -- inspect target/samples/*
//! ```

use sandload::samples;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).unwrap_or_else(|| "target/samples".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let duplicate = samples::with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
    );
    let mut duplicate = duplicate;
    duplicate.extend_from_slice(&[1, 2]);
    let files: [(&str, Vec<u8>); 4] = [
        ("model.safetensors", samples::small_checkpoint()),
        ("pickle-renamed.safetensors", samples::malicious_pickle()),
        ("pytorch_model.bin", samples::pytorch_zip()),
        ("duplicate-name.safetensors", duplicate),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote 4 sample files to {}", dir.display());
    Ok(())
}
