//! sandload must agree with the reference `safetensors` crate: every file the reference accepts
//! loads with identical names, dtypes, shapes and bytes; every file it rejects is rejected. The
//! documented exceptions: sandload also refuses duplicate JSON keys (which the reference silently
//! collapses), headers that do not begin with `{` or end with anything but `}` and spaces, and
//! files that are also a pickle, a zip, an HDF5 file or a tar archive (see `tests/polyglot.rs`).

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::Rng;
use sandload::{Dtype, Input, Sandbox};
use sandload_samples::{self as samples, Tensor};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

/// name -> (dtype name, shape, bytes)
type Contents = BTreeMap<String, (String, Vec<u64>, Vec<u8>)>;

fn reference(bytes: &[u8]) -> Result<(Contents, Option<BTreeMap<String, String>>), String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let contents = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().iter().map(|&d| d as u64).collect();
            (name, (view.dtype().to_string(), shape, view.data().to_vec()))
        })
        .collect();
    let metadata = meta.metadata().as_ref().map(|m| m.clone().into_iter().collect());
    Ok((contents, metadata))
}

fn sandload(bytes: &[u8]) -> Result<(Contents, Option<BTreeMap<String, String>>), sandload::Error> {
    let ckpt = sandbox().open_safetensors(Input::from_bytes(bytes.to_vec(), "diff.safetensors"))?;
    let contents = ckpt
        .iter()
        .map(|t| (t.name.to_string(), (t.dtype.name().to_string(), t.shape.to_vec(), t.data.to_vec())))
        .collect();
    Ok((contents, ckpt.metadata().cloned()))
}

/// Rules by which sandload refuses files the reference accepts (README, "Parser disagreement").
const DOCUMENTED_DIFFERENCES: [&str; 9] = [
    "duplicate_key",
    "rank_over_limit",
    "header_start",
    "header_padding",
    "pickle_polyglot",
    "zip_polyglot",
    "hdf5_polyglot",
    "tar_polyglot",
    "compressed_polyglot",
];

#[track_caller]
fn assert_agree(bytes: &[u8], what: &str) -> bool {
    let ours = sandload(bytes);
    let theirs = reference(bytes);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "{what}: both accept but contents differ");
            true
        }
        (Err(_), Err(_)) => false,
        // The documented differences: sandload's strict profile and its polyglot refusals.
        (Err(e), Ok(_)) if e.rule().is_some_and(|r| DOCUMENTED_DIFFERENCES.contains(&r)) => false,
        (Err(e), Ok(_)) => {
            panic!("{what}: reference accepts, sandload rejects: {e}\nfile: {:?}", String::from_utf8_lossy(bytes))
        }
        (Ok(_), Err(e)) => {
            panic!("{what}: sandload accepts, reference rejects: {e}\nfile: {:?}", String::from_utf8_lossy(bytes))
        }
    }
}

fn valid_corpus() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for dtype in Dtype::ALL {
        // Sub-byte dtypes need an even element count for whole bytes.
        for shape in [&[][..], &[0], &[4], &[2, 4], &[2, 0, 3], &[1, 2, 2, 2]] {
            if dtype.byte_len(shape).is_err() {
                continue;
            }
            let t = Tensor::patterned("x", dtype, shape);
            files.push((format!("{} {:?}", dtype.name(), shape), samples::safetensors(&[t], &[])));
        }
    }
    files.push(("small".into(), samples::small_checkpoint()));
    files.push(("empty".into(), samples::safetensors(&[], &[])));
    files.push(("empty with metadata".into(), samples::safetensors(&[], &[("a", "b")])));
    let unicode = vec![
        Tensor::patterned("ünïcödé.weight", Dtype::F16, &[3]),
        Tensor::patterned("quote\"back\\slash", Dtype::U8, &[2]),
        Tensor::patterned("", Dtype::I32, &[1]),
    ];
    files.push(("unicode names".into(), samples::safetensors(&unicode, &[("ключ", "значение"), ("", "")])));
    let many: Vec<Tensor> =
        (0..300).map(|i| Tensor::patterned(&format!("layer.{i}.w"), Dtype::BF16, &[i % 5, 2])).collect();
    files.push(("300 tensors".into(), samples::safetensors(&many, &[])));
    // Header entries out of offset order, extra unknown fields, odd whitespace: all valid.
    let mut odd = samples::with_header(
        "{ \"b\" : {\"shape\":[2],\"dtype\":\"U8\",\"data_offsets\":[2,4],\"extra\":[1,{}]},\n\
         \"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}, \"__metadata__\":{} }",
    );
    odd.extend_from_slice(&[1, 2, 3, 4]);
    files.push(("unordered entries".into(), odd));
    files
}

