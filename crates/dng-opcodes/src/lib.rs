//! The value maps of a DNG's `OpcodeList2` (DNG 1.3+, section 6), for lossy DNGs.
//!
//! A lossy DNG (Compression 34892) stores 8-bit JPEG samples in a perceptual encoding; the
//! `MapPolynomial`/`MapTable` opcodes in `OpcodeList2` map them back to linear values. rawler
//! 0.8 returns the JPEG samples as they are (white level 255), which develops washed out; LibRaw
//! and Adobe's DNG SDK apply the maps, giving 16-bit linear data with white level 65535. This
//! module does what the SDK does for stage 2: samples scaled to 16 bits by the black and white
//! levels, then each map in order. Other opcodes (gain maps, bad pixels, warps) are left to the
//! caller, as LibRaw leaves them.
//!
//! The list is untrusted: every count and length is checked against the bytes that hold it, and
//! rectangles and planes are clipped to the image.

/// A rectangle of the image and the planes a map applies to, with its row and column pitch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Area {
    top: u32,
    left: u32,
    bottom: u32,
    right: u32,
    plane: u32,
    planes: u32,
    row_pitch: u32,
    col_pitch: u32,
}

/// A value map of `OpcodeList2`.
#[derive(Debug, Clone, PartialEq)]
enum Map {
    /// `MapTable` (opcode 7): value `v` becomes `table[min(v, len - 1)]`.
    Table(Area, Vec<u16>),
    /// `MapPolynomial` (opcode 8): `v / 65535` becomes `sum(c[i] x^i)`, clipped to [0, 1].
    Polynomial(Area, Vec<f64>),
}

/// Big-endian reader over the opcode list.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("OpcodeList2 ends {} bytes early", n - self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn area(&mut self) -> Result<Area, String> {
        Ok(Area {
            top: self.u32()?,
            left: self.u32()?,
            bottom: self.u32()?,
            right: self.u32()?,
            plane: self.u32()?,
            planes: self.u32()?,
            row_pitch: self.u32()?,
            col_pitch: self.u32()?,
        })
    }
}

/// The value maps of an `OpcodeList2`, in order; other opcodes are skipped by their length.
fn parse(list: &[u8]) -> Result<Vec<Map>, String> {
    let mut r = Reader { bytes: list };
    let count = r.u32()?;
    let mut maps = Vec::new();
    for i in 0..count {
        let id = r.u32()?;
        let _version = r.u32()?;
        let _flags = r.u32()?;
        let len = r.u32()? as usize;
        let mut params = Reader { bytes: r.take(len)? };
        match id {
            7 => {
                let area = params.area()?;
                let n = params.u32()? as usize;
                if n == 0 || n > 65536 {
                    return Err(format!("opcode {i}: MapTable of {n} entries (1 to 65536)"));
                }
                let table = params.take(n * 2)?.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
                maps.push(Map::Table(area, table));
            }
            8 => {
                let area = params.area()?;
                let degree = params.u32()?;
                if degree > 8 {
                    return Err(format!("opcode {i}: MapPolynomial of degree {degree} (at most 8)"));
                }
                let coefficients = (0..=degree).map(|_| params.f64()).collect::<Result<Vec<_>, _>>()?;
                if !coefficients.iter().all(|c| c.is_finite()) {
                    return Err(format!("opcode {i}: MapPolynomial with a non-finite coefficient"));
                }
                maps.push(Map::Polynomial(area, coefficients));
            }
            _ => {}
        }
    }
    Ok(maps)
}

