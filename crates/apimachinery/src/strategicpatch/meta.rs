//! Schema knowledge for strategic merge patch: per field, the patch strategy, the
//! merge key, and the schema of the field's value (or list items).

use serde_json::{Map, Value};

/// How a field is patched, from `x-kubernetes-patch-strategy` / `patchStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// No strategy: maps are merged key by key, lists are replaced wholesale.
    #[default]
    Default,
    /// `merge`: lists are merged (by merge key for lists of maps, as a set for
    /// primitive lists); maps are merged as by default.
    Merge,
    /// `replace`: the patch value replaces the field, maps included.
    Replace,
}

impl Strategy {
    /// Parses an `x-kubernetes-patch-strategy` value such as `merge`,
    /// `retainKeys` or `merge,retainKeys`; returns the strategy and whether
    /// `retainKeys` was listed. Unknown words count as [`Strategy::Default`].
    pub fn parse(text: &str) -> (Strategy, bool) {
        let mut strategy = Strategy::Default;
        let mut retain_keys = false;
        for word in text.split(',').map(str::trim) {
            match word {
                "merge" => strategy = Strategy::Merge,
                "replace" => strategy = Strategy::Replace,
                "retainKeys" => retain_keys = true,
                _ => {}
            }
        }
        (strategy, retain_keys)
    }
}

/// What the schema says about one field.
pub struct FieldMeta<'a> {
    /// The patch strategy.
    pub strategy: Strategy,
    /// Whether the strategy lists `retainKeys`. Applying a patch honours a
    /// `$retainKeys` directive whether or not this is set; it matters to patch
    /// generation and is carried for completeness.
    pub retain_keys: bool,
    /// The merge key of a list of maps (`x-kubernetes-patch-merge-key`).
    pub merge_key: Option<String>,
    /// The schema of the field's value, or of its items when the field is a list.
    pub element: Box<dyn PatchMeta + 'a>,
}

impl FieldMeta<'_> {
    /// A field the schema knows nothing about: default strategy, no merge key, and an
    /// element schema that knows nothing either.
    pub fn unknown() -> FieldMeta<'static> {
        FieldMeta {
            strategy: Strategy::Default,
            retain_keys: false,
            merge_key: None,
            element: Box::new(NoPatchMeta),
        }
    }
}

/// Schema lookups for strategic merge patch. Implementations must answer for any
/// name, describing unknown fields with [`FieldMeta::unknown`] (they are then merged
/// like maps, and lists under them replaced).
pub trait PatchMeta {
    /// The metadata of the property `name` of the object this schema describes.
    fn field(&self, name: &str) -> FieldMeta<'_>;
}

/// A schema that knows no fields: every list is replaced, every map merged.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPatchMeta;

impl PatchMeta for NoPatchMeta {
    fn field(&self, _name: &str) -> FieldMeta<'_> {
        FieldMeta::unknown()
    }
}

const MAX_REF_DEPTH: usize = 32;

/// [`PatchMeta`] over OpenAPI definitions: a map from definition name to schema
/// (the `definitions` of an OpenAPI v2 document, or `components.schemas` of v3).
/// Follows `$ref` (`#/definitions/NAME`, `#/components/schemas/NAME`, `#/$defs/NAME`:
/// the last segment names the definition), the first
/// entry of `allOf`, `items` for arrays and `additionalProperties` for maps; reads
/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` from the property
/// schema. Unresolvable references and unknown properties describe unknown fields.
#[derive(Debug, Clone, Copy)]
pub struct OpenApiPatchMeta<'a> {
    definitions: &'a Map<String, Value>,
    schema: Option<&'a Value>,
}

impl<'a> OpenApiPatchMeta<'a> {
    /// The schema of the definition `name` (e.g. `io.k8s.api.apps.v1.Deployment`).
    /// An unknown name gives a schema that knows no fields.
    pub fn new(definitions: &'a Map<String, Value>, name: &str) -> Self {
        OpenApiPatchMeta { definitions, schema: definitions.get(name) }
    }

    /// An arbitrary schema whose `$ref`s resolve against `definitions`.
    pub fn from_schema(definitions: &'a Map<String, Value>, schema: &'a Value) -> Self {
        OpenApiPatchMeta { definitions, schema: Some(schema) }
    }

    fn resolve(&self, mut schema: &'a Value) -> Option<&'a Value> {
        for _ in 0..MAX_REF_DEPTH {
            // `allOf: [X]` wraps a reference with siblings; `anyOf`/`oneOf` of a
            // reference and `null` is how some generators spell optional fields.
            if schema.get("properties").is_none()
                && let Some(next) = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
                    schema.get(*k).and_then(Value::as_array).and_then(|a| {
                        a.iter().find(|x| x.get("type").and_then(Value::as_str) != Some("null"))
                    })
                })
            {
                schema = next;
                continue;
            }
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.rsplit_once('/').map_or(r, |(_, name)| name);
                    schema = self.definitions.get(name)?;
                }
                None => return Some(schema),
            }
        }
        None
    }

    fn child(&self, schema: Option<&'a Value>) -> Box<dyn PatchMeta + 'a> {
        Box::new(OpenApiPatchMeta { definitions: self.definitions, schema })
    }
}

impl PatchMeta for OpenApiPatchMeta<'_> {
    fn field(&self, name: &str) -> FieldMeta<'_> {
        let Some(schema) = self.schema.and_then(|s| self.resolve(s)) else {
            return FieldMeta::unknown();
        };
        let property = schema.get("properties").and_then(|p| p.get(name));
        let Some(property) = property else {
            // Maps: every key has the additionalProperties schema.
            return match schema.get("additionalProperties") {
                Some(ap @ Value::Object(_)) => {
                    let value = self.resolve(ap);
                    let element = match value.and_then(|v| v.get("items")) {
                        Some(items) => self.resolve(items),
                        None => value,
                    };
                    FieldMeta {
                        strategy: Strategy::Default,
                        retain_keys: false,
                        merge_key: None,
                        element: self.child(element),
                    }
                }
                _ => FieldMeta::unknown(),
            };
        };
        let (strategy, retain_keys) = property
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .map(Strategy::parse)
            .unwrap_or_default();
        let merge_key =
            property.get("x-kubernetes-patch-merge-key").and_then(Value::as_str).map(str::to_string);
        let value = self.resolve(property);
        let element = match value.and_then(|v| v.get("items")) {
            Some(items) => self.resolve(items),
            None => value,
        };
        FieldMeta { strategy, retain_keys, merge_key, element: self.child(element) }
    }
}
