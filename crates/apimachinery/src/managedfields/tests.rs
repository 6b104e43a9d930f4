use super::*;
use serde_json::json;

fn definitions() -> Map<String, Value> {
    let defs = json!({
        "io.k8s.api.apps.v1.Deployment": {"properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }},
        "io.k8s.api.apps.v1.DeploymentSpec": {"properties": {
            "replicas": {"type": "integer"},
            "selector": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"},
            "template": {"$ref": "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"}
        }},
        "io.k8s.api.core.v1.PodTemplateSpec": {"properties": {
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}
        }},
        "io.k8s.api.core.v1.PodSpec": {"properties": {
            "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}},
            "tolerations": {"type": "array", "items": {"type": "object"}}
        }},
        "io.k8s.api.core.v1.Container": {"properties": {
            "name": {"type": "string"},
            "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            "ports": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.ContainerPort"}}
        }},
        "io.k8s.api.core.v1.ContainerPort": {"properties": {
            "containerPort": {"type": "integer"},
            "protocol": {"type": "string"},
            "name": {"type": "string"}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "managedFields": {"type": "array", "items": {"type": "object"}},
            "resourceVersion": {"type": "string"}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector": {"properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
        }}
    });
    let Value::Object(mut defs) = defs else { unreachable!() };
    crate::openapi_ext::annotate(&mut defs);
    defs
}

fn mgr<'a>(name: &'a str) -> Manager<'a> {
    Manager { name, api_version: "apps/v1", subresource: "", time: "2024-05-01T10:00:00Z" }
}

fn deployment(replicas: i64, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
        }
    })
}

#[test]
fn applied_fields_are_encoded_as_kubernetes_shows_them() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let applied =
        deployment(2, json!([{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]));
    let (obj, managed) = apply(&Value::Null, &applied, &mgr("kubectl"), false, &ty).unwrap();
    let expected: Value = serde_json::from_str(
        r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#,
    )
    .unwrap();
    assert_eq!(managed[0]["fieldsV1"], expected);
    assert_eq!(managed[0]["manager"], "kubectl");
    assert_eq!(managed[0]["operation"], "Apply");
    assert_eq!(managed[0]["apiVersion"], "apps/v1");
    assert_eq!(managed[0]["time"], "2024-05-01T10:00:00Z");
    assert_eq!(managed[0]["fieldsType"], "FieldsV1");
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(obj["metadata"]["managedFields"], managed);
    // The encoding round-trips through the decoder.
    let set = Set::from_fields_v1(&expected).unwrap();
    assert_eq!(set.to_fields_v1(), expected);
}

