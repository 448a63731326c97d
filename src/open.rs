//! Opening a file of unknown kind: the content decides which parser runs.

use crate::error::{Error, Result};
use crate::input::Input;
use crate::limits::Limit;
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
}

impl Sandbox {
    /// Opens a checkpoint or a camera RAW file, whichever the content says it is (never the
    /// name): safetensors-shaped files and every recognised non-RAW format go to
    /// [`open_safetensors`](Sandbox::open_safetensors), which accepts safetensors and refuses
    /// pickles, PyTorch files, images and the rest; DNG, maker RAW containers, and files nothing
    /// else recognises go to [`decode_raw`](Sandbox::decode_raw), where rawler's own
    /// identification decides (a file it does not recognise either is refused as "not a
    /// recognised format"). This is what `sandload inspect` runs.
    ///
    /// # Errors
    /// Those of [`open_safetensors`](Sandbox::open_safetensors) and
    /// [`decode_raw`](Sandbox::decode_raw).
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
            input.contents(len, self.data_access())
        });
        let data = match read {
            Ok(data) => data,
            Err(e) => {
                let result = Err(e);
                let receipt = GuestStats::default().receipt(self, name, Format::Unknown, started, &result);
                return (result, receipt);
            }
        };
        // One read (or mapping) serves both paths: `from_bytes` over it copies nothing.
        let input = Input::from_bytes(data.clone(), name);
        let len = data.len() as u64;
        match sniff(&data).format {
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
                (result.map(Opened::Raw), receipt)
            }
            _ => {
                let (result, receipt) = self.open_safetensors_with_receipt(input);
                (result.map(Opened::Checkpoint), receipt)
            }
        }
    }
}
