//! Decoded pixels in the file's own sample type: what [`DecodedImage`](crate::DecodedImage)
//! holds. `image`'s `DynamicImage` has ten layouts; TIFF files use many more (32-bit integer and
//! 64-bit float grey, signed samples, CMYK, bilevel), and converting them on the way in would
//! lose what the file says. [`Pixels::to_dynamic_image`] converts when a caller wants `image`'s
//! types.

use half::f16;
use image::{DynamicImage, ImageBuffer};

pub use sandload_abi::image::{Colour, Layout, Sample};

/// A decoded image's samples: row-major, channels interleaved, no row padding, each sample
/// little-endian in its [`Sample`] type (1-, 2- and 4-bit samples one per byte, see
/// [`Layout::bits`]). Checked against its dimensions and layout when built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    width: u32,
    height: u32,
    layout: Layout,
    data: Vec<u8>,
}

impl Pixels {
    /// Pixels of `layout`, if `data` holds exactly `width x height` of them and every sub-byte
    /// sample is within its bit depth.
    pub fn new(width: u32, height: u32, layout: Layout, data: Vec<u8>) -> Option<Pixels> {
        let expected = u64::from(width).checked_mul(u64::from(height))?.checked_mul(layout.bytes_per_pixel())?;
        let fits = layout.is_valid() && data.len() as u64 == expected;
        let in_range = layout.bits >= 8 || data.iter().all(|&v| v >> layout.bits == 0);
        (fits && in_range).then_some(Pixels { width, height, layout, data })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// How the samples are laid out.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The samples' bytes (little-endian).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The samples' bytes (little-endian), owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }

    /// The pixels as one of `image`'s types: exactly, for the ten layouts `DynamicImage` has
    /// (8/16-bit and 32-bit float grey/RGB(A)); otherwise converted:
    /// - 1/2/4-bit grey is scaled to 8 bits (0 and the largest value become 0 and 255);
    /// - 32/64-bit integers keep their top 16 bits, signed ones shifted to unsigned first
    ///   (`i16::MIN` becomes 0);
    /// - 16 and 64-bit floats become 32-bit floats, and float grey becomes float RGB(A);
    /// - CMYK becomes RGB as Pillow converts it (`R = (max - C) x (max - K) / max`).
    pub fn to_dynamic_image(&self) -> DynamicImage {
        let Pixels { width: w, height: h, layout, .. } = *self;
        let colour = layout.colour;
        let channels = layout.channels() as usize;
        if layout.sample.is_float() {
            let f = self.floats();
            let (f, alpha) = match colour {
                Colour::L => (f.iter().flat_map(|&v| [v, v, v]).collect(), false),
                Colour::La => (f.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(), true),
                Colour::Rgb => (f, false),
                Colour::Rgba => (f, true),
                Colour::Cmyk | Colour::Cmyka => {
                    let alpha = colour == Colour::Cmyka;
                    (f.chunks_exact(channels).flat_map(|p| cmyk_to_rgb(p, 1.0, alpha)).collect(), alpha)
                }
            };
            return if alpha {
                DynamicImage::ImageRgba32F(buffer(w, h, f))
            } else {
                DynamicImage::ImageRgb32F(buffer(w, h, f))
            };
        }
        if layout.sample == Sample::U8 || layout.sample == Sample::I8 {
            let mut v = self.unsigned8();
            if layout.bits < 8 {
                let top = (1u16 << layout.bits) - 1;
                v.iter_mut().for_each(|s| *s = (u16::from(*s) * 255 / top) as u8);
            }
            let v = match colour {
                Colour::Cmyk | Colour::Cmyka => cmyk_to_rgb_samples(&v, colour, 255.0, |s| s.round() as u8),
                _ => v,
            };
            return match colour {
                Colour::L => DynamicImage::ImageLuma8(buffer(w, h, v)),
                Colour::La => DynamicImage::ImageLumaA8(buffer(w, h, v)),
                Colour::Rgb | Colour::Cmyk => DynamicImage::ImageRgb8(buffer(w, h, v)),
                Colour::Rgba | Colour::Cmyka => DynamicImage::ImageRgba8(buffer(w, h, v)),
            };
        }
        let v = self.unsigned16();
        let v = match colour {
            Colour::Cmyk | Colour::Cmyka => cmyk_to_rgb_samples(&v, colour, 65535.0, |s| s.round() as u16),
            _ => v,
        };
        match colour {
            Colour::L => DynamicImage::ImageLuma16(buffer(w, h, v)),
            Colour::La => DynamicImage::ImageLumaA16(buffer(w, h, v)),
            Colour::Rgb | Colour::Cmyk => DynamicImage::ImageRgb16(buffer(w, h, v)),
            Colour::Rgba | Colour::Cmyka => DynamicImage::ImageRgba16(buffer(w, h, v)),
        }
    }

    /// Every sample as f32 (float layouts only).
    fn floats(&self) -> Vec<f32> {
        let d = &self.data;
        match self.layout.sample {
            Sample::F16 => d.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Sample::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
            _ => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
        }
    }

    /// 8-bit samples as unsigned (signed ones offset by 128).
    fn unsigned8(&self) -> Vec<u8> {
        match self.layout.sample {
            Sample::I8 => self.data.iter().map(|&b| b ^ 0x80).collect(),
            _ => self.data.clone(),
        }
    }

    /// 16-bit and wider integer samples as their top 16 bits, unsigned (signed ones offset by
    /// half their range).
    fn unsigned16(&self) -> Vec<u16> {
        let d = &self.data;
        match self.layout.sample {
            Sample::U16 => d.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect(),
            Sample::I16 => d.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1] ^ 0x80])).collect(),
            Sample::U32 => d.chunks_exact(4).map(|b| u16::from_le_bytes([b[2], b[3]])).collect(),
            Sample::I32 => d.chunks_exact(4).map(|b| u16::from_le_bytes([b[2], b[3] ^ 0x80])).collect(),
            Sample::U64 => d.chunks_exact(8).map(|b| u16::from_le_bytes([b[6], b[7]])).collect(),
            _ => d.chunks_exact(8).map(|b| u16::from_le_bytes([b[6], b[7] ^ 0x80])).collect(),
        }
    }
}

