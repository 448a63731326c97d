//! The guest catalogue: which wasm modules sandload ships and how their responses are decoded.

use std::path::Path;

use crate::error::{Error, Result};

mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The guests sandload ships. Each parses one kind of untrusted input in its own wasm module,
/// which [`SandboxBuilder::replace_guest`](crate::SandboxBuilder::replace_guest) can swap for another build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Guest {
    /// `guests/safetensors-header`.
    SafetensorsHeader,
    /// `guests/raw-decoder` (rawler).
    RawDecoder,
    /// `guests/image-decoder` (the image crate).
    ImageDecoder,
    /// `guests/pickle-scan`: describes refused pickles (what they would import and call).
    PickleScan,
    /// `guests/shard-index`: parses a sharded checkpoint's `model.safetensors.index.json`.
    ShardIndex,
}

impl Guest {
    pub(crate) const COUNT: usize = 5;

    /// Every guest.
    pub const ALL: [Guest; Guest::COUNT] =
        [Guest::SafetensorsHeader, Guest::RawDecoder, Guest::ImageDecoder, Guest::PickleScan, Guest::ShardIndex];

    /// The guest's name, as in errors and receipts (its crate name under `guests/`).
    pub fn name(self) -> &'static str {
        match self {
            Guest::SafetensorsHeader => "safetensors-header",
            Guest::RawDecoder => "raw-decoder",
            Guest::ImageDecoder => "image-decoder",
            Guest::PickleScan => "pickle-scan",
            Guest::ShardIndex => "shard-index",
        }
    }

    /// The wasm module built from `guests/` and embedded in this crate: what runs unless
    /// [`SandboxBuilder::replace_guest`](crate::SandboxBuilder::replace_guest) says otherwise. Distributors can ship it as a file (e.g.
    /// `sandload guest-wasm raw-decoder -o raw-decoder.wasm`), see the README's licensing section.
    pub fn bundled_wasm(self) -> &'static [u8] {
        match self {
            Guest::SafetensorsHeader => artifacts::SAFETENSORS_HEADER,
            Guest::RawDecoder => artifacts::RAW_DECODER,
            Guest::ImageDecoder => artifacts::IMAGE_DECODER,
            Guest::PickleScan => artifacts::PICKLE_SCAN,
            Guest::ShardIndex => artifacts::SHARD_INDEX,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Decodes this guest's response bytes; bytes that are not a response are the guest
    /// breaking the protocol, so a trap.
    pub(crate) fn decode_response<T: serde::de::DeserializeOwned>(self, response: &[u8], file: &Path) -> Result<T> {
        sandload_abi::decode(response).map_err(|e| Error::GuestTrap {
            file: file.to_path_buf(),
            guest: self.name(),
            message: format!("response does not decode: {e}"),
        })
    }
}
