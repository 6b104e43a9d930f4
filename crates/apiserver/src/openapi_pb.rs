//! OpenAPI v2 in the protobuf encoding kubectl asks for (gnostic `openapi_v2.Document`).
//!
//! kubectl requests `/openapi/v2` as `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//! and feeds the decoded document to kube-openapi's `proto.NewOpenAPIData`, which walks
//! `definitions` (types, properties, items, `$ref`, required, additionalProperties) and
//! parses every vendor extension's `Any.yaml` text with go-yaml (v2, YAML 1.1).
//!
//! The encoder is hand-written protobuf: fields are emitted in field-number order and,
//! as proto3 does, scalar fields holding their default (empty string, `false`, zero) are
//! left out; a JSON member that holds an object or array is always emitted, even when
//! empty, because the reader tells "absent" from "empty" for messages (an empty
//! `properties` still makes a schema a kind rather than a map). JSON members that
//! Swagger 2.0 does not define and that are not `x-` extensions are dropped.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Field numbers of gnostic's `openapi_v2` messages, one module per message.
mod field {
    /// Every `Named*` message: an ordered (name, value) pair standing in for a map entry.
    pub mod named {
        pub const NAME: u32 = 1;
        pub const VALUE: u32 = 2;
    }

    /// The wrapper messages that hold nothing but a list of `Named*` entries
    /// (`Definitions`, `Properties`, `ParameterDefinitions`, `ResponseDefinitions`,
    /// `Headers`, `Examples`, `Oauth2Scopes`, `SecurityDefinitions`, `SecurityRequirement`).
    pub mod map {
        pub const ENTRIES: u32 = 1;
    }

    pub mod any {
        pub const YAML: u32 = 2;
    }

    pub mod document {
        pub const SWAGGER: u32 = 1;
        pub const INFO: u32 = 2;
        pub const HOST: u32 = 3;
        pub const BASE_PATH: u32 = 4;
        pub const SCHEMES: u32 = 5;
        pub const CONSUMES: u32 = 6;
        pub const PRODUCES: u32 = 7;
        pub const PATHS: u32 = 8;
        pub const DEFINITIONS: u32 = 9;
        pub const PARAMETERS: u32 = 10;
        pub const RESPONSES: u32 = 11;
        pub const SECURITY: u32 = 12;
        pub const SECURITY_DEFINITIONS: u32 = 13;
        pub const TAGS: u32 = 14;
        pub const EXTERNAL_DOCS: u32 = 15;
        pub const VENDOR_EXTENSION: u32 = 16;
    }

    pub mod info {
        pub const TITLE: u32 = 1;
        pub const VERSION: u32 = 2;
        pub const DESCRIPTION: u32 = 3;
        pub const TERMS_OF_SERVICE: u32 = 4;
        pub const CONTACT: u32 = 5;
        pub const LICENSE: u32 = 6;
        pub const VENDOR_EXTENSION: u32 = 7;
    }

    pub mod contact {
        pub const NAME: u32 = 1;
        pub const URL: u32 = 2;
        pub const EMAIL: u32 = 3;
        pub const VENDOR_EXTENSION: u32 = 4;
    }

    pub mod license {
        pub const NAME: u32 = 1;
        pub const URL: u32 = 2;
        pub const VENDOR_EXTENSION: u32 = 3;
    }

    pub mod external_docs {
        pub const DESCRIPTION: u32 = 1;
        pub const URL: u32 = 2;
        pub const VENDOR_EXTENSION: u32 = 3;
    }

    pub mod tag {
        pub const NAME: u32 = 1;
        pub const DESCRIPTION: u32 = 2;
        pub const EXTERNAL_DOCS: u32 = 3;
        pub const VENDOR_EXTENSION: u32 = 4;
    }

    pub mod paths {
        pub const VENDOR_EXTENSION: u32 = 1;
        pub const PATH: u32 = 2;
    }

    pub mod path_item {
        pub const REF: u32 = 1;
        pub const GET: u32 = 2;
        pub const PUT: u32 = 3;
        pub const POST: u32 = 4;
        pub const DELETE: u32 = 5;
        pub const OPTIONS: u32 = 6;
        pub const HEAD: u32 = 7;
        pub const PATCH: u32 = 8;
        pub const PARAMETERS: u32 = 9;
        pub const VENDOR_EXTENSION: u32 = 10;
    }

    pub mod operation {
        pub const TAGS: u32 = 1;
        pub const SUMMARY: u32 = 2;
        pub const DESCRIPTION: u32 = 3;
        pub const EXTERNAL_DOCS: u32 = 4;
        pub const OPERATION_ID: u32 = 5;
        pub const PRODUCES: u32 = 6;
        pub const CONSUMES: u32 = 7;
        pub const PARAMETERS: u32 = 8;
        pub const RESPONSES: u32 = 9;
        pub const SCHEMES: u32 = 10;
        pub const DEPRECATED: u32 = 11;
        pub const SECURITY: u32 = 12;
        pub const VENDOR_EXTENSION: u32 = 13;
    }

    /// `ParametersItem` (oneof).
    pub mod parameters_item {
        pub const PARAMETER: u32 = 1;
        pub const JSON_REFERENCE: u32 = 2;
    }

    pub mod json_reference {
        pub const REF: u32 = 1;
        pub const DESCRIPTION: u32 = 2;
    }

    /// `Parameter` (oneof).
    pub mod parameter {
        pub const BODY_PARAMETER: u32 = 1;
        pub const NON_BODY_PARAMETER: u32 = 2;
    }

    pub mod body_parameter {
        pub const DESCRIPTION: u32 = 1;
        pub const NAME: u32 = 2;
        pub const IN: u32 = 3;
        pub const REQUIRED: u32 = 4;
        pub const SCHEMA: u32 = 5;
        pub const VENDOR_EXTENSION: u32 = 6;
    }