#[test]
fn changing_a_field_another_applier_owns_conflicts_unless_forced() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let containers = json!([{"name": "nginx", "image": "nginx"}]);
    let (live, _) =
        apply(&Value::Null, &deployment(2, containers.clone()), &mgr("alice"), false, &ty).unwrap();

    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let err = apply(&live, &bob, &mgr("bob"), false, &ty).unwrap_err();
    assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas");
    let Error::Conflicts(c) = &err else { panic!() };
    assert_eq!(c.causes(), vec![("conflict with \"alice\"".to_string(), ".spec.replicas".to_string())]);

    let (obj, managed) = apply(&live, &bob, &mgr("bob"), true, &ty).unwrap();
    assert_eq!(obj["spec"]["replicas"], 3);
    let alice = managed.as_array().unwrap().iter().find(|e| e["manager"] == "alice").unwrap();
    assert!(alice["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    let bob_entry = managed.as_array().unwrap().iter().find(|e| e["manager"] == "bob").unwrap();
    assert_eq!(bob_entry["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn applying_the_same_value_shares_ownership_without_conflict() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let (live, _) = apply(&Value::Null, &deployment(2, json!([])), &mgr("alice"), false, &ty).unwrap();
    let bob = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let (_, managed) = apply(&live, &bob, &mgr("bob"), false, &ty).unwrap();
    let owners: Vec<&Value> = managed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .map(|e| &e["manager"])
        .collect();
    assert_eq!(owners, [&json!("alice"), &json!("bob")]);
}

#[test]
fn fields_dropped_from_the_applied_configuration_are_removed_unless_someone_else_owns_them() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let two = json!([{"name": "nginx", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]);
    let mut first = deployment(2, two);
    first["metadata"]["labels"]["tier"] = json!("frontend");
    let (live, _) = apply(&Value::Null, &first, &mgr("alice"), false, &ty).unwrap();

    let one = deployment(2, json!([{"name": "nginx", "image": "nginx"}]));
    let (obj, managed) = apply(&live, &one, &mgr("alice"), false, &ty).unwrap();
    assert_eq!(obj["spec"]["template"]["spec"]["containers"], json!([{"name": "nginx", "image": "nginx"}]));
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(obj["metadata"]["name"], "web");
    assert_eq!(managed.as_array().unwrap().len(), 1);

    // Bob also applies the label; Alice dropping it then keeps it.
    let bob = json!({"metadata": {"name": "web", "labels": {"tier": "frontend"}}});
    let (live2, _) = apply(&live, &bob, &mgr("bob"), false, &ty).unwrap();
    let (obj, _) = apply(&live2, &one, &mgr("alice"), false, &ty).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web", "tier": "frontend"}));
}

#[test]
fn updates_take_ownership_and_then_conflict_with_appliers() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let (live, _) = apply(&Value::Null, &deployment(2, json!([])), &mgr("alice"), false, &ty).unwrap();
    // kubectl scale: an Update by "kubectl" that changes replicas.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scale_mgr = Manager { time: "2024-05-01T11:00:00Z", ..mgr("kubectl") };
    let managed = update_managed_fields(&live, &scaled, &scale_mgr, &ty).unwrap();
    let entries = managed.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["manager"], "kubectl");
    assert_eq!(entries[1]["operation"], "Update");
    assert_eq!(entries[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    scaled["metadata"]["managedFields"] = managed;

    let err = apply(&scaled, &deployment(3, json!([])), &mgr("alice"), false, &ty).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let obj = deployment(1, json!([]));
    let created = update_managed_fields(&Value::Null, &obj, &mgr("kubectl-create"), &ty).unwrap();
    assert_eq!(created.as_array().unwrap().len(), 1);
    let fields = &created[0]["fieldsV1"];
    assert!(fields.get("f:apiVersion").is_none());
    assert!(fields["f:metadata"].get("f:name").is_none());
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    let mut live = obj.clone();
    live["metadata"]["managedFields"] = created.clone();
    let again = update_managed_fields(&live, &live, &mgr("other"), &ty).unwrap();
    assert_eq!(again, created);
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let c = Conflicts(vec![
        Conflict { manager: "\"a\"".into(), field: ".spec.replicas".into() },
        Conflict { manager: "\"a\"".into(), field: ".spec.paused".into() },
        Conflict { manager: "\"b\" using v1".into(), field: ".metadata.labels.x".into() },
    ]);
    assert_eq!(
        c.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.paused\nconflicts with \"b\" using v1:\n- .metadata.labels.x"
    );
}

#[test]
fn associative_lists_merge_by_key_keeping_live_order() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let live = deployment(1, json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let applied = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b2"}, {"name": "c", "image": "c"}]}}}});
    let (obj, _) = apply(&live, &applied, &mgr("x"), false, &ty).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b2"}, {"name": "c", "image": "c"}])
    );
}

#[test]
fn set_lists_and_atomic_lists_follow_their_list_type() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let live = json!({"metadata": {"name": "x", "finalizers": ["a"]}, "spec": {"template": {"spec": {"tolerations": [{"key": "k"}]}}}});
    let applied = json!({"metadata": {"name": "x", "finalizers": ["b"]}, "spec": {"template": {"spec": {"tolerations": [{"key": "j"}]}}}});
    let (obj, managed) = apply(&live, &applied, &mgr("x"), false, &ty).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["a", "b"]));
    assert_eq!(obj["spec"]["template"]["spec"]["tolerations"], json!([{"key": "j"}]));
    let f = &managed[0]["fieldsV1"];
    assert_eq!(f["f:metadata"]["f:finalizers"], json!({"v:\"b\"": {}}));
    assert_eq!(f["f:spec"]["f:template"]["f:spec"]["f:tolerations"], json!({}));
}

