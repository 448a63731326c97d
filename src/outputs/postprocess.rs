//! Development as LibRaw develops (`rawpy`'s `postprocess()`, dcraw's pipeline), with its options
//! and its defaults, so that a pipeline moving from rawpy gets the pictures it trained on.
//!
//! The steps, in LibRaw's order and integer arithmetic (so that outputs agree to a level, not just
//! in spirit): the visible area less black, the maximum adjusted to the data, white balance and
//! scaling to 16 bits (`scale_colors`), demosaic (bilinear, or AHD written here from Hirakawa and
//! Parks' published method), camera -> output colour space, a histogram for automatic brightness,
//! then the gamma curve and the file's orientation. Like [`develop`](super::develop) it runs on the
//! host, on samples and metadata the host has validated: every index is bounded by checked
//! dimensions.

use super::develop::invert;
use crate::error::{Error, Result};
use crate::formats::pixels::{Layout, Pixels};
use crate::formats::raw::{CfaColor, RawImage, Rect};

/// Linear sRGB (D65) -> XYZ (IEC 61966-2-1), the constants LibRaw 0.22 uses.
const XYZ_RGB: [[f64; 3]; 3] =
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]];
/// D65 white in XYZ, as LibRaw normalises Lab.
const D65_WHITE: [f64; 3] = [0.95047, 1.0, 1.08883];

/// Where the white-balance multipliers come from (rawpy's `use_camera_wb`, `use_auto_wb`,
/// `user_wb`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WhiteBalance {
    /// Daylight multipliers derived from the camera's colour matrix (rawpy's default).
    Daylight,
    /// The multipliers the camera recorded; the automatic balance if the file has none.
    Camera,
    /// Grey-world balance over the image, leaving out 8x8 blocks near saturation.
    Auto,
    /// The caller's multipliers for R, G, B and the second green.
    User([f32; 4]),
}

/// Demosaic algorithms (rawpy's `DemosaicAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demosaic {
    /// Bilinear: each missing colour the weighted mean of its 3x3 neighbours.
    Linear,
    /// Adaptive homogeneity-directed (Hirakawa and Parks): green interpolated along rows and along
    /// columns, and for each pixel the direction whose CIELab neighbourhood is more homogeneous.
    Ahd,
}

/// Output colour spaces (rawpy's `ColorSpace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputColor {
    /// The camera's own RGB, white-balanced, no matrix.
    Raw,
    /// sRGB primaries (D65).
    Srgb,
    /// Adobe RGB (1998).
    Adobe,
    /// Wide-gamut RGB.
    Wide,
    /// ProPhoto (ROMM) RGB.
    ProPhoto,
    /// CIE XYZ.
    Xyz,
    /// ACES (AP0), adapted to D65 as LibRaw has it.
    Aces,
    /// DCI-P3 primaries, D65 white.
    P3D65,
    /// ITU-R BT.2020 primaries.
    Rec2020,
}

impl OutputColor {
    /// Linear sRGB -> this space, as LibRaw's `convert_to_rgb` has them.
    fn from_srgb(self) -> Option<[[f64; 3]; 3]> {
        Some(match self {
            OutputColor::Raw => return None,
            OutputColor::Srgb => [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            OutputColor::Adobe => {
                [[0.715146, 0.284856, 0.000000], [0.000000, 1.000000, 0.000000], [0.000000, 0.041166, 0.958839]]
            }
            OutputColor::Wide => {
                [[0.593087, 0.404710, 0.002206], [0.095413, 0.843149, 0.061439], [0.011621, 0.069091, 0.919288]]
            }
            OutputColor::ProPhoto => {
                [[0.529317, 0.330092, 0.140588], [0.098368, 0.873465, 0.028169], [0.016879, 0.117663, 0.865457]]
            }
            OutputColor::Xyz => XYZ_RGB,
            OutputColor::Aces => [
                [0.43968015, 0.38295299, 0.17736686],
                [0.08978964, 0.81343316, 0.09677734],
                [0.01754827, 0.11156156, 0.87089017],
            ],
            OutputColor::P3D65 => {
                [[0.822488, 0.177511, 0.0], [0.033200, 0.966800, 0.0], [0.017089, 0.072411, 0.910499]]
            }
            OutputColor::Rec2020 => {
                [[0.627452, 0.329249, 0.043299], [0.069109, 0.919531, 0.011360], [0.016398, 0.088030, 0.895572]]
            }
        })
    }
}

/// What [`RawImage::postprocess`] does. [`Default`] is rawpy's (and LibRaw's) default: daylight
/// white balance, AHD, sRGB, BT.709 gamma (2.222, 4.5), automatic brightness at 1 %, 8 bits, the
/// file's orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcess {
    /// Where the white-balance multipliers come from.
    pub white_balance: WhiteBalance,
    /// The demosaic (ignored with `half_size`, which needs none).
    pub demosaic: Demosaic,
    /// Each 2x2 block of the mosaic becomes one pixel (the greens averaged): half the width and
    /// height, no demosaic.
    pub half_size: bool,
    /// The output colour space.
    pub output_color: OutputColor,
    /// The gamma curve as rawpy takes it: (power, slope of the linear toe), e.g. (2.222, 4.5) for
    /// BT.709, (2.4, 12.92) for sRGB, (1, 1) for linear.
    pub gamma: (f64, f64),
    /// Automatic brightness: the share of pixels allowed to clip (rawpy's `auto_bright_thr`);
    /// `None` is rawpy's `no_auto_bright=True`.
    pub auto_bright: Option<f64>,
    /// Brightness multiplier (the white point is divided by it).
    pub bright: f64,
    /// 8 or 16 bits per sample.
    pub output_bits: u8,
    /// LibRaw's `flip` (bit 0 mirror columns, bit 1 mirror rows, bit 2 transpose); `None` is the
    /// file's orientation.
    pub flip: Option<u8>,
    /// Black level replacing the file's (all channels).
    pub user_black: Option<u32>,
    /// Saturation level replacing the file's.
    pub user_sat: Option<u32>,
    /// Skip the white balance and scaling to 16 bits (LibRaw's `no_auto_scale`).
    pub no_auto_scale: bool,
    /// The saturation level is lowered to the data's maximum when that is above this share of it
    /// (LibRaw's `adjust_maximum_thr`; 0 keeps the file's level).
    pub adjust_maximum_thr: f64,
}

