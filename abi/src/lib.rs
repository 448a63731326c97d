//! The boundary between the sandload host and its WebAssembly guests, defined once.
//!
//! Both sides depend on this crate: the host (`sandload`) and every guest under `guests/`. Nothing
//! else crosses the boundary, so a change here is a change of the interface, and
//! `tests/golden.rs` fails until [`ABI_VERSION`] and the committed golden encoding are updated
//! together.
//!
//! # The ABI (version 3)
//!
//! A guest is a `wasm32-wasip1` *reactor* module (a `cdylib`). It exports its linear memory as
//! `memory` and these functions (see [`exports`]):
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `_initialize` | `() -> ()` | optional; the host calls it once after instantiation |
//! | `sandload_abi_version` | `() -> u32` | must equal [`ABI_VERSION`] or the host refuses the guest |
//! | `sandload_alloc` | `(len: u32) -> u32` | allocates `len` zeroed bytes (with the global allocator, `Layout::array::<u8>(len)`) for the host to fill; `0` means the guest could not allocate |
//! | `sandload_call` | `(req_ptr, req_len, data_ptr, data_len: u32) -> u64` | runs the guest's one job |
//!
//! One call runs in one fresh instance:
//!
//! 1. The host allocates and writes the *request* (a [`postcard`]-encoded request type of that
//!    guest, e.g. [`safetensors::Request`]) and the *payload* (raw bytes of the untrusted file,
//!    only the part the guest needs) into guest memory through `sandload_alloc`. The guest may
//!    take the payload's buffer over as its own `Vec<u8>` (see [`guest_main!`]).
//! 2. `sandload_call` returns `(ptr << 32) | len` of the *response*: a postcard-encoded
//!    `Result<Success, GuestError>` (e.g. [`safetensors::Response`]).
//! 3. The host copies the response out, drops the instance, and then re-validates every number in
//!    it. The guest is never trusted: a guest that returns garbage yields an error, not a crash.
//!
//! A guest panic or an allocation failure traps (guests are built with `panic = "abort"`); the
//! panic message, truncated to [`PANIC_MESSAGE_MAX`] bytes and preceded by [`PANIC_PREFIX`], is
//! written to the guest's stderr, which the host captures in a bounded buffer: a panic is a
//! decoder bug that the file found, and the host refuses the file as malformed
//! ([`Rule::DecoderPanic`]) with that message. Guests get no environment, no arguments, no stdin, no
//! sockets and no preopened directories: the only input is what the host writes into memory.
//!
//! postcard was chosen over a hand-rolled encoding because it is a small, `no_std`, well-fuzzed
//! serde format whose decoder never pre-allocates from an untrusted length.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;
// `arbitrary`'s derive names `std` paths; the feature is only ever on in the (std) fuzz crate.
#[cfg(feature = "arbitrary")]
extern crate std;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

pub mod image;
/// The pickle opcode walker (the `pickle-walk` crate): [`pickle::Walk`] and [`pickle::End`] are
/// messages of the `safetensors-header` and `pickle-scan` guests.
pub use pickle_walk as pickle;
pub mod pickle_scan;
pub mod raw;
pub mod safetensors;
pub mod shard_index;

/// Version of this interface. Bump it whenever an encoding or an export changes.
pub const ABI_VERSION: u32 = 8;

/// The most bytes of a panic message a guest writes to its stderr.
pub const PANIC_MESSAGE_MAX: usize = 4096;

/// What a guest writes to its stderr before a panic message, so that the host can tell a decoder
/// panic (the file is malformed: rule [`Rule::DecoderPanic`]) from other traps.
pub const PANIC_PREFIX: &str = "sandload guest panic: ";

/// Names of the functions every guest exports.
pub mod exports {
    /// Linear memory the host reads and writes.
    pub const MEMORY: &str = "memory";
    /// WASI reactor initialiser (runs static constructors), called once if present.
    pub const INITIALIZE: &str = "_initialize";
    /// `() -> u32`: the guest's [`ABI_VERSION`](crate::ABI_VERSION).
    pub const ABI_VERSION: &str = "sandload_abi_version";
    /// `(len: u32) -> u32`: allocate `len` bytes for the host to write; 0 on failure.
    pub const ALLOC: &str = "sandload_alloc";
    /// `(req_ptr, req_len, data_ptr, data_len) -> u64`: run the job, return `ptr << 32 | len`.
    pub const CALL: &str = "sandload_call";
}

/// Why a guest refused its input. Which [`Rule`] applies is decided by the guest; the host turns
/// this into its own error type and adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GuestError {
    /// The rule the input broke.
    pub rule: Rule,
    /// Byte offset in the file where the problem was found, when known.
    pub offset: Option<u64>,
    /// The number involved, where one matters (e.g. the count that exceeded a limit).
    pub value: Option<u64>,
    /// Human-readable detail (the field, the values seen).
    pub detail: String,
}