#[test]
fn valid_files_load_identically() {
    for (what, bytes) in valid_corpus() {
        assert!(assert_agree(&bytes, &what), "{what}: expected both to accept");
    }
}

fn mutate(rng: &mut Rng, file: &[u8]) -> Vec<u8> {
    const BYTES: &[u8] = b"0123456789[]{},:\" -.eEFUIBO_abcdefghijklmnopqrstuvwxyz\\\0\xff";
    let mut f = file.to_vec();
    for _ in 0..1 + rng.below(3) {
        let header_end = match f.get(..8) {
            Some(prefix) => (8 + u64::from_le_bytes(prefix.try_into().unwrap()).min(1 << 32) as usize).min(f.len()),
            None => 0,
        };
        match rng.below(8) {
            0..=2 if header_end > 8 => {
                let at = 8 + rng.below(header_end - 8);
                f[at] = BYTES[rng.below(BYTES.len())];
            }
            3 if header_end > 8 => {
                // Insert a byte into the header and fix the prefix so the file stays coherent.
                let at = 8 + rng.below(header_end - 8);
                f.insert(at, BYTES[rng.below(BYTES.len())]);
                let n = u64::from_le_bytes(f[..8].try_into().unwrap()).wrapping_add(1);
                f[..8].copy_from_slice(&n.to_le_bytes());
            }
            4 if header_end > 9 => {
                let at = 8 + rng.below(header_end - 8);
                f.remove(at);
                let n = u64::from_le_bytes(f[..8].try_into().unwrap()).wrapping_sub(1);
                f[..8].copy_from_slice(&n.to_le_bytes());
            }
            5 => {
                let len = rng.below(f.len() + 1);
                f.truncate(len);
            }
            6 => {
                for _ in 0..rng.below(9) {
                    f.push(rng.next() as u8);
                }
            }
            _ if f.len() >= 8 => {
                let at = rng.below(8);
                f[at] = f[at].wrapping_add(rng.below(3) as u8).wrapping_sub(1);
            }
            _ => {}
        }
    }
    f
}

#[test]
fn mutated_files_get_the_same_verdict() {
    let corpus = valid_corpus();
    let mut rng = Rng(0x5A4D_10AD_2026_1122);
    let (mut accepted, mut total) = (0, 0);
    for round in 0..4000 {
        let (what, base) = &corpus[rng.below(corpus.len())];
        let mutated = mutate(&mut rng, base);
        accepted += usize::from(assert_agree(&mutated, &format!("round {round} from {what}")));
        total += 1;
    }
    // The mutator must exercise both verdicts, or this test proves nothing.
    assert!(accepted > total / 50, "only {accepted} of {total} mutants were valid");
    assert!(accepted < total * 9 / 10, "{accepted} of {total} mutants were valid");
}

#[test]
fn duplicates_are_the_documented_difference() {
    let mut f = samples::with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
    );
    // The reference keeps the last "w" and then sees a hole at [0,1]: rejects for another reason.
    f.extend_from_slice(&[1, 2]);
    assert!(reference(&f).is_err());
    // Same name twice with identical entries covering the data: the reference accepts one tensor.
    let mut g = samples::with_header(
        r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
    );
    g.push(7);
    assert!(reference(&g).is_ok(), "the reference collapses duplicates");
    let err = sandload(&g).unwrap_err();
    assert_eq!(err.rule(), Some("duplicate_key"), "{err}");
}