impl Default for PostProcess {
    fn default() -> Self {
        PostProcess {
            white_balance: WhiteBalance::Daylight,
            demosaic: Demosaic::Ahd,
            half_size: false,
            output_color: OutputColor::Srgb,
            gamma: (2.222, 4.5),
            auto_bright: Some(0.01),
            bright: 1.0,
            output_bits: 8,
            flip: None,
            user_black: None,
            user_sat: None,
            no_auto_scale: false,
            adjust_maximum_thr: 0.75,
        }
    }
}

/// LibRaw's `flip` for an EXIF orientation.
pub(crate) fn flip_of_orientation(orientation: u16) -> u8 {
    match orientation {
        2 => 1,
        3 => 3,
        4 => 2,
        5 => 4,
        6 => 6,
        7 => 7,
        8 => 5,
        _ => 0,
    }
}

/// A 16-bit RGB image being developed, row-major.
struct Planar {
    width: usize,
    height: usize,
    px: Vec<[u16; 3]>,
}

fn clip(v: i64) -> u16 {
    v.clamp(0, 65535) as u16
}

impl RawImage {
    /// The image developed as LibRaw develops it with the same options (see [`PostProcess`]):
    /// the active area (the sensor less its masked margins), `Rgb8` or `Rgb16` [`Pixels`],
    /// turned to the file's orientation unless [`PostProcess::flip`] says otherwise.
    ///
    /// ```
    /// # fn main() -> sandload::Result<()> {
    /// use sandload::{Demosaic, Input, PostProcess, Sandbox, WhiteBalance};
    /// let dng = sandload_samples::Dng::patterned(64, 48).to_bytes();
    /// let raw = Sandbox::new()?.decode_raw(Input::from_bytes(dng, "IMG_0001.dng"))?;
    /// // rawpy's `postprocess(use_camera_wb=True, half_size=True, output_bps=16)`:
    /// let opts = PostProcess { white_balance: WhiteBalance::Camera, half_size: true, output_bits: 16, ..Default::default() };
    /// let rgb = raw.postprocess(&opts)?;
    /// assert_eq!((rgb.width(), rgb.height()), (32, 24));
    /// // rawpy's defaults (AHD):
    /// assert_eq!(PostProcess::default().demosaic, Demosaic::Ahd);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for mosaics other than 2x2 Bayer (X-Trans, four-colour) unless
    /// `half_size`, images of other than 1 or 3 components, and options out of range (bits other
    /// than 8/16, a non-positive brightness or gamma, negative multipliers).
    pub fn postprocess(&self, opts: &PostProcess) -> Result<Pixels> {
        let info = self.info();
        let unsupported =
            |reason: String| Error::Unsupported { file: info.file.clone(), operation: "postprocess", reason };
        check_options(opts).map_err(unsupported)?;
        let area = info.active_area.unwrap_or(Rect { x: 0, y: 0, width: info.width, height: info.height });
        let colours = Colours::of(self).map_err(unsupported)?;
        let levels = Levels::of(self, &colours, area, opts);
        let pre_mul = levels.multipliers(self, &colours, area, opts);
        let scale = if opts.no_auto_scale {
            [1.0; 4]
        } else {
            let dmin = pre_mul.iter().copied().fold(f64::INFINITY, f64::min);
            pre_mul.map(|m| (m / dmin * 65535.0 / f64::from(levels.maximum)) as f32)
        };
        let image = match &colours {
            Colours::Linear => self.scaled_linear(area, &levels, scale),
            Colours::Bayer(fc) if opts.half_size => self.scaled_half(fc, area, &levels, scale),
            Colours::Bayer(fc) => {
                let mosaic = self.scaled_mosaic(fc, area, &levels, scale);
                let fc3 = fc.map(|c| if c == 3 { 1 } else { c });
                match opts.demosaic {
                    Demosaic::Linear => linear_demosaic(&mosaic, area.width, area.height, &fc3),
                    Demosaic::Ahd => ahd_demosaic(&mosaic, area.width, area.height, &fc3, &levels.rgb_cam),
                }
            }
        };
        Ok(finish(image, &levels.rgb_cam, opts, flip_of(opts, info.orientation)))
    }
}

fn flip_of(opts: &PostProcess, orientation: u16) -> u8 {
    opts.flip.unwrap_or_else(|| flip_of_orientation(orientation)) & 7
}

