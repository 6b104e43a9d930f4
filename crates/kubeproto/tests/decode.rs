//! Decoding hand-built protobuf bodies, checked against the exact JSON text Kubernetes'
//! Go types produce for the same objects (key order included).

mod common;

use common::{Pb, body, int_or_string_int, int_or_string_str, quantity};
use kubeproto::{Error, decode};
use serde_json::{Value, json};

/// `ObjectMeta` the way Go writes it: every value field present, zero or not.
fn go_meta(name: &str, namespace: &str) -> Pb {
    Pb::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Pb::new())
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

fn assert_json(got: &Value, want: Value) {
    assert_eq!(text(got), text(&want));
}

#[test]
fn configmap_decodes_to_the_json_kubectl_would_send() {
    let cm = Pb::new().msg(1, go_meta("cfg", "default")).entry(2, "a", "b").entry(2, "empty", "");
    let got = decode(&body("v1", "ConfigMap", cm)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "cfg", "namespace": "default", "creationTimestamp": null},
            "data": {"a": "b", "empty": ""}
        }),
    );
}

#[test]
fn secret_binary_data_becomes_base64_and_a_false_pointer_survives() {
    let secret = Pb::new()
        .msg(1, go_meta("sec", "default"))
        .entry_bytes(2, "bin", &[0, 1, 0xff, b'x'])
        .entry_bytes(2, "empty", b"")
        .str(3, "Opaque")
        .int(5, 0);
    let got = decode(&body("v1", "Secret", secret)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "sec", "namespace": "default", "creationTimestamp": null},
            "immutable": false,
            "data": {"bin": "AAH/eA==", "empty": ""},
            "type": "Opaque"
        }),
    );
}

#[test]
fn configmap_binary_data_and_map_keys_come_out_sorted() {
    let cm = Pb::new()
        .msg(1, Pb::new().str(1, "c"))
        .entry(2, "z", "1")
        .entry(2, "a", "2")
        .entry_bytes(3, "blob", b"\x89PNG");
    let got = decode(&body("v1", "ConfigMap", cm)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "c", "creationTimestamp": null},
            "data": {"a": "2", "z": "1"},
            "binaryData": {"blob": "iVBORw=="}
        }),
    );
}

#[test]
fn deployment_keeps_replicas_zero_quantities_and_a_percent_max_surge() {
    let container = Pb::new()
        .str(1, "web")
        .str(2, "nginx:1.27")
        .msg(6, Pb::new().str(1, "http").int(2, 0).int(3, 8080).str(4, "TCP").str(5, ""))
        .msg(
            8,
            Pb::new()
                .entry_msg(1, "memory", quantity("128Mi"))
                .entry_msg(1, "cpu", quantity("500m"))
                .entry_msg(2, "cpu", quantity("250m")),
        )
        .str(13, "")
        .str(14, "")
        .int(16, 0)
        .int(17, 0)
        .int(18, 0);
    let template = Pb::new()
        .msg(1, go_meta("", "").entry(11, "app", "web"))
        .msg(2, Pb::new().msg(2, container).str(3, "").str(6, ""));
    let spec = Pb::new()
        .int(1, 0)
        .msg(2, Pb::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(
            4,
            Pb::new()
                .str(1, "RollingUpdate")
                .msg(2, Pb::new().msg(1, int_or_string_int(0)).msg(2, int_or_string_str("25%"))),
        )
        .int(5, 0)
        .int(7, 0);
    let deployment = Pb::new().msg(1, go_meta("web", "default")).msg(2, spec).msg(3, Pb::new());
    let got = decode(&body("apps/v1", "Deployment", deployment)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "250m"}
                            }
                        }]
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}
                }
            },
            "status": {}
        }),
    );
}

