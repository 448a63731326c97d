//! N threads sharing one `Sandbox` over a mixed hostile/valid corpus give the verdicts one
//! thread gives; no deadlock, and every pool slot comes back, including after traps.

mod common;

use std::time::{Duration, Instant};

use common::corpus::{CAP, corpus, schedule, verdict};
use sandload::{Limits, Sandbox};

#[test]
fn many_threads_give_the_verdicts_of_one() {
    let corpus = corpus();
    let round = schedule(&corpus);
    // Fewer slots than threads: callers queue for slots, including behind guests that trap.
    let sandbox = Sandbox::builder()
        .limits(Limits::default().with_guest_memory_bytes(CAP).with_guest_time(Duration::from_secs(2)))
        .max_concurrent(3)
        .build()
        .unwrap();
    let single: Vec<String> = corpus.iter().map(|(name, bytes, _)| verdict(&sandbox, name, bytes)).collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (sandbox, corpus, round, single) = (&sandbox, &corpus, &round, &single);
            s.spawn(move || {
                for i in 0..150 {
                    let which = round[(t * 13 + i * 7) % round.len()];
                    let (name, bytes, _) = &corpus[which];
                    assert_eq!(verdict(sandbox, name, bytes), single[which], "thread {t}, file {i} ({name})");
                }
            });
        }
    });
    eprintln!("8 threads x 150 files on 3 slots in {:?}", started.elapsed());
    // Every slot came back, including those of guests that trapped or hit a cap...
    assert_eq!(sandbox.guests_running(), 0);
    // ...so as many guests as there are slots can run at once, right away.
    let (name, photo, _) = corpus.iter().find(|(name, _, _)| *name == "photo.dng").unwrap();
    let together = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                together.wait();
                assert_eq!(verdict(&sandbox, name, photo), "raw 64x48");
            });
        }
    });
    assert_eq!(sandbox.guests_running(), 0);
}
