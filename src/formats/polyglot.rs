//! What else a valid safetensors file could be. The format leaves the tensor bytes and the end of
//! the file to the writer, and other loaders look exactly there: Python's `zipfile` and torch's
//! miniz for an end record near the end, the HDF5 library for a superblock at every power of two,
//! `tarfile` for a header checksum in the first 512 bytes, joblib for a compressor's magic number
//! in the first bytes. An accepted checkpoint is none of these.
//!
//! The compressors joblib dispatches on (`joblib.numpy_pickle_utils._detect_compressor`: the
//! file's first bytes alone) meet a safetensors prefix (bytes 4-7 zero, byte 8 `{`) as follows;
//! `python/tests/test_loaders.py` proves each line with the real decompressor:
//!
//! | prefix | joblib | verdict |
//! |---|---|---|
//! | gzip `1f 8b` | zlib, `wbits=31` | **possible**: flags 0-5, MTIME = bytes 4-7, XFL = `{`; the deflate stream starts in the JSON, where *stored* blocks (5-byte headers such as `' ' '<' 'V' C3 A9`, valid UTF-8) fit in a string, and its last block, in the tensor data, carries a pickle that joblib runs as it decompresses. Refused: `compressed_polyglot`. Header lengths `0x0?088b1f` are odd, so the reference writer (8-byte aligned headers) never writes one. |
//! | zlib `78` | zlib | impossible: byte 3 (the header length's fourth byte) is at most 5, so the first dynamic block has HCLEN = 0 and all four code-length codes read from the zero bytes 4-7 have length 0; every one of the 258 or more literal/distance lengths then decodes as 0 and zlib stops with "invalid code -- missing end-of-block" within the first 45 bytes, before any output (all 1,440 header lengths whose first 9 bytes zlib accepts are tried) |
//! | lzma `5d 00` | `lzma.LZMAFile` (auto: `.lzma` alone, picky) | impossible: the uncompressed size (bytes 5-12) holds `{` and three more JSON bytes that cannot all be NUL, so it is at least 2^38 and liblzma refuses the header |
//! | bzip2 `BZ`, lz4 `04 22 4d 18`, zstd | — | impossible: `BZh1`..`BZh9` and the lz4/zstd magics are header lengths over the format's 100 MB limit |
//! | xz `fd 37 7a 58 5a` | — | impossible: bytes 4-7 are zero |
//! | joblib's `ZF` | `int(bytes 2..21, 16)` | impossible: bytes 4-7 are NUL, which `int()` refuses |
//!
//! The fourth, the pickle read from byte 0, needs an opcode walk through the header, so it runs
//! in the `safetensors-header` guest (rule `pickle_polyglot`). The others are constant work at
//! fixed offsets (one backwards scan of at most 72 KiB for the zip record, 8 bytes at each power
//! of two, the first 512 bytes), through [`ReadAt`]: the same code reads a buffer or, with
//! `DataAccess::Verdict`, the file piece by piece. They are covered by the `safetensors` fuzz
//! target.

use std::path::Path;

use crate::error::{Error, Result};
use crate::refusal::refuse_polyglot;
use crate::sniff::{Format, ReadAt, hdf5_superblock_in, tar_block_checksum_ok, zip_reader_opens};

/// The compressor magic a safetensors prefix can spell and joblib would decompress (see the
/// table above): gzip's `1f 8b`, whatever the flags.
fn compressed_prefix(first: &[u8]) -> Option<&'static str> {
    first.starts_with(&[0x1f, 0x8b]).then_some("gzip")
}

/// The refusal for a valid safetensors file that another loader would open as its own format.
pub(crate) fn refuse_other_format<R: ReadAt + ?Sized>(file: &Path, data: &R) -> Result<Option<Error>> {
    if let Some(kind) = data.read(0, 2)?.as_deref().and_then(compressed_prefix) {
        let what = format!(
            "a safetensors file that is also a {kind} stream (its header length spells {kind}'s magic number, which \
             joblib.load decompresses and unpickles)"
        );
        return Ok(Some(refuse_polyglot(file, Format::Compressed, what, "compressed_polyglot", Some(0))));
    }
    if let Some(at) = zip_reader_opens(data)? {
        let what =
            format!("a safetensors file that is also a zip archive (end-of-central-directory record at byte {at})");
        return Ok(Some(refuse_polyglot(file, Format::Zip, what, "zip_polyglot", Some(at as u64))));
    }
    if let Some(at) = hdf5_superblock_in(data)? {
        let what = format!("a safetensors file that is also an HDF5 file (superblock signature at byte {at})");
        return Ok(Some(refuse_polyglot(file, Format::Hdf5, what, "hdf5_polyglot", Some(at as u64))));
    }
    if data.read(0, 512)?.is_some_and(|block| tar_block_checksum_ok(&block)) {
        let what = "a safetensors file that is also a tar archive (its first 512 bytes carry a valid tar header \
                    checksum)"
            .to_string();
        return Ok(Some(refuse_polyglot(file, Format::Tar, what, "tar_polyglot", Some(148))));
    }
    Ok(None)
}
