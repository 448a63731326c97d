//! Every safetensors validation rule, broken by a generated file. Each must come back as the
//! right error, naming the file, the rule, and the offset or limit involved.

use std::sync::OnceLock;

use sandload::{Dtype, Error, Format, Input, Limit, Limits, Sandbox};
use sandload_samples::{self as samples, Tensor, with_header};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

fn open(bytes: Vec<u8>) -> Result<sandload::Checkpoint, Error> {
    sandbox().open_safetensors(Input::from_bytes(bytes, "bad.safetensors"))
}

/// Asserts a Malformed error with `rule`, and that the message names the file.
#[track_caller]
fn assert_rule(bytes: Vec<u8>, rule: &str) -> Error {
    let err = open(bytes).expect_err("must be rejected");
    assert_eq!(err.kind(), "malformed", "{err}");
    assert_eq!(err.rule(), Some(rule), "{err}");
    assert!(err.to_string().starts_with("bad.safetensors: "), "{err}");
    assert!(err.is_rejection());
    err
}

fn offset(err: &Error) -> Option<u64> {
    match err {
        Error::Malformed { offset, .. } => *offset,
        _ => None,
    }
}

fn tensor_json(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}"#)
}

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut f = with_header(header);
    f.resize(f.len() + data_len, 0xAB);
    f
}

#[test]
fn file_shorter_than_length_prefix() {
    let err = assert_rule(vec![5, 0, 0], "header_too_small");
    assert_eq!(offset(&err), Some(0));
    assert_rule(Vec::new(), "header_too_small");
}

#[test]
fn header_length_zero() {
    // Zero-length header then '{': the JSON parser sees an empty string.
    let mut f = 0u64.to_le_bytes().to_vec();
    f.extend_from_slice(b"{}");
    assert_rule(f, "header_json");
}

#[test]
fn header_length_past_eof() {
    let mut f = 1000u64.to_le_bytes().to_vec();
    f.extend_from_slice(b"{}");
    let err = assert_rule(f, "header_past_eof");
    assert!(err.to_string().contains("1000"), "{err}");
}

/// A length prefix no safetensors header can have (the high bytes set) is not a limit problem
/// of a safetensors file: the file is not safetensors at all, and the error says so.
#[test]
fn header_length_u64_max_is_not_a_safetensors_file() {
    for prefix in [u64::MAX, 8_289_570_458_432_401_507, 1 << 32] {
        let mut f = prefix.to_le_bytes().to_vec();
        f.extend_from_slice(b"{}");
        let err = open(f).unwrap_err();
        assert_eq!(err.kind(), "refused_format", "{err}");
        assert!(matches!(err, Error::Refused { format: Format::Unknown, .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("not a safetensors file and not a recognised format"), "{message}");
        assert!(!message.contains("max_header_bytes"), "{message}");
    }
    // Text, random bytes: the same.
    for f in [b"hello, this is a text file and not a model\n".to_vec(), (0..255u8).rev().collect()] {
        let err = open(f).unwrap_err();
        assert!(err.to_string().contains("not a safetensors file and not a recognised format"), "{err}");
    }
}

/// A header length just over the limit, in a file shaped like safetensors, is a limit error.
#[test]
fn header_length_over_the_limit_is_a_limit() {
    let mut f = (u64::from(u32::MAX)).to_le_bytes().to_vec();
    f.extend_from_slice(b"{}");
    match open(f).unwrap_err() {
        Error::LimitExceeded { limit, limit_value, value, .. } => {
            assert_eq!(limit, Limit::MaxHeaderBytes);
            assert_eq!(limit_value, Limits::DEFAULT_MAX_HEADER_BYTES);
            assert_eq!(value, u64::from(u32::MAX));
        }
        other => panic!("expected LimitExceeded, got {other}"),
    }
}

#[test]
fn header_over_100_mb_is_refused_before_it_is_copied() {
    // Only the prefix is real: the host must refuse from the prefix alone, without reading or
    // allocating 100 MB.
    let mut f = 100_000_001u64.to_le_bytes().to_vec();
    f.extend_from_slice(b"{\"a\":1}");
    match open(f).unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxHeaderBytes, value: 100_000_001, .. } => {}
        other => panic!("expected LimitExceeded, got {other}"),
    }
}

#[test]
fn header_over_100_mb_real_file_is_refused() {
    // A real 100 MB + 8 byte header of valid JSON: still refused, by the limit.
    let pad = " ".repeat(100_000_001 - 2);
    let f = with_header(&format!("{{{pad}}}"));
    let err = open(f).unwrap_err();
    assert_eq!(err.kind(), "limit_exceeded", "{err}");
}

#[test]
fn reference_cap_applies_even_when_limit_is_raised() {
    let sandbox = Sandbox::with_limits(Limits::default().with_max_header_bytes(200_000_000)).unwrap();
    let pad = " ".repeat(100_000_001 - 2);
    let f = with_header(&format!("{{{pad}}}"));
    let err = sandbox.open_safetensors(Input::from_bytes(f, "big.safetensors")).unwrap_err();
    assert_eq!(err.rule(), Some("header_too_large"), "{err}");
}

