//! Load: 10,000 mixed hostile and valid files through one `Sandbox` with bounded host memory,
//! and the same verdicts from many threads as from one (no deadlock, no leaked pool slot).
//!
//! Its own test binary, so that no other test's allocations disturb the RSS figures.

mod common;

use std::time::{Duration, Instant};

use common::corpus::{CAP, corpus, schedule, verdict};
use common::{current_rss, peak_rss, sandbox_with};
use sandload::Limits;

#[test]
fn ten_thousand_mixed_files_keep_host_memory_bounded() {
    let corpus = corpus();
    let round = schedule(&corpus);
    assert_eq!(round.len(), 100);
    let sandbox = sandbox_with(Limits::default().with_guest_memory_bytes(CAP).with_guest_time(Duration::from_secs(2)));
    sandbox.precompile().unwrap();
    let expected: Vec<String> = corpus.iter().map(|(name, bytes, _)| verdict(&sandbox, name, bytes)).collect();
    // The corpus is mixed for real: some accepted, most refused in several different ways.
    let accepted = expected.iter().filter(|v| ["checkpoint", "raw", "image"].contains(&v.split(' ').next().unwrap()));
    assert_eq!(accepted.count(), 4, "{expected:?}");
    let kinds: std::collections::BTreeSet<&str> = expected.iter().map(|v| v.split(' ').next().unwrap()).collect();
    assert!(kinds.len() >= 5, "{kinds:?}");

    let rss_warm = current_rss();
    let started = Instant::now();
    let mut rss_at_1000 = 0;
    for i in 0..10_000 {
        let which = round[(i * 37) % round.len()];
        let (name, bytes, _) = &corpus[which];
        assert_eq!(verdict(&sandbox, name, bytes), expected[which], "file {i} ({name})");
        if i == 1_000 {
            rss_at_1000 = current_rss();
        }
    }
    let took = started.elapsed();
    let (rss_end, peak) = (current_rss(), peak_rss());
    eprintln!(
        "10,000 files in {took:?} ({:.0} files/s); RSS warm {} MiB, after 1,000 files {} MiB, after 10,000 {} MiB, peak {} MiB",
        10_000.0 / took.as_secs_f64(),
        rss_warm >> 20,
        rss_at_1000 >> 20,
        rss_end >> 20,
        peak >> 20
    );
    // No growth with the number of files: 9,000 more files may not add more than a few MiB.
    assert!(rss_end < rss_at_1000 + (32 << 20), "RSS grew from {} to {} MiB", rss_at_1000 >> 20, rss_end >> 20);
    // The peak is the warm process plus one guest at its cap (guest memory lives in the host).
    assert!(peak < rss_warm + CAP + (96 << 20), "peak {} MiB", peak >> 20);
}