/// Maps the samples of a `width x height x cpp` image to stage-2 DNG data, if the list has value
/// maps (the answer): scaled to 0..65535 by `black` and `white` (per component), then each map in
/// order. `data` of another length (a metadata-only decode has none) is left alone.
pub fn apply(
    list: &[u8],
    data: &mut [u16],
    width: usize,
    height: usize,
    cpp: usize,
    black: &[f64],
    white: &[f64],
) -> Result<bool, String> {
    let maps = parse(list)?;
    if maps.is_empty() {
        return Ok(false);
    }
    if cpp == 0 || data.len() != width * height * cpp {
        return Ok(true);
    }
    // Stage 2: linear 0..65535.
    for px in data.chunks_exact_mut(cpp) {
        for (c, v) in px.iter_mut().enumerate() {
            let level = |levels: &[f64], c: usize| levels.get(c).or(levels.last()).copied().unwrap_or(0.0);
            let (b, w) = (level(black, c), level(white, c));
            let x = if w > b { ((f64::from(*v) - b) / (w - b)).clamp(0.0, 1.0) } else { 0.0 };
            *v = (x * 65535.0).round() as u16;
        }
    }
    for map in &maps {
        let area = match map {
            Map::Table(a, _) | Map::Polynomial(a, _) => *a,
        };
        // A polynomial becomes a table over the 16-bit values: one evaluation per value.
        let table: Vec<u16> = match map {
            Map::Table(_, t) => (0..=65535usize).map(|v| t[v.min(t.len() - 1)]).collect(),
            Map::Polynomial(_, c) => (0..=65535u32)
                .map(|v| {
                    let x = f64::from(v) / 65535.0;
                    let y = c.iter().rev().fold(0.0, |acc, k| acc * x + k);
                    (y.clamp(0.0, 1.0) * 65535.0).round() as u16
                })
                .collect(),
        };
        let rows = (area.top as usize..(area.bottom as usize).min(height)).step_by(area.row_pitch.max(1) as usize);
        let planes = area.plane as usize..(area.plane as usize).saturating_add(area.planes as usize).min(cpp);
        for row in rows {
            let cols = (area.left as usize..(area.right as usize).min(width)).step_by(area.col_pitch.max(1) as usize);
            for col in cols {
                for p in planes.clone() {
                    let v = &mut data[(row * width + col) * cpp + p];
                    *v = table[usize::from(*v)];
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opcode(id: u32, params: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [id, 0x0103_0000, 1, params.len() as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(params);
        out
    }

    fn area(plane: u32, w: u32, h: u32) -> Vec<u8> {
        [0, 0, h, w, plane, 1, 1, 1].iter().flat_map(|v: &u32| v.to_be_bytes()).collect()
    }

    #[test]
    fn polynomial_and_table_map_their_planes() {
        let mut poly = area(0, 2, 1);
        poly.extend_from_slice(&2u32.to_be_bytes());
        for c in [0.0f64, 0.0, 1.0] {
            poly.extend_from_slice(&c.to_be_bytes()); // x^2
        }
        let mut table = area(1, 2, 1);
        table.extend_from_slice(&2u32.to_be_bytes());
        table.extend_from_slice(&[0x12, 0x34, 0xAB, 0xCD]);
        let mut list = 3u32.to_be_bytes().to_vec();
        list.extend(opcode(8, &poly));
        list.extend(opcode(9, &[0; 12])); // a gain map: skipped
        list.extend(opcode(7, &table));
        // Two pixels of two planes, 8-bit: (255, 0) and (128, 255).
        let mut data = [255u16, 0, 128, 255];
        assert!(apply(&list, &mut data, 2, 1, 2, &[0.0], &[255.0]).unwrap());
        let half = 128.0 / 255.0;
        assert_eq!(data, [65535, 0x1234, (half * half * 65535.0f64).round() as u16, 0xABCD]);
    }

    #[test]
    fn truncated_and_oversized_lists_are_errors() {
        let mut poly = area(0, 1, 1);
        poly.extend_from_slice(&1u32.to_be_bytes());
        poly.extend_from_slice(&1.0f64.to_be_bytes()); // one coefficient of two
        let mut list = 1u32.to_be_bytes().to_vec();
        list.extend(opcode(8, &poly));
        assert!(apply(&list, &mut [0], 1, 1, 1, &[0.0], &[255.0]).unwrap_err().contains("early"));
        let mut list = 1u32.to_be_bytes().to_vec();
        list.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(apply(&list, &mut [0], 1, 1, 1, &[0.0], &[255.0]).is_err());
        let mut degree = area(0, 1, 1);
        degree.extend_from_slice(&1000u32.to_be_bytes());
        let mut list = 1u32.to_be_bytes().to_vec();
        list.extend(opcode(8, &degree));
        assert!(apply(&list, &mut [0], 1, 1, 1, &[0.0], &[255.0]).unwrap_err().contains("degree"));
        // Rectangles beyond the image are clipped, not trusted.
        let mut table = [0, 0, 99, 99, 0, 9, 1, 1].iter().flat_map(|v: &u32| v.to_be_bytes()).collect::<Vec<u8>>();
        table.extend_from_slice(&1u32.to_be_bytes());
        table.extend_from_slice(&[0, 7]);
        let mut list = 1u32.to_be_bytes().to_vec();
        list.extend(opcode(7, &table));
        let mut data = [1u16, 2];
        assert!(apply(&list, &mut data, 1, 1, 2, &[0.0], &[255.0]).unwrap());
        assert_eq!(data, [7, 7]);
    }
}