    /// `NonBodyParameter` (oneof).
    pub mod non_body_parameter {
        pub const HEADER: u32 = 1;
        pub const FORM_DATA: u32 = 2;
        pub const QUERY: u32 = 3;
        pub const PATH: u32 = 4;
    }

    /// The leading fields of the four `*ParameterSubSchema` messages; `ALLOW_EMPTY_VALUE`
    /// exists only in the query and formData ones, which shifts all later fields by one.
    pub mod sub_schema {
        pub const REQUIRED: u32 = 1;
        pub const IN: u32 = 2;
        pub const DESCRIPTION: u32 = 3;
        pub const NAME: u32 = 4;
        pub const ALLOW_EMPTY_VALUE: u32 = 5;
        /// How far the primitive fields sit from their `PrimitivesItems` numbers.
        pub const PRIMITIVES_OFFSET: u32 = 4;
        pub const PRIMITIVES_OFFSET_WITH_ALLOW_EMPTY_VALUE: u32 = 5;
    }

    /// `PrimitivesItems`; the same fields, shifted, make up the middle of `Header` and the
    /// parameter sub-schemas.
    pub mod primitives {
        pub const TYPE: u32 = 1;
        pub const FORMAT: u32 = 2;
        pub const ITEMS: u32 = 3;
        pub const COLLECTION_FORMAT: u32 = 4;
        pub const DEFAULT: u32 = 5;
        pub const MAXIMUM: u32 = 6;
        pub const EXCLUSIVE_MAXIMUM: u32 = 7;
        pub const MINIMUM: u32 = 8;
        pub const EXCLUSIVE_MINIMUM: u32 = 9;
        pub const MAX_LENGTH: u32 = 10;
        pub const MIN_LENGTH: u32 = 11;
        pub const PATTERN: u32 = 12;
        pub const MAX_ITEMS: u32 = 13;
        pub const MIN_ITEMS: u32 = 14;
        pub const UNIQUE_ITEMS: u32 = 15;
        pub const ENUM: u32 = 16;
        pub const MULTIPLE_OF: u32 = 17;
        /// The field right after the primitive ones: `vendor_extension` in
        /// `PrimitivesItems` and the sub-schemas, `description` in `Header`.
        pub const NEXT: u32 = 18;
    }

    pub mod header {
        pub const DESCRIPTION: u32 = 18;
        pub const VENDOR_EXTENSION: u32 = 19;
    }

    pub mod responses {
        pub const RESPONSE_CODE: u32 = 1;
        pub const VENDOR_EXTENSION: u32 = 2;
    }

    /// `ResponseValue` (oneof).
    pub mod response_value {
        pub const RESPONSE: u32 = 1;
        pub const JSON_REFERENCE: u32 = 2;
    }

    pub mod response {
        pub const DESCRIPTION: u32 = 1;
        pub const SCHEMA: u32 = 2;
        pub const HEADERS: u32 = 3;
        pub const EXAMPLES: u32 = 4;
        pub const VENDOR_EXTENSION: u32 = 5;
    }

    /// `SchemaItem` (oneof; only the schema arm is produced).
    pub mod schema_item {
        pub const SCHEMA: u32 = 1;
    }

    pub mod schema {
        pub const REF: u32 = 1;
        pub const FORMAT: u32 = 2;
        pub const TITLE: u32 = 3;
        pub const DESCRIPTION: u32 = 4;
        pub const DEFAULT: u32 = 5;
        pub const MULTIPLE_OF: u32 = 6;
        pub const MAXIMUM: u32 = 7;
        pub const EXCLUSIVE_MAXIMUM: u32 = 8;
        pub const MINIMUM: u32 = 9;
        pub const EXCLUSIVE_MINIMUM: u32 = 10;
        pub const MAX_LENGTH: u32 = 11;
        pub const MIN_LENGTH: u32 = 12;
        pub const PATTERN: u32 = 13;
        pub const MAX_ITEMS: u32 = 14;
        pub const MIN_ITEMS: u32 = 15;
        pub const UNIQUE_ITEMS: u32 = 16;
        pub const MAX_PROPERTIES: u32 = 17;
        pub const MIN_PROPERTIES: u32 = 18;
        pub const REQUIRED: u32 = 19;
        pub const ENUM: u32 = 20;
        pub const ADDITIONAL_PROPERTIES: u32 = 21;
        pub const TYPE: u32 = 22;
        pub const ITEMS: u32 = 23;
        pub const ALL_OF: u32 = 24;
        pub const PROPERTIES: u32 = 25;
        pub const DISCRIMINATOR: u32 = 26;
        pub const READ_ONLY: u32 = 27;
        pub const XML: u32 = 28;
        pub const EXTERNAL_DOCS: u32 = 29;
        pub const EXAMPLE: u32 = 30;
        pub const VENDOR_EXTENSION: u32 = 31;
    }

    /// `AdditionalPropertiesItem` (oneof).
    pub mod additional_properties {
        pub const SCHEMA: u32 = 1;
        pub const BOOLEAN: u32 = 2;
    }

    /// `TypeItem`.
    pub mod type_item {
        pub const VALUE: u32 = 1;
    }

    /// `ItemsItem`.
    pub mod items_item {
        pub const SCHEMA: u32 = 1;
    }

    pub mod xml {
        pub const NAME: u32 = 1;
        pub const NAMESPACE: u32 = 2;
        pub const PREFIX: u32 = 3;
        pub const ATTRIBUTE: u32 = 4;
        pub const WRAPPED: u32 = 5;
        pub const VENDOR_EXTENSION: u32 = 6;
    }

    /// `StringArray`.
    pub mod string_array {
        pub const VALUE: u32 = 1;
    }