/// Headers aimed at the split between the guest's single strict pass (canonical form only) and
/// the reference parse it falls back to: forms the reference accepts that the strict pass does
/// not, and near-misses of the canonical form. Each gets the reference's verdict and contents.
#[test]
fn headers_off_the_canonical_form_get_the_reference_verdict() {
    const T: &str = r#""dtype":"U8","shape":[2],"data_offsets":[0,2]"#;
    let cases: Vec<(&str, String, bool)> = vec![
        ("canonical", format!("{{\"w\":{{{T}}}}}"), true),
        ("fields in another order", r#"{"w":{"data_offsets":[0,2],"shape":[2],"dtype":"U8"}}"#.into(), true),
        ("tensor as a sequence", r#"{"w":["U8",[2],[0,2]]}"#.into(), true),
        ("extra field", format!("{{\"w\":{{{T},\"x\":null}}}}"), true),
        ("dtype as an enum map", r#"{"w":{"dtype":{"U8":null},"shape":[2],"data_offsets":[0,2]}}"#.into(), true),
        ("escaped name", format!("{{\"\\u0077\":{{{T}}}}}"), true),
        ("escaped __metadata__", format!("{{\"__metadata\\u005f_\":{{\"k\":\"v\"}},\"w\":{{{T}}}}}"), true),
        ("metadata null", format!("{{\"__metadata__\":null,\"w\":{{{T}}}}}"), true),
        ("metadata after the tensors", format!("{{\"w\":{{{T}}},\"__metadata__\":{{\"k\":\"v\"}}}}"), true),
        ("metadata value a number", format!("{{\"__metadata__\":{{\"k\":1}},\"w\":{{{T}}}}}"), false),
        ("metadata a string", format!("{{\"__metadata__\":\"k\",\"w\":{{{T}}}}}"), false),
        ("dtype twice", format!("{{\"w\":{{{T},\"dtype\":\"U8\"}}}}"), false),
        ("missing shape", r#"{"w":{"dtype":"U8","data_offsets":[0,2]}}"#.into(), false),
        ("shape as floats", r#"{"w":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}}"#.into(), false),
        ("negative zero", r#"{"w":{"dtype":"U8","shape":[-0],"data_offsets":[0,2]}}"#.into(), false),
        ("three offsets", r#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2,2]}}"#.into(), false),
        ("unknown dtype", r#"{"w":{"dtype":"U9","shape":[2],"data_offsets":[0,2]}}"#.into(), false),
        ("lower-case dtype", r#"{"w":{"dtype":"u8","shape":[2],"data_offsets":[0,2]}}"#.into(), false),
        ("not an object", "[1]".into(), false),
        ("trailing garbage", format!("{{\"w\":{{{T}}}}}x"), false),
    ];
    for (what, header, accepted) in cases {
        let mut file = samples::with_header(&header);
        file.extend_from_slice(&[5, 6]);
        assert_eq!(reference(&file).is_ok(), accepted, "{what}: the reference's verdict changed; fix the case");
        assert_eq!(assert_agree(&file, what), accepted, "{what}");
    }
    // Duplicates in either place are refused whichever pass sees them.
    for header in [
        format!("{{\"w\":{{{T}}},\"\\u0077\":{{{T}}}}}"),
        format!("{{\"__metadata__\":{{\"k\":\"v\",\"\\u006b\":\"v\"}},\"w\":{{{T}}}}}"),
        format!("{{\"__metadata__\":null,\"__metadata__\":null,\"w\":{{{T}}}}}"),
    ] {
        let mut file = samples::with_header(&header);
        file.extend_from_slice(&[5, 6]);
        assert_eq!(sandload(&file).unwrap_err().rule(), Some("duplicate_key"), "{header}");
    }
}
