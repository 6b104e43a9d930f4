//! CustomResourceDefinitions: a CRD registers its resource in the registry (all served
//! versions, one storage version), and objects of it are checked against the CRD's
//! structural schema (types, required fields, enums, bounds, patterns), pruned of unknown
//! fields and defaulted.

use std::sync::Arc;

use apimachinery::validation::NameRule;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, FieldError, not_supported};
use crate::registry::{CustomColumn, Printer, Resource, ScalePaths, Schema, StorageInfo};
use crate::strategy::{Hooks, Strategy};
use crate::{Api, meta};

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The OpenAPI definition name of a custom kind: the group reversed, then version and kind
/// (`com.example.v1.AstaXie`), as kube-apiserver names them.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// The OpenAPI definition of a custom resource version, for `/openapi/v2` and `/v3`.
pub fn definition_for(r: &Resource) -> Option<Value> {
    let Schema::Structural(s) = &r.schema else {
        return Some(json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}],
        }));
    };
    let mut d = (**s).clone();
    let m = d.as_object_mut()?;
    let props = m.entry("properties").or_insert_with(|| json!({}));
    if let Some(p) = props.as_object_mut() {
        p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        p.insert(
            "metadata".into(),
            json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "description": "Standard object's metadata."}),
        );
    }
    m.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
    );
    Some(d)
}

/// Kubernetes' order of versions: GA before beta before alpha, higher numbers first,
/// then anything else alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        for (name, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(name) {
                let minor: i64 = n.parse().ok()?;
                return Some((major, rank, minor));
            }
        }
        None
    };
    match parse(v) {
        Some((major, rank, minor)) => (rank, -major, -minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

pub struct CrdHooks;

impl Hooks<CustomResourceDefinition> for CrdHooks {
    fn default(&self, c: &mut CustomResourceDefinition) {
        let n = &mut c.spec.names;
        if n.singular.as_deref().unwrap_or("").is_empty() {
            n.singular = Some(n.kind.to_lowercase());
        }
        if n.list_kind.as_deref().unwrap_or("").is_empty() {
            n.list_kind = Some(format!("{}List", n.kind));
        }
        if c.spec.conversion.is_none() {
            c.spec.conversion = Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion {
                strategy: "None".into(),
                webhook: None,
            });
        }
    }

    fn prepare_for_create(&self, c: &mut CustomResourceDefinition) {
        c.status = Some(Default::default());
        let fins = c.metadata.finalizers.get_or_insert_with(Vec::new);
        if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
            fins.push(CLEANUP_FINALIZER.into());
        }
    }

    fn validate(&self, c: &CustomResourceDefinition) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let s = &c.spec;
        if s.group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !s.group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                s.group.as_str(),
                "should be a domain with at least one dot",
            ));
        }
        if s.names.plural.is_empty() {
            errs.push(FieldError::required("spec.names.plural", ""));
        } else if s.names.plural != s.names.plural.to_lowercase() {
            errs.push(FieldError::invalid("spec.names.plural", s.names.plural.as_str(), "must be lowercase"));
        }
        if s.names.kind.is_empty() {
            errs.push(FieldError::required("spec.names.kind", ""));
        }
        let want = format!("{}.{}", s.names.plural, s.group);
        let name = c.metadata.name.clone().unwrap_or_default();
        if !name.is_empty() && name != want {
            errs.push(FieldError::invalid(
                "metadata.name",
                name.as_str(),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if !matches!(s.scope.as_str(), "Namespaced" | "Cluster") {
            errs.push(not_supported("spec.scope", &json!(s.scope), &["Cluster", "Namespaced"]));
        }
        if s.versions.is_empty() {
            errs.push(FieldError::required(
                "spec.versions",
                "must have exactly one version marked as storage version",
            ));
        }
        let storage = s.versions.iter().filter(|v| v.storage).count();
        if !s.versions.is_empty() && storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                json!(s.versions.iter().map(|v| &v.name).collect::<Vec<_>>()),
                "must have exactly one version marked as storage version",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in s.versions.iter().enumerate() {
            if !seen.insert(v.name.clone()) {
                errs.push(crate::error::duplicate(format!("spec.versions[{i}].name"), &json!(v.name)));
            }
            for m in apimachinery::validation::is_dns1035_label(&v.name) {
                errs.push(FieldError::invalid(format!("spec.versions[{i}].name"), v.name.as_str(), m));
            }
            if v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
        errs
    }

    fn validate_update(
        &self,
        new: &CustomResourceDefinition,
        old: &CustomResourceDefinition,
    ) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.spec.group != old.spec.group {
            errs.push(FieldError::invalid("spec.group", new.spec.group.as_str(), "field is immutable"));
        }
        if new.spec.names.plural != old.spec.names.plural {
            errs.push(FieldError::invalid(
                "spec.names.plural",
                new.spec.names.plural.as_str(),
                "field is immutable",
            ));
        }
        errs
    }
}

/// The strategy of one custom resource version: schema validation, pruning, defaults.
pub struct CustomStrategy {
    group: String,
    kind: String,
    api_version: String,
    schema: Option<Arc<Value>>,
    status: bool,
    selectable: Vec<(&'static str, &'static str)>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Prunes unknown fields and drops nulls where the schema does not allow them, then
/// applies defaults; `root` tells apiVersion/kind/metadata apart.
fn prune_and_default(schema: &Value, v: &mut Value, root: bool) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded =
                schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
            m.retain(|k, child| {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    return true;
                }
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    return true;
                }
                let child_schema = props.and_then(|p| p.get(k)).or(additional);
                match child_schema {
                    Some(cs) => {
                        let nullable = cs.get("nullable").and_then(Value::as_bool) == Some(true);
                        !child.is_null() || nullable
                    }
                    None => preserve,
                }
            });
            if let Some(p) = props {
                for (k, cs) in p {
                    if !m.contains_key(k)
                        && let Some(d) = cs.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
                    prune_and_default(cs, child, false);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a.iter_mut() {
                    prune_and_default(items, child, false);
                }
            }
        }
        _ => {}
    }
}