    /// `SecurityDefinitionsItem` (oneof).
    pub mod security_definitions_item {
        pub const BASIC: u32 = 1;
        pub const API_KEY: u32 = 2;
        pub const OAUTH2_IMPLICIT: u32 = 3;
        pub const OAUTH2_PASSWORD: u32 = 4;
        pub const OAUTH2_APPLICATION: u32 = 5;
        pub const OAUTH2_ACCESS_CODE: u32 = 6;
    }
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

/// Encodes a Swagger 2.0 document (JSON) as a gnostic `openapi_v2.Document` protobuf.
///
/// Covers the document header, info, paths (path items, operations, parameters,
/// responses), definitions, parameter and response definitions, security, tags and
/// every `x-` vendor extension. Extension values, `default`, `example` and `enum` members
/// become `Any` messages carrying the value as YAML text (a JSON flow document with every
/// non-ASCII character escaped, which go-yaml v2 reads back as the same value). Never
/// fails: members of the wrong JSON type are skipped, and a non-object yields an empty
/// document.
pub fn encode_v2(doc: &Value) -> Vec<u8> {
    let mut b = Buf::default();
    if let Some(m) = doc.as_object() {
        document(&mut b, m);
    }
    b.0
}

/// A message being written.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A singular string: left out when empty, as proto3 does.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// A singular bool: left out when false.
    fn bool(&mut self, field: u32, v: bool) {
        if v {
            self.bool_always(field, v);
        }
    }

    /// A bool that must be present even when false (a oneof member).
    fn bool_always(&mut self, field: u32, v: bool) {
        self.tag(field, VARINT);
        self.varint(u64::from(v));
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.tag(field, VARINT);
            // Negative int64 is its two's complement as a ten-byte varint.
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.tag(field, I64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A nested message, written whole so its length can precede it.
    fn message(&mut self, field: u32, f: impl FnOnce(&mut Buf)) {
        let mut inner = Buf::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

fn str_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    if let Some(s) = m.get(key).and_then(Value::as_str) {
        b.string(field, s);
    }
}

fn bool_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    if let Some(v) = m.get(key).and_then(Value::as_bool) {
        b.bool(field, v);
    }
}

fn int_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    let v = m.get(key).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    if let Some(v) = v {
        b.int64(field, v);
    }
}

fn double_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    if let Some(v) = m.get(key).and_then(Value::as_f64) {
        b.double(field, v);
    }
}

/// A repeated string; every element is written, empty ones included.
fn strings_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    for s in m.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        b.bytes(field, s.as_bytes());
    }
}

fn object_member<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    m.get(key).and_then(Value::as_object)
}

fn array_member<'a>(m: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    m.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn any(b: &mut Buf, field: u32, v: &Value) {
    b.message(field, |b| b.string(field::any::YAML, &yaml(v)));
}

fn any_member(b: &mut Buf, field: u32, m: &Map<String, Value>, key: &str) {
    if let Some(v) = m.get(key) {
        any(b, field, v);
    }
}

fn enum_member(b: &mut Buf, field: u32, m: &Map<String, Value>) {
    for v in array_member(m, "enum") {
        any(b, field, v);
    }
}

/// Every `x-` member of `m` as a `NamedAny`, in document order.
fn extensions(b: &mut Buf, field: u32, m: &Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        named(b, field, k, |b| any(b, field::named::VALUE, v));
    }
}

/// One `Named*` entry; `value` writes the value field itself.
fn named(b: &mut Buf, field: u32, name: &str, value: impl FnOnce(&mut Buf)) {
    b.message(field, |b| {
        b.string(field::named::NAME, name);
        value(b);
    });
}

/// A map wrapper message (`Definitions`, `Properties`, ...): one `Named*` entry per
/// member, whose value message `value` writes.
fn named_map(b: &mut Buf, field: u32, m: &Map<String, Value>, value: impl Fn(&mut Buf, &Value)) {
    b.message(field, |b| {
        for (k, v) in m {
            named(b, field::map::ENTRIES, k, |b| b.message(field::named::VALUE, |b| value(b, v)));
        }
    });
}

/// The value as YAML text for go-yaml v2: JSON is a YAML flow document, and escaping
/// every non-ASCII character keeps YAML 1.1's extra line breaks (U+0085, U+2028, U+2029)
/// and its non-printable characters from altering or rejecting a string.
fn yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml_into(v, &mut out);
    out.push('\n');
    out
}

fn yaml_into(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => yaml_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml_into(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                yaml_string(k, out);
                out.push_str(": ");
                yaml_into(x, out);
            }
            out.push('}');
        }
    }
}

fn yaml_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
}

fn document(b: &mut Buf, m: &Map<String, Value>) {
    use field::document as f;
    str_member(b, f::SWAGGER, m, "swagger");
    if let Some(info) = object_member(m, "info") {
        b.message(f::INFO, |b| self::info(b, info));
    }
    str_member(b, f::HOST, m, "host");
    str_member(b, f::BASE_PATH, m, "basePath");
    strings_member(b, f::SCHEMES, m, "schemes");
    strings_member(b, f::CONSUMES, m, "consumes");
    strings_member(b, f::PRODUCES, m, "produces");
    if let Some(paths) = object_member(m, "paths") {
        b.message(f::PATHS, |b| self::paths(b, paths));
    }
    if let Some(defs) = object_member(m, "definitions") {
        named_map(b, f::DEFINITIONS, defs, schema);
    }
    if let Some(params) = object_member(m, "parameters") {
        named_map(b, f::PARAMETERS, params, |b, v| {
            if let Some(p) = v.as_object() {
                parameter(b, p);
            }
        });
    }
    if let Some(responses) = object_member(m, "responses") {
        named_map(b, f::RESPONSES, responses, |b, v| {
            if let Some(r) = v.as_object() {
                response(b, r);
            }
        });
    }
    security(b, f::SECURITY, m);
    if let Some(defs) = object_member(m, "securityDefinitions") {
        named_map(b, f::SECURITY_DEFINITIONS, defs, |b, v| {
            if let Some(d) = v.as_object() {
                security_definition(b, d);
            }
        });
    }
    for t in array_member(m, "tags").filter_map(Value::as_object) {
        b.message(f::TAGS, |b| tag(b, t));
    }
    external_docs_member(b, f::EXTERNAL_DOCS, m);
    extensions(b, f::VENDOR_EXTENSION, m);
}

