//! Protobuf to JSON: turns a message into the JSON Kubernetes' Go types would marshal
//! after reading the same bytes.
//!
//! Go semantics decide what appears: a pointer field appears exactly when it is on the
//! wire (so `replicas: 0` survives); a value field is its wire value or its zero and is
//! left out only when `omitempty` and zero; an embedded struct is flattened into its
//! parent; a value struct always appears (`status: {}`), and a zero `Time` is `null`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use crate::Error;
use crate::schema::{self, INLINE, Kind, Message, OMIT, PTR, REP, Special};
use crate::wellknown;
use crate::wire::{self, FIXED64, LEN, Problem, Reader, VARINT, Wire};

/// How many messages deep decoding follows before giving up, so that hostile input
/// cannot exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 100;

/// The envelope's magic prefix.
pub(crate) const MAGIC: &[u8] = b"k8s\0";

/// Decodes a whole body: magic, `runtime.Unknown` envelope, and the object inside.
pub(crate) fn body(body: &[u8], depth: usize) -> Result<Value, Error> {
    const UNKNOWN: &str = "io.k8s.apimachinery.pkg.runtime.Unknown";
    const TYPE_META: &str = "io.k8s.apimachinery.pkg.runtime.TypeMeta";
    let rest = body.strip_prefix(MAGIC).ok_or(Error::NoMagic)?;
    let envelope = Fields::read(UNKNOWN, rest)?;
    let type_meta = Fields::read(TYPE_META, envelope.last_bytes(1)?.unwrap_or_default())?;
    let api_version = type_meta.string(1)?.unwrap_or_default();
    let kind = type_meta.string(2)?.unwrap_or_default();
    let raw = envelope.last_bytes(2)?.unwrap_or_default();
    if let Some(encoding) = envelope.string(3)?.filter(|e| !e.is_empty()) {
        return Err(Error::Unsupported { what: "contentEncoding", value: encoding });
    }
    let content_type = envelope.string(4)?.unwrap_or_default();
    let mut out = Map::new();
    if content_type == "application/json" {
        let value: Value = serde_json::from_slice(raw).map_err(|source| Error::EmbeddedJson {
            message: UNKNOWN,
            field: 2,
            source,
        })?;
        return Ok(value);
    }
    if !content_type.is_empty() && content_type != "application/vnd.kubernetes.protobuf" {
        return Err(Error::Unsupported { what: "contentType", value: content_type });
    }
    if kind.is_empty() {
        return Err(Error::MissingTypeMeta("kind"));
    }
    if api_version.is_empty() {
        return Err(Error::MissingTypeMeta("apiVersion"));
    }
    let msg = schema::kind(&api_version, &kind)
        .ok_or_else(|| Error::UnknownKind { api_version: api_version.clone(), kind: kind.clone() })?;
    out.insert("kind".into(), Value::String(kind));
    out.insert("apiVersion".into(), Value::String(api_version));
    object(msg, raw, depth + 1, &mut out)?;
    Ok(Value::Object(out))
}

/// The fields of one message as read from the wire, in wire order.
struct Fields<'a> {
    message: &'static str,
    items: Vec<(u32, Wire<'a>)>,
}

impl<'a> Fields<'a> {
    fn read(message: &'static str, data: &'a [u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(data);
        let mut items = Vec::new();
        while let Some(item) = reader.next_field() {
            items.push(item.map_err(|p| problem(message, p))?);
        }
        Ok(Fields { message, items })
    }

    fn all(&self, tag: u32) -> impl Iterator<Item = &Wire<'a>> {
        self.items.iter().filter(move |(t, _)| *t == tag).map(|(_, w)| w)
    }

    fn expect(&self, tag: u32, w: &Wire<'a>, wire_type: u8) -> Result<(), Error> {
        if w.wire_type() == wire_type {
            Ok(())
        } else {
            Err(wrong_wire(self.message, tag, w.wire_type(), wire_type))
        }
    }

