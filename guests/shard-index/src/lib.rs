//! sandload guest: parses the index of a sharded checkpoint (`model.safetensors.index.json`).
//!
//! Input: the index file. Output: its shard file names and which shard holds each tensor (see
//! `sandload_abi::shard_index`). The JSON is walked once with serde_json: duplicate tensor names,
//! duplicate top-level or metadata keys, non-string file names and the tensor and shard limits
//! are refused as they are met, before anything grows past them. File names are returned as
//! written: the host decides which it will open.

use std::collections::{HashMap, HashSet};
use std::fmt;

use sandload_abi::shard_index::{Index, Request, Response};
use sandload_abi::{GuestError, Rule};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

sandload_abi::guest_main!(Request, parse);

fn fail(rule: Rule, value: Option<u64>, detail: impl Into<String>) -> GuestError {
    GuestError { rule, offset: None, value, detail: detail.into() }
}

/// Parses `payload` (the index file).
pub fn parse(req: Request, payload: &[u8]) -> Response {
    let text = std::str::from_utf8(payload).map_err(|e| GuestError {
        rule: Rule::IndexJson,
        offset: Some(e.valid_up_to() as u64),
        value: None,
        detail: "the index is not UTF-8".into(),
    })?;
    let mut state = State {
        req,
        index: Index { total_size: None, metadata: Vec::new(), shards: Vec::new(), tensors: Vec::new() },
        shard_ids: HashMap::new(),
        seen_weight_map: false,
        error: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let result = TopLevel(&mut state).deserialize(&mut de).and_then(|()| de.end());
    if let Some(error) = state.error {
        return Err(error);
    }
    result.map_err(|e| fail(Rule::IndexJson, None, format!("not a valid index: {e}")))?;
    if !state.seen_weight_map {
        return Err(fail(Rule::IndexJson, None, "the index has no \"weight_map\""));
    }
    Ok(state.index)
}

struct State {
    req: Request,
    index: Index,
    shard_ids: HashMap<String, u32>,
    seen_weight_map: bool,
    /// A rule broken inside a visitor (serde's own error carries only text).
    error: Option<GuestError>,
}

impl State {
    fn refuse<E: de::Error>(&mut self, error: GuestError) -> E {
        let message = error.detail.clone();
        self.error = Some(error);
        E::custom(message)
    }
}

struct TopLevel<'s>(&'s mut State);

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with \"metadata\" and \"weight_map\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key.clone()) {
                return Err(self.0.refuse(fail(
                    Rule::DuplicateKey,
                    None,
                    format!("key {key:?} appears more than once in the index; readers would disagree on its value"),
                )));
            }
            match key.as_str() {
                "weight_map" => {
                    self.0.seen_weight_map = true;
                    map.next_value_seed(WeightMap(&mut *self.0))?;
                }
                "metadata" => map.next_value_seed(Metadata(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct WeightMap<'s>(&'s mut State);

impl<'de> DeserializeSeed<'de> for WeightMap<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WeightMap<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of tensor names to file names")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut names = HashSet::new();
        while let Some(tensor) = map.next_key::<String>()? {
            let file: String = map.next_value()?;
            if state.index.tensors.len() as u64 >= state.req.max_tensors {
                let limit = state.req.max_tensors;
                return Err(state.refuse(fail(
                    Rule::TooManyTensors,
                    Some(limit.saturating_add(1)),
                    format!("the index lists more than max_tensors {limit} tensors"),
                )));
            }
            if !names.insert(tensor.clone()) {
                return Err(state.refuse(fail(
                    Rule::IndexDuplicateTensor,
                    None,
                    format!("tensor {tensor:?} appears more than once in the weight_map"),
                )));
            }
            let next = state.index.shards.len() as u32;
            let id = match state.shard_ids.get(&file) {
                Some(&id) => id,
                None => {
                    if u64::from(next) >= state.req.max_shards {
                        let limit = state.req.max_shards;
                        return Err(state.refuse(fail(
                            Rule::ShardCountOverLimit,
                            Some(limit.saturating_add(1)),
                            format!("the index names more than max_shards {limit} files"),
                        )));
                    }
                    state.shard_ids.insert(file.clone(), next);
                    state.index.shards.push(file);
                    next
                }
            };
            state.index.tensors.push((tensor, id));
        }
        Ok(())
    }
}

struct Metadata<'s>(&'s mut State);

impl<'de> DeserializeSeed<'de> for Metadata<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Metadata<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metadata object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: serde_json::Value = map.next_value()?;
            if !keys.insert(key.clone()) {
                return Err(state.refuse(fail(
                    Rule::DuplicateKey,
                    None,
                    format!("metadata key {key:?} appears more than once in the index"),
                )));
            }
            if key == "total_size" {
                let Some(size) = value.as_u64() else {
                    return Err(state.refuse(fail(
                        Rule::IndexJson,
                        None,
                        format!("metadata total_size is {value}, not a non-negative integer"),
                    )));
                };
                state.index.total_size = Some(size);
            } else {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                state.index.metadata.push((key, text));
            }
        }
        Ok(())
    }
}