fn check_options(o: &PostProcess) -> std::result::Result<(), String> {
    if o.output_bits != 8 && o.output_bits != 16 {
        return Err(format!("output_bps must be 8 or 16, not {}", o.output_bits));
    }
    if !(o.bright.is_finite() && o.bright > 0.0) {
        return Err(format!("bright must be positive, not {}", o.bright));
    }
    let (power, slope) = o.gamma;
    if !(power.is_finite() && power > 0.0 && slope.is_finite() && slope >= 0.0) {
        return Err(format!("gamma must be (power > 0, slope >= 0), not {:?}", o.gamma));
    }
    if let Some(t) = o.auto_bright {
        if !(0.0..1.0).contains(&t) {
            return Err(format!("auto_bright_thr must be in [0, 1), not {t}"));
        }
    }
    if let WhiteBalance::User(m) = o.white_balance {
        if !m.iter().all(|v| v.is_finite() && *v >= 0.0) || m[..3].iter().all(|v| *v == 0.0) {
            return Err(format!("user_wb must be four non-negative multipliers, not all zero: {m:?}"));
        }
    }
    if !(0.0..=1.0).contains(&o.adjust_maximum_thr) {
        return Err(format!("adjust_maximum_thr must be in [0, 1], not {}", o.adjust_maximum_thr));
    }
    Ok(())
}

/// How colours are laid out: a 2x2 Bayer mosaic with LibRaw's colour indices (R 0, G 1, B 2, the
/// green sharing rows with blue 3), in sensor coordinates `fc[(row % 2) * 2 + col % 2]`, or three
/// components per pixel.
enum Colours {
    Bayer([usize; 4]),
    Linear,
}

impl Colours {
    fn of(raw: &RawImage) -> std::result::Result<Colours, String> {
        let info = raw.info();
        match (info.cpp, &info.cfa) {
            (3, None) => Ok(Colours::Linear),
            (1, Some(cfa)) => {
                let is_2x2 = (1..=2).contains(&cfa.width) && (1..=2).contains(&cfa.height);
                let at = |r: usize, c: usize| cfa.color_at(r, c);
                let mut fc = [0usize; 4];
                for (i, slot) in fc.iter_mut().enumerate() {
                    let (r, c) = (i / 2, i % 2);
                    *slot = match at(r, c) {
                        CfaColor::Red => 0,
                        CfaColor::Blue => 2,
                        CfaColor::Green if (0..2).any(|k| at(r, k) == CfaColor::Blue) => 3,
                        CfaColor::Green => 1,
                        CfaColor::Other => return Err(format!("CFA {} has a fourth colour", cfa.name())),
                    };
                }
                let mut sorted = fc;
                sorted.sort_unstable();
                if !is_2x2 || sorted != [0, 1, 2, 3] {
                    return Err(format!(
                        "CFA {} ({}x{}) is not a 2x2 Bayer pattern",
                        cfa.name(),
                        cfa.width,
                        cfa.height
                    ));
                }
                Ok(Colours::Bayer(fc))
            }
            (cpp, _) => Err(format!("{cpp}-component image")),
        }
    }

    /// Colour index (0-3) of sensor pixel (`row`, `col`); 0-2 for linear images' components.
    fn at(&self, row: usize, col: usize) -> usize {
        match self {
            Colours::Bayer(fc) => fc[(row % 2) * 2 + col % 2],
            Colours::Linear => 0,
        }
    }
}

/// Black per colour index, the saturation level above black, and the camera -> sRGB matrix.
struct Levels {
    black: [u32; 4],
    maximum: u32,
    /// Camera (3 colours) -> linear sRGB; `None` when the file has no usable colour matrix.
    rgb_cam: Option<[[f64; 3]; 3]>,
    /// Daylight multipliers from the colour matrix (LibRaw's `pre_mul`).
    daylight: [f64; 4],
}

impl Levels {
    fn of(raw: &RawImage, colours: &Colours, area: Rect, opts: &PostProcess) -> Levels {
        let info = raw.info();
        // Black of each colour index at its first site in the area, as LibRaw's per-channel black.
        let mut black = [0u32; 4];
        for dy in 0..2 {
            for dx in 0..2 {
                let (row, col) = (area.y + dy, area.x + dx);
                match colours {
                    Colours::Bayer(_) => {
                        black[colours.at(row, col)] = info.black_level(row, col, 0).round().max(0.0) as u32
                    }
                    Colours::Linear => {
                        for (c, b) in black.iter_mut().take(3).enumerate() {
                            *b = info.black_level(area.y, area.x, c).round().max(0.0) as u32;
                        }
                    }
                }
            }
        }
        if let Colours::Linear = colours {
            black[3] = black[1];
        }
        if let Some(user) = opts.user_black {
            black = [user; 4];
        }
        let white = info.white_levels.iter().copied().max().unwrap_or(65535);
        let maximum = white.saturating_sub(*black.iter().min().expect("four")).max(1);
        let (rgb_cam, daylight) = match info.xyz_to_cam.and_then(|m| camera_matrices([m[0], m[1], m[2]])) {
            Some((rgb_cam, daylight)) => (Some(rgb_cam), [daylight[0], daylight[1], daylight[2], daylight[1]]),
            None => (None, [1.0; 4]),
        };
        let mut levels = Levels { black, maximum, rgb_cam, daylight };
        levels.adjust_maximum(raw, colours, area, opts.adjust_maximum_thr);
        // LibRaw sets the user's saturation after black subtraction and the adjustment, as is.
        if let Some(sat) = opts.user_sat.filter(|s| *s > 0) {
            levels.maximum = sat;
        }
        levels
    }

