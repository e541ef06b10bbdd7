//! The transparency-dev Merkle proof vectors (testdata/merkle, Apache-2.0, see its README)
//! and the C2SP signed-note vector (testdata/signed-note).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chaperone_ledger::merkle::{
    Hash, verify_consistency, verify_inclusion, verify_subtree_consistency,
    verify_subtree_inclusion,
};
use chaperone_ledger::note::{Verifier, open};
use serde_json::Value;

fn files(kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/merkle")
            .join(kind),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no vectors for {kind}");
    out
}

/// A hash from the vector; `None` if it is not 32 bytes of base64 (which the proof must fail).
fn hash(value: &Value) -> Option<Hash> {
    STANDARD.decode(value.as_str()?).ok()?.try_into().ok()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    STANDARD.decode(value.as_str()?).ok()
}

fn proof(value: &Value) -> Option<Vec<Hash>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => None,
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}"))
}

/// Runs every vector of `kind`; returns (positives, negatives) checked.
fn run(kind: &str, check: impl Fn(&Value) -> bool) -> (usize, usize) {
    let (mut good, mut bad) = (0, 0);
    for file in files(kind) {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        let ok = check(&v);
        assert_eq!(ok, !want_err, "{}: {}", file.display(), v["desc"]);
        if want_err { bad += 1 } else { good += 1 }
    }
    (good, bad)
}

#[test]
fn inclusion_vectors() {
    let (good, bad) = run("inclusion", |v| {
        let (Some(leaf), Some(root), Some(proof)) =
            (hash(&v["leafHash"]), hash(&v["root"]), proof(&v["proof"]))
        else {
            return false;
        };
        verify_inclusion(num(v, "leafIdx"), num(v, "treeSize"), &leaf, &proof, &root).is_ok()
    });
    assert!(good > 0 && bad > 0);
}

#[test]
fn consistency_vectors() {
    let (good, bad) = run("consistency", |v| {
        let (Some(r1), Some(r2), Some(proof)) =
            (bytes(&v["root1"]), bytes(&v["root2"]), proof(&v["proof"]))
        else {
            return false;
        };
        verify_consistency(num(v, "size1"), num(v, "size2"), &proof, &r1[..], &r2[..]).is_ok()
    });
    assert!(good > 0 && bad > 0);
}

#[test]
fn subtree_inclusion_vectors() {
    let (good, bad) = run("subtreeinclusion", |v| {
        let (Some(leaf), Some(root), Some(proof)) =
            (hash(&v["leafHash"]), hash(&v["root"]), proof(&v["proof"]))
        else {
            return false;
        };
        verify_subtree_inclusion(
            num(v, "leafIdx"),
            num(v, "start"),
            num(v, "end"),
            &leaf,
            &proof,
            &root,
        )
        .is_ok()
    });
    assert!(good > 0 && bad > 0);
}

#[test]
fn subtree_consistency_vectors() {
    let (good, bad) = run("subtreeconsistency", |v| {
        let (Some(r1), Some(r2), Some(proof)) =
            (bytes(&v["root1"]), bytes(&v["root2"]), proof(&v["proof"]))
        else {
            return false;
        };
        verify_subtree_consistency(
            num(v, "start"),
            num(v, "end"),
            num(v, "size"),
            &proof,
            &r1,
            &r2,
        )
        .is_ok()
    });
    assert!(good > 0 && bad > 0);
}

#[test]
fn signed_note_vector_verifies_and_one_bit_does_not() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/signed-note");
    let vkey = std::fs::read_to_string(dir.join("example.vkey")).unwrap();
    let note = std::fs::read(dir.join("example.note")).unwrap();
    let verifier: Verifier = vkey.trim().parse().unwrap();
    assert_eq!(verifier.name(), "example.com/foo");
    let text = open(&note, std::slice::from_ref(&verifier)).unwrap();
    assert_eq!(text, "This is an example message.\n");
    for byte in 0..note.len() {
        for bit in 0..8 {
            let mut bad = note.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                open(&bad, std::slice::from_ref(&verifier)).is_err(),
                "byte {byte} bit {bit}"
            );
        }
    }
}
