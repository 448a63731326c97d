//! What else a valid safetensors file could be. The format leaves the tensor bytes and the end of
//! the file to the writer, and other loaders look exactly there: Python's `zipfile` for an end
//! record in the last 64 KiB, the HDF5 library for a superblock at every power of two, `tarfile`
//! for a header checksum in the first 512 bytes. An accepted checkpoint is none of these.
//!
//! The fourth, the pickle read from byte 0, needs an opcode walk through the header, so it runs
//! in the `safetensors-header` guest (rule `pickle_polyglot`). These three are constant work at
//! fixed offsets (one backwards scan of at most 64 KiB for the zip record), every read through
//! `slice::get`, and they are covered by the `sniff` fuzz target.

use std::path::Path;

use crate::error::Error;
use crate::refusal::refuse_polyglot;
use crate::sniff::{Format, hdf5_superblock, tar_header_checksum_ok, zipfile_opens};

/// The refusal for a valid safetensors file that another loader would open as its own format.
pub(crate) fn refuse_other_format(file: &Path, data: &[u8]) -> Option<Error> {
    if let Some(at) = zipfile_opens(data) {
        let what =
            format!("a safetensors file that is also a zip archive (end-of-central-directory record at byte {at})");
        return Some(refuse_polyglot(file, Format::Zip, what, "zip_polyglot", Some(at as u64)));
    }
    if let Some(at) = hdf5_superblock(data) {
        let what = format!("a safetensors file that is also an HDF5 file (superblock signature at byte {at})");
        return Some(refuse_polyglot(file, Format::Hdf5, what, "hdf5_polyglot", Some(at as u64)));
    }
    if tar_header_checksum_ok(data) {
        let what = "a safetensors file that is also a tar archive (its first 512 bytes carry a valid tar header \
                    checksum)"
            .to_string();
        return Some(refuse_polyglot(file, Format::Tar, what, "tar_polyglot", Some(148)));
    }
    None
}