#[test]
fn pod_timestamps_are_rfc3339_in_utc_and_embedded_structs_are_flattened() {
    let meta = go_meta("p", "default")
        .str(5, "0b3c-uid")
        .str(6, "42")
        .int(7, 3)
        .msg(8, Pb::new().int(1, 1_136_214_245).int(2, 999))
        .msg(9, Pb::new().int(1, 1_136_214_305))
        .int(10, 0)
        .str(14, "example.com/guard");
    let probe = Pb::new()
        .msg(
            1,
            Pb::new().msg(
                2,
                Pb::new().str(1, "/healthz").msg(2, int_or_string_int(8080)).str(3, "").str(4, "HTTP"),
            ),
        )
        .int(2, 5)
        .int(3, 1)
        .int(4, 10)
        .int(5, 1)
        .int(6, 3);
    let container = Pb::new()
        .str(1, "app")
        .str(2, "busybox")
        .msg(19, Pb::new().str(1, "").msg(2, Pb::new().msg(1, Pb::new().str(1, "settings"))))
        .msg(7, Pb::new().str(1, "MODE").str(2, "prod"))
        .msg(8, Pb::new())
        .msg(9, Pb::new().str(1, "cfg").int(2, 0).str(3, "/etc/cfg").str(4, ""))
        .msg(10, probe)
        .msg(15, Pb::new());
    let volume = Pb::new()
        .str(1, "cfg")
        .msg(2, Pb::new().msg(19, Pb::new().msg(1, Pb::new().str(1, "settings")).int(3, 0o644).int(4, 0)));
    let spec = Pb::new()
        .msg(1, volume)
        .msg(2, container)
        .int(4, 30)
        .int(21, 0)
        .msg(14, Pb::new().int(2, 1000).bytes(4, &[0x64, 0xe8, 0x07]))
        .int(25, -5);
    let pod = Pb::new().msg(1, meta).msg(2, spec).msg(3, Pb::new().str(1, "Pending"));
    let got = decode(&body("v1", "Pod", pod)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "p",
                "namespace": "default",
                "uid": "0b3c-uid",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2006-01-02T15:04:05Z",
                "deletionTimestamp": "2006-01-02T15:05:05Z",
                "deletionGracePeriodSeconds": 0,
                "finalizers": ["example.com/guard"]
            },
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420, "optional": false}}],
                "containers": [{
                    "name": "app",
                    "image": "busybox",
                    "envFrom": [{"configMapRef": {"name": "settings"}}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {},
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                        "initialDelaySeconds": 5,
                        "timeoutSeconds": 1,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3
                    },
                    "securityContext": {}
                }],
                "terminationGracePeriodSeconds": 30,
                "automountServiceAccountToken": false,
                "securityContext": {"runAsUser": 1000, "supplementalGroups": [100, 1000]},
                "priority": -5
            },
            "status": {"phase": "Pending"}
        }),
    );
}

#[test]
fn absent_value_structs_appear_empty_and_absent_pointers_without_omitempty_are_null() {
    let got = decode(&body("apps/v1", "Deployment", Pb::new())).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "selector": null,
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}},
                "strategy": {}
            },
            "status": {}
        }),
    );
}

#[test]
fn eviction_carries_its_delete_options() {
    let eviction = Pb::new()
        .msg(1, go_meta("web-0", "default"))
        .msg(2, Pb::new().int(1, 0).msg(2, Pb::new().str(1, "uid-1")).str(4, "Foreground").str(5, "All"));
    let got = decode(&body("policy/v1", "Eviction", eviction)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "uid-1"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }
        }),
    );
}

#[test]
fn watch_event_decodes_its_embedded_protobuf_object() {
    let pod = body(
        "v1",
        "Pod",
        Pb::new().msg(1, Pb::new().str(1, "p")).msg(2, Pb::new().msg(2, Pb::new().str(1, "c"))),
    );
    let event = Pb::new().str(1, "ADDED").msg(2, Pb::new().bytes(1, &pod));
    let got = decode(&body("v1", "WatchEvent", event)).unwrap();
    assert_eq!(got["type"], "ADDED");
    assert_eq!(got["object"]["kind"], "Pod");
    assert_eq!(got["object"]["metadata"]["name"], "p");
    assert_eq!(got["object"]["spec"]["containers"][0]["name"], "c");
    assert_eq!(got["object"]["status"], json!({}));
}

