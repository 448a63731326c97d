//! Prints each benchmark's sandboxed/native ratio after criterion has run, from the medians
//! criterion saved (`<target>/criterion/<group>/<function>/new/estimates.json`), and writes the
//! same table as Markdown to `<target>/criterion/<bench>-ratios.md` for the README.

use std::fmt::Write as _;
use std::path::PathBuf;

/// One row: a benchmark group, its native (unsandboxed) function and its sandload function.
pub struct Pair {
    pub group: &'static str,
    pub native: &'static str,
    pub sandload: &'static str,
}

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
    target.join("criterion")
}

/// Criterion's median estimate in nanoseconds; `None` if the function was not run (filtered).
fn median_ns(group: &str, function: &str) -> Option<f64> {
    // A '/' in a function name becomes '_' in the directory name; a BenchmarkId's function and
    // parameter are two directory levels.
    [function.replace('/', "_"), function.to_string()].into_iter().find_map(|dir| {
        let path = criterion_dir().join(group).join(dir).join("new/estimates.json");
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        json["median"]["point_estimate"].as_f64()
    })
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e9 => format!("{:.2} s", ns / 1e9),
        ns if ns >= 1e6 => format!("{:.1} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.1} µs", ns / 1e3),
        ns => format!("{ns:.0} ns"),
    }
}

/// Prints the table and saves it as `<bench>-ratios.md`.
pub fn print_ratios(bench: &str, pairs: &[Pair]) {
    let mut table = String::from("| benchmark | native | sandload | ratio |\n|---|---|---|---|\n");
    for p in pairs {
        let (Some(native), Some(sandboxed)) = (median_ns(p.group, p.native), median_ns(p.group, p.sandload)) else {
            continue;
        };
        let _ = writeln!(
            table,
            "| {} ({} vs {}) | {} | {} | {:.2} |",
            p.group,
            p.native,
            p.sandload,
            human(native),
            human(sandboxed),
            sandboxed / native
        );
    }
    println!("\nsandload vs native, medians (ratio = sandload / native):\n{table}");
    let _ = std::fs::write(criterion_dir().join(format!("{bench}-ratios.md")), table);
}
