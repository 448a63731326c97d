//! The fast host outputs (`bayer_planes`, `develop_linear`, `develop16`, `develop`) give exactly
//! the bytes of the straightforward implementation they replaced, which is kept below as the
//! reference: every phase, odd sizes and offsets, images tall enough to be split into bands,
//! clamped and out-of-range samples, non-neutral white balance, a real camera matrix, and linear
//! (3-component) files.

mod common;

use common::{Rng, sandbox};
use sandload::{CfaColor, Input, RawImage, Rect};
use sandload_samples::Dng;

fn decode(dng: &Dng) -> RawImage {
    sandbox().decode_raw(Input::from_bytes(dng.to_bytes(), "x.dng")).unwrap()
}

/// The implementation of `src/develop.rs` before it was optimised (commit d17284a), verbatim
/// except that it reads the image through the public API.
mod reference {
    use super::*;

    const XYZ_FROM_SRGB: [[f32; 3]; 3] = [
        [0.412_456_4, 0.357_576_1, 0.180_437_5],
        [0.212_672_9, 0.715_152_2, 0.072_175],
        [0.019_333_9, 0.119_192, 0.950_304_1],
    ];

    struct Normalizer<'a> {
        samples: &'a [u8],
        width: usize,
        cpp: usize,
        block_w: usize,
        block_h: usize,
        cells: Vec<(f32, f32)>,
    }

    impl<'a> Normalizer<'a> {
        fn new(raw: &'a RawImage) -> Self {
            let info = raw.info();
            let mut cells = Vec::with_capacity(info.black_levels.len());
            for (i, &black) in info.black_levels.iter().enumerate() {
                let white = info.white_levels[i % info.cpp] as f32;
                cells.push((black, 1.0 / (white - black)));
            }
            Normalizer {
                samples: raw.samples(),
                width: info.width,
                cpp: info.cpp,
                block_w: info.black_width,
                block_h: info.black_height,
                cells,
            }
        }

        fn row(&self, row: usize, cols: std::ops::Range<usize>, c: usize, step: usize, out: &mut Vec<f32>) {
            let cells = &self.cells[(row % self.block_h) * self.block_w * self.cpp..][..self.block_w * self.cpp];
            let base = row * self.width;
            for col in cols.step_by(step) {
                let i = ((base + col) * self.cpp + c) * 2;
                let s = f32::from(u16::from_le_bytes([self.samples[i], self.samples[i + 1]]));
                let (black, inv) = cells[(col % self.block_w) * self.cpp + c];
                out.push(((s - black) * inv).clamp(0.0, 1.0));
            }
        }
    }

    /// `(width, height, data)` of the planes, `None` where the image has none.
    pub fn bayer_planes(raw: &RawImage) -> Option<(usize, usize, Vec<f32>)> {
        let info = raw.info();
        let cfa = info.cfa.as_ref()?;
        let area = info.image_area();
        let mut order = [None::<(usize, usize)>; 4];
        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let slot = match cfa.color_at(area.y + dy, area.x + dx) {
                CfaColor::Red => 0,
                CfaColor::Green if order[1].is_none() => 1,
                CfaColor::Green => 2,
                CfaColor::Blue => 3,
                CfaColor::Other => return None,
            };
            if order[slot].replace((dy, dx)).is_some() {
                return None;
            }
        }
        let is_bayer = (cfa.width == 2 || cfa.width == 1) && (cfa.height == 2 || cfa.height == 1);
        let order = match order {
            [Some(r), Some(g1), Some(g2), Some(b)] if is_bayer => [r, g1, g2, b],
            _ => return None,
        };
        let (pw, ph) = (area.width / 2, area.height / 2);
        let norm = Normalizer::new(raw);
        let mut data = Vec::with_capacity(4 * pw * ph);
        for (dy, dx) in order {
            for y in 0..ph {
                let start = area.x + dx;
                norm.row(area.y + 2 * y + dy, start..start + 2 * pw, 0, 2, &mut data);
            }
        }
        Some((pw, ph, data))
    }

    pub fn develop_linear(raw: &RawImage) -> Option<Vec<f32>> {
        let info = raw.info();
        let area = info.image_area();
        let camera = match (&info.cfa, info.cpp) {
            (Some(_), 1) => demosaic(raw, area),
            (None, 3) => {
                let norm = Normalizer::new(raw);
                let mut out = Vec::with_capacity(area.width * area.height * 3);
                let mut planes = [Vec::new(), Vec::new(), Vec::new()];
                for row in area.y..area.y + area.height {
                    for (c, plane) in planes.iter_mut().enumerate() {
                        plane.clear();
                        norm.row(row, area.x..area.x + area.width, c, 1, plane);
                    }
                    for i in 0..area.width {
                        out.extend([planes[0][i], planes[1][i], planes[2][i]]);
                    }
                }
                out
            }
            _ => return None,
        };
        let wb = white_balance(info.wb_coeffs);
        let matrix = info.xyz_to_cam.and_then(|m| srgb_from_camera([m[0], m[1], m[2]]));
        let mut out = camera;
        for px in out.chunks_exact_mut(3) {
            let cam = [px[0] * wb[0], px[1] * wb[1], px[2] * wb[2]];
            let rgb = match &matrix {
                Some(m) => mul(m, cam),
                None => cam,
            };
            for (dst, v) in px.iter_mut().zip(rgb) {
                *dst = v.clamp(0.0, 1.0);
            }
        }
        Some(out)
    }

    pub fn develop16(raw: &RawImage) -> Option<Vec<u16>> {
        Some(develop_linear(raw)?.into_iter().map(|v| (srgb_encode(v) * 65535.0).round() as u16).collect())
    }

    pub fn develop(raw: &RawImage) -> Option<Vec<u8>> {
        Some(develop_linear(raw)?.into_iter().map(|v| (srgb_encode(v) * 255.0).round() as u8).collect())
    }

    fn demosaic(raw: &RawImage, area: Rect) -> Vec<f32> {
        let info = raw.info();
        let cfa = info.cfa.as_ref().expect("checked by caller");
        let (w, h) = (info.width, info.height);
        let (x0, y0) = (area.x.saturating_sub(1), area.y.saturating_sub(1));
        let (x1, y1) = ((area.x + area.width + 1).min(w), (area.y + area.height + 1).min(h));
        let mw = x1 - x0;
        let norm = Normalizer::new(raw);
        let mut mosaic = Vec::with_capacity(mw * (y1 - y0));
        let mut channel = Vec::with_capacity(mw * (y1 - y0));
        for row in y0..y1 {
            norm.row(row, x0..x1, 0, 1, &mut mosaic);
            channel.extend((x0..x1).map(|col| match cfa.color_at(row, col) {
                CfaColor::Red => 0u8,
                CfaColor::Green | CfaColor::Other => 1,
                CfaColor::Blue => 2,
            }));
        }
        let mut out = Vec::with_capacity(area.width * area.height * 3);
        for row in area.y..area.y + area.height {
            let (r0, r1) = (row.saturating_sub(1).max(y0) - y0, (row + 2).min(y1) - y0);
            for col in area.x..area.x + area.width {
                let (c0, c1) = (col.saturating_sub(1).max(x0) - x0, (col + 2).min(x1) - x0);
                let here = (row - y0) * mw + (col - x0);
                let mut sum = [0f32; 3];
                let mut n = [0u32; 3];
                for r in r0..r1 {
                    let line = r * mw;
                    for i in line + c0..line + c1 {
                        let ch = usize::from(channel[i]);
                        sum[ch] += mosaic[i];
                        n[ch] += 1;
                    }
                }
                let own = usize::from(channel[here]);
                for ch in 0..3 {
                    out.push(if ch == own {
                        mosaic[here]
                    } else if n[ch] > 0 {
                        sum[ch] / n[ch] as f32
                    } else {
                        0.0
                    });
                }
            }
        }
        out
    }

    fn white_balance(coeffs: [Option<f32>; 4]) -> [f32; 3] {
        let g = coeffs[1].unwrap_or(1.0);
        let k = |c: Option<f32>| c.map_or(1.0, |v| v / g);
        [k(coeffs[0]), 1.0, k(coeffs[2])]
    }

    fn srgb_from_camera(xyz_to_cam: [[f32; 3]; 3]) -> Option<[[f32; 3]; 3]> {
        let mut cam_from_srgb = [[0f32; 3]; 3];
        for (i, row) in cam_from_srgb.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| xyz_to_cam[i][k] * XYZ_FROM_SRGB[k][j]).sum();
            }
            let sum: f32 = row.iter().sum();
            if sum.abs() < 1e-6 {
                return None;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        invert(cam_from_srgb)
    }

    fn invert(m: [[f32; 3]; 3]) -> Option<[[f32; 3]; 3]> {
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if !det.is_finite() || det.abs() < 1e-9 {
            return None;
        }
        let c = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
        let adj = [
            [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
            [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
            [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
        ];
        let inv = adj.map(|row| row.map(|v| v / det));
        inv.iter().flatten().all(|v| v.is_finite()).then_some(inv)
    }

    fn mul(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
        m.map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2])
    }

    fn srgb_encode(v: f32) -> f32 {
        if v <= 0.003_130_8 { 12.92 * v } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
    }
}