#[test]
fn invalid_utf8_reports_its_offset() {
    let mut f = with_header("{\"abc\":{}}   ");
    // with_header takes &str; patch in an invalid byte at header position 3.
    f[8 + 3] = 0xff;
    let err = assert_rule(f, "header_not_utf8");
    assert_eq!(offset(&err), Some(11));
}

#[test]
fn non_object_json() {
    for header in ["[]      ", "\"str\"   ", "42      ", "null    ", "{       ", "{} {}   "] {
        assert_rule(with_header(header), "header_json");
    }
}

#[test]
fn unknown_dtype() {
    let h = format!("{{{}}}", tensor_json("w", "F128", "[1]", 0, 16));
    let err = assert_rule(file(&h, 16), "header_json");
    assert!(err.to_string().contains("F128"), "{err}");
}

#[test]
fn overlapping_tensors() {
    let h = format!("{{{},{}}}", tensor_json("a", "U8", "[4]", 0, 4), tensor_json("b", "U8", "[4]", 2, 6));
    let err = assert_rule(file(&h, 6), "invalid_offset");
    assert!(err.to_string().contains("\"b\""), "{err}");
}

#[test]
fn hole_between_tensors() {
    let h = format!("{{{},{}}}", tensor_json("a", "U8", "[4]", 0, 4), tensor_json("b", "U8", "[4]", 6, 10));
    assert_rule(file(&h, 10), "invalid_offset");
}

#[test]
fn end_before_begin() {
    let h = format!("{{{}}}", tensor_json("a", "U8", "[0]", 0, 0));
    assert!(open(file(&h, 0)).is_ok(), "a zero-size tensor at [0,0] is valid");
    let h = format!("{{{},{}}}", tensor_json("a", "U8", "[4]", 0, 4), tensor_json("b", "U8", "[0]", 4, 2));
    assert_rule(file(&h, 4), "invalid_offset");
}

#[test]
fn trailing_bytes() {
    let h = format!("{{{}}}", tensor_json("a", "U8", "[4]", 0, 4));
    let err = assert_rule(file(&h, 7), "incomplete_coverage");
    assert!(err.to_string().contains("3 trailing bytes"), "{err}");
    let header_end = 8 + h.len() as u64;
    assert_eq!(offset(&err), Some(header_end + 4));
}

#[test]
fn missing_bytes() {
    let h = format!("{{{}}}", tensor_json("a", "U8", "[4]", 0, 4));
    assert_rule(file(&h, 3), "incomplete_coverage");
}

#[test]
fn shape_overflow() {
    let h = format!("{{{}}}", tensor_json("a", "F32", "[4294967296,4294967296]", 0, 4));
    assert_rule(file(&h, 4), "shape_overflow");
    let h = format!("{{{}}}", tensor_json("a", "F64", "[2305843009213693952]", 0, 4));
    assert_rule(file(&h, 4), "shape_overflow");
}

#[test]
fn shape_does_not_match_offsets() {
    let h = format!("{{{}}}", tensor_json("a", "F32", "[3]", 0, 8));
    let err = assert_rule(file(&h, 8), "size_mismatch");
    assert!(err.to_string().contains("12 bytes"), "{err}");
}

#[test]
fn sub_byte_dtype_must_fill_whole_bytes() {
    let h = format!("{{{}}}", tensor_json("a", "F4", "[3]", 0, 2));
    assert_rule(file(&h, 2), "misaligned_slice");
    let h = format!("{{{}}}", tensor_json("a", "F4", "[4]", 0, 2));
    assert!(open(file(&h, 2)).is_ok());
}

#[test]
fn duplicate_tensor_names() {
    let h = format!("{{{},{}}}", tensor_json("w", "U8", "[1]", 0, 1), tensor_json("w", "U8", "[1]", 1, 2));
    let err = assert_rule(file(&h, 2), "duplicate_key");
    assert!(err.to_string().contains("\"w\""), "{err}");
    // The offset points at the second occurrence.
    let second = 8 + h.rfind("\"w\"").unwrap() as u64;
    assert_eq!(offset(&err), Some(second));
}