/// The validation rules a guest can report as broken. Host-side errors reuse the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Rule {
    /// The file is shorter than the 8-byte header length prefix.
    HeaderTooSmall,
    /// The header length exceeds the reference implementation's 100 MB maximum.
    HeaderTooLarge,
    /// The header length prefix points past the end of the file.
    HeaderPastEof,
    /// The header is not valid UTF-8.
    HeaderNotUtf8,
    /// The header is not a JSON object of the safetensors shape (syntax or type error).
    HeaderJson,
    /// The same JSON key appears twice in the header or its `__metadata__`.
    DuplicateKey,
    /// A tensor's dtype is not one this version knows.
    UnknownDtype,
    /// A tensor's data offsets do not start where the previous tensor ended (a hole or an
    /// overlap), or end before they begin.
    InvalidOffset,
    /// The element count or byte size of a tensor overflows 64 bits.
    ShapeOverflow,
    /// A sub-byte dtype whose total bit count is not a whole number of bytes.
    MisalignedSlice,
    /// `dtype size x shape` differs from the byte length given by the offsets.
    SizeMismatch,
    /// The tensors do not cover the data section exactly (trailing or missing bytes).
    IncompleteCoverage,
    /// The header is longer than the host's `max_header_bytes` (value: the header length).
    HeaderOverLimit,
    /// The header lists more tensors than the host's `max_tensors` (value: the count seen so far).
    TooManyTensors,
    /// The guest could not handle the request (a host/guest mismatch, not bad input).
    BadRequest,
    /// A RAW file the decoder recognises, of a camera, mode or compression it does not support.
    RawUnsupported,
    /// The RAW decoder found the file inconsistent (truncated, bad offsets, bad tags).
    RawMalformed,
    /// The image declares more pixels than the host's `max_pixels` (value: width x height).
    PixelLimit,
    /// The image uses a feature the decoder lacks (a TIFF sample layout or compression, say).
    ImageUnsupported,
    /// The image decoder found the file inconsistent (truncated, bad chunk, bad marker).
    ImageMalformed,
    /// Decoding would allocate more than the decoder's allocation limit (value: the limit).
    DecodeLimit,
    /// The safetensors header does not begin with `{` (the format allows padding only after the
    /// JSON, as trailing spaces; the reference implementation also accepts leading whitespace).
    HeaderStart,
    /// After the JSON object's closing `}` the header holds something other than spaces (the
    /// format's only padding).
    HeaderPadding,
    /// A tensor has more dimensions than [`safetensors::MAX_RANK`] (offset: none; value: the
    /// rank).
    RankOverLimit,
    /// No camera RAW decoder recognises the file's container at all (as opposed to
    /// [`RawUnsupported`](Rule::RawUnsupported): a RAW file of a camera or compression the decoder
    /// lacks).
    RawNotRecognised,
    /// Read from byte 0 as a pickle, the file would import or call Python objects, or could not be
    /// ruled out doing so within the bytes examined (offset: the first such opcode, or where the
    /// walk had to stop; value `1` for the latter, so the host can hand in more of the file).
    PicklePolyglot,
    /// A sharded checkpoint's index is not a JSON object with a `weight_map` object of tensor
    /// names to file names (and, if present, a `metadata` object whose `total_size` is a
    /// non-negative integer).
    IndexJson,
    /// A tensor name appears twice in the index's `weight_map`.
    IndexDuplicateTensor,
    /// The index names more shard files than the limit (value: the count).
    ShardCountOverLimit,
    /// The decoder panicked on the file: a bug in the decoder that the file found (host-side: a
    /// guest trap whose captured panic message says so; the detail is that message).
    DecoderPanic,
    /// A TIFF handed to the image decoder holds camera raw data (CFA or linear raw samples in
    /// one of its directories): it is a RAW file, whose first image is at best a thumbnail.
    ImageIsRaw,
    /// The image decoder recognises no image format it decodes in the file (as opposed to
    /// [`ImageUnsupported`](Rule::ImageUnsupported): an image using a feature it lacks).
    ImageNotRecognised,
}

impl Rule {
    /// A stable snake_case name, used in error messages and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Rule::HeaderTooSmall => "header_too_small",
            Rule::HeaderTooLarge => "header_too_large",
            Rule::HeaderPastEof => "header_past_eof",
            Rule::HeaderNotUtf8 => "header_not_utf8",
            Rule::HeaderJson => "header_json",
            Rule::DuplicateKey => "duplicate_key",
            Rule::UnknownDtype => "unknown_dtype",
            Rule::InvalidOffset => "invalid_offset",
            Rule::ShapeOverflow => "shape_overflow",
            Rule::MisalignedSlice => "misaligned_slice",
            Rule::SizeMismatch => "size_mismatch",
            Rule::IncompleteCoverage => "incomplete_coverage",
            Rule::HeaderOverLimit => "header_over_limit",
            Rule::TooManyTensors => "too_many_tensors",
            Rule::BadRequest => "bad_request",
            Rule::RawUnsupported => "raw_unsupported",
            Rule::RawMalformed => "raw_malformed",
            Rule::PixelLimit => "pixel_limit",
            Rule::ImageUnsupported => "image_unsupported",
            Rule::ImageMalformed => "image_malformed",
            Rule::DecodeLimit => "decode_limit",
            Rule::HeaderStart => "header_start",
            Rule::HeaderPadding => "header_padding",
            Rule::RankOverLimit => "rank_over_limit",
            Rule::RawNotRecognised => "raw_not_recognised",
            Rule::PicklePolyglot => "pickle_polyglot",
            Rule::IndexJson => "index_json",
            Rule::IndexDuplicateTensor => "index_duplicate_tensor",
            Rule::ShardCountOverLimit => "shard_count_over_limit",
            Rule::DecoderPanic => "decoder_panic",
            Rule::ImageIsRaw => "image_is_raw",
            Rule::ImageNotRecognised => "image_not_recognised",
        }
    }
}

