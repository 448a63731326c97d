//! Shared by the guests that decode pictures (`image-decoder`, and `raw-decoder` for previews):
//! leaves a decoded image's pixel buffer in guest memory and describes it as an ABI [`Picture`].
//!
//! The buffer is leaked on purpose: the instance is thrown away after one call, and the host
//! copies the pixels out straight from the buffer the decoder filled (no extra copy in the guest).

use image::DynamicImage;
use sandload_abi::image::{Layout, Picture};
use sandload_abi::raw::Region;

/// Leaks `data` and returns where it lies in guest memory.
pub fn leak<T: Copy>(data: Vec<T>) -> Region {
    let bytes = std::mem::size_of_val(data.as_slice());
    let slice = data.leak();
    // wasm32: pointers and lengths fit in u32 (the whole memory is at most 4 GiB).
    Region { ptr: slice.as_ptr() as usize as u32, len: bytes as u32 }
}

/// Describes `image` as a [`Picture`], leaving its pixels in guest memory. `orientation` is the
/// EXIF orientation the file declares (0: unknown); an ICC profile over
/// [`MAX_ICC_BYTES`](sandload_abi::image::MAX_ICC_BYTES) is dropped.
pub fn picture(format: &str, image: DynamicImage, orientation: u8, icc_profile: Option<Vec<u8>>) -> Picture {
    let icc_profile = icc_profile.filter(|p| p.len() as u64 <= sandload_abi::image::MAX_ICC_BYTES);
    let (width, height) = (image.width() as u64, image.height() as u64);
    let (layout, pixels) = match image {
        DynamicImage::ImageLuma8(b) => (Layout::L8, leak(b.into_raw())),
        DynamicImage::ImageLumaA8(b) => (Layout::La8, leak(b.into_raw())),
        DynamicImage::ImageRgb8(b) => (Layout::Rgb8, leak(b.into_raw())),
        DynamicImage::ImageRgba8(b) => (Layout::Rgba8, leak(b.into_raw())),
        DynamicImage::ImageLuma16(b) => (Layout::L16, leak(b.into_raw())),
        DynamicImage::ImageLumaA16(b) => (Layout::La16, leak(b.into_raw())),
        DynamicImage::ImageRgb16(b) => (Layout::Rgb16, leak(b.into_raw())),
        DynamicImage::ImageRgba16(b) => (Layout::Rgba16, leak(b.into_raw())),
        DynamicImage::ImageRgb32F(b) => (Layout::Rgb32F, leak(b.into_raw())),
        DynamicImage::ImageRgba32F(b) => (Layout::Rgba32F, leak(b.into_raw())),
        // A layout added to `image` later: hand it over as 32-bit float RGBA, which holds any.
        other => (Layout::Rgba32F, leak(other.into_rgba32f().into_raw())),
    };
    Picture { format: format.to_string(), width, height, layout, pixels, orientation, icc_profile }
}