    /// The last occurrence of a length-delimited field.
    fn last_bytes(&self, tag: u32) -> Result<Option<&'a [u8]>, Error> {
        let mut out = None;
        for w in self.all(tag) {
            self.expect(tag, w, LEN)?;
            if let Wire::Len(b) = w {
                out = Some(*b);
            }
        }
        Ok(out)
    }

    /// The last occurrence of a string field; invalid UTF-8 becomes U+FFFD as in Go's JSON.
    fn string(&self, tag: u32) -> Result<Option<String>, Error> {
        Ok(self.last_bytes(tag)?.map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// The last occurrence of a varint field.
    fn last_varint(&self, tag: u32) -> Result<Option<u64>, Error> {
        let mut out = None;
        for w in self.all(tag) {
            self.expect(tag, w, VARINT)?;
            if let Wire::Varint(v) = w {
                out = Some(*v);
            }
        }
        Ok(out)
    }

    /// All occurrences of a message field, merged as protobuf merges them.
    fn merged(&self, tag: u32) -> Result<Option<std::borrow::Cow<'a, [u8]>>, Error> {
        let mut parts = Vec::new();
        for w in self.all(tag) {
            self.expect(tag, w, LEN)?;
            if let Wire::Len(b) = w {
                parts.push(*b);
            }
        }
        Ok(match parts.len() {
            0 => None,
            1 => Some(std::borrow::Cow::Borrowed(parts[0])),
            _ => Some(std::borrow::Cow::Owned(parts.concat())),
        })
    }
}

fn problem(message: &'static str, p: Problem) -> Error {
    match p {
        Problem::Truncated(field) => Error::Truncated { message, field },
        Problem::Overlong(field) => {
            Error::Malformed { message, field, problem: "varint longer than 10 bytes".into() }
        }
        Problem::BadTag(tag) => {
            Error::Malformed { message, field: 0, problem: format!("invalid field number {tag}") }
        }
        Problem::WireType(field, wt) => {
            Error::Malformed { message, field, problem: format!("unsupported wire type {wt}") }
        }
    }
}

fn wrong_wire(message: &'static str, field: u32, got: u8, want: u8) -> Error {
    Error::Malformed { message, field, problem: format!("wire type {got} where {want} was expected") }
}

fn malformed(message: &'static str, field: u32, problem: impl Into<String>) -> Error {
    Error::Malformed { message, field, problem: problem.into() }
}

