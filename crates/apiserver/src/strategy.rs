//! Per-kind behaviour of the generic registry: decoding (types, pruning, defaults),
//! preparing writes, validation and field selectors, as Kubernetes' REST strategies do.

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::error::{ApiError, ApiResult, FieldError};

/// The hooks the generic handlers call on every write and on field-selector reads.
pub trait Strategy: Send + Sync + 'static {
    /// Checks the object against its type (400 on a wrong type), drops unknown fields and
    /// applies the defaults Kubernetes applies when decoding.
    fn decode(&self, obj: Value) -> ApiResult<Value>;

    /// Before a create: clear what clients may not set (e.g. most `status`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Before an update of the main resource: keep what this endpoint may not change.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// The field selector labels this kind supports beyond `metadata.name` and
    /// `metadata.namespace`, each with the dotted path it reads.
    fn field_labels(&self) -> &[(&'static str, &'static str)] {
        &[]
    }

    /// Transforms an object read from storage (in the storage version) into `api_version`.
    fn convert_out(&self, mut obj: Value, api_version: &str) -> Value {
        obj["apiVersion"] = Value::String(api_version.to_string());
        obj
    }

    /// Transforms an object in `api_version` into the storage version `storage_api_version`.
    fn convert_in(&self, mut obj: Value, storage_api_version: &str) -> Value {
        obj["apiVersion"] = Value::String(storage_api_version.to_string());
        obj
    }
}

/// Reads a field-selector label from an object: `None` when the kind does not support it.
pub fn field_label_value(strategy: &dyn Strategy, obj: &Value, label: &str) -> Option<String> {
    let path = match label {
        "metadata.name" | "metadata.namespace" => label,
        other => strategy.field_labels().iter().find(|(l, _)| *l == other)?.1,
    };
    Some(match crate::meta::path(obj, path) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    })
}

/// Typed behaviour of a built-in kind, on its `k8s-openapi` type.
pub trait Hooks<T>: Send + Sync + 'static {
    fn default(&self, _obj: &mut T) {}
    fn prepare_for_create(&self, _obj: &mut T) {}
    fn prepare_for_update(&self, _new: &mut T, _old: &T) {}
    fn validate(&self, _obj: &T) -> Vec<FieldError> {
        Vec::new()
    }
    fn validate_update(&self, new: &T, _old: &T) -> Vec<FieldError> {
        self.validate(new)
    }
    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// Hooks that do nothing beyond the typed round trip.
pub struct Plain;
impl<T> Hooks<T> for Plain {}

/// A [`Strategy`] over a `k8s-openapi` type and its [`Hooks`].
pub struct Typed<T, H> {
    hooks: H,
    kind: &'static str,
    api_version: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T: k8s_openapi::Resource, H> Typed<T, H> {
    pub fn new(hooks: H) -> Self {
        Self { hooks, kind: T::KIND, api_version: T::API_VERSION, _t: PhantomData }
    }
}

/// Decodes JSON into `T`, naming the field on a type error as Kubernetes does.
pub fn from_value<T: DeserializeOwned>(obj: Value, kind: &str, api_version: &str) -> ApiResult<T> {
    serde_path_to_error::deserialize::<_, T>(obj).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") };
        undecodable(kind, api_version, &format!("{at}{inner}"))
    })
}

/// The 400 kube-apiserver answers when a body does not decode as the kind.
pub fn undecodable(kind: &str, api_version: &str, detail: &str) -> ApiError {
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    ApiError::bad_request(format!("{kind} in version {version:?} cannot be handled as a {kind}: {detail}"))
}

fn to_value<T: Serialize>(obj: &T) -> ApiResult<Value> {
    serde_json::to_value(obj).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

impl<T, H> Typed<T, H>
where
    T: DeserializeOwned + Serialize + Send + Sync + 'static,
    H: Hooks<T>,
{
    fn typed(&self, obj: &Value) -> Option<T> {
        serde_json::from_value(obj.clone()).ok()
    }

    fn with_typed(&self, obj: &mut Value, f: impl FnOnce(&mut T)) {
        if let Some(mut t) = self.typed(obj) {
            f(&mut t);
            if let Ok(v) = to_value(&t) {
                *obj = v;
            }
        }
    }
}

impl<T, H> Strategy for Typed<T, H>
where
    T: DeserializeOwned + Serialize + Send + Sync + 'static,
    H: Hooks<T>,
{
    fn decode(&self, mut obj: Value) -> ApiResult<Value> {
        crate::meta::strip_nulls(&mut obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(self.api_version.into()));
            m.insert("kind".into(), Value::String(self.kind.into()));
            m.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
        }
        let mut t: T = from_value(obj, self.kind, self.api_version)?;
        self.hooks.default(&mut t);
        to_value(&t)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        self.with_typed(obj, |t| self.hooks.prepare_for_create(t));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if let Some(old) = self.typed(old) {
            self.with_typed(new, |t| self.hooks.prepare_for_update(t, &old));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.typed(obj).map(|t| self.hooks.validate(&t)).unwrap_or_default()
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        match (self.typed(new), self.typed(old)) {
            (Some(n), Some(o)) => self.hooks.validate_update(&n, &o),
            _ => Vec::new(),
        }
    }

    fn field_labels(&self) -> &[(&'static str, &'static str)] {
        self.hooks.field_labels()
    }
}
