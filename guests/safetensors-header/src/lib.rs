//! sandload guest: parse and validate a safetensors header.
//!
//! Input: the 8-byte length prefix and the JSON header (never the tensor data) plus the file's
//! length. Output: the tensor table in offset order, or the rule the header broke.
//!
//! Acceptance mirrors `safetensors::SafeTensors::read_metadata` (0.8) step for step, with two
//! documented differences:
//! - **Duplicate keys are refused.** The reference deserialises into a `HashMap` and silently keeps
//!   the last value, so two readers can disagree about what a tensor name means.
//! - **Integers are 64-bit.** The reference uses `usize`, which is 32 bits in a wasm32 guest: its
//!   own `Metadata` type would refuse every file over 4 GiB here. The serde model below is the
//!   reference's with `usize` replaced by `u64`, which equals a 64-bit host's `usize`; dtype
//!   parsing reuses the reference crate's `Dtype`. The host's differential tests check agreement.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use sandload_abi::safetensors::{Dtype, MAX_RANK, Request, Response, SizeError, Table, TensorEntry};
use sandload_abi::{GuestError, Rule};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

mod fast;

/// The reference implementation's header size cap (`safetensors::tensor::MAX_HEADER_SIZE`).
pub const REFERENCE_MAX_HEADER: u64 = 100_000_000;
const N_LEN: u64 = 8;

sandload_abi::guest_main!(Request, validate);

/// The reference `HashMetadata`, with 64-bit integers.
#[derive(Deserialize)]
struct HashMetadata {
    #[serde(rename = "__metadata__")]
    metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, TensorInfo>,
}

/// The reference `TensorInfo`, with 64-bit integers.
#[derive(Deserialize)]
struct TensorInfo {
    dtype: safetensors::Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn fail(rule: Rule, offset: Option<u64>, detail: impl Into<String>) -> GuestError {
    GuestError { rule, offset, value: None, detail: detail.into() }
}

fn over_limit(rule: Rule, value: u64, detail: String) -> GuestError {
    GuestError { rule, offset: None, value: Some(value), detail }
}

/// Validates `payload` (prefix, header, and up to `PICKLE_WINDOW` bytes of tensor data) as the
/// start of a safetensors file of `req.file_len` bytes.
pub fn validate(req: Request, payload: &[u8]) -> Response {
    let Some(prefix) = payload.get(..N_LEN as usize) else {
        return Err(fail(
            Rule::HeaderTooSmall,
            Some(0),
            format!("file has {} bytes, fewer than the 8-byte header length prefix", req.file_len),
        ));
    };
    let n = u64::from_le_bytes(prefix.try_into().expect("slice of 8"));
    if n > REFERENCE_MAX_HEADER {
        return Err(fail(
            Rule::HeaderTooLarge,
            Some(0),
            format!("header length {n} exceeds the format's maximum of {REFERENCE_MAX_HEADER} bytes"),
        ));
    }
    if n > req.max_header_bytes {
        return Err(over_limit(
            Rule::HeaderOverLimit,
            n,
            format!("header length {n} exceeds max_header_bytes {}", req.max_header_bytes),
        ));
    }
    let stop = N_LEN + n; // n <= 100 MB: cannot overflow.
    if stop > req.file_len {
        return Err(fail(
            Rule::HeaderPastEof,
            Some(0),
            format!("header length {n} ends at byte {stop}, past the end of the {}-byte file", req.file_len),
        ));
    }
    let Some(header) = payload.get(N_LEN as usize..stop as usize) else {
        return Err(fail(Rule::BadRequest, None, format!("host sent {} bytes, header needs {stop}", payload.len())));
    };
    // The format: the header *begins* with `{`, and its only padding is trailing spaces. The
    // reference accepts any JSON whitespace on both sides; two readers could then disagree on
    // where the object starts, and leading bytes are where polyglots put other formats' opcodes.
    if let Some(&first) = header.first() {
        // (Anything else than whitespace there is not a JSON object at all: `header_json`.)
        if matches!(first, b' ' | b'\t' | b'\n' | b'\r') {
            return Err(fail(
                Rule::HeaderStart,
                Some(N_LEN),
                format!("the header must begin with '{{' but begins with whitespace (byte 0x{first:02x})"),
            ));
        }
    }
    let text = std::str::from_utf8(header)
        .map_err(|e| fail(Rule::HeaderNotUtf8, Some(N_LEN + e.valid_up_to() as u64), "header is not valid UTF-8"))?;

    // One strict pass builds the table from the canonical form every writer emits; anything
    // else (and any error) goes through the reference's parse, so that what is accepted and
    // every error kind stay the reference's.
    let (tensors_found, metadata) = match fast::parse(text, req.max_tensors) {
        Some(parsed) => parsed,
        None => reference_parse(text, req.max_tensors)?,
    };

    // Valid JSON; what follows the object must be the format's padding: spaces only.
    let unpadded = header.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    if header.get(unpadded.wrapping_sub(1)) != Some(&b'}') {
        return Err(fail(
            Rule::HeaderPadding,
            Some(N_LEN + unpadded as u64),
            "the header must end with the JSON object's '}' followed only by spaces",
        ));
    }

    let tensor_count = tensors_found.len() as u64;
    if tensor_count > req.max_tensors {
        return Err(over_limit(
            Rule::TooManyTensors,
            tensor_count,
            format!("{tensor_count} tensors exceed max_tensors {}", req.max_tensors),
        ));
    }

    let mut tensors = Vec::with_capacity(tensors_found.len());
    for (name, info) in tensors_found {
        if info.shape.len() > MAX_RANK {
            return Err(GuestError {
                rule: Rule::RankOverLimit,
                offset: None,
                value: Some(info.shape.len() as u64),
                detail: format!("tensor {name:?} has {} dimensions, at most {MAX_RANK}", info.shape.len()),
            });
        }
        let dtype_name = info.dtype.to_string();
        let dtype = Dtype::from_name(&dtype_name).ok_or_else(|| {
            fail(Rule::UnknownDtype, None, format!("tensor {name:?}: dtype {dtype_name} is not supported"))
        })?;
        tensors.push(TensorEntry {
            name,
            dtype,
            shape: info.shape,
            begin: info.data_offsets.0,
            end: info.data_offsets.1,
        });
    }
    // The reference sorts by offsets only; the name breaks ties so the order is deterministic.
    tensors.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));

    let data_len = check_layout(&tensors)?;
    let file_data_len = req.file_len - stop;
    if data_len != file_data_len {
        let detail = if data_len < file_data_len {
            format!(
                "tensors cover {data_len} bytes of data but the file has {file_data_len}: {} trailing bytes at offset {}",
                file_data_len - data_len,
                stop + data_len
            )
        } else {
            format!("tensors need {data_len} bytes of data but the file has only {file_data_len}")
        };
        return Err(fail(Rule::IncompleteCoverage, Some(stop + data_len.min(file_data_len)), detail));
    }

    not_a_pickle(&req, payload)?;

    let metadata = metadata.map(|mut entries| {
        entries.sort();
        entries
    });
    Ok(Table { header_len: n, tensors, metadata })
}

