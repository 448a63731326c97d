//! `inspect`'s human-readable output, from the same [`FileReport`]s the JSON and SARIF outputs
//! are built from. Everything that came from a file is escaped with [`printable`].

use crate::report::{FileReport, Summary, printable};

fn guest(report: &FileReport) -> String {
    report.receipt.as_ref().map_or(String::new(), |r| {
        format!(
            " (guest {:.2} ms, peak guest memory {} KiB)",
            r.guest_time.as_secs_f64() * 1e3,
            r.guest_peak_memory_bytes / 1024
        )
    })
}

/// The lines for one report (no trailing newline).
pub fn report(report: &FileReport) -> String {
    let path = printable(&report.path);
    let format = report.format.name();
    if let Some(e) = &report.error {
        let what = if report.format == crate::Format::SafetensorsIndex { "sharded checkpoint" } else { format };
        let mut s = format!("{path}: REJECTED ({what}, {}): {}", e.kind(), printable(e));
        if let Some(pickle) = &report.pickle {
            let dangerous: Vec<&str> = pickle.report.dangerous_imports().collect();
            if !dangerous.is_empty() {
                s += &format!("\n  DANGER: unpickling it would import {}", printable(&dangerous.join(", ")));
            }
        }
        return s;
    }
    if let Some(shards) = &report.shards {
        let mut s = format!(
            "{path}: accepted sharded checkpoint, {} tensors in {} shards{}",
            report.tensor_count.unwrap_or(0),
            shards.len(),
            report.total_size.map_or(String::new(), |n| format!(", total_size {n} bytes"))
        );
        for shard in shards {
            s += &format!(
                "\n  {}: accepted safetensors, {} tensors{}",
                printable(&shard.path),
                shard.tensors.as_ref().map_or(0, Vec::len),
                guest(shard)
            );
        }
        return s;
    }
    if let Some(raw) = &report.raw {
        let info = &raw.info;
        let mut s = format!(
            "{path}: accepted {format}, {}x{} x{} {} bits, CFA {}, black {:?}, white {:?}, {} {}{}",
            info.width,
            info.height,
            info.cpp,
            info.bits_per_sample,
            info.cfa.as_ref().map_or("none".into(), |c| c.name()),
            info.black_levels,
            info.white_levels,
            printable(&info.make),
            printable(&info.model),
            guest(report)
        );
        if let Some(digest) = &raw.pixels_sha256 {
            s += &format!("\n  pixels sha256={digest}");
        }
        return s;
    }
    if let Some(image) = &report.image {
        let mut s = format!(
            "{path}: accepted {format} image, {}x{} {}{}",
            image.width,
            image.height,
            image.color_type,
            guest(report)
        );
        if let Some(digest) = &image.pixels_sha256 {
            s += &format!("\n  pixels sha256={digest}");
        }
        return s;
    }
    if let Some(tensors) = &report.tensors {
        let mut s = format!(
            "{path}: accepted {format}, {} tensors, header {} bytes{}",
            tensors.len(),
            report.header_len.unwrap_or(0),
            guest(report)
        );
        for t in tensors {
            s += &format!("\n  {} {} {:?}", printable(&t.info.name), t.info.dtype.name(), t.info.shape);
            if let Some(digest) = &t.sha256 {
                s += &format!(" sha256={digest}");
            }
        }
        for (k, v) in report.metadata.iter().flatten() {
            s += &format!("\n  metadata {} = {}", printable(k), printable(&format!("{v:?}")));
        }
        return s;
    }
    format!("{path}: accepted {format}{}", guest(report))
}

/// The closing line of a multi-file run.
pub fn summary(summary: &Summary) -> String {
    let mut s = format!("{} files: {} accepted, {} rejected", summary.files, summary.accepted, summary.rejected);
    if !summary.by_kind.is_empty() {
        let kinds: Vec<String> = summary.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s += &format!(" ({})", kinds.join(", "));
    }
    s
}
