//! Bodies captured from kubectl 1.32 talking to a recording server, decoded and
//! compared with the JSON kubectl prints for the same command with
//! `--dry-run=client -o json` (Go's own marshalling of the same object).

use std::path::Path;

use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubectl-1.32");

fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pb") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let body = std::fs::read(&path).unwrap();
            let json = std::fs::read_to_string(Path::new(DIR).join(format!("{name}.json"))).unwrap();
            out.push((name, body, serde_json::from_str(&json).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_captured_kubectl_body_decodes_to_gos_json_text() {
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 28);
    for (name, body, want) in fixtures {
        let got = kubeproto::decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap(), "{name}");
    }
}

#[test]
fn every_captured_kubectl_object_survives_encode_then_decode() {
    for (name, _, want) in fixtures() {
        let body = kubeproto::encode(&want).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kubeproto::decode(&body).unwrap(), want, "{name}");
    }
}
