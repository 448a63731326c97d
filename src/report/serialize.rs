//! `serde::Serialize` for the public report types (feature `serde`) and `schemars::JsonSchema`
//! for the same (feature `schema`), in one place.
//!
//! The JSON shape is what `sandload inspect --json` prints: names rather than Rust paths (a
//! format is `"safetensors"`, a dtype `"BF16"`, a limit `"max_pixels"`), durations as integer
//! microseconds or milliseconds in fields whose name says which, and paths as (lossy) UTF-8
//! text, so that a file named with invalid UTF-8 is still reported instead of failing the whole
//! record.

use std::path::Path;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::formats::raw::Cfa;
use crate::limits::Limit;
use crate::sniff::Format;

/// A path as text; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn lossy_path<P: AsRef<Path>, S: Serializer>(path: &P, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.as_ref().display())
}

/// A duration as whole microseconds (saturating).
pub(crate) fn micros<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A duration as whole milliseconds (saturating).
pub(crate) fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A CFA as its pattern's letters, row by row (`"RGGB"`; 36 letters for X-Trans).
impl Serialize for Cfa {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// An error as a flat record: `kind` ([`Error::kind`]), `rule` ([`Error::rule`]), `file`,
/// `message` (the `Display` text), and for a limit the limit's name, value in force and the value
/// the file needed; for a malformed or polyglot file the byte offset when known; for guest
/// failures the guest's name. Absent facts are `null`, so every record has the same keys.
impl Serialize for Error {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (limit, limit_value, value) = match self {
            Error::LimitExceeded { limit, limit_value, value, .. } => (Some(*limit), Some(*limit_value), Some(*value)),
            Error::GuestOutOfMemory { limit, requested, .. } => {
                (Some(Limit::GuestMemoryBytes), Some(*limit), Some(*requested))
            }
            Error::GuestTimeout { limit, .. } => {
                (Some(Limit::GuestTimeMillis), Some(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)), None)
            }
            _ => (None, None, None),
        };
        let offset = match self {
            Error::Malformed { offset, .. } | Error::Refused { offset, .. } => *offset,
            _ => None,
        };
        let guest = match self {
            Error::GuestTrap { guest, .. }
            | Error::GuestTimeout { guest, .. }
            | Error::GuestOutOfMemory { guest, .. } => Some(*guest),
            _ => None,
        };
        let format = match self {
            Error::Refused { format, .. } | Error::Malformed { format, .. } => Some(*format),
            _ => None,
        };
        let mut st = s.serialize_struct("Error", 10)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("rule", &self.rule())?;
        st.serialize_field("file", &self.file().map(|f| f.display().to_string()))?;
        st.serialize_field("message", &self.to_string())?;
        st.serialize_field("format", &format)?;
        st.serialize_field("limit", &limit)?;
        st.serialize_field("limit_value", &limit_value)?;
        st.serialize_field("value", &value)?;
        st.serialize_field("offset", &offset)?;
        st.serialize_field("guest", &guest)?;
        st.end()
    }
}

#[cfg(feature = "schema")]
mod schema {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    use super::*;
    use crate::Dtype;

    /// The schema of a type serialized as one of its `ALL` values' `name()`.
    macro_rules! names_schema {
        ($ty:ty, $name:literal, $description:literal, $all:expr) => {
            impl JsonSchema for $ty {
                fn schema_name() -> Cow<'static, str> {
                    $name.into()
                }
                fn json_schema(_: &mut SchemaGenerator) -> Schema {
                    let names: Vec<&'static str> = $all.iter().map(|v| v.name()).collect();
                    json_schema!({ "description": $description, "type": "string", "enum": names })
                }
            }
        };
    }

    names_schema!(Format, "Format", "The format recognised from content.", Format::ALL);
    names_schema!(Limit, "Limit", "A field of `Limits`.", Limit::ALL);

    /// `Dtype` lives in `sandload-abi`; its schema is declared here (`#[schemars(with)]`).
    pub(crate) struct DtypeName;

    names_schema!(DtypeName, "Dtype", "A safetensors element type, by its name in the header.", Dtype::ALL);

    impl JsonSchema for Cfa {
        fn schema_name() -> Cow<'static, str> {
            "Cfa".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "The colour filter pattern's letters (R, G, B, E), row by row.",
                "type": "string",
                "pattern": "^[RGBE]+$",
            })
        }
    }

    impl JsonSchema for Error {
        fn schema_name() -> Cow<'static, str> {
            "Error".into()
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            let nullable_u64 = json_schema!({ "type": ["integer", "null"], "minimum": 0 });
            let nullable_string = json_schema!({ "type": ["string", "null"] });
            let format = generator.subschema_for::<Option<Format>>();
            let limit = generator.subschema_for::<Option<Limit>>();
            json_schema!({
                "description": "Why a file was not accepted.",
                "type": "object",
                "required": ["kind", "rule", "file", "message", "format", "limit", "limit_value", "value", "offset", "guest"],
                "additionalProperties": false,
                "properties": {
                    "kind": {
                        "type": "string",
                        "enum": Error::KINDS,
                    },
                    "rule": nullable_string,
                    "file": nullable_string,
                    "message": { "type": "string" },
                    "format": format,
                    "limit": limit,
                    "limit_value": nullable_u64,
                    "value": nullable_u64,
                    "offset": nullable_u64,
                    "guest": nullable_string,
                },
            })
        }
    }
}

#[cfg(feature = "schema")]
pub(crate) use schema::DtypeName;