fn lookup(name: &'static str) -> Result<&'static Message, Error> {
    schema::message(name).ok_or_else(|| malformed(name, 0, "message missing from the codec's table"))
}

/// Decodes the fields of `msg` from `data` into `out`, in the table's (Go's) order.
fn object(
    msg: &'static Message,
    data: &[u8],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let fields = Fields::read(msg.name, data)?;
    let mut by_field: Vec<Vec<Wire<'_>>> = vec![Vec::new(); msg.fields.len()];
    for (tag, w) in &fields.items {
        if let Some((i, _)) = msg.field(*tag) {
            by_field[i].push(*w);
        }
    }
    for (field, wires) in msg.fields.iter().zip(&by_field) {
        let value = if field.has(REP) {
            let value = repeated(msg, field.tag, field.kind, wires, depth)?;
            let empty = match &value {
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if empty && field.has(OMIT) {
                continue;
            }
            if empty { Value::Null } else { value }
        } else {
            let Some(value) = single(msg, field.tag, field.kind, field.flags, wires, depth)? else {
                continue;
            };
            value
        };
        if field.has(INLINE) {
            if let Value::Object(inner) = value {
                out.extend(inner);
            }
        } else {
            out.insert(field.json.to_string(), value);
        }
    }
    Ok(())
}

/// A scalar's value from its wire form.
fn scalar(message: &'static str, tag: u32, kind: Kind, w: &Wire<'_>) -> Result<Value, Error> {
    let want = match kind {
        Kind::Str | Kind::Bytes => LEN,
        Kind::Bool | Kind::I32 | Kind::I64 => VARINT,
        Kind::F64 => FIXED64,
        _ => LEN,
    };
    if w.wire_type() != want {
        return Err(wrong_wire(message, tag, w.wire_type(), want));
    }
    Ok(match (kind, *w) {
        (Kind::Str, Wire::Len(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Kind::Bytes, Wire::Len(b)) => Value::String(BASE64.encode(b)),
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Kind::I32, Wire::Varint(v)) => Value::from(v as i32),
        (Kind::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::F64, Wire::Fixed64(v)) => float(message, tag, f64::from_bits(v))?,
        _ => return Err(malformed(message, tag, "not a scalar field")),
    })
}

/// Go writes integral floats without a fraction (`1`, not `1.0`).
fn float(message: &'static str, tag: u32, f: f64) -> Result<Value, Error> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| malformed(message, tag, format!("{f} has no JSON form")))
}

fn zero(kind: Kind) -> Value {
    match kind {
        Kind::Str => Value::String(String::new()),
        Kind::Bool => Value::Bool(false),
        Kind::I32 | Kind::I64 | Kind::F64 => Value::from(0),
        _ => Value::Null,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

/// A non-repeated field, or `None` when it is left out of JSON.
fn single(
    msg: &'static Message,
    tag: u32,
    kind: Kind,
    flags: u8,
    wires: &[Wire<'_>],
    depth: usize,
) -> Result<Option<Value>, Error> {
    let ptr = flags & PTR != 0;
    let omit = flags & OMIT != 0;
    let absent = || if omit { None } else { Some(Value::Null) };
    if let Kind::Msg(name) = kind {
        let target = lookup(name)?;
        let mut parts = Vec::new();
        for w in wires {
            match w {
                Wire::Len(b) => parts.push(*b),
                other => return Err(wrong_wire(msg.name, tag, other.wire_type(), LEN)),
            }
        }
        // A missing pointer is nil, and so is a missing Go slice type.
        if parts.is_empty() && (ptr || target.special == Special::StringList) {
            return Ok(absent());
        }
        let data = parts.concat();
        let value = value(target, &data, depth + 1)?;
        // Of the special types only Go slices honour omitempty; structs never do.
        if target.special == Special::StringList && omit && value.as_array().is_none_or(Vec::is_empty) {
            return Ok(None);
        }
        return Ok(Some(value));
    }
    let Some(last) = wires.last() else {
        if ptr || kind == Kind::Bytes {
            return Ok(absent());
        }
        return Ok((!omit).then(|| zero(kind)));
    };
    for w in wires {
        scalar(msg.name, tag, kind, w)?;
    }
    let v = scalar(msg.name, tag, kind, last)?;
    if !ptr && omit && is_zero(&v) {
        return Ok(None);
    }
    Ok(Some(v))
}

/// A repeated field or map; empty when nothing is on the wire.
fn repeated(
    msg: &'static Message,
    tag: u32,
    kind: Kind,
    wires: &[Wire<'_>],
    depth: usize,
) -> Result<Value, Error> {
    let mut items = Vec::new();
    match kind {
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => return map(msg, tag, kind, wires, depth),
        Kind::Msg(name) => {
            let target = lookup(name)?;
            for w in wires {
                let Wire::Len(b) = w else {
                    return Err(wrong_wire(msg.name, tag, w.wire_type(), LEN));
                };
                items.push(value(target, b, depth + 1)?);
            }
        }
        Kind::Str | Kind::Bytes => {
            for w in wires {
                items.push(scalar(msg.name, tag, kind, w)?);
            }
        }
        Kind::Bool | Kind::I32 | Kind::I64 | Kind::F64 => {
            for w in wires {
                match (kind, w) {
                    (Kind::F64, Wire::Len(b)) => {
                        for v in wire::packed_fixed64(b, tag).map_err(|p| problem(msg.name, p))? {
                            items.push(scalar(msg.name, tag, kind, &Wire::Fixed64(v))?);
                        }
                    }
                    (_, Wire::Len(b)) => {
                        for v in wire::packed_varints(b, tag).map_err(|p| problem(msg.name, p))? {
                            items.push(scalar(msg.name, tag, kind, &Wire::Varint(v))?);
                        }
                    }
                    _ => items.push(scalar(msg.name, tag, kind, w)?),
                }
            }
        }
    }
    Ok(Value::Array(items))
}

/// A map field: repeated `{key = 1, value = 2}` entries, keys sorted as Go sorts them.
fn map(
    msg: &'static Message,
    tag: u32,
    kind: Kind,
    wires: &[Wire<'_>],
    depth: usize,
) -> Result<Value, Error> {
    let mut entries = std::collections::BTreeMap::new();
    let target = match kind {
        Kind::MapMsg(name) => Some(lookup(name)?),
        _ => None,
    };
    for w in wires {
        let Wire::Len(b) = w else {
            return Err(wrong_wire(msg.name, tag, w.wire_type(), LEN));
        };
        let entry = Fields::read(msg.name, b)?;
        let key = entry.string(1)?.unwrap_or_default();
        let value = match (kind, target) {
            (_, Some(target)) => {
                let data = entry.merged(2)?.unwrap_or_default();
                value(target, &data, depth + 1)?
            }
            (Kind::MapBytes, _) => Value::String(BASE64.encode(entry.last_bytes(2)?.unwrap_or_default())),
            _ => Value::String(entry.string(2)?.unwrap_or_default()),
        };
        entries.insert(key, value);
    }
    Ok(Value::Object(entries.into_iter().collect()))
}

/// The JSON form of one message, special types included.
fn value(msg: &'static Message, data: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let name = msg.name;
    let fields = || Fields::read(name, data);
    let schema_of = |tag: u32| -> Result<&'static Message, Error> {
        match msg.field(tag).map(|(_, f)| f.kind) {
            Some(Kind::Msg(n)) => lookup(n),
            _ => Err(malformed(name, tag, "table has no schema field")),
        }
    };
    let schema_at =
        |tag: u32, data: &[u8]| -> Result<Value, Error> { value(schema_of(tag)?, data, depth + 1) };
    Ok(match msg.special {
        Special::None => {
            let mut out = Map::new();
            object(msg, data, depth, &mut out)?;
            Value::Object(out)
        }
        Special::Time | Special::MicroTime => {
            if data.is_empty() {
                return Ok(Value::Null);
            }
            let f = fields()?;
            let seconds = f.last_varint(1)?.unwrap_or(0) as i64;
            let nanos = f.last_varint(2)?.unwrap_or(0) as i32;
            if seconds == wellknown::GO_ZERO_SECONDS && (nanos == 0 || msg.special == Special::Time) {
                return Ok(Value::Null);
            }
            let text = wellknown::format_time(seconds, nanos, msg.special == Special::MicroTime)
                .map_err(|e| malformed(name, 1, e))?;
            Value::String(text)
        }
        Special::Duration => {
            let nanos = fields()?.last_varint(1)?.unwrap_or(0) as i64;
            Value::String(wellknown::format_duration(nanos))
        }
        Special::Quantity => Value::String(fields()?.string(1)?.unwrap_or_else(|| "0".into())),
        Special::IntOrString => {
            let f = fields()?;
            match f.last_varint(1)?.unwrap_or(0) {
                0 => Value::from(f.last_varint(2)?.unwrap_or(0) as i32),
                1 => Value::String(f.string(3)?.unwrap_or_default()),
                other => {
                    return Err(malformed(name, 1, format!("IntOrString type {other} is neither 0 nor 1")));
                }
            }
        }
        Special::RawExtension | Special::RawJson => match fields()?.last_bytes(1)? {
            None | Some([]) => Value::Null,
            Some(raw) if raw.starts_with(MAGIC) && msg.special == Special::RawExtension => body(raw, depth)?,
            Some(raw) => serde_json::from_slice(raw).map_err(|source| Error::EmbeddedJson {
                message: name,
                field: 1,
                source,
            })?,
        },
        Special::PropsOrArray => {
            let f = fields()?;
            let mut items = Vec::new();
            for w in f.all(2) {
                f.expect(2, w, LEN)?;
                if let Wire::Len(b) = w {
                    items.push(schema_at(2, b)?);
                }
            }
            if !items.is_empty() {
                Value::Array(items)
            } else {
                match f.merged(1)? {
                    Some(b) => schema_at(1, &b)?,
                    None => Value::Null,
                }
            }
        }
        Special::PropsOrBool => {
            let f = fields()?;
            match f.merged(2)? {
                Some(b) => schema_at(2, &b)?,
                None => Value::Bool(f.last_varint(1)?.unwrap_or(0) != 0),
            }
        }
        Special::PropsOrStringArray => {
            let f = fields()?;
            let mut items = Vec::new();
            for w in f.all(2) {
                items.push(scalar(name, 2, Kind::Str, w)?);
            }
            if !items.is_empty() {
                Value::Array(items)
            } else {
                match f.merged(1)? {
                    Some(b) => schema_at(1, &b)?,
                    None => Value::Null,
                }
            }
        }
        Special::StringList => {
            let f = fields()?;
            let mut items = Vec::new();
            for w in f.all(1) {
                items.push(scalar(name, 1, Kind::Str, w)?);
            }
            Value::Array(items)
        }
    })
}