    /// LibRaw's `adjust_maximum`: when the data stops short of the saturation level but above
    /// `thr` of it, the data's maximum is the saturation level (so that highlights are white).
    fn adjust_maximum(&mut self, raw: &RawImage, colours: &Colours, area: Rect, thr: f64) {
        if thr < 0.00001 {
            return;
        }
        let thr = if thr > 0.99999 { 0.75 } else { thr };
        let mut data_max = 0u32;
        for_each_sample(raw, colours, area, |_, _, c, v| {
            data_max = data_max.max(u32::from(v).saturating_sub(self.black[c]));
        });
        if data_max > 0 && data_max < self.maximum && f64::from(data_max) > f64::from(self.maximum) * thr {
            self.maximum = data_max;
        }
    }

    /// The white-balance multipliers `pre_mul` for colour indices 0-3, as `scale_colors` picks
    /// them.
    fn multipliers(&self, raw: &RawImage, colours: &Colours, area: Rect, opts: &PostProcess) -> [f64; 4] {
        let info = raw.info();
        let camera = info.wb_coeffs;
        let mut pre = match opts.white_balance {
            WhiteBalance::User(m) => m.map(f64::from),
            WhiteBalance::Camera if plausible_camera_wb(camera) => camera.map(|c| f64::from(c.unwrap_or(0.0))),
            WhiteBalance::Camera | WhiteBalance::Auto => self.grey_world(raw, colours, area),
            WhiteBalance::Daylight => self.daylight,
        };
        if pre[1] == 0.0 {
            pre[1] = 1.0;
        }
        if pre[3] == 0.0 {
            pre[3] = pre[1];
        }
        for v in &mut pre {
            if *v <= 0.0 {
                *v = 1.0; // a colour with no samples in the grey world, or a zero user multiplier
            }
        }
        pre
    }

    /// Grey-world multipliers: per colour, pixels over sum, over the 8x8 blocks of the area (the
    /// last ones cut by the edge) that have no sample within 25 of saturation.
    fn grey_world(&self, raw: &RawImage, colours: &Colours, area: Rect) -> [f64; 4] {
        let mut total = [0f64; 8];
        let cpp = raw.info().cpp;
        let (w, h) = (area.width, area.height);
        let limit = i64::from(self.maximum) - 25;
        for by in (0..h).step_by(8) {
            'block: for bx in (0..w).step_by(8) {
                let mut sum = [0f64; 8];
                for y in by..(by + 8).min(h) {
                    for x in bx..(bx + 8).min(w) {
                        let (row, col) = (area.y + y, area.x + x);
                        for k in 0..cpp {
                            let c = if cpp == 1 { colours.at(row, col) } else { k };
                            let v = u32::from(raw.sample(row, col, k)).saturating_sub(self.black[c]);
                            if i64::from(v) > limit {
                                continue 'block;
                            }
                            sum[c] += f64::from(v);
                            sum[c + 4] += 1.0;
                        }
                    }
                }
                for (t, s) in total.iter_mut().zip(sum) {
                    *t += s;
                }
            }
        }
        std::array::from_fn(|c| if total[c] > 0.0 { total[c + 4] / total[c] } else { 0.0 })
    }
}