/// Index and values of the first difference, bit for bit.
fn first_difference<T: PartialEq + Copy, B: PartialEq>(got: &[T], want: &[T], bits: impl Fn(T) -> B) -> Option<usize> {
    if got.len() != want.len() {
        return Some(got.len().min(want.len()));
    }
    got.iter().zip(want).position(|(g, w)| bits(*g) != bits(*w))
}

/// Every output of `raw` equals the reference's, bit for bit.
fn assert_identical(raw: &RawImage, what: &str) {
    let bits = |v: f32| v.to_bits();
    match (raw.bayer_planes(), reference::bayer_planes(raw)) {
        (Ok(got), Some((w, h, want))) => {
            assert_eq!((got.width, got.height), (w, h), "{what}: plane size");
            if let Some(i) = first_difference(&got.data, &want, bits) {
                panic!("{what}: bayer_planes differ at {i}: {:?} vs {:?}", got.data.get(i), want.get(i));
            }
        }
        (Err(_), None) => {}
        (got, want) => panic!("{what}: bayer_planes {:?} vs reference {:?}", got.map(|p| p.width), want.is_some()),
    }
    let Some(want) = reference::develop_linear(raw) else {
        assert!(raw.develop_linear().is_err() && raw.develop16().is_err() && raw.develop().is_err(), "{what}");
        return;
    };
    let area = raw.info().image_area();
    let linear = raw.develop_linear().unwrap();
    assert_eq!(linear.dimensions(), (area.width as u32, area.height as u32), "{what}");
    if let Some(i) = first_difference(linear.as_raw(), &want, bits) {
        panic!("{what}: develop_linear differs at {i}: {:?} vs {:?}", linear.as_raw().get(i), want.get(i));
    }
    let got = raw.develop16().unwrap().into_raw();
    let want = reference::develop16(raw).unwrap();
    if let Some(i) = first_difference(&got, &want, |v| v) {
        panic!("{what}: develop16 differs at {i}: {:?} vs {:?}", got.get(i), want.get(i));
    }
    let got = raw.develop().unwrap().into_raw();
    let want = reference::develop(raw).unwrap();
    if let Some(i) = first_difference(&got, &want, |v| v) {
        panic!("{what}: develop differs at {i}: {:?} vs {:?}", got.get(i), want.get(i));
    }
}