fn validate_value(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let shown = if path.is_empty() { "body".to_string() } else { path.to_string() };
    if v.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = json_type(v);
        let ok = actual == t
            || (t == "number" && actual == "integer")
            || (t == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0) && actual == "number")
            || (int_or_string && (actual == "integer" || actual == "string"));
        if !ok {
            errs.push(FieldError::invalid(
                shown.clone(),
                v.clone(),
                format!("{shown} in body must be of type {t}: {:?}", actual),
            ));
            return;
        }
    } else if int_or_string && !matches!(json_type(v), "integer" | "string") {
        errs.push(FieldError::invalid(
            shown.clone(),
            v.clone(),
            format!("{shown} in body must be of type integer,string: {:?}", json_type(v)),
        ));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let allowed: Vec<String> = e.iter().map(render).collect();
        errs.push(FieldError {
            error_type: crate::error::ErrorType::NotSupported,
            field: shown.clone(),
            bad_value: Some(v.clone()),
            detail: format!("supported values: {}", allowed.join(", ")),
        });
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let excl = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            if n < min || (excl && n == min) {
                let rel = if excl { "greater than" } else { "greater than or equal to" };
                errs.push(FieldError::invalid(
                    shown.clone(),
                    v.clone(),
                    format!("{shown} in body should be {rel} {}", schema["minimum"]),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let excl = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if n > max || (excl && n == max) {
                let rel = if excl { "less than" } else { "less than or equal to" };
                errs.push(FieldError::invalid(
                    shown.clone(),
                    v.clone(),
                    format!("{shown} in body should be {rel} {}", schema["maximum"]),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            errs.push(FieldError {
                error_type: crate::error::ErrorType::TooLong,
                field: shown.clone(),
                bad_value: None,
                detail: format!("may not be more than {max} bytes"),
            });
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errs.push(FieldError::invalid(
                shown.clone(),
                v.clone(),
                format!("{shown} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(s)
        {
            errs.push(FieldError::invalid(
                shown.clone(),
                v.clone(),
                format!("{shown} in body should match '{p}'"),
            ));
        }
    }
    match v {
        Value::Object(m) => {
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if let Some(k) = r.as_str()
                    && !m.contains_key(k)
                {
                    let f = if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
                    errs.push(FieldError::required(f, ""));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let f = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
                    validate_value(cs, child, &f, errs);
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && m.len() as u64 > max
            {
                errs.push(FieldError::forbidden(
                    shown.clone(),
                    format!("must have at most {max} properties"),
                ));
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, child) in a.iter().enumerate() {
                    validate_value(items, child, &format!("{path}[{i}]"), errs);
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && a.len() as u64 > max
            {
                errs.push(FieldError {
                    error_type: crate::error::ErrorType::TooLong,
                    field: shown.clone(),
                    bad_value: None,
                    detail: format!("must have at most {max} items"),
                });
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (a.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    shown.clone(),
                    v.clone(),
                    format!("{shown} in body should have at least {min} items"),
                ));
            }
        }
        _ => {}
    }
    for sub in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        validate_value(sub, v, path, errs);
    }
}

impl Strategy for CustomStrategy {
    fn decode(&self, mut obj: Value) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        obj["apiVersion"] = json!(self.api_version);
        obj["kind"] = json!(self.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        // metadata is the server's: decode it as ObjectMeta so its types are checked.
        let meta_val = obj["metadata"].take();
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            crate::strategy::from_value(meta_val, &self.kind, &self.api_version)?;
        obj["metadata"] = serde_json::to_value(typed).unwrap_or_else(|_| json!({}));
        if let Some(s) = &self.schema {
            prune_and_default(s, &mut obj, true);
            let mut errs = Vec::new();
            validate_value(s, &obj, "", &mut errs);
            if !errs.is_empty() {
                return Err(ApiError::invalid(&self.group, &self.kind, meta::name(&obj), &errs));
            }
        }
        Ok(obj)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if self.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
    }

    fn field_labels(&self) -> &[(&'static str, &'static str)] {
        &self.selectable
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The resources a CRD defines, one per served version.
pub fn resources_of(crd: &Value) -> Vec<Resource> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let singular = names["singular"].as_str().map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names["listKind"].as_str().map(str::to_string).unwrap_or_else(|| format!("{kind}List"));
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let namespaced = spec["scope"] != "Cluster";
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .unwrap_or("v1")
        .to_string();
    let storage = Arc::new(StorageInfo::new(&group, &plural, namespaced, &storage_version));
    let mut out = Vec::new();
    for v in versions.iter().filter(|v| v["served"] == true) {
        let version = v["name"].as_str().unwrap_or("").to_string();
        let schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
        let status = v.pointer("/subresources/status").is_some();
        let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: s["specReplicasPath"]
                .as_str()
                .unwrap_or(".spec.replicas")
                .trim_start_matches('.')
                .into(),
            status_replicas: s["statusReplicasPath"]
                .as_str()
                .unwrap_or(".status.replicas")
                .trim_start_matches('.')
                .into(),
            label_selector: s["labelSelectorPath"].as_str().map(|p| p.trim_start_matches('.').to_string()),
            selector_object: None,
        });
        let columns: Vec<CustomColumn> = v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| CustomColumn {
                name: c["name"].as_str().unwrap_or("").into(),
                type_: c["type"].as_str().unwrap_or("string").into(),
                format: c["format"].as_str().unwrap_or("").into(),
                description: c["description"].as_str().unwrap_or("").into(),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: c["jsonPath"].as_str().unwrap_or("").into(),
            })
            .collect();
        let selectable: Vec<(&'static str, &'static str)> = v["selectableFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["jsonPath"].as_str())
            .map(|p| {
                let p = p.trim_start_matches('.').to_string();
                (leak(p.clone()), leak(p))
            })
            .collect();
        let api_version = format!("{group}/{version}");
        out.push(Resource {
            group: group.clone(),
            version: version.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            verbs: vec!["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
            status_subresource: status,
            scale,
            tracks_generation: true,
            storage: storage.clone(),
            strategy: Arc::new(CustomStrategy {
                group: group.clone(),
                kind: kind.clone(),
                api_version,
                schema: schema.clone(),
                status,
                selectable,
            }),
            printer: Printer::Custom(columns),
            schema: match &schema {
                Some(s) => Schema::Structural(s.clone()),
                None => Schema::None,
            },
            definition: None,
            schema_fn: None,
            extra_subresources: Vec::new(),
            name_rule: NameRule::Dns1123Subdomain,
            allow_create_on_update: false,
            return_deleted_object: true,
        });
    }
    out
}

/// Serves a CRD's resources (replacing what an earlier version of it registered).
fn register(api: &Api, crd: &Value) {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
    if group.is_empty() || plural.is_empty() {
        return;
    }
    api.registry.remove(&group, &plural);
    for r in resources_of(crd) {
        api.registry.add(r);
    }
    let mut versions: Vec<String> =
        api.registry.all().iter().filter(|r| r.group == group).map(|r| r.version.clone()).collect();
    versions.sort_by_key(|v| version_priority(v));
    versions.dedup();
    api.registry.set_group_versions(&group, versions);
}

fn unregister(api: &Api, crd: &Value) {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    api.registry.remove(group, plural);
}

/// Writes the status Kubernetes' CRD controllers maintain (names accepted, established).
async fn establish(api: &Api, key: &str) -> ApiResult<()> {
    for _ in 0..5 {
        let Some(kv) = api.store.get(key).await? else { return Ok(()) };
        let mut crd: Value =
            serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
        if meta::is_deleting(&crd) {
            return Ok(());
        }
        let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
        let storage: Vec<String> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == true)
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect();
        let mut stored: Vec<String> = crd
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for s in storage {
            if !stored.contains(&s) {
                stored.push(s);
            }
        }
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        if established
            && crd.pointer("/status/acceptedNames") == Some(&names)
            && crd.pointer("/status/storedVersions") == Some(&json!(stored))
        {
            return Ok(());
        }
        let now = meta::now_rfc3339();
        crd["status"] = json!({
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
            ],
            "storedVersions": stored,
        });
        let bytes = serde_json::to_vec(&crd).map_err(|e| ApiError::internal(e.to_string()))?;
        match api.store.update(key, bytes.into(), kv.mod_revision).await {
            Ok(_) => return Ok(()),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes every object of a CRD being deleted, then lets the CRD go.
async fn cleanup(api: &Api, key: &str, crd: &Value) -> ApiResult<()> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    let prefix = format!("/registry/{group}/{plural}/");
    loop {
        let page =
            api.store.range(&prefix, store::RangeOptions { limit: Some(500), ..Default::default() }).await?;
        if page.kvs.is_empty() {
            break;
        }
        for kv in page.kvs {
            match api.store.delete(&kv.key, None).await {
                Ok(_) | Err(store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for _ in 0..5 {
        let Some(kv) = api.store.get(key).await? else { return Ok(()) };
        let mut crd: Value =
            serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
        let fins: Vec<String> =
            meta::finalizers(&crd).into_iter().filter(|f| f != CLEANUP_FINALIZER).collect();
        let result = if fins.is_empty() {
            api.store.delete(key, Some(kv.mod_revision)).await.map(|_| ())
        } else {
            crd["metadata"]["finalizers"] = json!(fins);
            let bytes = serde_json::to_vec(&crd).map_err(|e| ApiError::internal(e.to_string()))?;
            api.store.update(key, bytes.into(), kv.mod_revision).await.map(|_| ())
        };
        match result {
            Ok(()) => return Ok(()),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn react(api: &Api, key: &str, crd: &Value, deleted: bool) {
    if deleted {
        unregister(api, crd);
        return;
    }
    register(api, crd);
    if let Some(r) = resources_of(crd).first()
        && let Err(e) = api.caches.cache(&r.storage.prefix).await
    {
        tracing::warn!(crd = key, error = %e, "custom resource definition: starting its cache failed");
    }
    let result = if meta::is_deleting(crd) {
        if meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
            cleanup(api, key, crd).await
        } else {
            Ok(())
        }
    } else {
        establish(api, key).await
    };
    if let Err(e) = result {
        tracing::warn!(crd = key, error = %e, "custom resource definition: reconcile failed");
    }
}

/// Serves every CRD already stored, then follows CRD changes for as long as the API lives.
pub async fn start(api: &Arc<Api>) -> ApiResult<()> {
    let cache = api.caches.cache(CRD_PREFIX).await?;
    let start = cache.watch(CRD_PREFIX, None)?;
    for ev in &start.initial {
        react(api, &ev.key, &ev.object, false).await;
    }
    let weak = Arc::downgrade(api);
    let mut live = start.live;
    tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(ev) => {
                    let Some(api) = weak.upgrade() else { return };
                    react(&api, &ev.key, &ev.object, ev.type_ == crate::cache::EventType::Deleted).await;
                }
                Err(_) => {
                    // Fell behind or the cache was reset: look at everything again.
                    let Some(api) = weak.upgrade() else { return };
                    let Ok(cache) = api.caches.cache(CRD_PREFIX).await else { return };
                    let Ok(s) = cache.watch(CRD_PREFIX, None) else { return };
                    let present: Vec<String> = s.initial.iter().map(|e| e.key.clone()).collect();
                    for r in api.registry.all() {
                        if r.definition.is_none() {
                            let key = format!("{CRD_PREFIX}{}.{}", r.plural, r.group);
                            if !present.contains(&key) {
                                api.registry.remove(&r.group, &r.plural);
                            }
                        }
                    }
                    for ev in &s.initial {
                        react(&api, &ev.key, &ev.object, false).await;
                    }
                    live = s.live;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "foo", "v1", "v1beta2", "v1beta1", "v10"];
        v.sort_by_key(|x| version_priority(x));
        assert_eq!(v, vec!["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn custom_objects_are_pruned_defaulted_and_checked() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["language"], "properties": {
                "language": {"type": "string", "enum": ["go", "rust"]},
                "handsome": {"type": "boolean", "default": true},
                "replicas": {"type": "integer", "minimum": 0}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
        let s = CustomStrategy {
            group: "demo.krust.dev".into(),
            kind: "AstaXie".into(),
            api_version: "demo.krust.dev/v1".into(),
            schema: Some(Arc::new(schema)),
            status: true,
            selectable: Vec::new(),
        };
        let ok = s
            .decode(json!({"metadata": {"name": "a"}, "spec": {"language": "rust", "junk": 1}, "status": {"any": 1}}))
            .unwrap();
        assert_eq!(ok["spec"], json!({"language": "rust", "handsome": true}));
        assert_eq!(ok["status"]["any"], 1);
        let bad = s.decode(json!({"metadata": {"name": "a"}, "spec": {"language": "java", "replicas": -1, "handsome": "yes"}}));
        let e = bad.unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.language: Unsupported value: \"java\""), "{}", e.message);
        assert!(e.message.contains("spec.handsome in body must be of type boolean"), "{}", e.message);
        assert!(e.message.contains("should be greater than or equal to 0"), "{}", e.message);
        let missing = s.decode(json!({"metadata": {"name": "a"}, "spec": {}})).unwrap_err();
        assert!(missing.message.contains("spec.language: Required value"), "{}", missing.message);
    }
}
