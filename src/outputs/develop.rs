//! ML-ready outputs of a validated [`RawImage`]: normalized Bayer planes and a developed RGB image.
//!
//! These run on the host, on data the host has already validated: they parse nothing, every index
//! is bounded by dimensions checked in `raw::validate_frame`, and running them in a guest would
//! cost another copy of a 3x larger float image out of guest memory for no isolation gain.
//! Simple and correct over fancy: bilinear demosaicing, per-channel white balance, the file's
//! colour matrix (as dcraw applies it), sRGB output.

use image::{ImageBuffer, Rgb, Rgb32FImage, RgbImage};

use crate::error::{Error, Result};
use crate::formats::raw::{Cfa, CfaColor, RawImage, Rect};

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

    /// Normalized component `c` of `out.len()` pixels of `row`: columns `first`, `first + step`, ...
    fn row(&self, row: usize, first: usize, c: usize, step: usize, out: &mut [f32]) {
        let Some(last) = out.len().checked_sub(1) else { return };
        let cells = &self.cells[(row % self.block_h) * self.block_w * self.cpp..][..self.block_w * self.cpp];
        let cell = |col: usize| cells[(col % self.block_w) * self.cpp + c];
        let stride = step * self.cpp * 2;
        let start = ((row * self.width + first) * self.cpp + c) * 2;
        let bytes = &self.samples[start..start + last * stride + 2];
        let scale = |b: &[u8], (black, inv): (f32, f32)| {
            ((f32::from(u16::from_le_bytes([b[0], b[1]])) - black) * inv).clamp(0.0, 1.0)
        };
        let same = |a: (f32, f32), b: (f32, f32)| (a.0.to_bits(), a.1.to_bits()) == (b.0.to_bits(), b.1.to_bits());
        let level = cell(first);
        if !(0..self.block_w).all(|k| same(cells[k * self.cpp + c], level)) {
            // Black levels that vary along the row (rare): look each one up.
            for (i, (o, b)) in out.iter_mut().zip(bytes.chunks(stride)).enumerate() {
                *o = scale(b, cell(first + i * step));
            }
        } else {
            // One level along the row (every file but those with exotic black-level blocks): the
            // mosaic (stride 2), Bayer planes (4) and linear RGB (6) get loops the compiler
            // vectorises.
            match stride {
                2 => scale_strided::<2>(bytes, level, out),
                4 => scale_strided::<4>(bytes, level, out),
                6 => scale_strided::<6>(bytes, level, out),
                _ => out.iter_mut().zip(bytes.chunks(stride)).for_each(|(o, b)| *o = scale(b, level)),
            }
        }
    }
}

/// `out[i]` = the u16 at `bytes[i * STRIDE..]` scaled by `(black, 1 / (white - black))`, clamped;
/// `bytes` ends with the last sample (`(out.len() - 1) * STRIDE + 2` bytes).
fn scale_strided<const STRIDE: usize>(bytes: &[u8], (black, inv): (f32, f32), out: &mut [f32]) {
    let scale = |lo: u8, hi: u8| ((f32::from(u16::from_le_bytes([lo, hi])) - black) * inv).clamp(0.0, 1.0);
    let (whole, rest) = bytes.as_chunks::<STRIDE>();
    for (o, b) in out.iter_mut().zip(whole) {
        *o = scale(b[0], b[1]);
    }
    // The last sample has no whole stride after it (unless STRIDE is 2).
    if let ([.., last], &[lo, hi]) = (&mut *out, rest) {
        *last = scale(lo, hi);
    }
}

/// Below this many rows per band, a thread costs more than it saves.
const MIN_BAND_ROWS: usize = 16;

/// Runs `work(first_row, band)` on `out`, rows of `row_len` values, split into one band of
/// consecutive rows per available core. Every output row is a function of the (shared, read-only)
/// input alone, so the result does not depend on how the rows are split.
fn in_bands<T: Send>(out: &mut [T], row_len: usize, work: impl Fn(usize, &mut [T]) + Sync) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bands = cores.min(rows / MIN_BAND_ROWS).max(1);
    if bands == 1 {
        return work(0, out);
    }
    let band_rows = rows.div_ceil(bands);
    std::thread::scope(|s| {
        let mut bands = out.chunks_mut(band_rows * row_len).enumerate();
        let first = bands.next();
        for (i, band) in bands {
            let work = &work;
            s.spawn(move || work(i * band_rows, band));
        }
        // The calling thread takes the first band instead of waiting idle.
        if let Some((_, band)) = first {
            work(0, band);
        }
    });
}

