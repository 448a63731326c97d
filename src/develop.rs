//! ML-ready outputs of a validated [`RawImage`]: normalized Bayer planes and a developed RGB image.
//!
//! These run on the host, on data the host has already validated: they parse nothing, every index
//! is bounded by dimensions checked in `raw::validate_frame`, and running them in a guest would
//! cost another copy of a 3x larger float image out of guest memory for no isolation gain.
//! Simple and correct over fancy: bilinear demosaicing, per-channel white balance, the file's
//! colour matrix (as dcraw applies it), sRGB output.

use image::{ImageBuffer, Rgb, Rgb32FImage, RgbImage};

use crate::error::{Error, Result};
use crate::raw::{CfaColor, RawImage, Rect};

/// XYZ (D65) from linear sRGB (IEC 61966-2-1).
const XYZ_FROM_SRGB: [[f32; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175],
    [0.019_333_9, 0.119_192, 0.950_304_1],
];

/// Half-resolution Bayer planes, planar `[4][height][width]` in R, G1, G2, B order (RGGB packing
/// whatever the sensor's own phase), `f32` in [0, 1] after black and white level.
#[derive(Debug, Clone, PartialEq)]
pub struct BayerPlanes {
    /// Width of each plane (half the image area's width, rounded down).
    pub width: usize,
    /// Height of each plane.
    pub height: usize,
    /// `4 x height x width` values: plane R, then G (first green of each 2x2 block in row-major
    /// order), then the other G, then B.
    pub data: Vec<f32>,
}

impl BayerPlanes {
    /// One plane: 0 = R, 1 = G1, 2 = G2, 3 = B.
    pub fn plane(&self, i: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[i * n..(i + 1) * n]
    }
}

/// Scales samples to [0, 1]: `(s - black) / (white - black)`, clamped, with the black-level
/// block and the reciprocals precomputed (validation guarantees white > black everywhere).
struct Normalizer<'a> {
    samples: &'a [u8],
    width: usize,
    cpp: usize,
    block_w: usize,
    block_h: usize,
    /// Per block cell and component: (black, 1 / (white - black)).
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

    /// Normalized component `c` of pixels `cols` of `row`, appended to `out`.
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

impl RawImage {
    /// The sample at (`row`, `col`, `c`) scaled to [0, 1] by the black and white levels.
    pub fn normalized(&self, row: usize, col: usize, c: usize) -> f32 {
        let info = self.info();
        let black = info.black_level(row, col, c);
        let white = info.white_levels[c] as f32;
        ((f32::from(self.sample(row, col, c)) - black) / (white - black)).clamp(0.0, 1.0)
    }

