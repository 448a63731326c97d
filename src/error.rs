//! The one error type of sandload.

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limit;
use crate::sniff::Format;

/// Shorthand for `std::result::Result<T, sandload::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when sandload opens a file.
///
/// Every variant names the file (`file`: the path or the name the caller gave the bytes). Variants
/// split into *the file was refused* ([`Refused`](Error::Refused),
/// [`LimitExceeded`](Error::LimitExceeded), [`Malformed`](Error::Malformed),
/// [`GuestTrap`](Error::GuestTrap), [`GuestTimeout`](Error::GuestTimeout),
/// [`GuestOutOfMemory`](Error::GuestOutOfMemory)) and *the environment failed* ([`Io`](Error::Io),
/// [`Internal`](Error::Internal)); see [`Error::is_rejection`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file is a format sandload does not accept here (a pickle, a PyTorch zip, an image
    /// given as a checkpoint...). Recognised from content, never from the file name.
    #[error("{file}: refused: this is {what}.{} {why} To use it: {remedy}", rule_at(*rule, *offset))]
    Refused {
        /// The file.
        file: PathBuf,
        /// What the content was recognised as.
        format: Format,
        /// What the file is, in words (e.g. "a Python pickle (protocol 4)").
        what: String,
        /// For a file that is valid safetensors *and* another format (a polyglot), the rule that
        /// caught it (`pickle_polyglot`, `zip_polyglot`, `hdf5_polyglot`, `tar_polyglot`,
        /// `compressed_polyglot`).
        rule: Option<&'static str>,
        /// Where the other format was found, when known (e.g. the first pickle opcode that would
        /// import or call, or the zip end record).
        offset: Option<u64>,
        /// For pickles (and the pickles inside PyTorch, TorchScript and NumPy files): what
        /// unpickling would import and call, found in a guest without executing anything.
        pickle: Option<Box<crate::refusal::PickleReport>>,
        /// Why it is refused.
        why: &'static str,
        /// How to convert it into something accepted.
        remedy: &'static str,
    },

    /// A configured limit was exceeded. Raised before the allocation the limit protects.
    #[error("{file}: {limit} is {limit_value} but the file needs {value}")]
    LimitExceeded {
        /// The file.
        file: PathBuf,
        /// Which limit.
        limit: Limit,
        /// The limit in force.
        limit_value: u64,
        /// The value the file asked for.
        value: u64,
    },

    /// The file breaks a rule of its format.
    #[error("{file}: malformed {format}: {rule}{}: {detail}", offset.map(|o| format!(" at byte {o}")).unwrap_or_default())]
    Malformed {
        /// The file.
        file: PathBuf,
        /// The format it claims to be.
        format: Format,
        /// The rule broken, as a stable snake_case name (e.g. `duplicate_key`).
        rule: &'static str,
        /// Byte offset in the file, when known.
        offset: Option<u64>,
        /// Field names and values involved.
        detail: String,
    },

    /// The guest parser trapped (a crash inside the sandbox). The host is unaffected.
    #[error("{file}: the {guest} guest crashed inside the sandbox: {message}")]
    GuestTrap {
        /// The file.
        file: PathBuf,
        /// Which guest.
        guest: &'static str,
        /// The trap and, if the guest panicked, its message.
        message: String,
    },

    /// The guest ran past its CPU deadline ([`Limits::guest_time`](crate::Limits::guest_time)).
    #[error("{file}: the {guest} guest ran past its deadline of {limit:?} and was stopped")]
    GuestTimeout {
        /// The file.
        file: PathBuf,
        /// Which guest.
        guest: &'static str,
        /// The deadline in force.
        limit: Duration,
    },

    /// The guest needed more memory than
    /// [`Limits::guest_memory_bytes`](crate::Limits::guest_memory_bytes).
    #[error("{file}: the {guest} guest needed more than its memory cap of {limit} bytes (asked for {requested})")]
    GuestOutOfMemory {
        /// The file.
        file: PathBuf,
        /// Which guest.
        guest: &'static str,
        /// The cap in force.
        limit: u64,
        /// The memory size the guest asked to grow to.
        requested: u64,
    },

    /// Reading the file failed, or the path is not a regular file inside the granted directory.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file is valid but the requested operation does not apply to it (e.g. RGGB Bayer
    /// planes of an X-Trans or linear RAW file).
    #[error("{file}: cannot {operation}: {reason}")]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// What was asked, e.g. "pack RGGB Bayer planes".
        operation: &'static str,
        /// Why the file does not allow it.
        reason: String,
    },

    /// A bug or a broken environment, not a property of the file: a guest that does not match
    /// this host, or wasmtime failing to set up. Report these.
    #[error("sandload internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Every value [`kind`](Error::kind) can return.
    pub const KINDS: [&'static str; 9] = [
        "refused_format",
        "limit_exceeded",
        "malformed",
        "guest_trap",
        "guest_timeout",
        "guest_out_of_memory",
        "io",
        "unsupported",
        "internal",
    ];

    /// A stable snake_case name of the variant, for logs and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Refused { .. } => "refused_format",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::Malformed { .. } => "malformed",
            Error::GuestTrap { .. } => "guest_trap",
            Error::GuestTimeout { .. } => "guest_timeout",
            Error::GuestOutOfMemory { .. } => "guest_out_of_memory",
            Error::Io { .. } => "io",
            Error::Unsupported { .. } => "unsupported",
            Error::Internal(_) => "internal",
        }
    }

    /// True when the file itself was refused (bad, hostile or unsupported content), false when
    /// the environment failed (I/O, internal). A pipeline would quarantine the former and retry
    /// or alert on the latter.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::Internal(_))
    }

    /// The file the error is about, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Error::Refused { file, .. }
            | Error::LimitExceeded { file, .. }
            | Error::Malformed { file, .. }
            | Error::GuestTrap { file, .. }
            | Error::GuestTimeout { file, .. }
            | Error::GuestOutOfMemory { file, .. }
            | Error::Unsupported { file, .. }
            | Error::Io { file, .. } => Some(file),
            Error::Internal(_) => None,
        }
    }

    /// The rule name of a [`Malformed`](Error::Malformed) error, or of a
    /// [`Refused`](Error::Refused) polyglot.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            Error::Malformed { rule, .. } => Some(rule),
            Error::Refused { rule, .. } => *rule,
            _ => None,
        }
    }

    /// What unpickling the refused file would have done, for pickles and the formats that
    /// carry them (see [`PickleReport`](crate::refusal::PickleReport)).
    pub fn pickle_report(&self) -> Option<&crate::refusal::PickleReport> {
        match self {
            Error::Refused { pickle, .. } => pickle.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { file: file.into(), source }
    }

    pub(crate) fn malformed(
        file: impl Into<PathBuf>,
        format: Format,
        rule: &'static str,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) -> Error {
        Error::Malformed { file: file.into(), format, rule, offset, detail: printable(&detail.into()) }
    }
}

/// " (rule R at byte N)" for the refusal message, or nothing.
fn rule_at(rule: Option<&str>, offset: Option<u64>) -> String {
    match (rule, offset) {
        (Some(rule), Some(at)) => format!(" (rule {rule}, at byte {at})"),
        (Some(rule), None) => format!(" (rule {rule})"),
        _ => String::new(),
    }
}

/// Whether `c` could forge a terminal or a log line: C0 and C1 controls and DEL, the line and
/// paragraph separators U+2028/U+2029, and the bidirectional controls (ALM U+061C, LRM/RLM
/// U+200E/U+200F, embeddings and overrides U+202A-U+202E, isolates U+2066-U+2069). Text that a
/// guest returns (decoder messages, panic messages, camera make and model) can carry bytes of the
/// file, and it ends up in terminals and logs: escape sequences there could forge log lines or
/// recolour a terminal, and bidi controls could make a name read as something else.
pub(crate) fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`unsafe_char`] written as a Rust escape (`\n`, `\u{1b}`, `\u{202e}`, ...).
/// Idempotent.
pub(crate) fn printable(text: &str) -> String {
    if !text.contains(unsafe_char) {
        return text.to_string();
    }
    text.chars().map(|c| if unsafe_char(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}
