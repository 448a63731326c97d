//! Content sniffing and the pickle opcode walker: total on any bytes (no panic, bounded time),
//! deterministic, and consistent with the magic numbers they claim to have seen.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sandload::{Format, sniff};

fuzz_target!(|data: &[u8]| {
    walker_invariants(data);
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
            // A header length below 4 GiB, then '{' (or whitespace the parser refuses by rule).
            assert_eq!(data.get(4..8), Some(&[0u8; 4][..]), "safetensors with a length of 4 GiB or more");
            assert!(b"{ \t\n\r[\"-0123456789tfn".contains(&data[8]), "safetensors without a JSON value");
        }
        Format::Numpy => {
            assert!(starts(b"\x93NUMPY") || starts(b"PK") || data.windows(4).any(|w| w == b"PK\x05\x06"))
        }
        Format::PytorchZip | Format::Zip | Format::TorchScript | Format::Keras => {
            assert!(starts(b"PK") || data.windows(4).any(|w| w == b"PK\x05\x06"), "zip without a zip record")
        }
        Format::Pickle => {
            // Recognised by the opcode walk, which must agree with itself on the same bytes.
            let walk = sandload_abi::pickle::walk(&data[..data.len().min(64 << 10)], &Default::default());
            assert!(walk.ops >= 1 && walk.end_offset <= data.len() as u64, "{walk:?}");
        }
        _ => {}
    }
    // Formats decided by a leading magic do not depend on anything after it.
    if matches!(sniffed.format, Format::Png | Format::Jpeg | Format::Gguf) {
        assert_eq!(sniff(&data[..data.len().min(8)]).format, sniffed.format);
    }
});

// The pickle walker on its own (also what the safetensors-header guest runs on every header and
// the pickle-scan guest on refused pickles): offsets inside the input, effects only with opcodes.
fn walker_invariants(data: &[u8]) {
    use sandload_abi::pickle::{End, walk_stream};
    let walk = walk_stream(data, &Default::default());
    assert!(walk.end_offset <= data.len() as u64, "{walk:?}");
    assert!(walk.calls <= walk.ops && walk.persistent_loads <= walk.ops, "{walk:?}");
    assert!(walk.first_effect_offset.is_none_or(|o| o <= walk.end_offset), "{walk:?}");
    if walk.end == End::Stop {
        assert!(walk.pickles >= 1, "{walk:?}");
    }
}