#[test]
fn path_elements_print_like_kubernetes() {
    let p = vec![
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::Key(vec![("name".into(), json!("web"))]),
        PathElement::Field("ports".into()),
        PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]),
    ];
    assert_eq!(path_string(&p), ".spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]");
    assert_eq!(path_string(&[PathElement::Value(json!("a")), PathElement::Index(3)]), "[=\"a\"][3]");
}

#[test]
fn malformed_managed_fields_are_rejected_not_panicked_on() {
    let defs = definitions();
    let ty = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    for bad in [
        json!("x"),
        json!([1]),
        json!([{"operation": "Explode"}]),
        json!([{"operation": "Apply", "fieldsV1": {"q:x": {}}}]),
        json!([{"operation": "Apply", "fieldsV1": {"k:[1]": {}}}]),
        json!([{"operation": "Apply", "fieldsV1": {"f:x": 1}}]),
    ] {
        let live = json!({"metadata": {"name": "x", "managedFields": bad}});
        assert!(matches!(
            apply(&live, &json!({}), &mgr("m"), false, &ty),
            Err(Error::InvalidManagedFields(_))
        ));
    }
    assert!(matches!(apply(&json!([1]), &json!({}), &mgr("m"), false, &ty), Err(Error::NotAnObject(_))));
    assert!(
        apply(
            &json!({}),
            &json!({"spec": {"template": {"spec": {"containers": [1, null, {"image": "x"}]}}}}),
            &mgr("m"),
            false,
            &ty
        )
        .is_ok()
    );
}

#[test]
fn untyped_objects_are_granular_maps_with_atomic_lists() {
    let ty = TypeRef::untyped();
    let (obj, managed) = apply(
        &json!({"spec": {"a": 1, "l": [1]}}),
        &json!({"spec": {"b": 2, "l": [2]}}),
        &mgr("m"),
        false,
        &ty,
    )
    .unwrap();
    assert_eq!(
        obj,
        json!({"spec": {"a": 1, "b": 2, "l": [2]}, "metadata": {"managedFields": managed.clone()}})
    );
    assert_eq!(managed[0]["fieldsV1"], json!({"f:spec": {".": {}, "f:b": {}, "f:l": {}}}));
}

#[test]
fn a_status_change_to_a_large_object_is_compared_by_the_changed_leaves_only() {
    let ty = super::typed::TypeRef::untyped();
    let mut old = serde_json::json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 1, "y": [1, 2]},
        "status": {"phase": "Pending", "podIP": null}});
    let mut new = old.clone();
    new["status"]["phase"] = "Running".into();
    new["status"]["hostIP"] = "10.0.0.1".into();
    let cmp = super::typed::compare(&old, &new, &ty);
    assert_eq!(cmp.modified.paths().len(), 1);
    assert_eq!(cmp.added.paths().len(), 1);
    assert!(cmp.removed.is_empty());
    old["spec"]["y"] = serde_json::json!([1, 3]);
    let cmp = super::typed::compare(&old, &new, &ty);
    // The atomic list and the phase changed.
    assert_eq!(cmp.modified.paths().len(), 2);
}