/// Runs `work(first_row, band)` on `out` (rows of `row_len` values) cut into bands of `band_rows`
/// rows, the bands shared out among the available cores as they finish. As with [`in_bands`],
/// every output row must depend on shared read-only input alone.
pub(super) fn in_bands_of<T: Send>(
    out: &mut [T],
    row_len: usize,
    band_rows: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = (band_rows * row_len).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bands = out.len().div_ceil(chunk);
    if cores == 1 || bands <= 1 {
        for (i, band) in out.chunks_mut(chunk).enumerate() {
            work(i * band_rows, band);
        }
        return;
    }
    let queue = std::sync::Mutex::new(out.chunks_mut(chunk).enumerate());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|s| {
        let run = || {
            while let Some((i, band)) = next() {
                work(i * band_rows, band);
            }
        };
        for _ in 1..cores.min(bands) {
            s.spawn(run);
        }
        run();
    });
}

/// Where the colours of a 2x2 Bayer mosaic sit, in sensor coordinates.
#[derive(Clone, Copy)]
struct Bayer {
    /// Greens are where `(row + col) % 2 == green_parity`.
    green_parity: usize,
    /// Rows of red (and green) are where `row % 2 == red_row_parity`.
    red_row_parity: usize,
}

impl Bayer {
    /// `Some` if the CFA is a 2x2 Bayer pattern for the demosaic (Other counts as green).
    fn of(cfa: &Cfa) -> Option<Bayer> {
        if cfa.width > 2 || cfa.height > 2 {
            return None;
        }
        let ch = |row, col| channel(cfa.color_at(row, col));
        let (green_parity, red_at) = match (ch(0, 0), ch(0, 1), ch(1, 0), ch(1, 1)) {
            (1, a, b, 1) if a != b && a != 1 && b != 1 => (0, if a == 0 { 0 } else { 1 }),
            (a, 1, 1, b) if a != b && a != 1 && b != 1 => (1, if a == 0 { 0 } else { 1 }),
            _ => return None,
        };
        Some(Bayer { green_parity, red_row_parity: red_at })
    }
}

/// The demosaic's channel of a CFA colour.
fn channel(c: CfaColor) -> usize {
    match c {
        CfaColor::Red => 0,
        CfaColor::Green | CfaColor::Other => 1,
        CfaColor::Blue => 2,
    }
}

/// Everything [`RawImage::develop_linear`] needs, computed once per image; rows are then
/// developed independently, each from at most three normalized input rows.
struct Developer<'a> {
    raw: &'a RawImage,
    norm: Normalizer<'a>,
    area: Rect,
    /// `Some` for mosaics, `None` for linear (3-component) images.
    cfa: Option<&'a Cfa>,
    bayer: Option<Bayer>,
    /// Columns of the normalized rows: the area plus a one-pixel margin, clamped to the frame.
    x0: usize,
    x1: usize,
    wb: [f32; 3],
    matrix: Option<[[f32; 3]; 3]>,
}

/// Per-thread buffers of a [`Developer`].
struct Scratch {
    /// Normalized mosaic rows (or the three components of a linear row), and which row each holds.
    rows: [Vec<f32>; 3],
    held: [Option<usize>; 3],
}

impl<'a> Developer<'a> {
    fn new(raw: &'a RawImage) -> Result<Self> {
        let info = raw.info();
        let area = info.image_area();
        let cfa = match (&info.cfa, info.cpp) {
            (Some(cfa), 1) => Some(cfa),
            (None, 3) => None,
            _ => {
                return Err(Error::Unsupported {
                    file: info.file.clone(),
                    operation: "develop",
                    reason: format!("{}-component image", info.cpp),
                });
            }
        };
        Ok(Developer {
            raw,
            norm: Normalizer::new(raw),
            area,
            cfa,
            bayer: cfa.and_then(Bayer::of),
            x0: area.x.saturating_sub(1),
            x1: (area.x + area.width + 1).min(info.width),
            wb: white_balance(info.wb_coeffs),
            matrix: info.xyz_to_cam.and_then(|m| srgb_from_camera([m[0], m[1], m[2]])),
        })
    }

    fn scratch(&self) -> Scratch {
        let n = self.x1 - self.x0;
        Scratch { rows: [vec![0.0; n], vec![0.0; n], vec![0.0; n]], held: [None; 3] }
    }

