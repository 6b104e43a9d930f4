//! The list semantics the built-in types' OpenAPI schemas need but the `k8s-openapi`
//! schemas lack: patch strategies and merge keys (strategic merge patch, kubectl's
//! client-side apply) and list/map types (server-side apply), as Kubernetes
//! publishes them as `x-kubernetes-*` extensions.
//!
//! [`annotate`] writes them into a definitions map so that one source feeds
//! `/openapi/v2`, `/openapi/v3` and [`crate::strategicpatch::OpenApiPatchMeta`].

mod table;

use serde_json::{Map, Value};

pub use table::{FIELDS, TYPES};

/// What Kubernetes declares about one field of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSemantics {
    /// OpenAPI v2 definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub definition: &'static str,
    /// JSON field name, e.g. `containers`.
    pub field: &'static str,
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys`, `replace`.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys` (for `map` lists), in declaration order.
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type` of a map or struct field: `atomic` or `granular`.
    pub map_type: Option<&'static str>,
}

/// A type marked atomic (or granular) as a whole (`+structType` / `+mapType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSemantics {
    /// OpenAPI v2 definition name.
    pub definition: &'static str,
    /// `x-kubernetes-map-type`: `atomic` or `granular`.
    pub map_type: &'static str,
}

/// The entry for `definition.field`, if Kubernetes declares anything for it.
pub fn lookup(definition: &str, field: &str) -> Option<&'static FieldSemantics> {
    FIELDS.binary_search_by(|e| (e.definition, e.field).cmp(&(definition, field))).ok().map(|i| &FIELDS[i])
}

/// All entries of one definition.
pub fn fields_of(definition: &str) -> &'static [FieldSemantics] {
    let start = FIELDS.partition_point(|e| e.definition < definition);
    let end = FIELDS.partition_point(|e| e.definition <= definition);
    &FIELDS[start..end]
}

/// The `x-kubernetes-map-type` of a whole type, if declared.
pub fn type_map_type(definition: &str) -> Option<&'static str> {
    TYPES.binary_search_by(|e| e.definition.cmp(definition)).ok().map(|i| TYPES[i].map_type)
}