fn info(b: &mut Buf, m: &Map<String, Value>) {
    use field::info as f;
    str_member(b, f::TITLE, m, "title");
    str_member(b, f::VERSION, m, "version");
    str_member(b, f::DESCRIPTION, m, "description");
    str_member(b, f::TERMS_OF_SERVICE, m, "termsOfService");
    if let Some(c) = object_member(m, "contact") {
        use field::contact as c_;
        b.message(f::CONTACT, |b| {
            str_member(b, c_::NAME, c, "name");
            str_member(b, c_::URL, c, "url");
            str_member(b, c_::EMAIL, c, "email");
            extensions(b, c_::VENDOR_EXTENSION, c);
        });
    }
    if let Some(l) = object_member(m, "license") {
        use field::license as l_;
        b.message(f::LICENSE, |b| {
            str_member(b, l_::NAME, l, "name");
            str_member(b, l_::URL, l, "url");
            extensions(b, l_::VENDOR_EXTENSION, l);
        });
    }
    extensions(b, f::VENDOR_EXTENSION, m);
}

fn external_docs_member(b: &mut Buf, field: u32, m: &Map<String, Value>) {
    use field::external_docs as f;
    if let Some(d) = object_member(m, "externalDocs") {
        b.message(field, |b| {
            str_member(b, f::DESCRIPTION, d, "description");
            str_member(b, f::URL, d, "url");
            extensions(b, f::VENDOR_EXTENSION, d);
        });
    }
}

fn tag(b: &mut Buf, m: &Map<String, Value>) {
    use field::tag as f;
    str_member(b, f::NAME, m, "name");
    str_member(b, f::DESCRIPTION, m, "description");
    external_docs_member(b, f::EXTERNAL_DOCS, m);
    extensions(b, f::VENDOR_EXTENSION, m);
}

/// `security`: a list of requirements, each a map from scheme name to scopes.
fn security(b: &mut Buf, field: u32, m: &Map<String, Value>) {
    for req in array_member(m, "security").filter_map(Value::as_object) {
        b.message(field, |b| {
            for (name, scopes) in req {
                named(b, field::map::ENTRIES, name, |b| {
                    b.message(field::named::VALUE, |b| {
                        for s in scopes.as_array().into_iter().flatten().filter_map(Value::as_str) {
                            b.bytes(field::string_array::VALUE, s.as_bytes());
                        }
                    });
                });
            }
        });
    }
}

fn security_definition(b: &mut Buf, m: &Map<String, Value>) {
    use field::security_definitions_item as f;
    let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let flow = m.get("flow").and_then(Value::as_str).unwrap_or_default();
    // The oneof member, and its string fields in field-number order: the n-th key is
    // field n, `scopes` is an `Oauth2Scopes` message, and `vendor_extension` follows.
    let (arm, keys): (u32, &[&str]) = match (kind, flow) {
        ("basic", _) => (f::BASIC, &["type", "description"]),
        ("apiKey", _) => (f::API_KEY, &["type", "name", "in", "description"]),
        ("oauth2", "implicit") => {
            (f::OAUTH2_IMPLICIT, &["type", "flow", "scopes", "authorizationUrl", "description"])
        }
        ("oauth2", "password") => {
            (f::OAUTH2_PASSWORD, &["type", "flow", "scopes", "tokenUrl", "description"])
        }
        ("oauth2", "application") => {
            (f::OAUTH2_APPLICATION, &["type", "flow", "scopes", "tokenUrl", "description"])
        }
        ("oauth2", "accessCode") => (
            f::OAUTH2_ACCESS_CODE,
            &["type", "flow", "scopes", "authorizationUrl", "tokenUrl", "description"],
        ),
        _ => return,
    };
    b.message(arm, |b| {
        for (i, key) in keys.iter().enumerate() {
            let n = i as u32 + 1;
            if *key == "scopes" {
                if let Some(scopes) = object_member(m, key) {
                    b.message(n, |b| {
                        for (name, v) in scopes {
                            named(b, field::map::ENTRIES, name, |b| {
                                b.string(field::named::VALUE, v.as_str().unwrap_or_default());
                            });
                        }
                    });
                }
            } else {
                str_member(b, n, m, key);
            }
        }
        extensions(b, keys.len() as u32 + 1, m);
    });
}

fn paths(b: &mut Buf, m: &Map<String, Value>) {
    use field::paths as f;
    extensions(b, f::VENDOR_EXTENSION, m);
    for (p, item) in m.iter().filter(|(k, _)| k.starts_with('/')) {
        named(b, f::PATH, p, |b| {
            b.message(field::named::VALUE, |b| {
                if let Some(item) = item.as_object() {
                    path_item(b, item);
                }
            });
        });
    }
}

fn path_item(b: &mut Buf, m: &Map<String, Value>) {
    use field::path_item as f;
    str_member(b, f::REF, m, "$ref");
    for (n, verb) in [
        (f::GET, "get"),
        (f::PUT, "put"),
        (f::POST, "post"),
        (f::DELETE, "delete"),
        (f::OPTIONS, "options"),
        (f::HEAD, "head"),
        (f::PATCH, "patch"),
    ] {
        if let Some(op) = object_member(m, verb) {
            b.message(n, |b| operation(b, op));
        }
    }
    parameters(b, f::PARAMETERS, m);
    extensions(b, f::VENDOR_EXTENSION, m);
}

fn operation(b: &mut Buf, m: &Map<String, Value>) {
    use field::operation as f;
    strings_member(b, f::TAGS, m, "tags");
    str_member(b, f::SUMMARY, m, "summary");
    str_member(b, f::DESCRIPTION, m, "description");
    external_docs_member(b, f::EXTERNAL_DOCS, m);
    str_member(b, f::OPERATION_ID, m, "operationId");
    strings_member(b, f::PRODUCES, m, "produces");
    strings_member(b, f::CONSUMES, m, "consumes");
    parameters(b, f::PARAMETERS, m);
    if let Some(r) = object_member(m, "responses") {
        b.message(f::RESPONSES, |b| responses(b, r));
    }
    strings_member(b, f::SCHEMES, m, "schemes");
    bool_member(b, f::DEPRECATED, m, "deprecated");
    security(b, f::SECURITY, m);
    extensions(b, f::VENDOR_EXTENSION, m);
}

