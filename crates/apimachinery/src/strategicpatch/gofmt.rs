//! Renders JSON values the way Go's `fmt` prints decoded JSON (`%v`, type names), so
//! strategic-merge-patch error messages read exactly as upstream's.

use serde_json::Value;

/// Go's dynamic type of a decoded JSON value, as apimachinery's JSON decoder makes it
/// (integers become `int64`, other numbers `float64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    String,
    Slice,
    Map,
}

pub(crate) fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Nil,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() => Kind::Int,
        Value::Number(_) => Kind::Float,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Slice,
        Value::Object(_) => Kind::Map,
    }
}

/// `reflect.TypeOf(v)` printed with `%s`.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match kind(v) {
        Kind::Nil => "<nil>",
        Kind::Bool => "bool",
        Kind::Int => "int64",
        Kind::Float => "float64",
        Kind::String => "string",
        Kind::Slice => "[]interface {}",
        Kind::Map => "map[string]interface {}",
    }
}

fn float(f: f64) -> String {
    // Go's %v is %g with the shortest digits, in exponent form when the decimal
    // exponent is below -4 or at least 6.
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// `fmt.Sprintf("%v", v)`.
pub(crate) fn v(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(v).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{k}:{}", v(&m[k.as_str()]))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// `fmt.Sprintf("%s", v)` for a value that may not be a string.
pub(crate) fn s(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".into(),
        Value::Bool(_) | Value::Number(_) => format!("%!s({}={})", type_name(value), v(value)),
        other => v(other),
    }
}

/// `fmt.Sprint` of several lists: `[[a b] [c]]`.
pub(crate) fn lists(lists: &[&[Value]]) -> String {
    let parts: Vec<String> = lists.iter().map(|l| v(&Value::Array(l.to_vec()))).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_like_go() {
        assert_eq!(v(&json!({"b": 1, "a": "x", "c": null})), "map[a:x b:1 c:<nil>]");
        assert_eq!(v(&json!([1, "a", [true]])), "[1 a [true]]");
        assert_eq!(v(&json!(1.5)), "1.5");
        assert_eq!(v(&json!(1234567.5)), "1.2345675e+06");
        assert_eq!(v(&json!(0.00001)), "1e-05");
        assert_eq!(s(&json!(1)), "%!s(int64=1)");
        assert_eq!(type_name(&json!({})), "map[string]interface {}");
    }
}