fn random_samples(rng: &mut Rng, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| match rng.next() % 8 {
            // Saturated and black samples, and the rest anywhere in 16 bits.
            0 => 65535,
            1 => 0,
            _ => rng.next() as u16,
        })
        .collect()
}

const PHASES: [[u8; 4]; 4] = [[0, 1, 1, 2], [2, 1, 1, 0], [1, 0, 2, 1], [1, 2, 0, 1]];

#[test]
fn patterned_mosaics_of_odd_sizes_develop_exactly_as_before() {
    for (w, h) in [(33, 17), (1, 1), (2, 2), (3, 3), (1, 9), (9, 1), (2, 7), (130, 96), (257, 131)] {
        for cfa in PHASES {
            let raw = decode(&Dng { cfa, ..Dng::patterned(w, h) });
            assert_identical(&raw, &format!("patterned {w}x{h} {cfa:?}"));
        }
    }
}

#[test]
fn random_mosaics_with_levels_white_balance_and_a_camera_matrix_develop_exactly_as_before() {
    let mut rng = Rng(0x5EED_0013);
    // A real camera's XYZ -> camera matrix (a Nikon D850's ColorMatrix2), so that the matrix step
    // mixes channels and produces values outside [0, 1] to clamp.
    let camera = [1.0405, -0.3755, -0.1270, -0.5461, 1.3787, 0.1793, -0.1040, 0.2015, 0.6785];
    for (i, (w, h)) in [(33, 17), (64, 64), (35, 121), (300, 41)].into_iter().enumerate() {
        for (j, cfa) in PHASES.into_iter().enumerate() {
            let samples = random_samples(&mut rng, (w * h) as usize);
            let mut dng = Dng { cfa, ..Dng::new(w, h, samples) };
            if (i + j) % 2 == 0 {
                dng.black_level = 512 + (rng.next() % 2000) as u16;
                dng.white_level = 16000 + (rng.next() % 40000) as u16;
                dng.color_matrix = camera;
                dng.as_shot_neutral = [0.45, 1.0, 0.7];
            }
            assert_identical(&decode(&dng), &format!("random {w}x{h} {cfa:?} #{i}.{j}"));
        }
    }
}