/// `parameters` as repeated `ParametersItem`: a `$ref` becomes a JSON reference, a
/// parameter whose `in` is not one of Swagger's five locations is left out.
fn parameters(b: &mut Buf, field: u32, m: &Map<String, Value>) {
    use field::parameters_item as f;
    for p in array_member(m, "parameters").filter_map(Value::as_object) {
        if p.contains_key("$ref") {
            b.message(field, |b| b.message(f::JSON_REFERENCE, |b| json_reference(b, p)));
        } else if location(p).is_some() {
            b.message(field, |b| b.message(f::PARAMETER, |b| parameter(b, p)));
        }
    }
}

fn json_reference(b: &mut Buf, m: &Map<String, Value>) {
    use field::json_reference as f;
    str_member(b, f::REF, m, "$ref");
    str_member(b, f::DESCRIPTION, m, "description");
}

/// Where a parameter lives, which picks its `Parameter`/`NonBodyParameter` oneof member.
enum Location {
    Body,
    /// `arm` is the `NonBodyParameter` member; query and formData sub-schemas have
    /// `allowEmptyValue`, which shifts their later fields by one.
    NonBody {
        arm: u32,
        allow_empty_value: bool,
    },
}

/// `None` for an `in` that is not one of Swagger's five locations.
fn location(m: &Map<String, Value>) -> Option<Location> {
    use field::non_body_parameter as f;
    let non_body = |arm, allow_empty_value| Some(Location::NonBody { arm, allow_empty_value });
    match m.get("in").and_then(Value::as_str)? {
        "body" => Some(Location::Body),
        "header" => non_body(f::HEADER, false),
        "formData" => non_body(f::FORM_DATA, true),
        "query" => non_body(f::QUERY, true),
        "path" => non_body(f::PATH, false),
        _ => None,
    }
}

/// A `Parameter` message (its oneof member only).
fn parameter(b: &mut Buf, m: &Map<String, Value>) {
    match location(m) {
        None => {}
        Some(Location::Body) => {
            use field::body_parameter as f;
            b.message(field::parameter::BODY_PARAMETER, |b| {
                str_member(b, f::DESCRIPTION, m, "description");
                str_member(b, f::NAME, m, "name");
                str_member(b, f::IN, m, "in");
                bool_member(b, f::REQUIRED, m, "required");
                if let Some(s) = m.get("schema") {
                    b.message(f::SCHEMA, |b| schema(b, s));
                }
                extensions(b, f::VENDOR_EXTENSION, m);
            });
        }
        Some(Location::NonBody { arm, allow_empty_value }) => {
            use field::sub_schema as f;
            b.message(field::parameter::NON_BODY_PARAMETER, |b| {
                b.message(arm, |b| {
                    bool_member(b, f::REQUIRED, m, "required");
                    str_member(b, f::IN, m, "in");
                    str_member(b, f::DESCRIPTION, m, "description");
                    str_member(b, f::NAME, m, "name");
                    let offset = if allow_empty_value {
                        bool_member(b, f::ALLOW_EMPTY_VALUE, m, "allowEmptyValue");
                        f::PRIMITIVES_OFFSET_WITH_ALLOW_EMPTY_VALUE
                    } else {
                        f::PRIMITIVES_OFFSET
                    };
                    primitives(b, m, offset);
                    extensions(b, field::primitives::NEXT + offset, m);
                });
            });
        }
    }
}

/// The validation fields shared by `PrimitivesItems`, `Header` and the parameter
/// sub-schemas, each at its `PrimitivesItems` number plus `offset`.
fn primitives(b: &mut Buf, m: &Map<String, Value>, offset: u32) {
    use field::primitives as f;
    str_member(b, f::TYPE + offset, m, "type");
    str_member(b, f::FORMAT + offset, m, "format");
    if let Some(items) = object_member(m, "items") {
        b.message(f::ITEMS + offset, |b| primitives_items(b, items));
    }
    str_member(b, f::COLLECTION_FORMAT + offset, m, "collectionFormat");
    any_member(b, f::DEFAULT + offset, m, "default");
    double_member(b, f::MAXIMUM + offset, m, "maximum");
    bool_member(b, f::EXCLUSIVE_MAXIMUM + offset, m, "exclusiveMaximum");
    double_member(b, f::MINIMUM + offset, m, "minimum");
    bool_member(b, f::EXCLUSIVE_MINIMUM + offset, m, "exclusiveMinimum");
    int_member(b, f::MAX_LENGTH + offset, m, "maxLength");
    int_member(b, f::MIN_LENGTH + offset, m, "minLength");
    str_member(b, f::PATTERN + offset, m, "pattern");
    int_member(b, f::MAX_ITEMS + offset, m, "maxItems");
    int_member(b, f::MIN_ITEMS + offset, m, "minItems");
    bool_member(b, f::UNIQUE_ITEMS + offset, m, "uniqueItems");
    enum_member(b, f::ENUM + offset, m);
    double_member(b, f::MULTIPLE_OF + offset, m, "multipleOf");
}

fn primitives_items(b: &mut Buf, m: &Map<String, Value>) {
    primitives(b, m, 0);
    extensions(b, field::primitives::NEXT, m);
}

fn responses(b: &mut Buf, m: &Map<String, Value>) {
    use field::response_value as rv;
    use field::responses as f;
    for (code, r) in m.iter().filter(|(k, _)| !k.starts_with("x-")) {
        let Some(r) = r.as_object() else { continue };
        named(b, f::RESPONSE_CODE, code, |b| {
            b.message(field::named::VALUE, |b| {
                if r.contains_key("$ref") {
                    b.message(rv::JSON_REFERENCE, |b| json_reference(b, r));
                } else {
                    b.message(rv::RESPONSE, |b| response(b, r));
                }
            });
        });
    }
    extensions(b, f::VENDOR_EXTENSION, m);
}

