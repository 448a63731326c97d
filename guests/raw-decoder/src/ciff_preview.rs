//! The JPEG preview of a Canon CRW (CIFF) file, which rawler 0.8 does not extract: record 0x2007
//! (`JpgFromRaw`) of the heaps, as LibRaw finds it.
//!
//! CIFF: `II`, the header length (u32), `HEAPCCDR`; the root heap spans the rest of the file. A
//! heap ends with the offset (u32, from the heap's start) of its record table: a u16 count, then
//! 10-byte records (tag u16, length u32, offset u32 from the heap's start). Records of types
//! 0x2800 and 0x3000 are heaps themselves. Every offset is checked against the heap that holds
//! it; nesting is bounded.

/// Most heaps nested inside one another (real files: 3).
const MAX_DEPTH: u32 = 8;
/// Most records a heap may list (real files: a few dozen).
const MAX_RECORDS: usize = 1024;
const JPG_FROM_RAW: u16 = 0x2007;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
}

/// The bytes of the largest `JpgFromRaw` record of a CIFF file, if it is one and has any.
pub fn jpeg(file: &[u8]) -> Option<&[u8]> {
    if file.get(0..2)? != b"II" || file.get(6..14)? != b"HEAPCCDR" {
        return None;
    }
    let start = u32_at(file, 2)?;
    let mut best: Option<&[u8]> = None;
    walk(file.get(start..)?, 0, &mut best);
    best
}

fn walk<'a>(heap: &'a [u8], depth: u32, best: &mut Option<&'a [u8]>) -> Option<()> {
    if depth > MAX_DEPTH || heap.len() < 4 {
        return None;
    }
    let table = u32_at(heap, heap.len() - 4)?;
    let count = usize::from(u16_at(heap, table)?).min(MAX_RECORDS);
    for i in 0..count {
        let at = table.checked_add(2)?.checked_add(i * 10)?;
        let tag = u16_at(heap, at)?;
        if tag & 0xc000 != 0 {
            continue; // data held in the record itself: never a preview or a heap
        }
        let (len, offset) = (u32_at(heap, at + 2)?, u32_at(heap, at + 6)?);
        let Some(data) = heap.get(offset..offset.checked_add(len)?) else { continue };
        match tag & 0x3800 {
            0x2800 | 0x3000 => {
                walk(data, depth + 1, best);
            }
            _ if tag & 0x3fff == JPG_FROM_RAW && data.starts_with(&[0xFF, 0xD8]) => {
                if best.is_none_or(|b| b.len() < data.len()) {
                    *best = Some(data);
                }
            }
            _ => {}
        }
    }
    Some(())
}