    /// Linear sRGB of sensor row `row` of the area into `out` (`3 x area.width`).
    fn row(&self, row: usize, scratch: &mut Scratch, out: &mut [f32]) {
        match self.cfa {
            Some(cfa) => self.demosaic_row(cfa, row, scratch, out),
            None => {
                let (x, width) = (self.area.x, self.area.width);
                for (c, plane) in scratch.rows.iter_mut().enumerate() {
                    self.norm.row(row, x, c, 1, &mut plane[..width]);
                }
                let [r, g, b] = &scratch.rows;
                for (((px, r), g), b) in out.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
                    px.copy_from_slice(&[*r, *g, *b]);
                }
            }
        }
        self.colour(out);
    }

    /// White balance, then the colour matrix, clamped: the same operations in the same order as
    /// the per-pixel formula, so the same bits.
    fn colour(&self, out: &mut [f32]) {
        let wb = self.wb;
        for px in out.chunks_exact_mut(3) {
            let cam = [px[0] * wb[0], px[1] * wb[1], px[2] * wb[2]];
            let rgb = match &self.matrix {
                Some(m) => mul(m, cam),
                None => cam,
            };
            for (dst, v) in px.iter_mut().zip(rgb) {
                *dst = v.clamp(0.0, 1.0);
            }
        }
    }

    /// Camera RGB of `row`: bilinear demosaic, each missing colour the mean of that colour's
    /// samples in the 3x3 neighbourhood (clipped to the frame), summed in row-major order.
    fn demosaic_row(&self, cfa: &Cfa, row: usize, scratch: &mut Scratch, out: &mut [f32]) {
        let h = self.raw.info().height;
        let window = row.saturating_sub(1)..(row + 2).min(h);
        for r in window.clone() {
            let slot = r % 3;
            if scratch.held[slot] != Some(r) {
                self.norm.row(r, self.x0, 0, 1, &mut scratch.rows[slot]);
                scratch.held[slot] = Some(r);
            }
        }
        let rows = &scratch.rows;
        let (x0, x1) = (self.x0, self.x1);
        let (ax, aw) = (self.area.x, self.area.width);
        // Pixels whose window is whole (not on the frame's edge) take the fast path if there is one.
        let whole = match self.bayer {
            Some(_) if window.len() == 3 => ax.max(x0 + 1)..(ax + aw).min(x1 - 1),
            _ => ax..ax,
        };
        let whole = if whole.is_empty() { ax..ax } else { whole };
        let here = |col: usize| (col - ax) * 3;
        if let Some(bayer) = self.bayer.filter(|_| !whole.is_empty()) {
            let [up, mid, down] = [&rows[(row - 1) % 3], &rows[row % 3], &rows[(row + 1) % 3]];
            let span = whole.start - 1 - x0..whole.end + 1 - x0;
            bayer_row(
                bayer,
                row,
                whole.start,
                &up[span.clone()],
                &mid[span.clone()],
                &down[span],
                &mut out[here(whole.start)..here(whole.end)],
            );
        }
        for col in (ax..whole.start).chain(whole.end..ax + aw) {
            let mut sum = [0f32; 3];
            let mut n = [0u32; 3];
            for r in window.clone() {
                let line = &rows[r % 3];
                for c in col.saturating_sub(1).max(x0)..(col + 2).min(x1) {
                    let ch = channel(cfa.color_at(r, c));
                    sum[ch] += line[c - x0];
                    n[ch] += 1;
                }
            }
            let own = channel(cfa.color_at(row, col));
            for (ch, dst) in out[here(col)..here(col) + 3].iter_mut().enumerate() {
                *dst = if ch == own {
                    rows[row % 3][col - x0]
                } else if n[ch] > 0 {
                    sum[ch] / n[ch] as f32
                } else {
                    0.0 // a colour absent from this 3x3 window (not in real CFAs)
                };
            }
        }
    }
}