fn response(b: &mut Buf, m: &Map<String, Value>) {
    use field::response as f;
    str_member(b, f::DESCRIPTION, m, "description");
    if let Some(s) = m.get("schema") {
        b.message(f::SCHEMA, |b| b.message(field::schema_item::SCHEMA, |b| schema(b, s)));
    }
    if let Some(headers) = object_member(m, "headers") {
        named_map(b, f::HEADERS, headers, |b, h| {
            if let Some(h) = h.as_object() {
                primitives(b, h, 0);
                str_member(b, field::header::DESCRIPTION, h, "description");
                extensions(b, field::header::VENDOR_EXTENSION, h);
            }
        });
    }
    if let Some(examples) = object_member(m, "examples") {
        b.message(f::EXAMPLES, |b| {
            for (mime, v) in examples {
                named(b, field::map::ENTRIES, mime, |b| any(b, field::named::VALUE, v));
            }
        });
    }
    extensions(b, f::VENDOR_EXTENSION, m);
}

/// A `Schema` message. A non-object (a JSON Schema `true`/`false`) writes nothing, so
/// the reader sees an empty schema, which kube-openapi treats as "anything".
fn schema(b: &mut Buf, v: &Value) {
    use field::schema as f;
    let Some(m) = v.as_object() else { return };
    str_member(b, f::REF, m, "$ref");
    str_member(b, f::FORMAT, m, "format");
    str_member(b, f::TITLE, m, "title");
    str_member(b, f::DESCRIPTION, m, "description");
    any_member(b, f::DEFAULT, m, "default");
    double_member(b, f::MULTIPLE_OF, m, "multipleOf");
    double_member(b, f::MAXIMUM, m, "maximum");
    bool_member(b, f::EXCLUSIVE_MAXIMUM, m, "exclusiveMaximum");
    double_member(b, f::MINIMUM, m, "minimum");
    bool_member(b, f::EXCLUSIVE_MINIMUM, m, "exclusiveMinimum");
    int_member(b, f::MAX_LENGTH, m, "maxLength");
    int_member(b, f::MIN_LENGTH, m, "minLength");
    str_member(b, f::PATTERN, m, "pattern");
    int_member(b, f::MAX_ITEMS, m, "maxItems");
    int_member(b, f::MIN_ITEMS, m, "minItems");
    bool_member(b, f::UNIQUE_ITEMS, m, "uniqueItems");
    int_member(b, f::MAX_PROPERTIES, m, "maxProperties");
    int_member(b, f::MIN_PROPERTIES, m, "minProperties");
    strings_member(b, f::REQUIRED, m, "required");
    enum_member(b, f::ENUM, m);
    match m.get("additionalProperties") {
        Some(Value::Bool(allowed)) => b.message(f::ADDITIONAL_PROPERTIES, |b| {
            b.bool_always(field::additional_properties::BOOLEAN, *allowed);
        }),
        Some(s @ Value::Object(_)) => b.message(f::ADDITIONAL_PROPERTIES, |b| {
            b.message(field::additional_properties::SCHEMA, |b| schema(b, s));
        }),
        _ => {}
    }
    match m.get("type") {
        Some(Value::String(t)) => b.message(f::TYPE, |b| b.bytes(field::type_item::VALUE, t.as_bytes())),
        Some(Value::Array(ts)) => b.message(f::TYPE, |b| {
            for t in ts.iter().filter_map(Value::as_str) {
                b.bytes(field::type_item::VALUE, t.as_bytes());
            }
        }),
        _ => {}
    }
    match m.get("items") {
        Some(s @ Value::Object(_)) => {
            b.message(f::ITEMS, |b| b.message(field::items_item::SCHEMA, |b| schema(b, s)));
        }
        Some(Value::Array(ss)) => b.message(f::ITEMS, |b| {
            for s in ss {
                b.message(field::items_item::SCHEMA, |b| schema(b, s));
            }
        }),
        _ => {}
    }
    for s in array_member(m, "allOf") {
        b.message(f::ALL_OF, |b| schema(b, s));
    }
    if let Some(props) = object_member(m, "properties") {
        named_map(b, f::PROPERTIES, props, schema);
    }
    str_member(b, f::DISCRIMINATOR, m, "discriminator");
    bool_member(b, f::READ_ONLY, m, "readOnly");
    if let Some(x) = object_member(m, "xml") {
        use field::xml as x_;
        b.message(f::XML, |b| {
            str_member(b, x_::NAME, x, "name");
            str_member(b, x_::NAMESPACE, x, "namespace");
            str_member(b, x_::PREFIX, x, "prefix");
            bool_member(b, x_::ATTRIBUTE, x, "attribute");
            bool_member(b, x_::WRAPPED, x, "wrapped");
            extensions(b, x_::VENDOR_EXTENSION, x);
        });
    }
    external_docs_member(b, f::EXTERNAL_DOCS, m);
    any_member(b, f::EXAMPLE, m, "example");
    extensions(b, f::VENDOR_EXTENSION, m);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// One decoded field value.
    #[derive(Debug, PartialEq)]
    enum Wire<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    fn read_varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (byte, rest) = buf.split_first().expect("varint runs past the end");
            *buf = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than ten bytes");
    }

    fn take<'a>(buf: &mut &'a [u8], n: usize) -> &'a [u8] {
        assert!(buf.len() >= n, "field runs past the end of its message");
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        head
    }

    /// Every field of one message, in wire order; panics on malformed input.
    fn decode(mut buf: &[u8]) -> Vec<(u32, Wire<'_>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = read_varint(&mut buf);
            let field = u32::try_from(key >> 3).expect("field number fits u32");
            let value = match key & 7 {
                0 => Wire::Varint(read_varint(&mut buf)),
                1 => Wire::Fixed64(u64::from_le_bytes(take(&mut buf, 8).try_into().unwrap())),
                2 => {
                    let n = usize::try_from(read_varint(&mut buf)).unwrap();
                    Wire::Bytes(take(&mut buf, n))
                }
                5 => Wire::Fixed32(u32::from_le_bytes(take(&mut buf, 4).try_into().unwrap())),
                w => panic!("unexpected wire type {w} for field {field}"),
            };
            out.push((field, value));
        }
        out
    }

    fn field_numbers(msg: &[u8]) -> Vec<u32> {
        decode(msg).into_iter().map(|(f, _)| f).collect()
    }

    /// All length-delimited values of `field`.
    fn all(msg: &[u8], field: u32) -> Vec<&[u8]> {
        decode(msg)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .map(|(f, w)| match w {
                Wire::Bytes(b) => b,
                other => panic!("field {f} is {other:?}, not length-delimited"),
            })
            .collect()
    }

    /// The single length-delimited value of `field`.
    fn one(msg: &[u8], field: u32) -> &[u8] {
        let v = all(msg, field);
        assert_eq!(v.len(), 1, "field {field} occurs {} times in {:?}", v.len(), field_numbers(msg));
        v[0]
    }

    fn text(msg: &[u8], field: u32) -> String {
        String::from_utf8(one(msg, field).to_vec()).expect("utf-8")
    }

    fn texts(msg: &[u8], field: u32) -> Vec<String> {
        all(msg, field).into_iter().map(|b| String::from_utf8(b.to_vec()).expect("utf-8")).collect()
    }

    fn varint(msg: &[u8], field: u32) -> u64 {
        let v: Vec<u64> = decode(msg)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, w)| match w {
                Wire::Varint(v) => v,
                other => panic!("field {field} is {other:?}, not a varint"),
            })
            .collect();
        assert_eq!(v.len(), 1, "field {field} occurs {} times", v.len());
        v[0]
    }

    /// The entries of a repeated `Named*` field, as (name, value message).
    fn named(msg: &[u8], field: u32) -> Vec<(String, &[u8])> {
        all(msg, field).into_iter().map(|e| (text(e, 1), one(e, 2))).collect()
    }

    fn entry<'a>(entries: &[(String, &'a [u8])], name: &str) -> &'a [u8] {
        entries.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no entry {name}")).1
    }

    /// A vendor extension's value, parsed back from its `Any.yaml`.
    fn extension(msg: &[u8], field: u32, name: &str) -> Value {
        let any = entry(&named(msg, field), name);
        serde_yaml::from_str(&text(any, 2)).expect("extension yaml parses")
    }

    fn sample() -> Value {
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {
                "/api/v1/namespaces/{namespace}/pods": {
                    "get": {
                        "operationId": "listPod",
                        "x-kubernetes-action": "list",
                        "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "parameters": [
                            {"name": "dryRun", "in": "query", "description": "d", "type": "string", "uniqueItems": true},
                        ],
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}}},
                    },
                    "post": {
                        "operationId": "createPod",
                        "parameters": [
                            {"name": "namespace", "in": "path", "required": true, "type": "string"},
                            {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}},
                        ],
                        "responses": {},
                    },
                },
            },
            "definitions": {
                "io.k8s.api.core.v1.Pod": {
                    "description": "Pod is a collection of containers.",
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "containers": {
                            "type": "array",
                            "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                            "x-kubernetes-patch-merge-key": "name",
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "priority": {"type": "integer", "format": "int32", "minimum": -5, "maxLength": 3},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}],
                },
                "io.k8s.api.core.v1.Container": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "description": "Name of the container."}},
                },
            },
        })
    }

    #[test]
    fn a_small_document_encodes_to_the_expected_field_structure() {
        let doc = encode_v2(&sample());
        assert_eq!(field_numbers(&doc), [1, 2, 8, 9]);
        assert_eq!(text(&doc, 1), "2.0");
        let info = one(&doc, 2);
        assert_eq!((text(info, 1), text(info, 2)), ("Kubernetes".into(), "v1.33.0".into()));

        let defs = named(one(&doc, 9), 1);
        let names: Vec<&str> = defs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.Container"]);

        let pod = entry(&defs, "io.k8s.api.core.v1.Pod");
        // description, required, type, properties, vendor_extension
        assert_eq!(field_numbers(pod), [4, 19, 22, 25, 31]);
        assert_eq!(text(pod, 4), "Pod is a collection of containers.");
        assert_eq!(texts(pod, 19), ["containers"]);
        assert_eq!(texts(one(pod, 22), 1), ["object"]);
        assert_eq!(
            extension(pod, 31, "x-kubernetes-group-version-kind"),
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );

        let props = named(one(pod, 25), 1);
        let names: Vec<&str> = props.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["apiVersion", "containers", "labels", "priority"]);
        assert_eq!(texts(one(entry(&props, "apiVersion"), 22), 1), ["string"]);

        let containers = entry(&props, "containers");
        assert_eq!(texts(one(containers, 22), 1), ["array"]);
        let items = all(one(containers, 23), 1);
        assert_eq!(items.len(), 1);
        assert_eq!(field_numbers(items[0]), [1]);
        assert_eq!(text(items[0], 1), "#/definitions/io.k8s.api.core.v1.Container");
        let exts: Vec<String> = named(containers, 31).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            exts,
            [
                "x-kubernetes-patch-merge-key",
                "x-kubernetes-patch-strategy",
                "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys"
            ]
        );
        assert_eq!(extension(containers, 31, "x-kubernetes-patch-merge-key"), json!("name"));
        assert_eq!(extension(containers, 31, "x-kubernetes-patch-strategy"), json!("merge"));
        assert_eq!(extension(containers, 31, "x-kubernetes-list-map-keys"), json!(["name"]));

        let labels = entry(&props, "labels");
        let value_schema = one(one(labels, 21), 1);
        assert_eq!(texts(one(value_schema, 22), 1), ["string"]);

        let priority = entry(&props, "priority");
        assert_eq!(field_numbers(priority), [2, 9, 11, 22]);
        assert_eq!(text(priority, 2), "int32");
        let minimum = decode(priority).into_iter().find(|(f, _)| *f == 9).map(|(_, w)| w);
        assert_eq!(minimum, Some(Wire::Fixed64((-5.0f64).to_bits())));
        assert_eq!(varint(priority, 11), 3);

        let container = entry(&defs, "io.k8s.api.core.v1.Container");
        assert_eq!(field_numbers(container), [19, 22, 25]);
        assert_eq!(texts(container, 19), ["name"]);
        let name = entry(&named(one(container, 25), 1), "name");
        assert_eq!(text(name, 4), "Name of the container.");
    }

    #[test]
    fn paths_carry_operations_parameters_responses_and_extensions() {
        let doc = encode_v2(&sample());
        let paths = one(&doc, 8);
        let item = entry(&named(paths, 2), "/api/v1/namespaces/{namespace}/pods");
        // get, post
        assert_eq!(field_numbers(item), [2, 4]);

        let get = one(item, 2);
        assert_eq!(text(get, 5), "listPod");
        assert_eq!(extension(get, 13, "x-kubernetes-action"), json!("list"));
        assert_eq!(
            extension(get, 13, "x-kubernetes-group-version-kind"),
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        let params = all(get, 8);
        assert_eq!(params.len(), 1);
        // ParametersItem.parameter -> Parameter.non_body_parameter -> query sub-schema.
        let query = one(one(one(params[0], 1), 2), 3);
        assert_eq!(field_numbers(query), [2, 3, 4, 6, 20]);
        assert_eq!(
            (text(query, 2), text(query, 4), text(query, 6)),
            ("query".into(), "dryRun".into(), "string".into())
        );
        assert_eq!(varint(query, 20), 1);

        let ok = entry(&named(one(get, 9), 1), "200");
        let response = one(ok, 1);
        assert_eq!(text(response, 1), "OK");
        let schema = one(one(response, 2), 1);
        assert_eq!(text(schema, 1), "#/definitions/io.k8s.api.core.v1.Pod");

        let post = one(item, 4);
        let params = all(post, 8);
        assert_eq!(params.len(), 2);
        // The path sub-schema has no allowEmptyValue: type sits at 5.
        let path = one(one(one(params[0], 1), 2), 4);
        assert_eq!(field_numbers(path), [1, 2, 4, 5]);
        assert_eq!(varint(path, 1), 1);
        assert_eq!(text(path, 5), "string");
        // ParametersItem.parameter -> Parameter.body_parameter.
        let body = one(one(params[1], 1), 1);
        assert_eq!(field_numbers(body), [2, 3, 4, 5]);
        assert_eq!(text(one(body, 5), 1), "#/definitions/io.k8s.api.core.v1.Pod");
        // An empty responses object is still a (empty) message.
        assert_eq!(one(post, 9), b"");
    }

    #[test]
    fn additional_properties_false_is_an_explicit_boolean() {
        let doc =
            encode_v2(&json!({"definitions": {"Closed": {"type": "object", "additionalProperties": false}}}));
        let closed = entry(&named(one(&doc, 9), 1), "Closed");
        let item = one(closed, 21);
        assert_eq!(decode(item), [(2, Wire::Varint(0))]);
    }

    #[test]
    fn empty_properties_are_still_present_so_the_schema_reads_as_a_kind() {
        let doc = encode_v2(&json!({"definitions": {"Empty": {"type": "object", "properties": {}}}}));
        let empty = entry(&named(one(&doc, 9), 1), "Empty");
        assert_eq!(one(empty, 25), b"");
    }

    #[test]
    fn defaults_enums_and_multiple_types_keep_their_values() {
        let doc = encode_v2(&json!({"definitions": {"Policy": {
            "type": ["string", "null"],
            "default": "Always",
            "enum": ["Always", "Never", 3],
            "allOf": [{"$ref": "#/definitions/A"}, {"$ref": "#/definitions/B"}],
        }}}));
        let policy = entry(&named(one(&doc, 9), 1), "Policy");
        assert_eq!(texts(one(policy, 22), 1), ["string", "null"]);
        assert_eq!(text(one(policy, 5), 2), "\"Always\"\n");
        let enums: Vec<String> = all(policy, 20).into_iter().map(|a| text(a, 2)).collect();
        assert_eq!(enums, ["\"Always\"\n", "\"Never\"\n", "3\n"]);
        let all_of: Vec<String> = all(policy, 24).into_iter().map(|s| text(s, 1)).collect();
        assert_eq!(all_of, ["#/definitions/A", "#/definitions/B"]);
    }

    #[test]
    fn extension_yaml_escapes_what_yaml_one_one_would_misread() {
        let v = json!({"k": "tab\tquote\"back\\slash line\u{2028}sep del\u{7f} é 😀", "n": [1, -2.5, null, true]});
        let text = yaml(&v);
        assert!(text.is_ascii(), "{text}");
        assert_eq!(
            text,
            "{\"k\": \"tab\\tquote\\\"back\\\\slash line\\u2028sep del\\u007f \\u00e9 \\U0001f600\", \
             \"n\": [1, -2.5, null, true]}\n"
        );
        let back: Value = serde_yaml::from_str(&text).expect("yaml parses");
        assert_eq!(back, v);
    }

    #[test]
    fn negative_integers_are_ten_byte_varints() {
        let doc = encode_v2(&json!({"definitions": {"N": {"minLength": -1}}}));
        let n = entry(&named(one(&doc, 9), 1), "N");
        let mut raw = n;
        assert_eq!(read_varint(&mut raw), (12 << 3) as u64);
        assert_eq!(raw.len(), 10);
        assert_eq!(varint(n, 12), u64::MAX);
    }

    #[test]
    fn a_non_object_encodes_as_an_empty_document() {
        assert!(encode_v2(&json!("nope")).is_empty());
    }
}
