//! `inspect`: one report per target, in input order, over `--jobs` threads sharing one sandbox,
//! written as text, JSON lines or SARIF.

use std::io::Write;
use std::path::Path;

use crate::report::{FileReport, Summary, json_safe};
use crate::{Error, Sandbox};
use cap_std::fs::Dir;

use super::args::OutputFormat;
use super::exit::{EXIT_IO, status_of};
use super::walk::Target;

pub fn inspect(sandbox: &Sandbox, targets: Vec<Target>, format: OutputFormat, digest: bool, jobs: usize) -> u8 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Drawn on stderr only when it is a terminal, and only for several files.
    let progress = if targets.len() > 1 {
        indicatif::ProgressBar::new(targets.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let several = targets.len() > 1;
    let mut status = 0u8;
    let mut summary = Summary::default();
    let mut sarif = Vec::new();
    let mut broken_pipe = false;
    // Reports are written in input order as they complete, whatever order the workers finish in.
    for_each_report(sandbox, targets, digest, jobs, |report| {
        // A sharded target reports its model and maybe sibling files: the bar counts reports.
        if progress.position() >= progress.length().unwrap_or(0) {
            progress.inc_length(1);
        }
        progress.inc(1);
        if let Some(e) = &report.error {
            status = status.max(status_of(e));
        }
        summary.add(&report);
        let line = match format {
            OutputFormat::Human => Some(super::human::report(&report)),
            OutputFormat::Json => Some(json_safe(&serde_json::to_string(&report).expect("reports serialize"))),
            OutputFormat::Sarif => {
                sarif.push(report);
                None
            }
        };
        if let Some(line) = line {
            if progress.suspend(|| writeln!(out, "{line}")).is_err() {
                // stdout closed (e.g. piped into `head`): stop; the report is incomplete.
                broken_pipe = true;
            }
        }
        !broken_pipe
    });
    progress.finish_and_clear();
    if broken_pipe {
        return EXIT_IO;
    }
    let tail = match format {
        OutputFormat::Human => {
            if several {
                eprintln!("{}", super::human::summary(&summary));
            }
            None
        }
        OutputFormat::Json => Some(json_safe(&serde_json::to_string(&summary.record()).expect("summary serializes"))),
        OutputFormat::Sarif => Some(json_safe(&super::sarif::log(&sarif).to_string())),
    };
    if let Some(tail) = tail {
        if writeln!(out, "{tail}").is_err() {
            return EXIT_IO;
        }
    }
    status
}

/// Inspects every target on `jobs` threads sharing `sandbox` and hands the reports to `emit` in
/// the targets' order (a sharded target may give several: the model, then any sibling
/// `.safetensors` file its shards do not cover). When `emit` returns false (stdout is gone) the
/// workers stop taking targets.
pub fn for_each_report(
    sandbox: &Sandbox,
    targets: Vec<Target>,
    digest: bool,
    jobs: usize,
    mut emit: impl FnMut(FileReport) -> bool,
) {
    let jobs = jobs.clamp(1, targets.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let targets = &targets;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<FileReport>)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { break };
                    if tx.send((i, inspect_one(sandbox, target, digest))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0;
        'receive: for (i, reports) in rx {
            pending.insert(i, reports);
            while let Some(reports) = pending.remove(&want) {
                for report in reports {
                    if !emit(report) {
                        // Dropping the receiver makes every worker's next send fail: they stop.
                        break 'receive;
                    }
                }
                want += 1;
            }
        }
    });
}

pub fn inspect_one(sandbox: &Sandbox, target: &Target, digest: bool) -> Vec<FileReport> {
    match target {
        Target::Unreachable { shown, error } => {
            // `Error` is not `Clone` (it may hold an `io::Error`): rebuild the I/O error.
            let error = match error {
                Error::Io { file, source } => {
                    Error::Io { file: file.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
                }
                other => Error::Internal(other.to_string()),
            };
            vec![FileReport::new(shown, Err(error), None, digest)]
        }
        Target::File { dir, name, shown } => vec![inspect_file(sandbox, dir, name, shown, digest)],
        Target::Sharded { dir, index, shown, siblings } => {
            // A file under an index name is a sharded checkpoint only if its content is no format
            // sandload recognises (a pickle under that name is still reported as a pickle).
            let Some(result) = sandbox.open_if_sharded(dir, index) else {
                // Reported under its own path (a directory named on the command line shows the
                // index file in it), as the Python package reports it.
                let shown_file = if shown.is_dir() { shown.join(index) } else { shown.clone() };
                let mut reports = vec![inspect_file(sandbox, dir, index, &shown_file, digest)];
                reports.extend(siblings.iter().map(|(name, shown)| inspect_file(sandbox, dir, name, shown, digest)));
                return reports;
            };
            let covered: std::collections::HashSet<std::ffi::OsString> = match &result {
                Ok(model) => {
                    model.shards().iter().filter_map(|s| s.file().file_name().map(|n| n.to_os_string())).collect()
                }
                Err(_) => Default::default(),
            };
            let mut reports = vec![FileReport::sharded(shown, result, digest)];
            // Shards are named relative to the directory the index is in; show them under the
            // same prefix as the path the user gave.
            let prefix = if shown.is_dir() { Some(shown.as_path()) } else { shown.parent() };
            if let (Some(prefix), Some(shards)) = (prefix, reports[0].shards.as_mut()) {
                for shard in shards {
                    shard.path = prefix.join(&shard.path).display().to_string();
                }
            }
            for (name, shown) in siblings {
                if !name.file_name().is_some_and(|n| covered.contains(n)) {
                    reports.push(inspect_file(sandbox, dir, name, shown, digest));
                }
            }
            reports
        }
    }
}

pub fn inspect_file(sandbox: &Sandbox, dir: &Dir, name: &Path, shown: &Path, digest: bool) -> FileReport {
    match Target::open(dir, name, shown) {
        Ok(input) => {
            let (result, receipt) = sandbox.open_with_receipt(input);
            FileReport::new(shown, result, Some(receipt), digest)
        }
        Err(e) => FileReport::new(shown, Err(e), None, digest),
    }
}
