//! Content sniffing: total on any bytes (no panic, bounded time), deterministic, and consistent
//! with the magic numbers it claims to have seen.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sandload::{Format, sniff};

fuzz_target!(|data: &[u8]| {
    let sniffed = sniff(data);
    let again = sniff(data);
    assert_eq!((sniffed.format, &sniffed.what), (again.format, &again.what), "sniff is not deterministic");
    assert!(!sniffed.what.is_empty() && sniffed.what.len() <= 128, "description {:?}", sniffed.what);
    assert!(sniffed.what.chars().all(|c| !c.is_control()), "description {:?} has control characters", sniffed.what);

    let starts = |magic: &[u8]| data.starts_with(magic);
    let tiff_magic = starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+");
    match sniffed.format {
        Format::Png => assert!(starts(b"\x89PNG\r\n\x1a\n")),
        Format::Jpeg => assert!(starts(&[0xFF, 0xD8, 0xFF])),
        Format::Tiff | Format::Dng => assert!(tiff_magic, "{} without a TIFF header", sniffed.format),
        Format::Safetensors => {
            let len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
            assert!(len >= 2 && data[8] == b'{', "safetensors without a length and '{{'");
        }
        Format::Numpy => assert!(starts(b"\x93NUMPY") || starts(b"PK"), "numpy without its magic or a zip"),
        Format::PytorchZip | Format::Zip => assert!(starts(b"PK"), "zip without PK"),
        Format::PytorchTar => assert_eq!(data.get(257..262), Some(&b"ustar"[..])),
        Format::Pickle => assert!(!data.is_empty()),
        _ => {}
    }
    // Formats decided by a leading magic do not depend on anything after it.
    if matches!(sniffed.format, Format::Png | Format::Jpeg | Format::Gguf) {
        assert_eq!(sniff(&data[..data.len().min(8)]).format, sniffed.format);
    }
});