#[test]
fn active_areas_at_every_offset_develop_exactly_as_before() {
    // Offsets shift the CFA phase of the area and leave a margin on some sides but not others.
    for (top, left, bottom, right) in [(0, 0, 30, 40), (1, 1, 29, 39), (2, 3, 27, 37), (1, 0, 30, 39), (0, 3, 29, 40)] {
        let mut dng = Dng::patterned(40, 30);
        dng.active_area = Some([top, left, bottom, right]);
        let raw = decode(&dng);
        assert_eq!(raw.info().image_area().x, left as usize);
        assert_identical(&raw, &format!("active area {top} {left} {bottom} {right}"));
    }
    let mut dng = Dng::patterned(301, 203);
    dng.active_area = Some([5, 7, 200, 299]);
    assert_identical(&decode(&dng), "active area of 301x203");
}

#[test]
fn linear_dngs_develop_exactly_as_before() {
    let mut rng = Rng(0x11AE_A4);
    for (w, h) in [(6, 4), (33, 17), (128, 70)] {
        let samples = random_samples(&mut rng, (w * h * 3) as usize);
        let dng = Dng {
            cpp: 3,
            samples,
            black_level: 300,
            as_shot_neutral: [0.5, 1.0, 0.8],
            ..Dng::new(w, h, vec![0; (w * h) as usize])
        };
        let raw = decode(&dng);
        assert_eq!(raw.info().cpp, 3);
        assert_identical(&raw, &format!("linear {w}x{h}"));
    }
}

/// Tall enough that every core gets a band of rows of its own.
#[test]
fn a_megapixel_develops_exactly_as_before() {
    let mut rng = Rng(0xB16);
    let (w, h) = (1001, 999);
    let samples = random_samples(&mut rng, w * h);
    let dng = Dng { cfa: [1, 2, 0, 1], black_level: 64, ..Dng::new(w as u32, h as u32, samples) };
    assert_identical(&decode(&dng), "random 1001x999 GBRG");
    assert_identical(&decode(&Dng::patterned(1000, 800)), "patterned 1000x800");
}