#[test]
fn raw_extension_holding_json_is_embedded_as_is() {
    let list = Pb::new()
        .msg(1, Pb::new().str(2, "17"))
        .msg(2, Pb::new().bytes(1, br#"{"kind":"ConfigMap","apiVersion":"v1","data":{"k":"v"}}"#));
    let got = decode(&body("v1", "List", list)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "17"},
            "items": [{"kind": "ConfigMap", "apiVersion": "v1", "data": {"k": "v"}}]
        }),
    );
}

#[test]
fn micro_time_has_six_fractional_digits() {
    let event = Pb::new()
        .msg(1, Pb::new().str(1, "e"))
        .msg(2, Pb::new().int(1, 1_136_214_245).int(2, 123_456_789))
        .str(7, "Started")
        .int(15, 0);
    let got = decode(&body("events.k8s.io/v1", "Event", event)).unwrap();
    assert_eq!(got["eventTime"], "2006-01-02T15:04:05.123456Z");
    assert_eq!(got["regarding"], json!({}));
    assert_eq!(got["deprecatedSource"], json!({}));
    assert_eq!(got["deprecatedFirstTimestamp"], Value::Null);
    assert!(got.get("deprecatedCount").is_none());
}

#[test]
fn crd_schemas_use_the_json_schema_special_forms() {
    let string = || Pb::new().str(5, "string");
    let size = Pb::new().str(5, "integer").msg(8, Pb::new().bytes(1, b"3")).double(9, 10.0).double(11, 0.5);
    let mode = Pb::new()
        .str(5, "string")
        .msg(20, Pb::new().bytes(1, b"\"a\""))
        .msg(20, Pb::new().bytes(1, b"\"b\""));
    let schema = Pb::new()
        .str(5, "object")
        .str(23, "spec")
        .entry_msg(29, "spec", Pb::new().str(5, "object").int(38, 1))
        .entry_msg(29, "size", size)
        .entry_msg(29, "tags", Pb::new().str(5, "array").msg(24, Pb::new().msg(1, string())))
        .entry_msg(29, "labels", Pb::new().str(5, "object").msg(30, Pb::new().int(1, 1).msg(2, string())))
        .entry_msg(29, "mode", mode)
        .msg(30, Pb::new().int(1, 0));
    let version = Pb::new().str(1, "v1").int(2, 1).int(3, 1).int(7, 0).msg(4, Pb::new().msg(1, schema));
    let spec = Pb::new()
        .str(1, "example.com")
        .msg(3, Pb::new().str(1, "widgets").str(2, "widget").str(4, "Widget").str(5, "WidgetList"))
        .str(4, "Namespaced")
        .msg(7, version)
        .int(10, 0);
    let crd = Pb::new().msg(1, go_meta("widgets.example.com", "")).msg(2, spec).msg(3, Pb::new());
    let got = decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)).unwrap();
    assert_json(
        &got["spec"]["versions"][0],
        json!({
            "name": "v1",
            "served": true,
            "storage": true,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "size": {"type": "integer", "default": 3, "maximum": 10, "minimum": 0.5},
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "additionalProperties": false
            }}
        }),
    );
    assert_json(
        &got["status"],
        json!({"conditions": null, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": null}),
    );
}

#[test]
fn status_is_known_under_v1_with_its_details() {
    let status = Pb::new()
        .msg(1, Pb::new().str(1, "").str(2, "").str(3, ""))
        .str(2, "Failure")
        .str(3, "pods \"x\" not found")
        .str(4, "NotFound")
        .msg(5, Pb::new().str(1, "x").str(2, "").str(3, "pods").int(5, 0))
        .int(6, 404);
    let got = decode(&body("v1", "Status", status)).unwrap();
    assert_json(
        &got,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "pods \"x\" not found",
            "reason": "NotFound",
            "details": {"name": "x", "kind": "pods"},
            "code": 404
        }),
    );
}

