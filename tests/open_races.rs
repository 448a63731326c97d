//! `Input::open` against a path that changes under it: a racing thread swaps a FIFO and a
//! regular file over the same name. The old stat-then-open could see a regular file, then open
//! the FIFO and block forever; opening with `O_NONBLOCK` and checking the descriptor cannot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cap_std::ambient_authority;
use sandload::{Error, Input};

#[test]
fn a_fifo_swapped_in_never_blocks_and_is_refused() {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("open-races-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let status = std::process::Command::new("mkfifo").arg(root.join("fifo")).status().expect("mkfifo");
    assert!(status.success());
    std::fs::write(root.join("file"), b"regular bytes").unwrap();
    std::fs::hard_link(root.join("file"), root.join("target")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, root) = (Arc::clone(&stop), root.clone());
        std::thread::spawn(move || {
            // `rename` replaces `target` atomically, so it always exists: one of the two.
            while !stop.load(Ordering::Relaxed) {
                std::fs::hard_link(root.join("fifo"), root.join("fifo.link")).unwrap();
                std::fs::rename(root.join("fifo.link"), root.join("target")).unwrap();
                std::fs::hard_link(root.join("file"), root.join("file.link")).unwrap();
                std::fs::rename(root.join("file.link"), root.join("target")).unwrap();
            }
        })
    };

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let dir = cap_std::fs::Dir::open_ambient_dir(&root, ambient_authority()).unwrap();
    std::thread::spawn(move || {
        let (mut files, mut refused) = (0, 0);
        for _ in 0..2000 {
            match Input::open(&dir, "target") {
                Ok(input) => {
                    // It is the regular file: reading it gives its bytes.
                    assert_eq!(input.read_all(&sandload::Limits::default()).unwrap().as_ref(), b"regular bytes");
                    files += 1;
                }
                Err(Error::Io { source, .. }) => {
                    assert!(source.to_string().contains("not a regular file"), "{source}");
                    refused += 1;
                }
                Err(other) => panic!("expected Io, got {other}"),
            }
        }
        done_tx.send((files, refused)).unwrap();
    });
    let result = done_rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let (files, refused) = result.expect("an open blocked (or the opening thread panicked)");
    eprintln!("2000 opens: {files} regular files, {refused} FIFOs refused");
    assert_eq!(files + refused, 2000);
}