/// The tensors (name and reference `TensorInfo`, in no particular order) and the metadata entries.
type Parsed = (Vec<(String, TensorInfo)>, Option<Vec<(String, String)>>);

/// The reference's acceptance: a first pass refuses duplicate keys and counts tensors, then
/// `HashMetadata` is deserialised as the reference does.
fn reference_parse(text: &str, max_tensors: u64) -> Result<Parsed, GuestError> {
    check_keys(text, max_tensors)?;
    let parsed: HashMetadata = serde_json::from_str(text)
        .map_err(|e| fail(Rule::HeaderJson, json_offset(text, &e), format!("header JSON: {e}")))?;
    Ok((parsed.tensors.into_iter().collect(), parsed.metadata.map(|m| m.into_iter().collect())))
}

/// Refuses a file that `pickle.load` (called repeatedly, as torch's legacy loader does; the C or
/// the pure-Python unpickler) would run as a pickle from byte 0: one whose opcode walk reaches an opcode that imports or calls
/// before the walk fails, or that is still going where the bytes handed in end (then the file
/// cannot be ruled out and is refused too). Nothing is executed; see `sandload_abi::pickle`.
fn not_a_pickle(req: &Request, payload: &[u8]) -> Result<(), GuestError> {
    use sandload_abi::pickle::{End, WalkLimits, walk_stream};
    let whole_file = payload.len() as u64 == req.file_len;
    // At the end of the whole file the pure-Python unpickler still reads a last line: walk it.
    // Read from byte 0, the first pickle has no persistent_load in any loader (see WalkLimits).
    let limits = WalkLimits { whole_file, first_has_persistent_load: false, ..WalkLimits::default() };
    let walk = walk_stream(payload, &limits);
    let undecided = matches!(walk.end, End::OpLimit | End::Ambiguous)
        || (!whole_file && matches!(walk.end, End::Truncated | End::Stop));
    if !walk.has_effects() && !undecided {
        return Ok(());
    }
    let imports: Vec<String> = walk.imports.iter().map(|(m, n)| format!("{m}.{n}")).collect();
    let detail = if walk.has_effects() {
        format!(
            "read from byte 0 as a pickle it runs {} opcodes, imports [{}] and makes {} calls and {} persistent loads",
            walk.ops,
            imports.join(", "),
            walk.calls,
            walk.persistent_loads
        )
    } else {
        format!(
            "read from byte 0 as a pickle it is still valid after {} opcodes at byte {}, where the bytes examined \
             end, so it cannot be ruled out",
            walk.ops, walk.end_offset
        )
    };
    // value 1: undecided (the host may hand in more of the file and ask again); none: effects.
    let mut error = fail(Rule::PicklePolyglot, Some(walk.first_effect_offset.unwrap_or(walk.end_offset)), detail);
    if !walk.has_effects() {
        error.value = Some(1);
    }
    Err(error)
}