/// An `image` buffer over `samples`, whose length `Pixels::new` checked (channel counts are
/// preserved by every conversion above).
fn buffer<P: image::Pixel>(w: u32, h: u32, samples: Vec<P::Subpixel>) -> ImageBuffer<P, Vec<P::Subpixel>> {
    ImageBuffer::from_raw(w, h, samples).expect("length checked in Pixels::new")
}

/// RGB(A) samples of CMYK(A) ones running from 0 to `max`.
fn cmyk_to_rgb_samples<T: Copy + Into<f32>>(v: &[T], colour: Colour, max: f32, back: fn(f32) -> T) -> Vec<T> {
    let alpha = colour == Colour::Cmyka;
    v.chunks_exact(colour.channels() as usize)
        .flat_map(|p| {
            let p: Vec<f32> = p.iter().map(|&s| s.into()).collect();
            cmyk_to_rgb(&p, max, alpha)
        })
        .map(back)
        .collect()
}

/// RGB(A) of one CMYK(A) pixel whose samples run from 0 to `max`.
fn cmyk_to_rgb(p: &[f32], max: f32, alpha: bool) -> Vec<f32> {
    let k = max - p[3];
    let mut rgb: Vec<f32> = p[..3].iter().map(|&c| (max - c) * k / max).collect();
    if alpha {
        rgb.push(p[4]);
    }
    rgb
}

