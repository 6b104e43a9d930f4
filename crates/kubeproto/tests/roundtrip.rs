//! Realistic objects of many kinds, written as the API server serves them, survive
//! `decode(encode(x)) == x` exactly, key order included.

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/roundtrip");

#[test]
fn realistic_objects_of_every_group_survive_encode_then_decode() {
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let want: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            kubeproto::knows(want["apiVersion"].as_str().unwrap(), want["kind"].as_str().unwrap()),
            "{name}"
        );
        let got = kubeproto::encode(&want).and_then(|body| kubeproto::decode(&body));
        match got {
            Ok(got) if serde_json::to_string(&got).unwrap() == serde_json::to_string(&want).unwrap() => {}
            Ok(got) => failures.push(format!(
                "{name}:\n want {}\n  got {}",
                serde_json::to_string(&want).unwrap(),
                serde_json::to_string(&got).unwrap()
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        seen += 1;
    }
    assert!(seen >= 25, "only {seen} fixtures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn encoding_reports_the_json_path_of_a_mistyped_value() {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": "80"}]}]}
    });
    let err = kubeproto::encode(&pod).unwrap_err();
    assert_eq!(err.to_string(), "spec.containers[1].ports[0].containerPort: expected an integer");
}

#[test]
fn encoding_refuses_unknown_kinds_and_objects_without_kind() {
    let err = kubeproto::encode(&serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget"}))
        .unwrap_err();
    assert!(matches!(err, kubeproto::Error::UnknownKind { .. }));
    let err = kubeproto::encode(&serde_json::json!({"apiVersion": "v1"})).unwrap_err();
    assert_eq!(err.to_string(), "protobuf envelope has no kind in its typeMeta");
}

#[test]
fn encoding_writes_the_envelope_kubernetes_expects() {
    let body = kubeproto::encode(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace"})).unwrap();
    assert!(body.starts_with(b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12"));
}

#[test]
fn int32_values_out_of_range_are_refused() {
    let d = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 4_294_967_296u64}});
    assert_eq!(kubeproto::encode(&d).unwrap_err().to_string(), "spec.replicas: 4294967296 is out of range");
}

#[test]
fn embedded_objects_of_known_kinds_are_written_as_protobuf_and_come_back() {
    let pod = serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {}}]},
        "status": {}
    });
    let event = serde_json::json!({"kind": "WatchEvent", "apiVersion": "v1", "type": "ADDED", "object": pod});
    let body = kubeproto::encode(&event).unwrap();
    let magic_at = body.windows(4).skip(4).position(|w| w == b"k8s\0");
    assert!(magic_at.is_some(), "the embedded pod is not protobuf");
    assert_eq!(kubeproto::decode(&body).unwrap(), event);

    let widget = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}});
    let list =
        serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": [pod, widget]});
    assert_eq!(kubeproto::decode(&kubeproto::encode(&list).unwrap()).unwrap(), list);
}
