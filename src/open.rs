//! Opening a file of unknown kind: the content decides which parser runs.

use crate::error::{Error, Result};
use crate::input::{DataAccess, Input};
use crate::limits::Limit;
use crate::picture::DecodedImage;
use crate::raw::RawImage;
use crate::receipt::Receipt;
use crate::sandbox::{GuestStats, Sandbox};
use crate::sniff::{Format, sniff};
use crate::tensors::Checkpoint;

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
        let started = std::time::Instant::now();
        let limits = self.limits();
        let read = input.len().and_then(|len| {
            if len > limits.max_file_bytes {
                return Err(Error::LimitExceeded {
                    file: name.clone(),
                    limit: Limit::MaxFileBytes,
                    limit_value: limits.max_file_bytes,
                    value: len,
                });
            }
            if self.data_access() == DataAccess::Verdict && !input.in_memory() {
                // Only the head decides where the file goes; a checkpoint is then read in pieces
                // by the checkpoint path, anything else whole, as its guest needs it.
                let head = input.read_exact_at(0, Self::verdict_head(&input, len, limits)?)?;
                let format = sniff(&head).format;
                let decoded_whole =
                    matches!(format, Format::Png | Format::Jpeg | Format::Webp | Format::Dng | Format::Raw)
                        || (matches!(format, Format::Tiff | Format::Unknown)
                            && len >= 9
                            && len <= limits.guest_memory_bytes);
                if !decoded_whole {
                    return Ok(Err(input));
                }
            }
            input.contents(len, self.data_access()).map(Ok)
        });
        let read = match read {
            Ok(Err(input)) => {
                let (result, receipt) = self.open_safetensors_with_receipt(input);
                return (result.map(Opened::Checkpoint), receipt);
            }
            Ok(Ok(data)) => Ok(data),
            Err(e) => Err(e),
        };
        let data = match read {
            Ok(data) => data,
            Err(e) => {
                let result = Err(e);
                let receipt = GuestStats::default().receipt(self, name, Format::Unknown, started, &result);
                return (result, receipt);
            }
        };
        // One read (or mapping) serves both paths: `from_bytes` over it copies nothing.
        let input = Input::from_bytes(data.clone(), name.clone());
        let len = data.len() as u64;
        match sniff(&data).format {
            Format::Png | Format::Jpeg | Format::Webp => {
                let (result, receipt) = self.decode_image_with_receipt(input);
                (result.map(Opened::Image), receipt)
            }
            // The RAW decoder's own identification decides what is camera RAW: the sniffer's
            // DNG/maker hints, and anything it does not recognise (a TIFF-based or headerless
            // container of a camera it has no name for) that the guest can hold.
            format
                if matches!(format, Format::Dng | Format::Raw)
                    || (matches!(format, Format::Tiff | Format::Unknown)
                        && len >= 9
                        && len <= limits.guest_memory_bytes) =>
            {
                let (result, receipt) = self.decode_raw_with_receipt(input);
                match result {
                    // A TIFF no RAW decoder claims (a scan, a TIFF export) is an image.
                    Err(e) if format == Format::Tiff && e.rule() == Some("raw_not_recognised") => {
                        let (result, receipt) = self.decode_image_with_receipt(Input::from_bytes(data, name));
                        (result.map(Opened::Image), receipt)
                    }
                    result => (result.map(Opened::Raw), receipt),
                }
            }
            _ => {
                let (result, receipt) = self.open_safetensors_with_receipt(input);
                (result.map(Opened::Checkpoint), receipt)
            }
        }
    }
}