#[test]
fn unknown_fields_are_skipped_and_split_messages_merge() {
    let cm = Pb::new()
        .msg(1, Pb::new().str(1, "c"))
        .int(99, 7)
        .bytes(98, b"ignored")
        .msg(1, Pb::new().str(3, "ns").entry(11, "l", "v"));
    let got = decode(&body("v1", "ConfigMap", cm)).unwrap();
    assert_json(
        &got["metadata"],
        json!({"name": "c", "namespace": "ns", "creationTimestamp": null, "labels": {"l": "v"}}),
    );
}

#[test]
fn large_int64_values_stay_exact_json_numbers() {
    let spec = Pb::new().int(5, 9_007_199_254_740_993).int(4, i64::MAX);
    let got = decode(&body("v1", "Pod", Pb::new().msg(2, spec))).unwrap();
    assert_eq!(text(&got["spec"]["activeDeadlineSeconds"]), "9007199254740993");
    assert_eq!(text(&got["spec"]["terminationGracePeriodSeconds"]), "9223372036854775807");
}

#[test]
fn a_json_envelope_is_passed_through() {
    let mut b = b"k8s\0".to_vec();
    b.extend_from_slice(
        &Pb::new()
            .msg(1, Pb::new().str(1, "v1").str(2, "ConfigMap"))
            .bytes(2, br#"{"kind":"ConfigMap","apiVersion":"v1"}"#)
            .str(4, "application/json")
            .0,
    );
    assert_eq!(decode(&b).unwrap(), json!({"kind": "ConfigMap", "apiVersion": "v1"}));
}

#[test]
fn an_unknown_kind_is_an_error_naming_it() {
    let err = decode(&body("example.com/v1", "Widget", Pb::new())).unwrap_err();
    assert!(matches!(err, Error::UnknownKind { .. }));
    assert_eq!(err.to_string(), r#"unknown kind "Widget" in apiVersion "example.com/v1""#);
}

#[test]
fn a_body_without_the_magic_is_refused() {
    assert!(matches!(decode(br#"{"kind":"Pod"}"#), Err(Error::NoMagic)));
    assert!(matches!(decode(b""), Err(Error::NoMagic)));
}

#[test]
fn an_envelope_without_kind_is_refused() {
    assert_eq!(
        decode(&body("v1", "", Pb::new())).unwrap_err().to_string(),
        "protobuf envelope has no kind in its typeMeta"
    );
}

#[test]
fn a_truncated_field_names_its_message_and_number() {
    let mut meta = Pb::new().str(1, "c").0;
    meta.extend_from_slice(&[0x1a, 0x09, b'n']);
    let err = decode(&body("v1", "ConfigMap", Pb::new().bytes(1, &meta))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated field 3 of message io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
}

#[test]
fn a_wrong_wire_type_names_its_message_and_number() {
    let err = decode(&body("apps/v1", "Deployment", Pb::new().msg(2, Pb::new().str(1, "3")))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 1 of message io.k8s.api.apps.v1.DeploymentSpec: wire type 2 where 0 was expected"
    );
}

#[test]
fn invalid_embedded_json_is_an_error() {
    let list = Pb::new().msg(2, Pb::new().bytes(1, b"{not json"));
    let err = decode(&body("v1", "List", list)).unwrap_err();
    assert!(matches!(err, Error::EmbeddedJson { field: 1, .. }), "{err}");
}

#[test]
fn compressed_envelopes_are_refused() {
    let mut b = b"k8s\0".to_vec();
    b.extend_from_slice(&Pb::new().msg(1, Pb::new().str(1, "v1").str(2, "Pod")).str(3, "gzip").0);
    assert_eq!(
        decode(&b).unwrap_err().to_string(),
        r#"protobuf envelope has unsupported contentEncoding "gzip""#
    );
}