/// Encodes a message for the other side of the boundary.
///
/// # Errors
/// Fails only if allocation fails or a type cannot be represented (never for the types here).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a message from the other side. Never trusts lengths inside `bytes`: postcard reads
/// sequences element by element, so a huge claimed length fails at the end of input instead of
/// allocating.
///
/// # Errors
/// Any malformed, truncated or over-long encoding.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        // Trailing bytes mean the two sides disagree about the encoding: refuse.
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    Ok(value)
}

/// Glue every guest uses to implement the ABI: exports, allocation, panic capture.
///
/// `$handler` is `fn(Request, &[u8]) -> Result<Success, GuestError>`, where `Request` and
/// `Success` are that guest's message types from this crate. With `owned`, it is
/// `fn(Request, Vec<u8>) -> ...` and takes the payload buffer itself (no copy: a decoder that
/// wants to own its input, like rawler's `RawSource`, reads it in place).
#[macro_export]
macro_rules! guest_main {
    ($request:ty, $handler:path) => {
        $crate::guest_main!(@exports $request, |request, data: &[u8]| $handler(request, data), |ptr, len| {
            // SAFETY: the host passes back exactly a region `sandload_alloc` returned, which is
            // never freed while the instance lives (one instance, one call).
            unsafe { ::std::slice::from_raw_parts(ptr as *const u8, len) }
        });
    };
    ($request:ty, $handler:path, owned) => {
        $crate::guest_main!(@exports $request, |request, data: ::std::vec::Vec<u8>| $handler(request, data), |ptr, len| {
            // SAFETY: the host passes back exactly a region `sandload_alloc` returned: allocated
            // by the global allocator with `Layout::array::<u8>(len)`, zero-initialised, and
            // handed over to the guest once. That is `Vec::from_raw_parts`'s contract.
            unsafe { ::std::vec::Vec::from_raw_parts(ptr as *mut u8, len, len) }
        });
    };
    (@exports $request:ty, $call:expr, $payload:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn sandload_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn sandload_alloc(len: u32) -> u32 {
            if len == 0 {
                return 1;
            }
            let Ok(layout) = ::std::alloc::Layout::array::<u8>(len as usize) else { return 0 };
            // Zeroed, because the buffer becomes a Rust slice; the RAW guest's allocator serves large
            // zeroed blocks straight from memory.grow (zero by the wasm specification), so the
            // host's write is the only touch.
            // Null (not an abort) when over the memory cap: the host reports it as such.
            let ptr = unsafe { ::std::alloc::alloc_zeroed(layout) };
            ptr as u32
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn sandload_call(req_ptr: u32, req_len: u32, data_ptr: u32, data_len: u32) -> u64 {
            static HOOK: ::std::sync::Once = ::std::sync::Once::new();
            HOOK.call_once(|| {
                ::std::panic::set_hook(::std::boxed::Box::new(|info| {
                    use ::std::io::Write as _;
                    let mut msg = ::std::format!("{info}");
                    if msg.len() > $crate::PANIC_MESSAGE_MAX {
                        let mut cut = $crate::PANIC_MESSAGE_MAX;
                        while !msg.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        msg.truncate(cut);
                    }
                    let mut err = ::std::io::stderr();
                    let _ = err.write_all($crate::PANIC_PREFIX.as_bytes());
                    let _ = err.write_all(msg.as_bytes());
                }));
            });
            // SAFETY: the host passes back exactly the regions `sandload_alloc` returned, which were
            // leaked and are never freed while the instance lives (one instance, one call).
            let req: &[u8] = if req_len == 0 {
                &[]
            } else {
                unsafe { ::std::slice::from_raw_parts(req_ptr as *const u8, req_len as usize) }
            };
            let data = if data_len == 0 { ::std::default::Default::default() } else { ($payload)(data_ptr, data_len as usize) };
            let response = match $crate::decode::<$request>(req) {
                Ok(request) => ($call)(request, data),
                Err(e) => Err($crate::GuestError {
                    rule: $crate::Rule::BadRequest,
                    offset: None,
                    value: None,
                    detail: ::std::format!("request did not decode: {e}"),
                }),
            };
            let bytes = $crate::encode(&response).expect("encoding a response cannot fail");
            let bytes = bytes.leak();
            ((bytes.as_ptr() as u64) << 32) | bytes.len() as u64
        }
    };
}