impl From<&DynamicImage> for Pixels {
    /// The pixels of an `image` buffer (any of its layouts; one `image` adds later becomes
    /// 32-bit float RGBA).
    fn from(image: &DynamicImage) -> Pixels {
        let (layout, image) = match image.color() {
            image::ColorType::L8 => (Layout::L8, image.clone()),
            image::ColorType::La8 => (Layout::La8, image.clone()),
            image::ColorType::Rgb8 => (Layout::Rgb8, image.clone()),
            image::ColorType::Rgba8 => (Layout::Rgba8, image.clone()),
            image::ColorType::L16 => (Layout::L16, image.clone()),
            image::ColorType::La16 => (Layout::La16, image.clone()),
            image::ColorType::Rgb16 => (Layout::Rgb16, image.clone()),
            image::ColorType::Rgba16 => (Layout::Rgba16, image.clone()),
            image::ColorType::Rgb32F => (Layout::Rgb32F, image.clone()),
            _ => (Layout::Rgba32F, DynamicImage::ImageRgba32F(image.to_rgba32f())),
        };
        let data = image.as_bytes().to_vec();
        Pixels { width: image.width(), height: image.height(), layout, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_image_layouts_convert_exactly() {
        let l8 = DynamicImage::ImageLuma8(ImageBuffer::from_fn(3, 2, |x, y| image::Luma([(x * 70 + y) as u8])));
        let la16 = DynamicImage::ImageLumaA16(ImageBuffer::from_fn(3, 2, |x, y| {
            image::LumaA([(x * 20000 + y) as u16, 65535 - x as u16])
        }));
        let rgb32f = DynamicImage::ImageRgb32F(ImageBuffer::from_fn(3, 2, |x, y| {
            image::Rgb([x as f32 / 3.0, y as f32 - 0.5, 1e-7])
        }));
        for (layout, image) in [(Layout::L8, l8), (Layout::La16, la16), (Layout::Rgb32F, rgb32f)] {
            let pixels = Pixels::from(&image);
            assert_eq!(pixels.layout(), layout);
            assert_eq!(pixels.to_dynamic_image(), image);
        }
    }

    #[test]
    fn new_refuses_wrong_lengths_and_out_of_range_low_bit_samples() {
        let l1 = Layout { bits: 1, ..Layout::L8 };
        assert!(Pixels::new(2, 2, l1, vec![0, 1, 1, 0]).is_some());
        assert!(Pixels::new(2, 2, l1, vec![0, 2, 1, 0]).is_none(), "2 is not a 1-bit value");
        assert!(Pixels::new(2, 2, Layout::L16, vec![0; 7]).is_none());
        assert!(Pixels::new(2, 2, Layout { bits: 3, ..Layout::L8 }, vec![0; 4]).is_none());
        assert!(Pixels::new(u32::MAX, u32::MAX, Layout::Rgba32F, vec![]).is_none());
    }

    #[test]
    fn other_layouts_convert_as_documented() {
        let l2 = Pixels::new(4, 1, Layout { bits: 2, ..Layout::L8 }, vec![0, 1, 2, 3]).unwrap();
        assert_eq!(l2.to_dynamic_image().as_bytes(), &[0, 85, 170, 255]);
        let i16s: Vec<u8> = [i16::MIN, -1, 0, i16::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
        let li16 = Pixels::new(4, 1, Layout::new(Colour::L, Sample::I16), i16s).unwrap();
        assert_eq!(li16.to_dynamic_image().as_luma16().unwrap().as_raw(), &[0, 0x7fff, 0x8000, 0xffff]);
        let cmyk = Pixels::new(1, 1, Layout::new(Colour::Cmyk, Sample::U8), vec![255, 0, 0, 51]).unwrap();
        assert_eq!(cmyk.to_dynamic_image().as_bytes(), &[0, 204, 204]);
        let f64s: Vec<u8> = [0.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let lf = Pixels::new(2, 1, Layout::new(Colour::L, Sample::F64), f64s).unwrap();
        assert_eq!(lf.to_dynamic_image().as_rgb32f().unwrap().as_raw(), &[0.5, 0.5, 0.5, -2.0, -2.0, -2.0]);
    }
}
