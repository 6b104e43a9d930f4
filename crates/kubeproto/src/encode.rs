//! JSON to protobuf: the inverse of [`crate::decode`], writing what a Go client would
//! write for the same object (JSON keys the table does not know are dropped, as Go's
//! JSON decoding drops them). Embedded objects (`RawExtension`: watch events, list
//! items) of known kinds are written as nested protobuf bodies, because Go clients
//! decode them with the protobuf serializer; other embedded values stay JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::Error;
use crate::decode::{MAGIC, MAX_DEPTH};
use crate::schema::{self, INLINE, Kind, Message, REP, Special};
use crate::wellknown;
use crate::wire::{FIXED64, put_key, put_len_field, put_varint_field};

/// Where in the JSON object a value sits, kept on the stack and rendered only for errors.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Key(Path::Root, k) => (*k).to_string(),
            Path::Key(p, k) => format!("{}.{k}", p.render()),
            Path::Index(p, i) => format!("{}[{i}]", p.render()),
        }
    }

    fn error(&self, problem: impl Into<String>) -> Error {
        Error::Json { path: self.render(), problem: problem.into() }
    }
}

/// Encodes a whole body: magic, `runtime.Unknown` envelope, and the object inside.
pub(crate) fn body(obj: &Value) -> Result<Vec<u8>, Error> {
    embedded(obj, &Path::Root, 0)
}

/// Whether `v` is an object of a kind the codec knows, so it can be embedded as protobuf.
fn embeds_known_kind(v: &Value) -> bool {
    match (v.get("apiVersion").and_then(Value::as_str), v.get("kind").and_then(Value::as_str)) {
        (Some(api_version), Some(kind)) => schema::kind(api_version, kind).is_some(),
        _ => false,
    }
}

/// A body, at `depth` levels inside another one.
fn embedded(obj: &Value, path: &Path<'_>, depth: usize) -> Result<Vec<u8>, Error> {
    let map = obj.as_object().ok_or_else(|| path.error("expected an object"))?;
    let text = |key: &'static str| -> Result<&str, Error> {
        map.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(Error::MissingTypeMeta(key))
    };
    let (api_version, kind) = (text("apiVersion")?, text("kind")?);
    let msg = schema::kind(api_version, kind)
        .ok_or_else(|| Error::UnknownKind { api_version: api_version.into(), kind: kind.into() })?;
    let mut raw = Vec::new();
    object(msg, map, path, depth + 1, &mut raw)?;
    let mut type_meta = Vec::new();
    put_len_field(&mut type_meta, 1, api_version.as_bytes());
    put_len_field(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_len_field(&mut out, 1, &type_meta);
    put_len_field(&mut out, 2, &raw);
    put_len_field(&mut out, 3, b"");
    put_len_field(&mut out, 4, b"");
    Ok(out)
}

fn lookup(name: &'static str, path: &Path<'_>) -> Result<&'static Message, Error> {
    schema::message(name).ok_or_else(|| path.error(format!("message {name} missing from the codec's table")))
}