/// The comparison by whole field sets, which [`typed::compare`] must equal.
fn compare_by_field_sets(lhs: &Value, rhs: &Value, ty: &TypeRef<'_>) -> [Vec<String>; 3] {
    let lset = typed::to_field_set(lhs, ty);
    let rset = typed::to_field_set(rhs, ty);
    let both = lset.intersection(&rset);
    let mut modified = fieldpath::Set::new();
    typed::modified_paths(lhs, rhs, ty, &mut Vec::new(), &both, &mut modified);
    let show = |s: &fieldpath::Set| s.paths().iter().map(|p| fieldpath::path_string(p)).collect::<Vec<_>>();
    [show(&rset.difference(&lset)), show(&lset.difference(&rset)), show(&modified)]
}

fn compare_walking(lhs: &Value, rhs: &Value, ty: &TypeRef<'_>) -> [Vec<String>; 3] {
    let c = typed::compare(lhs, rhs, ty);
    let show = |s: &fieldpath::Set| s.paths().iter().map(|p| fieldpath::path_string(p)).collect::<Vec<_>>();
    [show(&c.added), show(&c.removed), show(&c.modified)]
}

/// A small deterministic generator of deployment-shaped values with the awkward cases:
/// nulls, empty maps, undeclared fields, duplicate list keys, atomic lists.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn pick(&mut self, options: &[Value]) -> Value {
        options[self.next(options.len() as u64) as usize].clone()
    }

    fn deployment(&mut self) -> Value {
        let mut containers = Vec::new();
        for _ in 0..self.next(4) {
            let mut c = serde_json::Map::new();
            c.insert("name".into(), self.pick(&[json!("a"), json!("b"), json!("c")]));
            if self.next(2) == 0 {
                c.insert("image".into(), self.pick(&[json!("x:1"), json!("x:2"), Value::Null]));
            }
            if self.next(2) == 0 {
                c.insert("args".into(), self.pick(&[json!(["-v"]), json!(["-v", "-q"]), json!([])]));
            }
            if self.next(2) == 0 {
                let ports: Vec<Value> = (0..self.next(3))
                    .map(|_| json!({"containerPort": self.next(3) + 80, "name": self.pick(&[json!("p"), json!("q")])}))
                    .collect();
                c.insert("ports".into(), Value::Array(ports));
            }
            if self.next(4) == 0 {
                c.insert("unknownThing".into(), self.pick(&[json!({"x": 1}), json!(2), json!({})]));
            }
            containers.push(Value::Object(c));
        }
        let mut d = deployment(self.next(3) as i64, Value::Array(containers));
        let labels =
            self.pick(&[json!({"app": "web"}), json!({"app": "web", "tier": "x"}), json!({}), Value::Null]);
        d["metadata"]["labels"] = labels;
        if self.next(2) == 0 {
            d["metadata"]["finalizers"] = self.pick(&[json!(["a"]), json!(["a", "b"]), json!(["b", "b"])]);
        }
        if self.next(2) == 0 {
            d["status"] = self.pick(&[
                json!({"replicas": 1}),
                json!({"replicas": 2}),
                json!({}),
                json!({"other": {"y": 1}}),
            ]);
        }
        if self.next(3) == 0 {
            d["spec"]["template"]["spec"]["tolerations"] = self.pick(&[json!([{"key": "k"}]), json!([])]);
        }
        d
    }
}

#[test]
fn comparing_by_walking_both_versions_equals_comparing_whole_field_sets() {
    let defs = definitions();
    let typed = TypeRef::new(&defs, "io.k8s.api.apps.v1.Deployment");
    let untyped = TypeRef::untyped();
    let mut g = Gen(7);
    for round in 0..3000 {
        let a = g.deployment();
        let b = if g.next(3) == 0 { a.clone() } else { g.deployment() };
        for ty in [&typed, &untyped] {
            assert_eq!(
                compare_walking(&a, &b, ty),
                compare_by_field_sets(&a, &b, ty),
                "round {round}\n{a}\n{b}"
            );
        }
    }
}