/// The demosaic of pixels `first..` of `row` of a Bayer mosaic whose windows are whole: `up`,
/// `mid` and `down` hold the pixels from `first - 1` on of the rows around it. Each mean adds the
/// same samples in the same (row-major) order as the general loop, starting from 0.0, and divides
/// by the same count, so the bits are the same.
fn bayer_row(bayer: Bayer, row: usize, first: usize, up: &[f32], mid: &[f32], down: &[f32], out: &mut [f32]) {
    let red_row = row % 2 == bayer.red_row_parity;
    let first_green = (row + first) % 2 == bayer.green_parity;
    let windows = up.windows(3).zip(mid.windows(3)).zip(down.windows(3));
    for (k, (px, ((u, m), d))) in out.chunks_exact_mut(3).zip(windows).enumerate() {
        let green = (k % 2 == 0) == first_green;
        let [a, b, c, d_, e, f, g, h, i] = [u[0], u[1], u[2], m[0], m[1], m[2], d[0], d[1], d[2]];
        let rgb = if green {
            // Left/right are this row's red or blue, up/down the other one.
            let across = (0.0 + d_ + f) / 2.0;
            let vertical = (0.0 + b + h) / 2.0;
            if red_row { [across, e, vertical] } else { [vertical, e, across] }
        } else {
            let green = (0.0 + b + d_ + f + h) / 4.0;
            let diagonal = (0.0 + a + c + g + i) / 4.0;
            if red_row { [e, green, diagonal] } else { [diagonal, green, e] }
        };
        px.copy_from_slice(&rgb);
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
        let mut data = vec![0f32; 4 * pw * ph];
        // Rows of all four planes, one after the other, each read straight from the samples.
        if pw > 0 {
            in_bands(&mut data, pw, |first, band| {
                for (j, out) in band.chunks_exact_mut(pw).enumerate() {
                    let (plane, y) = ((first + j) / ph, (first + j) % ph);
                    let (dy, dx) = order[plane];
                    norm.row(area.y + 2 * y + dy, area.x + dx, 0, 2, out);
                }
            });
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
        let (w, h, data) = self.develop_rows(|linear, out| out.copy_from_slice(linear))?;
        Ok(ImageBuffer::from_raw(w, h, data).expect("buffer sized to the area"))
    }

    /// [`develop_linear`](RawImage::develop_linear), sRGB-encoded to 16 bits per channel (for
    /// PNG/TIFF output without banding).
    ///
    /// # Errors
    /// As [`develop_linear`](RawImage::develop_linear).
    pub fn develop16(&self) -> Result<ImageBuffer<Rgb<u16>, Vec<u16>>> {
        let table = Srgb16::get();
        let (w, h, data) = self.develop_rows(|linear, out| {
            for (o, &v) in out.iter_mut().zip(linear) {
                *o = table.encode(v);
            }
        })?;
        Ok(ImageBuffer::from_raw(w, h, data).expect("same size"))
    }

    /// [`develop_linear`](RawImage::develop_linear), sRGB-encoded to 8 bits per channel.
    ///
    /// # Errors
    /// As [`develop_linear`](RawImage::develop_linear).
    pub fn develop(&self) -> Result<RgbImage> {
        let (w, h, data) = self.develop_rows(|linear, out| {
            for (o, &v) in out.iter_mut().zip(linear) {
                *o = (srgb_encode(v) * 255.0).round() as u8;
            }
        })?;
        Ok(ImageBuffer::from_raw(w, h, data).expect("same size"))
    }

    /// The developed area as `(width, height, values)`: each row developed to linear sRGB, then
    /// turned into output values by `encode(linear_row, out_row)`, in bands of rows in parallel.
    fn develop_rows<T: Copy + Default + Send>(
        &self,
        encode: impl Fn(&[f32], &mut [T]) + Sync,
    ) -> Result<(u32, u32, Vec<T>)> {
        let dev = Developer::new(self)?;
        let area = dev.area;
        let row_len = area.width * 3;
        let mut data = vec![T::default(); row_len * area.height];
        in_bands(&mut data, row_len, |first, band| {
            let mut scratch = dev.scratch();
            let mut linear = vec![0f32; row_len];
            for (j, out) in band.chunks_exact_mut(row_len).enumerate() {
                dev.row(area.y + first + j, &mut scratch, &mut linear);
                encode(&linear, out);
            }
        });
        Ok((area.width as u32, area.height as u32, data))
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

/// The float types the 3x3 inverse runs in: f32 here (this module's outputs are pinned bit for
/// bit, tests/develop_speed.rs), f64 in `postprocess` (LibRaw parity); each with the determinant
/// below which a matrix counts as singular.
pub(super) trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const SINGULAR: Self;
    fn is_finite(self) -> bool;
    fn abs(self) -> Self;
}

impl Real for f32 {
    const SINGULAR: f32 = 1e-9;
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn abs(self) -> f32 {
        f32::abs(self)
    }
}

impl Real for f64 {
    const SINGULAR: f64 = 1e-12;
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn abs(self) -> f64 {
        f64::abs(self)
    }
}

/// The inverse of a 3x3 matrix by its adjugate, `None` if singular or not finite.
pub(super) fn invert<T: Real>(m: [[T; 3]; 3]) -> Option<[[T; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if !det.is_finite() || det.abs() < T::SINGULAR {
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

/// `(srgb_encode(v) * 65535.0).round() as u16`: what [`RawImage::develop16`] stores.
fn srgb16(v: f32) -> u16 {
    (srgb_encode(v) * 65535.0).round() as u16
}

/// [`srgb16`] by table lookup instead of a `powf` per value, with the same results.
///
/// For `v` in [0, 1], `srgb16` is a non-decreasing step function of `v`'s bits (f32 bits order
/// like the values they encode), so it is known exactly from where each step is. The table cuts
/// the bits into buckets of 256 consecutive floats; each entry holds the code at the start of its
/// bucket and the offset of the one step inside it, if any. One step at most: steps are at least
/// ~390 floats apart (the code changes by at most `65535 * 1.055 / 2.4 * v^(1/2.4 - 1) * ulp(v)`
/// per float, < 1/256 everywhere in [0, 1]). The table is built from `srgb16` itself, and a unit
/// test compares it with `srgb16` on every float in [0, 1].
struct Srgb16 {
    /// `code << 16 | offset of the step` (256: no step) per bucket.
    buckets: Vec<u32>,
}

impl Srgb16 {
    /// Floats below this (4.8e-7) encode to 0: the table starts here.
    const LOW: u32 = 0x3500_0000;
    const SHIFT: u32 = 8;
    const ONE: u32 = 0x3F80_0000;

    /// The table, built on first use (~10 ms) and shared.
    fn get() -> &'static Srgb16 {
        static TABLE: std::sync::OnceLock<Srgb16> = std::sync::OnceLock::new();
        TABLE.get_or_init(Srgb16::build)
    }

    fn build() -> Srgb16 {
        let code = |bits: u32| u32::from(srgb16(f32::from_bits(bits)));
        let n = ((Self::ONE - Self::LOW) >> Self::SHIFT) as usize + 1;
        let mut buckets = Vec::with_capacity(n);
        let mut start_code = code(Self::LOW);
        assert_eq!(start_code, 0, "everything below the table encodes to 0");
        for i in 0..n as u32 {
            let start = Self::LOW + (i << Self::SHIFT);
            let next = start + (1 << Self::SHIFT);
            let next_code = code(next);
            let step = if next_code == start_code {
                1 << Self::SHIFT
            } else {
                // The first float of the bucket with the next code.
                let (mut lo, mut hi) = (start, next); // code(lo) = start_code < code(hi)
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if code(mid) > start_code { hi = mid } else { lo = mid }
                }
                hi - start
            };
            buckets.push(start_code << 16 | step);
            start_code = next_code;
        }
        Srgb16 { buckets }
    }

    fn encode(&self, v: f32) -> u16 {
        let bits = v.to_bits();
        if bits > Self::ONE {
            // Above 1 saturates like the `as u16` it replaces; NaN and negatives (sign bit set)
            // give 0 like it.
            return if v > 1.0 { u16::MAX } else { 0 };
        }
        let entry = self.buckets[(bits.saturating_sub(Self::LOW) >> Self::SHIFT) as usize];
        let in_bucket = bits.saturating_sub(Self::LOW) & ((1 << Self::SHIFT) - 1);
        ((entry >> 16) + u32::from(in_bucket >= (entry & 0xFFFF))) as u16
    }
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

    /// Every float in [0, 1] (every 61st in debug builds), and the special values.
    #[test]
    fn srgb16_table_is_the_formula() {
        let table = Srgb16::get();
        let step = if cfg!(debug_assertions) { 61 } else { 1 };
        for bits in (0..=Srgb16::ONE).step_by(step).chain([Srgb16::ONE]) {
            let v = f32::from_bits(bits);
            assert_eq!(table.encode(v), srgb16(v), "{v:e} ({bits:#x})");
        }
        for v in [-0.0, -1.0, f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.000_001, 2.0, f32::MAX] {
            assert_eq!(table.encode(v), srgb16(v), "{v:e}");
        }
    }

    #[test]
    fn srgb_encoding_endpoints() {
        assert_eq!(srgb_encode(0.0), 0.0);
        assert!((srgb_encode(1.0) - 1.0).abs() < 1e-6);
        assert!((srgb_encode(0.18) - 0.4614).abs() < 1e-3);
    }
}