/// Whether the camera's multipliers are usable, as LibRaw judges them: R, G and B all above 0.001
/// and within a factor of 100 of each other.
fn plausible_camera_wb(camera: [Option<f32>; 4]) -> bool {
    let Some(rgb) = camera[..3].iter().map(|c| c.filter(|v| v.is_finite() && *v > 0.001)).collect::<Option<Vec<f32>>>()
    else {
        return false;
    };
    let (lo, hi) = rgb.iter().fold((f32::INFINITY, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    hi / lo <= 100.0
}

/// Calls `f(y, x, colour, sample)` for every sample of the area (`y`, `x` relative to it).
fn for_each_sample(raw: &RawImage, colours: &Colours, area: Rect, mut f: impl FnMut(usize, usize, usize, u16)) {
    let cpp = raw.info().cpp;
    for y in 0..area.height {
        for x in 0..area.width {
            let (row, col) = (area.y + y, area.x + x);
            for k in 0..cpp {
                let c = if cpp == 1 { colours.at(row, col) } else { k };
                f(y, x, c, raw.sample(row, col, k));
            }
        }
    }
}

/// `(sample - black) * scale`, truncated and clipped to 16 bits, as `scale_colors` computes it.
fn scaled(v: u16, black: u32, scale: f32) -> u16 {
    let v = u32::from(v).saturating_sub(black);
    if v == 0 { 0 } else { clip((v as f32 * scale) as i64) }
}

impl RawImage {
    /// The area's mosaic, black-subtracted and scaled.
    fn scaled_mosaic(&self, fc: &[usize; 4], area: Rect, levels: &Levels, scale: [f32; 4]) -> Vec<u16> {
        let mut out = Vec::with_capacity(area.width * area.height);
        for row in area.y..area.y + area.height {
            for col in area.x..area.x + area.width {
                let c = fc[(row % 2) * 2 + col % 2];
                out.push(scaled(self.sample(row, col, 0), levels.black[c], scale[c]));
            }
        }
        out
    }

    /// Each 2x2 block of the area as one pixel, the greens averaged (LibRaw's `half_size`).
    fn scaled_half(&self, fc: &[usize; 4], area: Rect, levels: &Levels, scale: [f32; 4]) -> Planar {
        let (w, h) = (area.width.div_ceil(2), area.height.div_ceil(2));
        let mut four = vec![[0u16; 4]; w * h];
        for y in 0..area.height {
            for x in 0..area.width {
                let (row, col) = (area.y + y, area.x + x);
                let c = fc[(row % 2) * 2 + col % 2];
                four[(y / 2) * w + x / 2][c] = scaled(self.sample(row, col, 0), levels.black[c], scale[c]);
            }
        }
        let px = four.into_iter().map(|p| [p[0], ((u32::from(p[1]) + u32::from(p[3])) >> 1) as u16, p[2]]).collect();
        Planar { width: w, height: h, px }
    }

    /// A linear (3-component) image's area, black-subtracted and scaled.
    fn scaled_linear(&self, area: Rect, levels: &Levels, scale: [f32; 4]) -> Planar {
        let mut px = Vec::with_capacity(area.width * area.height);
        for row in area.y..area.y + area.height {
            for col in area.x..area.x + area.width {
                px.push(std::array::from_fn(|c| scaled(self.sample(row, col, c), levels.black[c], scale[c])));
            }
        }
        Planar { width: area.width, height: area.height, px }
    }
}

/// Camera -> linear sRGB and the daylight multipliers from an XYZ -> camera matrix, as dcraw
/// derives them: camera-from-sRGB rows normalised to sum 1 (their sums' reciprocals are the
/// daylight multipliers), then inverted. `None` if a row sums to zero or the matrix is singular.
fn camera_matrices(xyz_to_cam: [[f32; 3]; 3]) -> Option<([[f64; 3]; 3], [f64; 3])> {
    let mut cam_rgb = [[0f64; 3]; 3];
    let mut daylight = [0f64; 3];
    for i in 0..3 {
        for j in 0..3 {
            cam_rgb[i][j] = (0..3).map(|k| f64::from(xyz_to_cam[i][k]) * XYZ_RGB[k][j]).sum();
        }
        let sum: f64 = cam_rgb[i].iter().sum();
        if !sum.is_finite() || sum.abs() < 1e-9 {
            return None;
        }
        cam_rgb[i].iter_mut().for_each(|v| *v /= sum);
        daylight[i] = 1.0 / sum;
    }
    Some((invert(cam_rgb)?, daylight))
}

fn mul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// Fills every pixel within `border` of the edge: each missing colour the integer mean of that
/// colour's samples in the 3x3 window (clipped to the image), the own colour kept.
fn border_interpolate(mosaic: &[u16], w: usize, h: usize, fc: &[usize; 4], border: usize, out: &mut [[u16; 3]]) {
    for row in 0..h {
        let inner_row = row >= border && row + border < h;
        let mut col = 0;
        while col < w {
            if inner_row && col == border && w > 2 * border {
                col = w - border;
                continue;
            }
            let mut sum = [0u32; 3];
            let mut n = [0u32; 3];
            for y in row.saturating_sub(1)..(row + 2).min(h) {
                for x in col.saturating_sub(1)..(col + 2).min(w) {
                    let f = fc[(y % 2) * 2 + x % 2];
                    sum[f] += u32::from(mosaic[y * w + x]);
                    n[f] += 1;
                }
            }
            let own = fc[(row % 2) * 2 + col % 2];
            let px = &mut out[row * w + col];
            px[own] = mosaic[row * w + col];
            for c in 0..3 {
                if c != own && n[c] > 0 {
                    px[c] = (sum[c] / n[c]) as u16;
                }
            }
            col += 1;
        }
    }
}

/// Bilinear demosaic of a Bayer mosaic (colour indices 0-2): a missing colour is the mean of its
/// samples in the 3x3 window, those beside weighing twice those diagonal (all the same colour in a
/// Bayer mosaic), in integer arithmetic.
fn linear_demosaic(mosaic: &[u16], w: usize, h: usize, fc: &[usize; 4]) -> Planar {
    let mut px = vec![[0u16; 3]; w * h];
    border_interpolate(mosaic, w, h, fc, 1, &mut px);
    for row in 1..h.saturating_sub(1) {
        for col in 1..w.saturating_sub(1) {
            let own = fc[(row % 2) * 2 + col % 2];
            let mut sum = [0u32; 3];
            let mut weight = [0u32; 3];
            for (dy, y) in [(0usize, row - 1), (1, row), (2, row + 1)] {
                for (dx, x) in [(0usize, col - 1), (1, col), (2, col + 1)] {
                    let f = fc[(y % 2) * 2 + x % 2];
                    if f == own {
                        continue;
                    }
                    let shift = u32::from(dy == 1) + u32::from(dx == 1);
                    sum[f] += u32::from(mosaic[y * w + x]) << shift;
                    weight[f] += 1 << shift;
                }
            }
            let p = &mut px[row * w + col];
            p[own] = mosaic[row * w + col];
            for c in 0..3 {
                if c != own && weight[c] > 0 {
                    p[c] = ((sum[c] * (256 / weight[c])) >> 8) as u16;
                }
            }
        }
    }
    Planar { width: w, height: h, px }
}

/// `x` limited to the range between `a` and `b` (in either order).
fn ulim(x: i32, a: i32, b: i32) -> i32 {
    if a < b { x.clamp(a, b) } else { x.clamp(b, a) }
}

/// The CIELab of a camera RGB pixel, scaled as dcraw's AHD compares them (L x 64, a and b x 64).
struct Lab {
    /// XYZ (relative to D65 white) from camera RGB.
    xyz_cam: [[f32; 3]; 3],
    /// The Lab companding function on every 16-bit value.
    cbrt: Vec<f32>,
}

impl Lab {
    fn new(rgb_cam: &Option<[[f64; 3]; 3]>) -> Lab {
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let rgb_cam = rgb_cam.unwrap_or(identity);
        let mut xyz_cam = mul3(&XYZ_RGB, &rgb_cam);
        for (row, white) in xyz_cam.iter_mut().zip(D65_WHITE) {
            row.iter_mut().for_each(|v| *v /= white);
        }
        let xyz_cam = xyz_cam.map(|r| r.map(|v| v as f32));
        let cbrt = (0..0x10000u32)
            .map(|i| {
                let r = i as f32 / 65535.0;
                if r > 0.008856 { r.powf(1.0 / 3.0) } else { 7.787 * r + 16.0 / 116.0 }
            })
            .collect();
        Lab { xyz_cam, cbrt }
    }

    fn of(&self, rgb: [u16; 3]) -> [i16; 3] {
        let xyz = self.xyz_cam.map(|row| {
            let v = 0.5 + row[0] * f32::from(rgb[0]) + row[1] * f32::from(rgb[1]) + row[2] * f32::from(rgb[2]);
            self.cbrt[usize::from(clip(v as i64))]
        });
        [
            (64.0 * (116.0 * xyz[1] - 16.0)) as i16,
            (64.0 * 500.0 * (xyz[0] - xyz[1])) as i16,
            (64.0 * 200.0 * (xyz[1] - xyz[2])) as i16,
        ]
    }
}

/// Rows an AHD band computes beyond the rows it writes: green needs mosaic rows 2 away, red/blue
/// green rows 1 away, homogeneity Lab rows 1 away, and the choice homogeneity rows 1 away.
const AHD_MARGIN: usize = 5;
/// Output rows per AHD band.
const AHD_BAND: usize = 64;

/// AHD demosaic (Hirakawa and Parks, "Adaptive homogeneity-directed demosaicing algorithm", IEEE
/// TIP 2005), with dcraw's filters so that results agree with LibRaw's: for each pixel, two
/// candidate RGB values, one from green interpolated along the row and one along the column;
/// red and blue from the colour differences to that green; then the candidate whose CIELab
/// values in the 3x3 neighbourhood are more often within the adaptive thresholds (luminance and
/// chroma distance to the nearer neighbours in the other direction), or their mean when tied.
/// The outer 5 pixels are filled by [`border_interpolate`]. Bands of rows are independent and run
/// on all cores.
fn ahd_demosaic(mosaic: &[u16], w: usize, h: usize, fc: &[usize; 4], rgb_cam: &Option<[[f64; 3]; 3]>) -> Planar {
    let mut px = vec![[0u16; 3]; w * h];
    border_interpolate(mosaic, w, h, fc, 5, &mut px);
    if w <= 2 * AHD_MARGIN || h <= 2 * AHD_MARGIN {
        return Planar { width: w, height: h, px };
    }
    let lab = Lab::new(rgb_cam);
    let inner = &mut px[AHD_MARGIN * w..(h - AHD_MARGIN) * w];
    super::develop::in_bands_of(inner, w, AHD_BAND, |first, band| {
        let rows = band.len() / w;
        ahd_band(mosaic, w, h, fc, &lab, AHD_MARGIN + first, rows, band);
    });
    Planar { width: w, height: h, px }
}

/// AHD of output rows `top..top + rows` (all at least [`AHD_MARGIN`] from the edges) into `out`;
/// columns within 5 of the edges are left as they are.
#[allow(clippy::too_many_arguments)]
fn ahd_band(m: &[u16], w: usize, h: usize, fc: &[usize; 4], lab: &Lab, top: usize, rows: usize, out: &mut [[u16; 3]]) {
    // Local rows y0..y1 of the image: the output rows and the margin they need.
    let y0 = top - AHD_MARGIN + 2;
    let y1 = (top + rows + AHD_MARGIN - 2).min(h - 2);
    let n = (y1 - y0) * w;
    let at = |y: usize, x: usize| i32::from(m[y * w + x]);
    let colour = |y: usize, x: usize| fc[(y % 2) * 2 + x % 2];
    // Candidate RGB along rows (0) and columns (1), and their Lab.
    let mut rgb = [vec![[0u16; 3]; n], vec![[0u16; 3]; n]];
    let mut labs = [vec![[0i16; 3]; n], vec![[0i16; 3]; n]];
    let idx = |y: usize, x: usize| (y - y0) * w + x;
    // Green, rows [2, h - 2) and columns [2, w - 2).
    for y in y0..y1 {
        for x in 2..w - 2 {
            let c = colour(y, x);
            if c == 1 {
                continue;
            }
            let (l, r) = (at(y, x - 1), at(y, x + 1));
            let hv = ((l + at(y, x) + r) * 2 - at(y, x - 2) - at(y, x + 2)) >> 2;
            rgb[0][idx(y, x)][1] = ulim(hv, l, r) as u16;
            let (u, d) = (at(y - 1, x), at(y + 1, x));
            let vv = ((u + at(y, x) + d) * 2 - at(y - 2, x) - at(y + 2, x)) >> 2;
            rgb[1][idx(y, x)][1] = ulim(vv, u, d) as u16;
        }
    }
    // Red and blue from colour differences, then Lab: rows and columns [3, n - 3).
    let (ly0, ly1) = ((y0 + 1).max(3), (y1 - 1).min(h - 3));
    for (buf, labs) in rgb.iter_mut().zip(labs.iter_mut()) {
        // Only the greens of red and blue sites are read, and only red/blue are written: in place.
        let g = |buf: &[[u16; 3]], y: usize, x: usize| i32::from(buf[idx(y, x)][1]);
        for y in ly0..ly1 {
            for x in 3..w - 3 {
                let own = colour(y, x);
                let mut p = buf[idx(y, x)];
                if own == 1 {
                    let vertical = colour(y + 1, x);
                    let across = 2 - vertical;
                    let v = at(y, x) + ((at(y, x - 1) + at(y, x + 1) - g(buf, y, x - 1) - g(buf, y, x + 1)) >> 1);
                    p[across] = clip(i64::from(v));
                    let v = at(y, x) + ((at(y - 1, x) + at(y + 1, x) - g(buf, y - 1, x) - g(buf, y + 1, x)) >> 1);
                    p[vertical] = clip(i64::from(v));
                } else {
                    let other = 2 - own;
                    let diag = at(y - 1, x - 1) + at(y - 1, x + 1) + at(y + 1, x - 1) + at(y + 1, x + 1);
                    let gdiag =
                        g(buf, y - 1, x - 1) + g(buf, y - 1, x + 1) + g(buf, y + 1, x - 1) + g(buf, y + 1, x + 1);
                    p[other] = clip(i64::from(g(buf, y, x) + ((diag - gdiag + 1) >> 2)));
                }
                p[own] = m[y * w + x];
                buf[idx(y, x)] = p;
                labs[idx(y, x)] = lab.of(p);
            }
        }
    }
    // Homogeneity: rows and columns [4, n - 4).
    let (hy0, hy1) = (ly0 + 1, ly1 - 1);
    let mut homo = [vec![0u8; n], vec![0u8; n]];
    for y in hy0..hy1 {
        for x in 4..w - 4 {
            let i = idx(y, x);
            let neighbours = [i - 1, i + 1, i - w, i + w];
            let mut ldiff = [[0i32; 4]; 2];
            let mut abdiff = [[0i32; 4]; 2];
            for d in 0..2 {
                let here = labs[d][i];
                for (k, &j) in neighbours.iter().enumerate() {
                    let there = labs[d][j];
                    ldiff[d][k] = (i32::from(here[0]) - i32::from(there[0])).abs();
                    let (da, db) = (i32::from(here[1]) - i32::from(there[1]), i32::from(here[2]) - i32::from(there[2]));
                    abdiff[d][k] = da * da + db * db;
                }
            }
            let leps = ldiff[0][0].max(ldiff[0][1]).min(ldiff[1][2].max(ldiff[1][3]));
            let abeps = abdiff[0][0].max(abdiff[0][1]).min(abdiff[1][2].max(abdiff[1][3]));
            for d in 0..2 {
                homo[d][i] = (0..4).filter(|&k| ldiff[d][k] <= leps && abdiff[d][k] <= abeps).count() as u8;
            }
        }
    }
    // The choice, for the band's rows and columns [5, w - 5).
    for y in top..top + rows {
        for x in 5..w - 5 {
            let mut hm = [0u32; 2];
            for (d, score) in hm.iter_mut().enumerate() {
                for yy in y - 1..=y + 1 {
                    for xx in x - 1..=x + 1 {
                        *score += u32::from(homo[d][idx(yy, xx)]);
                    }
                }
            }
            let i = idx(y, x);
            out[(y - top) * w + x] = if hm[0] != hm[1] {
                rgb[usize::from(hm[1] > hm[0])][i]
            } else {
                std::array::from_fn(|c| ((u32::from(rgb[0][i][c]) + u32::from(rgb[1][i][c])) >> 1) as u16)
            };
        }
    }
}

/// Colour conversion, automatic brightness, gamma and orientation: the developed area as pixels.
fn finish(mut image: Planar, rgb_cam: &Option<[[f64; 3]; 3]>, opts: &PostProcess, flip: u8) -> Pixels {
    // Camera -> output space; none for raw colour or a file without a colour matrix.
    let out_cam = match (opts.output_color.from_srgb(), rgb_cam) {
        (Some(out_rgb), Some(rgb_cam)) => Some(mul3(&out_rgb, rgb_cam).map(|r| r.map(|v| v as f32))),
        _ => None,
    };
    let mut histogram = vec![[0u32; 0x2000]; 3];
    for p in &mut image.px {
        if let Some(m) = &out_cam {
            let v = p.map(f32::from);
            *p = m.map(|r| clip((r[0] * v[0] + r[1] * v[1] + r[2] * v[2]) as i64));
        }
        for (c, v) in p.iter().enumerate() {
            histogram[c][usize::from(*v >> 3)] += 1;
        }
    }
    // The white point: the level above which fewer than `auto_bright` of the pixels lie (of the
    // brightest channel), or full scale.
    let white = match opts.auto_bright {
        Some(thr) => {
            let perc = ((image.width * image.height) as f64 * thr) as u64;
            let mut t_white = 0;
            for hist in &histogram {
                let mut total = 0u64;
                let mut val = 0x2000;
                loop {
                    val -= 1;
                    if val <= 32 {
                        break;
                    }
                    total += u64::from(hist[val]);
                    if total > perc {
                        break;
                    }
                }
                t_white = t_white.max(val);
            }
            t_white
        }
        None => 0x2000,
    };
    let imax = ((white << 3) as f64 / opts.bright) as i64;
    let curve = gamma_curve(1.0 / opts.gamma.0, opts.gamma.1, imax);
    let (w, h) = (image.width, image.height);
    let (ow, oh) = if flip & 4 != 0 { (h, w) } else { (w, h) };
    let index = |row: usize, col: usize| {
        let (mut r, mut c) = if flip & 4 != 0 { (col, row) } else { (row, col) };
        if flip & 2 != 0 {
            r = h - 1 - r;
        }
        if flip & 1 != 0 {
            c = w - 1 - c;
        }
        r * w + c
    };
    let bytes_per = usize::from(opts.output_bits / 8);
    let mut data = Vec::with_capacity(ow * oh * 3 * bytes_per);
    for row in 0..oh {
        for col in 0..ow {
            for v in image.px[index(row, col)] {
                let g = curve[usize::from(v)];
                if opts.output_bits == 8 {
                    data.push((g >> 8) as u8);
                } else {
                    data.extend_from_slice(&g.to_le_bytes());
                }
            }
        }
    }
    let layout = if opts.output_bits == 8 { Layout::Rgb8 } else { Layout::Rgb16 };
    Pixels::new(ow as u32, oh as u32, layout, data).expect("sized to the image")
}

/// dcraw's gamma curve on 16-bit values for white point `imax`: a power curve `pwr` with a linear
/// toe of slope `ts`, joined where value and slope meet (BT.709's form), values at or above the
/// white point 65535.
fn gamma_curve(pwr: f64, ts: f64, imax: i64) -> Vec<u16> {
    let mut g = [pwr, ts, 0.0, 0.0, 0.0, 0.0];
    let mut bnd = [0.0f64, 0.0];
    bnd[usize::from(g[1] >= 1.0)] = 1.0;
    if g[1] != 0.0 && (g[1] - 1.0) * (g[0] - 1.0) <= 0.0 {
        for _ in 0..48 {
            g[2] = (bnd[0] + bnd[1]) / 2.0;
            if g[0] != 0.0 {
                let side = ((g[2] / g[1]).powf(-g[0]) - 1.0) / g[0] - 1.0 / g[2] > -1.0;
                bnd[usize::from(side)] = g[2];
            } else {
                bnd[usize::from(g[2] / (1.0 - 1.0 / g[2]).exp() < g[1])] = g[2];
            }
        }
        g[3] = g[2] / g[1];
        if g[0] != 0.0 {
            g[4] = g[2] * (1.0 / g[0] - 1.0);
        }
    }
    let imax = imax.max(1) as f64;
    (0..0x10000)
        .map(|i| {
            let r = f64::from(i) / imax;
            if r >= 1.0 {
                return 0xffff;
            }
            let v = if r < g[3] {
                r * g[1]
            } else if g[0] != 0.0 {
                r.powf(g[0]) * (1.0 + g[4]) - g[4]
            } else {
                r.ln() * g[2] + 1.0
            };
            (0x10000 as f64 * v) as u16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_curve_bt709_and_linear() {
        // Linear: 16-bit identity below the white point.
        let linear = gamma_curve(1.0, 1.0, 0x10000);
        assert_eq!(&linear[..4], &[0, 1, 2, 3]);
        assert_eq!(linear[40000], 40000);
        // BT.709: slope 4.5 at the toe, 0.45 power above.
        let bt709 = gamma_curve(1.0 / 2.222, 4.5, 0x10000);
        assert_eq!(bt709[100], (0x10000 as f64 * 100.0 / 65536.0 * 4.5) as u16);
        let r: f64 = 0.5;
        let expected = 1.099 * r.powf(0.45) - 0.099;
        assert!((f64::from(bt709[32768]) / 65536.0 - expected).abs() < 2e-3);
        // At and above the white point: full scale.
        assert_eq!(gamma_curve(1.0 / 2.222, 4.5, 1000)[1000], 0xffff);
    }

    #[test]
    fn flips_are_libraws() {
        let flips: Vec<u8> = (1..=8).map(flip_of_orientation).collect();
        assert_eq!(flips, [0, 1, 3, 2, 4, 6, 7, 5]);
    }

    #[test]
    fn ulim_orders_its_bounds() {
        assert_eq!(ulim(5, 1, 3), 3);
        assert_eq!(ulim(5, 3, 1), 3);
        assert_eq!(ulim(-5, 3, 1), 1);
        assert_eq!(ulim(2, 3, 1), 2);
    }
}
