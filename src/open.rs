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
    /// name): DNG and maker RAW containers go to [`decode_raw`](Sandbox::decode_raw), everything
    /// else to [`open_safetensors`](Sandbox::open_safetensors), which refuses pickles, PyTorch
    /// files, images and the rest. This is what `sandload inspect` runs.
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
        match sniff(&data).format {
            Format::Dng | Format::Raw => {
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