/// Writes the fields of `msg` found in `map`.
fn object(
    msg: &'static Message,
    map: &Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    for field in msg.fields {
        if field.has(INLINE) {
            if let Kind::Msg(name) = field.kind {
                let mut buf = Vec::new();
                object(lookup(name, path)?, map, path, depth + 1, &mut buf)?;
                put_len_field(out, field.tag, &buf);
            }
            continue;
        }
        let Some(v) = map.get(field.json).filter(|v| !v.is_null()) else {
            continue;
        };
        let path = Path::Key(path, field.json);
        if !field.has(REP) {
            single(field.tag, field.kind, v, &path, depth, out)?;
            continue;
        }
        match field.kind {
            Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => {
                let entries = v.as_object().ok_or_else(|| path.error("expected an object"))?;
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort();
                for key in keys {
                    let value = &entries[key];
                    let vpath = Path::Key(&path, key);
                    let mut entry = Vec::new();
                    put_len_field(&mut entry, 1, key.as_bytes());
                    let value_kind = match field.kind {
                        Kind::MapMsg(name) => Kind::Msg(name),
                        Kind::MapBytes => Kind::Bytes,
                        _ => Kind::Str,
                    };
                    single(2, value_kind, value, &vpath, depth, &mut entry)?;
                    put_len_field(out, field.tag, &entry);
                }
            }
            kind => {
                let items = v.as_array().ok_or_else(|| path.error("expected an array"))?;
                for (i, item) in items.iter().enumerate() {
                    single(field.tag, kind, item, &Path::Index(&path, i), depth, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Writes one value of a field; `null` writes the zero value.
fn single(
    tag: u32,
    kind: Kind,
    v: &Value,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    match kind {
        Kind::Str => {
            let s =
                if v.is_null() { "" } else { v.as_str().ok_or_else(|| path.error("expected a string"))? };
            put_len_field(out, tag, s.as_bytes());
        }
        Kind::Bytes => {
            let s =
                if v.is_null() { "" } else { v.as_str().ok_or_else(|| path.error("expected a string"))? };
            let bytes = BASE64.decode(s).map_err(|e| path.error(format!("invalid base64: {e}")))?;
            put_len_field(out, tag, &bytes);
        }
        Kind::Bool => {
            let b = if v.is_null() {
                false
            } else {
                v.as_bool().ok_or_else(|| path.error("expected a boolean"))?
            };
            put_varint_field(out, tag, u64::from(b));
        }
        Kind::I32 => put_varint_field(out, tag, int(v, path, i32::MIN.into(), i32::MAX.into())? as u64),
        Kind::I64 => put_varint_field(out, tag, int(v, path, i64::MIN, i64::MAX)? as u64),
        Kind::F64 => {
            put_key(out, tag, FIXED64);
            out.extend_from_slice(&number(v, path)?.to_le_bytes());
        }
        Kind::Msg(name) => {
            let bytes = message(lookup(name, path)?, v, path, depth + 1)?;
            put_len_field(out, tag, &bytes);
        }
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => return Err(path.error("map nested in a map")),
    }
    Ok(())
}

fn int(v: &Value, path: &Path<'_>, min: i64, max: i64) -> Result<i64, Error> {
    if v.is_null() {
        return Ok(0);
    }
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.3e18).map(|f| f as i64))
        .ok_or_else(|| path.error("expected an integer"))?;
    if n < min || n > max {
        return Err(path.error(format!("{n} is out of range")));
    }
    Ok(n)
}

fn number(v: &Value, path: &Path<'_>) -> Result<f64, Error> {
    if v.is_null() {
        return Ok(0.0);
    }
    v.as_f64().ok_or_else(|| path.error("expected a number"))
}

/// The bytes of one message from its JSON form, special types included.
fn message(msg: &'static Message, v: &Value, path: &Path<'_>, depth: usize) -> Result<Vec<u8>, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let mut out = Vec::new();
    if v.is_null() {
        return Ok(out);
    }
    let schema_kind = |tag: u32| msg.field(tag).map(|(_, f)| f.kind).unwrap_or(Kind::Str);
    let text = || v.as_str().ok_or_else(|| path.error("expected a string"));
    match msg.special {
        Special::None => {
            let map = v.as_object().ok_or_else(|| path.error("expected an object"))?;
            object(msg, map, path, depth, &mut out)?;
        }
        Special::Time | Special::MicroTime => {
            let (seconds, nanos) = wellknown::parse_time(text()?).map_err(|e| path.error(e))?;
            put_varint_field(&mut out, 1, seconds as u64);
            put_varint_field(&mut out, 2, i64::from(nanos) as u64);
        }
        Special::Duration => {
            let nanos = wellknown::parse_duration(text()?).map_err(|e| path.error(e))?;
            put_varint_field(&mut out, 1, nanos as u64);
        }
        Special::Quantity => {
            let s = match v {
                Value::Number(n) => n.to_string(),
                _ => text()?.to_string(),
            };
            put_len_field(&mut out, 1, s.as_bytes());
        }
        Special::IntOrString => {
            let (ty, int_val, str_val) = match v {
                Value::String(s) => (1, 0, s.as_str()),
                _ => (0, int(v, path, i32::MIN.into(), i32::MAX.into())?, ""),
            };
            put_varint_field(&mut out, 1, ty);
            put_varint_field(&mut out, 2, int_val as u64);
            put_len_field(&mut out, 3, str_val.as_bytes());
        }
        Special::RawExtension if embeds_known_kind(v) => {
            // Go clients decode embedded objects (watch events, list items) with the
            // protobuf serializer, which insists on the magic prefix.
            let raw = embedded(v, path, depth)?;
            put_len_field(&mut out, 1, &raw);
        }
        Special::RawExtension | Special::RawJson => {
            let raw = serde_json::to_vec(v).map_err(|e| path.error(e.to_string()))?;
            put_len_field(&mut out, 1, &raw);
        }
        Special::PropsOrArray => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    single(2, schema_kind(2), item, &Path::Index(path, i), depth, &mut out)?;
                }
            }
            _ => single(1, schema_kind(1), v, path, depth, &mut out)?,
        },
        Special::PropsOrBool => match v {
            Value::Bool(b) => put_varint_field(&mut out, 1, u64::from(*b)),
            _ => {
                put_varint_field(&mut out, 1, 1);
                single(2, schema_kind(2), v, path, depth, &mut out)?;
            }
        },
        Special::PropsOrStringArray => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    single(2, Kind::Str, item, &Path::Index(path, i), depth, &mut out)?;
                }
            }
            _ => single(1, schema_kind(1), v, path, depth, &mut out)?,
        },
        Special::StringList => {
            let items = v.as_array().ok_or_else(|| path.error("expected an array"))?;
            for (i, item) in items.iter().enumerate() {
                single(1, Kind::Str, item, &Path::Index(path, i), depth, &mut out)?;
            }
        }
    }
    Ok(out)
}