#[test]
fn duplicate_metadata_keys() {
    let h = format!(r#"{{"__metadata__":{{"k":"a","k":"b"}},{}}}"#, tensor_json("w", "U8", "[1]", 0, 1));
    let err = assert_rule(file(&h, 1), "duplicate_key");
    assert!(err.to_string().contains("__metadata__"), "{err}");
}

#[test]
fn duplicate_metadata_sections() {
    let h =
        format!(r#"{{"__metadata__":{{"k":"a"}},"__metadata__":{{"k":"b"}},{}}}"#, tensor_json("w", "U8", "[1]", 0, 1));
    assert_rule(file(&h, 1), "duplicate_key");
}

#[test]
fn non_string_metadata() {
    for value in ["1", "null", "[\"a\"]", "{\"x\":\"y\"}", "true"] {
        let h = format!(r#"{{"__metadata__":{{"k":{value}}},{}}}"#, tensor_json("w", "U8", "[1]", 0, 1));
        assert_rule(file(&h, 1), "header_json");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let h = format!(r#"{{"w":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    assert_rule(file(&h, 0), "header_json");
    let h = format!(r#"{{"__metadata__":{}{}}}"#, "{\"a\":".repeat(depth), "}".repeat(depth));
    assert_rule(file(&h, 0), "header_json");
}

#[test]
fn negative_and_fractional_numbers() {
    for shape in ["[-1]", "[1.5]", "[1e3]", "[18446744073709551616]"] {
        let h = format!("{{{}}}", tensor_json("a", "U8", shape, 0, 1));
        assert_rule(file(&h, 1), "header_json");
    }
}

#[test]
fn missing_fields() {
    assert_rule(file(r#"{"a":{"dtype":"U8","shape":[1]}}"#, 1), "header_json");
    assert_rule(file(r#"{"a":{"dtype":"U8","data_offsets":[0,1]}}"#, 1), "header_json");
    assert_rule(file(r#"{"a":{"shape":[1],"data_offsets":[0,1]}}"#, 1), "header_json");
    // A duplicated field inside a tensor entry (serde rejects it, as the reference does).
    assert_rule(file(r#"{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, 1), "header_json");
}

#[test]
fn polyglot_with_zip_appended() {
    let mut f = samples::small_checkpoint();
    let valid_len = f.len() as u64;
    f.extend_from_slice(&samples::pytorch_zip());
    let err = assert_rule(f, "incomplete_coverage");
    assert_eq!(offset(&err), Some(valid_len));
}

#[test]
fn too_many_tensors() {
    let sandbox = Sandbox::with_limits(Limits::default().with_max_tensors(3)).unwrap();
    let tensors: Vec<Tensor> = (0..5).map(|i| Tensor::patterned(&format!("t{i}"), Dtype::U8, &[1])).collect();
    let err = sandbox
        .open_safetensors(Input::from_bytes(samples::safetensors(&tensors, &[]), "many.safetensors"))
        .unwrap_err();
    match err {
        Error::LimitExceeded { limit: Limit::MaxTensors, limit_value: 3, value, .. } => assert!(value > 3),
        other => panic!("expected LimitExceeded, got {other}"),
    }
    let ok: Vec<Tensor> = (0..3).map(|i| Tensor::patterned(&format!("t{i}"), Dtype::U8, &[1])).collect();
    assert!(sandbox.open_safetensors(Input::from_bytes(samples::safetensors(&ok, &[]), "ok.safetensors")).is_ok());
}

#[test]
fn file_over_max_file_bytes() {
    let sandbox = Sandbox::with_limits(Limits::default().with_max_file_bytes(100)).unwrap();
    let f = samples::small_checkpoint();
    let len = f.len() as u64;
    match sandbox.open_safetensors(Input::from_bytes(f, "big.safetensors")).unwrap_err() {
        Error::LimitExceeded { limit: Limit::MaxFileBytes, limit_value: 100, value, .. } => assert_eq!(value, len),
        other => panic!("expected LimitExceeded, got {other}"),
    }
}

#[test]
fn header_over_configured_limit() {
    let sandbox = Sandbox::with_limits(Limits::default().with_max_header_bytes(64)).unwrap();
    let f = samples::small_checkpoint();
    let err = sandbox.open_safetensors(Input::from_bytes(f, "h.safetensors")).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { limit: Limit::MaxHeaderBytes, limit_value: 64, .. }), "{err}");
}

#[test]
fn unknown_content_is_named_as_unknown_not_as_a_limit() {
    // Random-looking bytes: not any known format, and not shaped like safetensors either.
    let f: Vec<u8> = (0u32..64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let err = open(f).unwrap_err();
    assert!(err.is_rejection(), "{err}");
    match &err {
        Error::Refused { format: Format::Unknown, .. } => {}
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("not a safetensors file and not a recognised format"), "{err}");
}

/// The format sets no rank limit, but shapes cross to the host: 65 dimensions are refused, 64 are
/// not.
#[test]
fn rank_over_64_is_refused() {
    for (rank, ok) in [(64usize, true), (65, false), (100_000, false)] {
        let shape = format!("[{}]", vec!["1"; rank].join(","));
        let h = format!("{{{}}}", tensor_json("w", "U8", &shape, 0, 1));
        let result = open(file(&h, 1));
        if ok {
            assert!(result.is_ok(), "rank {rank}: {:?}", result.err());
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.rule(), Some("rank_over_limit"), "rank {rank}: {err}");
        }
    }
}
