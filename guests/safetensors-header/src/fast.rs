//! One strict pass over the header that builds the tensor table while it refuses duplicate keys.
//!
//! It accepts only the canonical form that every writer emits: a JSON object whose values are
//! `{"dtype": "<name>", "shape": [<u64>...], "data_offsets": [<u64>, <u64>]}` (each field once,
//! no other field) and at most one `__metadata__` that is `null` or an object of strings. That is a
//! subset of what the reference accepts, read by the same `serde_json` parser into the same
//! types, so it yields the same table. Anything else (a seq-form tensor, an extra field, a
//! duplicate, too many tensors, a syntax error) returns `None` and the caller runs the reference's
//! two-step parse, which decides and names the error. Headers are thus parsed once, not twice
//! through serde's buffered `flatten` (which was half of a 100k-tensor header's time).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Key, Parsed, TensorInfo};

/// The table, or `None` if the header is not canonical or breaks a rule (see the module doc).
pub(crate) fn parse(text: &str, max_tensors: u64) -> Option<Parsed> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Header { max_tensors }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(parsed)
}

/// Any error: the reason is not kept, the reference parse reports it.
fn bail<E: de::Error>() -> E {
    E::custom("not canonical")
}

struct Header {
    max_tensors: u64,
}

impl<'de> DeserializeSeed<'de> for Header {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Header {
    type Value = Parsed;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a safetensors header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::with_capacity(map.size_hint().unwrap_or(0));
        let mut tensors = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if key == "__metadata__" {
                metadata = map.next_value_seed(Metadata)?;
            } else {
                if tensors.len() as u64 >= self.max_tensors {
                    return Err(bail());
                }
                tensors.push((key.clone().into_owned(), map.next_value_seed(Info)?));
            }
            if !seen.insert(key) {
                return Err(bail());
            }
        }
        Ok((tensors, metadata))
    }
}

/// `null` or an object of strings without duplicate keys.
struct Metadata;

impl<'de> DeserializeSeed<'de> for Metadata {
    type Value = Option<Vec<(String, String)>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Metadata {
    type Value = Option<Vec<(String, String)>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an object of strings")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(MetadataEntries).map(Some)
    }
}

struct MetadataEntries;

impl<'de> Visitor<'de> for MetadataEntries {
    type Value = Vec<(String, String)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            entries.push((key.clone().into_owned(), map.next_value::<String>()?));
            if !seen.insert(key) {
                return Err(bail());
            }
        }
        Ok(entries)
    }
}

/// One tensor's object, each of its three fields exactly once.
struct Info;

impl<'de> DeserializeSeed<'de> for Info {
    type Value = TensorInfo;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TensorInfo, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Info {
    type Value = TensorInfo;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tensor object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TensorInfo, A::Error> {
        let (mut dtype, mut shape, mut data_offsets) = (None, None, None);
        while let Some(key) = map.next_key_seed(Key)? {
            match key.as_ref() {
                "dtype" if dtype.is_none() => {
                    // Only the string form: the reference would also take an enum in map form.
                    let name = map.next_value_seed(Key)?;
                    let parsed =
                        safetensors::Dtype::deserialize(de::value::StrDeserializer::<de::value::Error>::new(&name));
                    dtype = Some(parsed.map_err(|_| bail())?);
                }
                "shape" if shape.is_none() => shape = Some(map.next_value::<Vec<u64>>()?),
                "data_offsets" if data_offsets.is_none() => data_offsets = Some(map.next_value::<(u64, u64)>()?),
                _ => return Err(bail()),
            }
        }
        match (dtype, shape, data_offsets) {
            (Some(dtype), Some(shape), Some(data_offsets)) => Ok(TensorInfo { dtype, shape, data_offsets }),
            _ => Err(bail()),
        }
    }
}
