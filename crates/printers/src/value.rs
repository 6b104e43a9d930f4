//! Lenient reads of JSON objects: a missing, null or mistyped field reads as the Go
//! zero value, which is what upstream's printers see for it.

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The value at a JSON pointer, treating `null` as absent.
pub(crate) fn at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

/// The string at `ptr`, or "" when absent or not a string.
pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    opt_str_at(v, ptr).unwrap_or("")
}

/// The string at `ptr`, if there is one.
pub(crate) fn opt_str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    at(v, ptr).and_then(Value::as_str)
}

/// The integer at `ptr`, or 0.
pub(crate) fn i64_at(v: &Value, ptr: &str) -> i64 {
    opt_i64_at(v, ptr).unwrap_or(0)
}

/// The integer at `ptr`, if there is one.
pub(crate) fn opt_i64_at(v: &Value, ptr: &str) -> Option<i64> {
    at(v, ptr).and_then(Value::as_i64)
}

/// The boolean at `ptr`, if there is one.
pub(crate) fn opt_bool_at(v: &Value, ptr: &str) -> Option<bool> {
    at(v, ptr).and_then(Value::as_bool)
}

/// The boolean at `ptr`, or false.
pub(crate) fn bool_at(v: &Value, ptr: &str) -> bool {
    opt_bool_at(v, ptr).unwrap_or(false)
}

/// The array at `ptr`, or an empty slice.
pub(crate) fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    at(v, ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The object at `ptr`, if there is one.
pub(crate) fn obj_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    at(v, ptr).and_then(Value::as_object)
}

/// Number of entries of the map at `ptr` (0 when absent).
pub(crate) fn map_len(v: &Value, ptr: &str) -> usize {
    obj_at(v, ptr).map_or(0, Map::len)
}

/// An annotation of the object, if set (possibly to "").
pub(crate) fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    obj_at(v, "/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
}

/// The object's `metadata.name`.
pub(crate) fn name(v: &Value) -> &str {
    str_at(v, "/metadata/name")
}

/// The RFC 3339 time at `ptr`; `None` when absent, unparsable or Go's zero time
/// (0001-01-01T00:00:00Z), all of which upstream treats as unset.
pub(crate) fn time_at(v: &Value, ptr: &str) -> Option<Timestamp> {
    let t: Timestamp = opt_str_at(v, ptr)?.parse().ok()?;
    (t != go_zero_time()).then_some(t)
}

/// Go's `time.Time{}`.
pub(crate) fn go_zero_time() -> Timestamp {
    // -62135596800 seconds is 0001-01-01T00:00:00Z, well inside jiff's range.
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}

/// A string cell.
pub(crate) fn s(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

/// An integer cell.
pub(crate) fn int(x: i64) -> Value {
    Value::from(x)
}
