//! safetensors end to end through the sandbox (header parsed in the guest, table re-validated on
//! the host), differentially against the reference `safetensors` crate: whatever sandload
//! accepts, the reference accepts with identical names, dtypes, shapes, bytes and metadata; what
//! the reference accepts and sandload refuses must be one of sandload's documented stricter rules.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sandload::{Error, Input};
use sandload_fuzz::{FILE_NAME, check_rejection, sandbox};

/// name -> (dtype, shape, bytes)
type Contents = BTreeMap<String, (String, Vec<u64>, Vec<u8>)>;

fn reference(data: &[u8]) -> Option<(Contents, Option<BTreeMap<String, String>>)> {
    let st = safetensors::SafeTensors::deserialize(data).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(data).ok()?;
    let contents = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().iter().map(|&d| d as u64).collect();
            (name, (view.dtype().to_string(), shape, view.data().to_vec()))
        })
        .collect();
    Some((contents, meta.metadata().as_ref().map(|m| m.clone().into_iter().collect())))
}

fuzz_target!(
    init: sandload_fuzz::warm_up(|s| s.open_safetensors(Input::from_bytes(sandload_samples::small_checkpoint(), "warm-up"))),
    |data: &[u8]| {
    let ours = sandbox().open_safetensors(Input::from_bytes(data.to_vec(), FILE_NAME));
    let theirs = reference(data);
    match (ours, theirs) {
        (Ok(ckpt), Some(theirs)) => {
            let contents: Contents = ckpt
                .iter()
                .map(|t| (t.name.to_string(), (t.dtype.name().to_string(), t.shape.to_vec(), t.data.to_vec())))
                .collect();
            assert_eq!(contents, theirs.0, "tensors differ from the reference");
            assert_eq!(ckpt.metadata().cloned(), theirs.1, "metadata differs from the reference");
            assert_eq!(
                ckpt.header_len() + 8 + ckpt.iter().map(|t| t.data.len() as u64).sum::<u64>(),
                data.len() as u64
            );
        }
        (Ok(_), None) => panic!("sandload accepts a file the reference rejects"),
        (Err(e), theirs) => {
            check_rejection(&e, false);
            if theirs.is_some() {
                // The reference accepts: only sandload's documented stricter rules may refuse.
                let stricter = match &e {
                    Error::Malformed { rule, .. } => {
                        matches!(*rule, "duplicate_key" | "header_start" | "header_padding" | "rank_over_limit")
                    }
                    // Polyglots (a valid safetensors file that is also a pickle, zip, HDF5 file or
                    // tar archive) are refused with their rule; nothing else the reference
                    // accepts may be refused as another format.
                    Error::Refused { .. } => e.rule().is_some_and(|r| r.ends_with("_polyglot")),
                    Error::LimitExceeded { .. } => true,
                    _ => false,
                };
                assert!(stricter, "the reference accepts but sandload rejects: {e}");
            }
        }
    }
});
