//! A sharded checkpoint's `model.safetensors.index.json`, parsed in the `shard-index` guest,
//! differentially against what transformers does with it (`json.load`, then `weight_map` and
//! `metadata`), here serde_json into a `Value`: whatever sandload accepts, the reference reads as
//! the same tensor-to-file map, the same `total_size` and the same metadata; what the reference
//! accepts and sandload refuses must be one of sandload's documented stricter rules (a duplicated
//! key, whose value readers disagree on; in a document with one, whichever problem the walk meets
//! first, since the reference silently drops all but the last copy) or a limit.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sandload::{Error, Limit};
use sandload_fuzz::{FILE_NAME, check_rejection, limits, sandbox};
use serde_json::Value;

/// What a reader gets: tensor -> file, `total_size`, the other metadata.
type Reference = (BTreeMap<String, String>, Option<u64>, BTreeMap<String, Value>);

fn reference(data: &[u8]) -> Option<Reference> {
    let Value::Object(top) = serde_json::from_slice::<Value>(data).ok()? else { return None };
    let Value::Object(map) = top.get("weight_map")? else { return None };
    let weight_map = map.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect::<Option<_>>()?;
    let mut metadata = match top.get("metadata") {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return None,
    };
    let total_size = match metadata.remove("total_size") {
        None => None,
        Some(v) => Some(v.as_u64()?),
    };
    Some((weight_map, total_size, metadata.into_iter().collect()))
}

/// Whether any JSON object in `data` repeats a key. serde_json's `Value` keeps the last value of
/// a repeated key; sandload refuses the file, by whichever rule the walk meets first (the repeated
/// key, or a bad value in the copy the reference throws away).
fn has_duplicate_keys(data: &[u8]) -> bool {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Walk(bool);
    impl<'de> Deserialize<'de> for Walk {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Walk, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Walk;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
                    let (mut keys, mut dup) = (std::collections::HashSet::new(), false);
                    while let Some(key) = map.next_key::<String>()? {
                        dup |= !keys.insert(key);
                        dup |= map.next_value::<Walk>()?.0;
                    }
                    Ok(Walk(dup))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
                    let mut dup = false;
                    while let Some(w) = seq.next_element::<Walk>()? {
                        dup |= w.0;
                    }
                    Ok(Walk(dup))
                }
                fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
                fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
                fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
                fn visit_unit<E>(self) -> Result<Walk, E> {
                    Ok(Walk(false))
                }
            }
            d.deserialize_any(V)
        }
    }
    serde_json::from_slice::<Walk>(data).is_ok_and(|w| w.0)
}

fuzz_target!(
    init: sandload_fuzz::warm_up(|s| sandload::fuzzing::shard_index(
        s,
        Path::new("warm-up"),
        br#"{"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}"#,
    )),
    |data: &[u8]| {
    let ours = sandload::fuzzing::shard_index(sandbox(), Path::new(FILE_NAME), data);
    match (ours, reference(data)) {
        (Ok(index), Some((weight_map, total_size, metadata))) => {
            let ours: BTreeMap<String, String> = index
                .tensors
                .iter()
                .map(|(t, i)| (t.clone(), index.shards.get(*i as usize).expect("shard id in range").clone()))
                .collect();
            assert_eq!(ours.len(), index.tensors.len(), "a tensor listed twice was accepted");
            assert_eq!(ours, weight_map, "sandload and the reference read different weight maps");
            let mut named: Vec<&String> = weight_map.values().collect();
            named.sort();
            named.dedup();
            assert_eq!(named.len(), index.shards.len(), "shards {:?} vs files named {named:?}", index.shards);
            assert_eq!(index.total_size, total_size);
            assert_eq!(index.metadata.len(), metadata.len());
            for (key, text) in &index.metadata {
                let want = match &metadata[key] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(text, &want, "metadata {key:?}");
            }
            assert!(index.tensors.len() as u64 <= limits().max_tensors);
            assert!(index.shards.len() as u64 <= limits().max_shards);
        }
        (Ok(index), None) => {
            // serde_json's `Value` refuses a number too large for f64 (Python's json reads it as
            // inf) even under a key nobody reads; the guest skips such keys unparsed, as
            // transformers ignores them. Anything else the reference cannot read is a bug.
            let why = serde_json::from_slice::<Value>(data).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(why.contains("number out of range"), "sandload accepted an index the reference cannot read ({why}): {index:?}");
        }
        (Err(e), theirs) => {
            check_rejection(&e, false);
            if theirs.is_some() {
                let allowed = match &e {
                    Error::Malformed { rule, .. } if has_duplicate_keys(data) => {
                        matches!(*rule, "duplicate_key" | "index_duplicate_tensor" | "index_json")
                    }
                    Error::Malformed { rule, .. } => matches!(*rule, "duplicate_key" | "index_duplicate_tensor"),
                    Error::LimitExceeded { limit, .. } => {
                        matches!(limit, Limit::MaxTensors | Limit::MaxShards | Limit::MaxHeaderBytes)
                    }
                    _ => false,
                };
                assert!(allowed, "the reference reads this index but sandload refused it: {e}");
            }
        }
    }
});