/// Inserts the `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
/// `x-kubernetes-map-type` extensions into the property schemas of `definitions`
/// (definition name → schema), and `x-kubernetes-map-type` into atomic type schemas.
/// Extensions a schema already has are left alone; definitions and properties not
/// present are skipped. The extensions go next to whatever the property holds
/// (`type`/`items`, or a `$ref`), which is where Kubernetes' own v2 document puts
/// them and where [`crate::strategicpatch::OpenApiPatchMeta`] reads them.
pub fn annotate(definitions: &mut Map<String, Value>) {
    for e in FIELDS {
        let Some(property) = definitions
            .get_mut(e.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(e.field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let mut put = |key: &str, value: Value| {
            if !property.contains_key(key) {
                property.insert(key.to_string(), value);
            }
        };
        if let Some(s) = e.patch_strategy {
            put("x-kubernetes-patch-strategy", Value::from(s));
        }
        if let Some(k) = e.patch_merge_key {
            put("x-kubernetes-patch-merge-key", Value::from(k));
        }
        if let Some(t) = e.list_type {
            put("x-kubernetes-list-type", Value::from(t));
            if t == "map" && !e.list_map_keys.is_empty() {
                put(
                    "x-kubernetes-list-map-keys",
                    Value::Array(e.list_map_keys.iter().map(|k| Value::from(*k)).collect()),
                );
            }
        }
        if let Some(t) = e.map_type {
            put("x-kubernetes-map-type", Value::from(t));
        }
    }
    for t in TYPES {
        if let Some(schema) = definitions.get_mut(t.definition).and_then(Value::as_object_mut)
            && !schema.contains_key("x-kubernetes-map-type")
        {
            schema.insert("x-kubernetes-map-type".to_string(), Value::from(t.map_type));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategicpatch::{self, OpenApiPatchMeta};
    use serde_json::json;

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in FIELDS.windows(2) {
            assert!((w[0].definition, w[0].field) < (w[1].definition, w[1].field), "{:?}", w[1]);
        }
        for w in TYPES.windows(2) {
            assert!(w[0].definition < w[1].definition);
        }
    }

    #[test]
    fn well_known_fields_have_their_kubernetes_semantics() {
        // (definition, field, strategy, merge key, list type, list map keys)
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a [&'a str]);
        let cases: &[Case] = &[
            ("io.k8s.api.core.v1.PodSpec", "containers", Some("merge"), Some("name"), Some("map"), &["name"]),
            (
                "io.k8s.api.core.v1.PodSpec",
                "initContainers",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (
                "io.k8s.api.core.v1.PodSpec",
                "ephemeralContainers",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (
                "io.k8s.api.core.v1.PodSpec",
                "volumes",
                Some("merge,retainKeys"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (
                "io.k8s.api.core.v1.PodSpec",
                "imagePullSecrets",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            ("io.k8s.api.core.v1.PodSpec", "hostAliases", Some("merge"), Some("ip"), Some("map"), &["ip"]),
            ("io.k8s.api.core.v1.PodSpec", "tolerations", None, None, Some("atomic"), &[]),
            (
                "io.k8s.api.core.v1.PodSpec",
                "topologySpreadConstraints",
                Some("merge"),
                Some("topologyKey"),
                Some("map"),
                &["topologyKey", "whenUnsatisfiable"],
            ),
            ("io.k8s.api.core.v1.PodSpec", "readinessGates", None, None, Some("atomic"), &[]),
            (
                "io.k8s.api.core.v1.PodSpec",
                "resourceClaims",
                Some("merge,retainKeys"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (
                "io.k8s.api.core.v1.Container",
                "ports",
                Some("merge"),
                Some("containerPort"),
                Some("map"),
                &["containerPort", "protocol"],
            ),
            ("io.k8s.api.core.v1.Container", "env", Some("merge"), Some("name"), Some("map"), &["name"]),
            (
                "io.k8s.api.core.v1.Container",
                "volumeMounts",
                Some("merge"),
                Some("mountPath"),
                Some("map"),
                &["mountPath"],
            ),
            (
                "io.k8s.api.core.v1.Container",
                "volumeDevices",
                Some("merge"),
                Some("devicePath"),
                Some("map"),
                &["devicePath"],
            ),
            ("io.k8s.api.core.v1.Container", "args", None, None, Some("atomic"), &[]),
            (
                "io.k8s.api.core.v1.PodStatus",
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
            ),
            ("io.k8s.api.core.v1.PodStatus", "podIPs", Some("merge"), Some("ip"), Some("map"), &["ip"]),
            (
                "io.k8s.api.core.v1.NodeStatus",
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
            ),
            (
                "io.k8s.api.core.v1.NodeStatus",
                "addresses",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
            ),
            ("io.k8s.api.core.v1.NodeSpec", "taints", None, None, Some("atomic"), &[]),
            ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", Some("merge"), None, Some("set"), &[]),
            (
                "io.k8s.api.core.v1.ServiceSpec",
                "ports",
                Some("merge"),
                Some("port"),
                Some("map"),
                &["port", "protocol"],
            ),
            (
                "io.k8s.api.core.v1.ServiceAccount",
                "secrets",
                Some("merge"),
                Some("name"),
                Some("map"),
                &["name"],
            ),
            ("io.k8s.api.core.v1.EndpointSubset", "addresses", None, None, Some("atomic"), &[]),
            ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", Some("retainKeys"), None, None, &[]),
            (
                "io.k8s.api.apps.v1.DeploymentStatus",
                "conditions",
                Some("merge"),
                Some("type"),
                Some("map"),
                &["type"],
            ),
            ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", Some("replace"), None, None, &[]),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "finalizers",
                Some("merge"),
                None,
                Some("set"),
                &[],
            ),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "ownerReferences",
                Some("merge"),
                Some("uid"),
                Some("map"),
                &["uid"],
            ),
            (
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "managedFields",
                None,
                None,
                Some("atomic"),
                &[],
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus",
                "conditions",
                None,
                None,
                Some("map"),
                &["type"],
            ),
        ];
        for (def, field, strategy, key, list_type, keys) in cases {
            let e = lookup(def, field).unwrap_or_else(|| panic!("{def}.{field} missing"));
            assert_eq!(e.patch_strategy, *strategy, "{def}.{field}");
            assert_eq!(e.patch_merge_key, *key, "{def}.{field}");
            assert_eq!(e.list_type, *list_type, "{def}.{field}");
            assert_eq!(e.list_map_keys, *keys, "{def}.{field}");
        }
        assert_eq!(type_map_type("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"), Some("atomic"));
        assert_eq!(lookup("io.k8s.api.core.v1.PodSpec", "serviceAccountName"), None);
        assert!(fields_of("io.k8s.api.core.v1.PodSpec").len() >= 10);
    }

    fn pod_definitions() -> Map<String, Value> {
        let defs = json!({
            "io.k8s.api.core.v1.Pod": {"properties": {
                "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}
            }},
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "finalizers": {"type": "array", "items": {"type": "string"}},
                "ownerReferences": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"}}
            }},
            "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": {"properties": {"uid": {"type": "string"}}},
            "io.k8s.api.core.v1.PodSpec": {"properties": {
                "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}},
                "tolerations": {"type": "array", "items": {"type": "object"}},
                "volumes": {"type": "array", "items": {"type": "object"}}
            }},
            "io.k8s.api.core.v1.Container": {"properties": {
                "name": {"type": "string"},
                "image": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "array", "items": {"type": "object"}},
                "ports": {"type": "array", "items": {"type": "object"}}
            }}
        });
        let Value::Object(mut defs) = defs else { unreachable!() };
        annotate(&mut defs);
        defs
    }

    #[test]
    fn annotate_adds_extensions_next_to_the_property_schema() {
        let defs = pod_definitions();
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(containers["type"], "array");
        let tolerations = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert_eq!(tolerations["x-kubernetes-list-type"], "atomic");
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
    }

    #[test]
    fn annotate_keeps_existing_extensions() {
        let Value::Object(mut defs) = json!({"io.k8s.api.core.v1.PodSpec": {"properties": {
            "containers": {"type": "array", "x-kubernetes-patch-merge-key": "custom"}
        }}}) else {
            unreachable!()
        };
        annotate(&mut defs);
        let c = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(c["x-kubernetes-patch-merge-key"], "custom");
        assert_eq!(c["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn kubectl_set_image_patch_merges_the_container_by_name() {
        let defs = pod_definitions();
        let meta = OpenApiPatchMeta::new(&defs, "io.k8s.api.core.v1.Pod");
        let pod = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.14", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1"]}
            ]}
        });
        let patch = json!({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16"}]}});
        let got = strategicpatch::apply(&pod, &patch, &meta).unwrap();
        assert_eq!(
            got["spec"]["containers"],
            json!([
                {"name": "nginx", "image": "nginx:1.16", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1"]}
            ])
        );

        let label = json!({"metadata": {"labels": {"tier": "frontend", "app": null}}});
        let got = strategicpatch::apply(&pod, &label, &meta).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"tier": "frontend"}));

        let finalizer = json!({"metadata": {"finalizers": ["b"]}});
        let got = strategicpatch::apply(&pod, &finalizer, &meta).unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!(["b", "a"]));

        let args = json!({"spec": {"containers": [{"name": "sidecar", "args": ["sleep", "2"]}]}});
        let got = strategicpatch::apply(&pod, &args, &meta).unwrap();
        assert_eq!(got["spec"]["containers"][1]["args"], json!(["sleep", "2"]));
    }

    #[test]
    fn kubectl_apply_patch_with_set_element_order_adds_and_removes_containers() {
        let defs = pod_definitions();
        let meta = OpenApiPatchMeta::new(&defs, "io.k8s.api.core.v1.Pod");
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"},
            {"name": "b", "image": "b:1"}
        ]}});
        // What kubectl apply sends when the manifest drops "a" and adds "c" after "b".
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "c:1"}, {"$patch": "delete", "name": "a"}]
        }});
        let got = strategicpatch::apply(&pod, &patch, &meta).unwrap();
        assert_eq!(
            got["spec"]["containers"],
            json!([
                {"name": "b", "image": "b:1"},
                {"name": "c", "image": "c:1"}
            ])
        );
    }
}
