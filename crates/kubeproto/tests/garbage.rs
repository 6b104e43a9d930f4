//! Hostile input: truncated, mutated, random and absurdly nested bodies and objects
//! produce errors (or some JSON), never a panic or a stack overflow.

mod common;

use common::{Pb, body};
use serde_json::{Value, json};

/// A small deterministic generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every realistic body we have: captured from kubectl and encoded from the round-trip objects.
fn sample_bodies() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["kubectl-1.32", "roundtrip"] {
        for entry in std::fs::read_dir(fixture_dir(dir)).unwrap() {
            let path = entry.unwrap().path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("pb") => out.push(std::fs::read(&path).unwrap()),
                Some("json") if dir == "roundtrip" => {
                    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    out.push(kubeproto::encode(&v).unwrap());
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn every_truncation_of_a_real_body_decodes_or_errs_without_panicking() {
    for body in sample_bodies() {
        for len in 0..body.len() {
            let _ = kubeproto::decode(&body[..len]);
        }
    }
}

#[test]
fn randomly_mutated_real_bodies_decode_or_err_without_panicking() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for body in sample_bodies() {
        for _ in 0..300 {
            let mut b = body.clone();
            for _ in 0..1 + rng.below(4) {
                let i = 4 + rng.below(b.len() - 4);
                match rng.below(3) {
                    0 => b[i] = rng.next() as u8,
                    1 => b[i] ^= 1 << rng.below(8),
                    _ => {
                        b.insert(i, rng.next() as u8);
                    }
                }
            }
            if let Ok(v) = kubeproto::decode(&b) {
                // Whatever decodes must encode again (or fail cleanly).
                let _ = kubeproto::encode(&v);
            }
        }
    }
}

#[test]
fn random_bytes_inside_a_valid_envelope_decode_or_err_without_panicking() {
    let kinds = [
        ("v1", "Pod"),
        ("v1", "Node"),
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "CronJob"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("v1", "WatchEvent"),
        ("v1", "List"),
        ("events.k8s.io/v1", "Event"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ];
    let mut rng = Rng(42);
    for (api_version, kind) in kinds {
        for _ in 0..2000 {
            let len = rng.below(64);
            let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = kubeproto::decode(&body(api_version, kind, Pb(raw)));
        }
    }
    for _ in 0..5000 {
        let len = rng.below(48);
        let mut b = b"k8s\0".to_vec();
        b.extend((0..len).map(|_| rng.next() as u8));
        let _ = kubeproto::decode(&b);
    }
}

#[test]
fn deeply_nested_watch_events_stop_at_the_depth_limit() {
    let mut inner = body("v1", "ConfigMap", Pb::new());
    for _ in 0..500 {
        inner = body("v1", "WatchEvent", Pb::new().str(1, "ADDED").msg(2, Pb::new().bytes(1, &inner)));
    }
    let err = kubeproto::decode(&inner).unwrap_err();
    assert!(matches!(err, kubeproto::Error::TooDeep(_)), "{err}");
}

#[test]
fn deeply_nested_schemas_stop_at_the_depth_limit_both_ways() {
    let mut props = Pb::new().str(5, "string");
    for _ in 0..2000 {
        props = Pb::new().str(5, "object").entry_msg(29, "x", props);
    }
    let version = Pb::new().str(1, "v1").msg(4, Pb::new().msg(1, props));
    let crd = Pb::new().msg(2, Pb::new().msg(7, version));
    let err =
        kubeproto::decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)).unwrap_err();
    assert!(matches!(err, kubeproto::Error::TooDeep(_)), "{err}");

    let mut schema = json!({"type": "string"});
    for _ in 0..300 {
        schema = json!({"type": "object", "properties": {"x": schema}});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}
    });
    let err = kubeproto::encode(&crd).unwrap_err();
    assert!(matches!(err, kubeproto::Error::TooDeep(_)), "{err}");
}

/// Replaces one node of `v`, chosen by `pick`, with an arbitrary JSON value.
fn mutate(v: &mut Value, rng: &mut Rng, depth: usize) {
    let replacement = || -> [Value; 9] {
        [
            json!(null),
            json!(true),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!([]),
            json!({}),
            json!([1]),
            json!(""),
        ]
    };
    let descend = depth < 12 && rng.below(4) != 0;
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let i = rng.below(map.len());
            if let Some((_, child)) = map.iter_mut().nth(i) {
                mutate(child, rng, depth + 1);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate(&mut items[i], rng, depth + 1);
        }
        _ => {
            let choices = replacement();
            *v = choices[rng.below(choices.len())].clone();
        }
    }
}

#[test]
fn mistyped_json_objects_encode_or_err_without_panicking() {
    let mut rng = Rng(7);
    for entry in std::fs::read_dir(fixture_dir("roundtrip")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let original: Value = serde_json::from_str(&text).unwrap();
        for _ in 0..300 {
            let mut v = original.clone();
            mutate(&mut v, &mut rng, 0);
            if let Ok(b) = kubeproto::encode(&v) {
                let _ = kubeproto::decode(&b);
            }
        }
    }
}
