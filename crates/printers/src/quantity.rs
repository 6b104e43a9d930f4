//! Quantities as kube-apiserver prints them: it prints what it decoded, so what a client
//! wrote ("1024Mi") shows canonicalized ("1Gi"); printing the JSON string verbatim would
//! differ.

use apimachinery::quantity::Quantity;
use serde_json::Value;

/// The canonical string of a quantity held in JSON (a string, or a bare number).
/// Absent prints "0" (Go's zero `Quantity`); unparsable text prints unchanged.
pub(crate) fn quantity_string(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => return "0".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    };
    Quantity::parse(&text).map_or(text, |q| q.to_string())
}

/// A `*resource.Quantity` field's `String()`: "<nil>" when the pointer is nil.
pub(crate) fn quantity_ptr_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".to_string(),
        some => quantity_string(some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_canonically_and_garbage_unchanged() {
        assert_eq!(quantity_string(Some(&Value::from("1024Mi"))), "1Gi");
        assert_eq!(quantity_string(Some(&Value::from("0.5"))), "500m");
        assert_eq!(quantity_string(Some(&Value::from("lots"))), "lots");
        assert_eq!(quantity_string(None), "0");
        assert_eq!(quantity_string(Some(&Value::from(3))), "3");
        assert_eq!(quantity_ptr_string(None), "<nil>");
        assert_eq!(quantity_ptr_string(Some(&Value::from("1000"))), "1k");
    }
}