/// The reference `Metadata::validate`, in 64-bit arithmetic. Returns the data section length.
fn check_layout(tensors: &[TensorEntry]) -> Result<u64, GuestError> {
    let mut start = 0u64;
    for t in tensors {
        if t.begin != start || t.end < t.begin {
            return Err(fail(
                Rule::InvalidOffset,
                None,
                format!(
                    "tensor {:?}: data_offsets [{}, {}] but the previous tensor ends at {start}",
                    t.name, t.begin, t.end
                ),
            ));
        }
        start = t.end;
        let size = t.dtype.byte_len(&t.shape).map_err(|e| match e {
            SizeError::Overflow => fail(
                Rule::ShapeOverflow,
                None,
                format!("tensor {:?}: shape {:?} of {} overflows 64 bits", t.name, t.shape, t.dtype.name()),
            ),
            SizeError::Misaligned => fail(
                Rule::MisalignedSlice,
                None,
                format!(
                    "tensor {:?}: shape {:?} of {} is not a whole number of bytes",
                    t.name,
                    t.shape,
                    t.dtype.name()
                ),
            ),
        })?;
        if t.end - t.begin != size {
            return Err(fail(
                Rule::SizeMismatch,
                None,
                format!(
                    "tensor {:?}: {} x {:?} is {size} bytes but data_offsets span {}",
                    t.name,
                    t.dtype.name(),
                    t.shape,
                    t.end - t.begin
                ),
            ));
        }
    }
    Ok(start)
}

/// Maps a serde_json error position (line, column) to a byte offset in the file.
fn json_offset(text: &str, e: &serde_json::Error) -> Option<u64> {
    if e.line() == 0 {
        return None;
    }
    let line_start: usize = text.split_inclusive('\n').take(e.line() - 1).map(str::len).sum();
    Some(N_LEN + (line_start + e.column().saturating_sub(1)) as u64)
}

/// First pass: refuses duplicate keys at the top level and inside `__metadata__`, and counts
/// tensors before anything is allocated for them. Any other JSON problem is left to the second
/// pass so that error kinds match the reference.
fn check_keys(text: &str, max_tensors: u64) -> Result<(), GuestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut outcome = KeyOutcome::default();
    let seed = TopLevel { max_tensors, outcome: &mut outcome };
    // A syntax error here is reported by the second pass, which parses the same text.
    let _ = seed.deserialize(&mut de);
    match outcome {
        KeyOutcome { duplicate: Some((scope, key)), .. } => Err(fail(
            Rule::DuplicateKey,
            duplicate_offset(text, &key),
            format!("key {key:?} appears more than once in {scope}; readers would disagree on its value"),
        )),
        KeyOutcome { too_many: true, .. } => Err(over_limit(
            Rule::TooManyTensors,
            max_tensors.saturating_add(1),
            format!("more than max_tensors {max_tensors} tensors in the header"),
        )),
        _ => Ok(()),
    }
}

fn duplicate_offset(text: &str, key: &str) -> Option<u64> {
    let quoted = serde_json::to_string(key).ok()?;
    text.rfind(&quoted).map(|i| N_LEN + i as u64)
}

/// A JSON object key, borrowed from the header text unless it has escapes (serde's own
/// `Cow<str>` always copies): the first pass then allocates nothing per tensor but its set entry.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[derive(Default)]
struct KeyOutcome {
    duplicate: Option<(&'static str, String)>,
    too_many: bool,
}

struct TopLevel<'o> {
    max_tensors: u64,
    outcome: &'o mut KeyOutcome,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        let mut tensors = 0u64;
        while let Some(key) = map.next_key_seed(Key)? {
            if key == "__metadata__" {
                map.next_value_seed(MetadataKeys { outcome: &mut *self.outcome })?;
            } else {
                map.next_value::<IgnoredAny>()?;
                tensors += 1;
                if tensors > self.max_tensors {
                    self.outcome.too_many = true;
                    return Err(de::Error::custom("too many tensors"));
                }
            }
            if self.outcome.duplicate.is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
            if seen.contains(&key) {
                self.outcome.duplicate = Some(("the header", key.into_owned()));
                return Err(de::Error::custom("duplicate key"));
            }
            seen.insert(key);
        }
        Ok(())
    }
    // Not an object: the second pass reports the type error in the reference's terms.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

struct MetadataKeys<'o> {
    outcome: &'o mut KeyOutcome,
}

impl<'de> DeserializeSeed<'de> for MetadataKeys<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataKeys<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the __metadata__ value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value::<IgnoredAny>()?;
            if seen.contains(&key) {
                self.outcome.duplicate = Some(("__metadata__", key.into_owned()));
                return Err(de::Error::custom("duplicate key"));
            }
            seen.insert(key);
        }
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}