    /// Packs the image area ([`RawInfo::image_area`](crate::RawInfo::image_area)) of a 2x2 Bayer
    /// mosaic into four half-resolution planes (R, G, G, B), normalized to [0, 1]: the usual
    /// input of learned RAW pipelines.
    ///
    /// # Errors
    /// [`Error::Unsupported`] if the image is not a 2x2 Bayer mosaic of one red, two greens and
    /// one blue (X-Trans, four-colour and linear RAW files).
    pub fn bayer_planes(&self) -> Result<BayerPlanes> {
        let info = self.info();
        let unsupported = |reason: String| Error::Unsupported {
            file: info.file.clone(),
            operation: "pack RGGB Bayer planes",
            reason,
        };
        let cfa =
            info.cfa.as_ref().ok_or_else(|| unsupported(format!("{}-component image, not a mosaic", info.cpp)))?;
        let area = info.image_area();
        // Position of R, G1, G2, B inside each 2x2 block of the area, whatever the sensor's phase.
        let mut order = [None::<(usize, usize)>; 4];
        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let slot = match cfa.color_at(area.y + dy, area.x + dx) {
                CfaColor::Red => 0,
                CfaColor::Green if order[1].is_none() => 1,
                CfaColor::Green => 2,
                CfaColor::Blue => 3,
                CfaColor::Other => return Err(unsupported(format!("CFA {} has a fourth colour", cfa.name()))),
            };
            if order[slot].replace((dy, dx)).is_some() {
                return Err(unsupported(format!("CFA {} is not a 2x2 Bayer pattern", cfa.name())));
            }
        }
        let is_bayer = (cfa.width == 2 || cfa.width == 1) && (cfa.height == 2 || cfa.height == 1);
        let order = match order {
            [Some(r), Some(g1), Some(g2), Some(b)] if is_bayer => [r, g1, g2, b],
            _ => {
                return Err(unsupported(format!(
                    "CFA {} ({}x{}) is not RGGB-packable",
                    cfa.name(),
                    cfa.width,
                    cfa.height
                )));
            }
        };
        let (pw, ph) = (area.width / 2, area.height / 2);
        let norm = Normalizer::new(self);
        let mut data = Vec::with_capacity(4 * pw * ph);
        for (dy, dx) in order {
            for y in 0..ph {
                let start = area.x + dx;
                norm.row(area.y + 2 * y + dy, start..start + 2 * pw, 0, 2, &mut data);
            }
        }
        Ok(BayerPlanes { width: pw, height: ph, data })
    }

    /// Develops the image area into linear sRGB in [0, 1]: bilinear demosaic (any CFA: each
    /// missing colour is the mean of that colour's samples in the 3x3 neighbourhood), as-shot
    /// white balance, then the file's colour matrix. Pixels stay in sensor orientation.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for two- or four-component images.
    pub fn develop_linear(&self) -> Result<Rgb32FImage> {
        let info = self.info();
        let area = info.image_area();
        let camera = match (&info.cfa, info.cpp) {
            (Some(_), 1) => self.demosaic(area),
            (None, 3) => {
                let norm = Normalizer::new(self);
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
            _ => {
                return Err(Error::Unsupported {
                    file: info.file.clone(),
                    operation: "develop",
                    reason: format!("{}-component image", info.cpp),
                });
            }
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
        Ok(ImageBuffer::from_raw(area.width as u32, area.height as u32, out).expect("buffer sized to the area"))
    }

    /// [`develop_linear`](RawImage::develop_linear), sRGB-encoded to 16 bits per channel (for
    /// PNG/TIFF output without banding).
    ///
    /// # Errors
    /// As [`develop_linear`](RawImage::develop_linear).
    pub fn develop16(&self) -> Result<ImageBuffer<Rgb<u16>, Vec<u16>>> {
        let linear = self.develop_linear()?;
        let (w, h) = linear.dimensions();
        let data = linear.into_raw().into_iter().map(|v| (srgb_encode(v) * 65535.0).round() as u16).collect();
        Ok(ImageBuffer::from_raw(w, h, data).expect("same size"))
    }

    /// [`develop_linear`](RawImage::develop_linear), sRGB-encoded to 8 bits per channel.
    ///
    /// # Errors
    /// As [`develop_linear`](RawImage::develop_linear).
    pub fn develop(&self) -> Result<RgbImage> {
        let linear = self.develop_linear()?;
        let (w, h) = linear.dimensions();
        let data = linear.into_raw().into_iter().map(|v| (srgb_encode(v) * 255.0).round() as u8).collect();
        Ok(ImageBuffer::from_raw(w, h, data).expect("same size"))
    }

    /// Camera RGB of every pixel of `area`, interleaved, normalized.
    fn demosaic(&self, area: Rect) -> Vec<f32> {
        let info = self.info();
        let cfa = info.cfa.as_ref().expect("checked by caller");
        let (w, h) = (info.width, info.height);
        // Normalized mosaic and its colour channels over the area plus a one-pixel margin
        // (clamped to the frame), so that each sample is scaled and classified once.
        let (x0, y0) = (area.x.saturating_sub(1), area.y.saturating_sub(1));
        let (x1, y1) = ((area.x + area.width + 1).min(w), (area.y + area.height + 1).min(h));
        let mw = x1 - x0;
        let norm = Normalizer::new(self);
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
                        0.0 // a colour absent from this 3x3 window (not in real CFAs)
                    });
                }
            }
        }
        out
    }
}

/// Multipliers for R, G, B normalized to green; 1 where the file does not say.
fn white_balance(coeffs: [Option<f32>; 4]) -> [f32; 3] {
    let g = coeffs[1].unwrap_or(1.0);
    let k = |c: Option<f32>| c.map_or(1.0, |v| v / g);
    [k(coeffs[0]), 1.0, k(coeffs[2])]
}

/// The camera -> linear sRGB matrix from an XYZ -> camera matrix, as dcraw builds it: camera
/// from sRGB, rows normalized so that white maps to white, then inverted. `None` if singular.
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

/// The sRGB transfer function (IEC 61966-2-1).
fn srgb_encode(v: f32) -> f32 {
    if v <= 0.003_130_8 { 12.92 * v } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_matrix_of_the_srgb_camera_is_identity() {
        // A "camera" whose XYZ->cam matrix is sRGB's own XYZ->RGB must develop to identity.
        let xyz_to_srgb = invert(XYZ_FROM_SRGB).unwrap();
        let m = srgb_from_camera(xyz_to_srgb).unwrap();
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!((v - expected).abs() < 1e-3, "m[{i}][{j}] = {v}");
            }
        }
    }

    #[test]
    fn white_balance_is_relative_to_green() {
        assert_eq!(white_balance([Some(2.0), Some(1.0), Some(1.5), None]), [2.0, 1.0, 1.5]);
        assert_eq!(white_balance([Some(1024.0), Some(512.0), None, None]), [2.0, 1.0, 1.0]);
        assert_eq!(white_balance([None; 4]), [1.0; 3]);
    }

    #[test]
    fn srgb_encoding_endpoints() {
        assert_eq!(srgb_encode(0.0), 0.0);
        assert!((srgb_encode(1.0) - 1.0).abs() < 1e-6);
        assert!((srgb_encode(0.18) - 0.4614).abs() < 1e-3);
    }
}
