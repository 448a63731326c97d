//! Opening a file of unknown kind: the content decides which parser runs.

use std::time::Instant;

use bytes::Bytes;

use crate::error::Result;
use crate::formats::picture::DecodedImage;
use crate::formats::raw::RawImage;
use crate::formats::safetensors::Checkpoint;
use crate::input::{DataAccess, Input};
use crate::limits::Limit;
use crate::receipt::Receipt;
use crate::route::Route;
use crate::sandbox::{Guest, GuestStats, Sandbox};
use crate::sniff::{Format, sniff};

/// What [`Sandbox::open`] found and accepted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Opened {
    /// A safetensors checkpoint.
    Checkpoint(Checkpoint),
    /// A camera RAW image (DNG or a maker's format).
    Raw(RawImage),
    /// A PNG, JPEG, TIFF or WebP image, decoded in the image guest.
    Image(DecodedImage),
}

impl Sandbox {
    /// Opens a checkpoint, a camera RAW file or an image, whichever the content says it is (never
    /// the name): PNG, JPEG and WebP go to [`decode_image`](Sandbox::decode_image); DNG, maker
    /// RAW containers, and files nothing else recognises go to
    /// [`decode_raw`](Sandbox::decode_raw), where rawler's own identification decides (a file it
    /// does not recognise either is refused as "not a recognised format"), and a TIFF that rawler
    /// does not claim as camera RAW is decoded as an image; safetensors-shaped files and every
    /// other recognised format go to [`open_safetensors`](Sandbox::open_safetensors), which
    /// accepts safetensors and refuses pickles, PyTorch files and the rest. This is what
    /// `sandload inspect` runs.
    ///
    /// # Errors
    /// Those of [`open_safetensors`](Sandbox::open_safetensors),
    /// [`decode_raw`](Sandbox::decode_raw) and [`decode_image`](Sandbox::decode_image).
    pub fn open(&self, input: Input) -> Result<Opened> {
        self.open_with_receipt(input).0
    }

    /// [`open`](Sandbox::open), also returning the [`Receipt`] when the file is rejected.
    pub fn open_with_receipt(&self, input: Input) -> (Result<Opened>, Receipt) {
        let name = input.name().to_path_buf();
        let started = Instant::now();
        let mut stats = GuestStats::default();
        let mut format = Format::Unknown;
        let data = match self.read_for_route(input) {
            Ok(Ok(data)) => data,
            // The checkpoint path reads (or maps) the file itself, in pieces with
            // `DataAccess::Verdict`.
            Ok(Err(input)) => {
                let (result, receipt) = self.open_safetensors_with_receipt(input);
                return (result.map(Opened::Checkpoint), receipt);
            }
            Err(e) => {
                let result = Err(e);
                let receipt = stats.receipt(self, name, format, started, &result);
                return (result, receipt);
            }
        };
        let sniffed = sniff(&data);
        let result = match Route::of(sniffed.format, data.len() as u64, self.limits()) {
            Route::Image => self.decode_image_bytes(&name, &data, &sniffed, &mut stats, &mut format).map(Ok),
            Route::Raw => match self.decode_raw_bytes(&name, &data, &sniffed, &mut stats, &mut format) {
                // The RAW guest refused a TIFF: the image guest decides whether it is a picture.
                // The receipt counts both guest calls.
                Err(raw) if Route::image_fallback(sniffed.format, &data, &raw) => {
                    match self.decode_image_bytes(&name, &data, &sniffed, &mut stats, &mut format) {
                        Ok(image) => Ok(Ok(image)),
                        Err(_) if Route::raw_error_stands(&raw) => {
                            stats.guest = Some(Guest::RawDecoder.name());
                            Err(raw)
                        }
                        Err(image) => Err(image),
                    }
                }
                result => result.map(Err),
            },
            Route::Checkpoint => {
                // One read (or mapping) serves both: `from_bytes` over it copies nothing.
                let (result, receipt) = self.open_safetensors_with_receipt(Input::from_bytes(data, name));
                return (result.map(Opened::Checkpoint), receipt);
            }
        };
        let receipt = stats.receipt(self, name, format, started, &result);
        let opened = result.map(|decoded| match decoded {
            Ok(image) => Opened::Image(image.with_receipt(receipt.clone())),
            Err((info, samples)) => Opened::Raw(RawImage::new(info, samples, receipt.clone())),
        });
        (opened, receipt)
    }

    /// The file's bytes when its route needs all of them (images and RAW files, decoded whole);
    /// `Err(input)` back when only the checkpoint path will read it, and it may read less than
    /// all of it (`DataAccess::Verdict`). A file larger than the guest's memory is routed from
    /// its head and, if a whole-file guest would decode it, refused before it is read: that
    /// guest could not hold it (nor what it decodes).
    fn read_for_route(&self, input: Input) -> Result<std::result::Result<Bytes, Input>> {
        let limits = self.limits();
        let len = input.len()?;
        limits.check(Limit::MaxFileBytes, len, input.name())?;
        let verdict_only = self.data_access() == DataAccess::Verdict;
        if !input.in_memory() && (verdict_only || len > limits.guest_memory_bytes) {
            // Only the head decides where the file goes.
            let head = input.read_exact_at(0, Self::verdict_head(&input, len, limits)?)?;
            match Route::of(sniff(&head).format, len, limits) {
                Route::Checkpoint => return Ok(Err(input)),
                Route::Image | Route::Raw => limits.check(Limit::GuestMemoryBytes, len, input.name())?,
            }
        }
        input.contents(len, self.data_access()).map(Ok)
    }
}
