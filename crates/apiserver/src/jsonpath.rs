//! The subset of kubectl's JSONPath that printer columns and selectable fields use:
//! `.a.b`, `[n]`, `[*]`, `['key']` and filters `[?(@.x.y=="v")]`.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, value: String, equal: bool },
}

fn parse(expr: &str) -> Option<Vec<Step>> {
    let e = expr.trim();
    let e = e.strip_prefix('{').and_then(|e| e.strip_suffix('}')).unwrap_or(e).trim();
    let e = e.strip_prefix('$').unwrap_or(e);
    let mut steps = Vec::new();
    let b = e.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j > start {
                    steps.push(Step::Field(e[start..j].to_string()));
                }
                i = j;
            }
            b'[' => {
                let end = find_close(e, i)?;
                let inner = e[i + 1..end].trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs, equal) = if let Some((l, r)) = f.split_once("==") {
                        (l, r, true)
                    } else {
                        let (l, r) = f.split_once("!=")?;
                        (l, r, false)
                    };
                    let path =
                        lhs.trim().strip_prefix('@')?.split('.').filter(|s| !s.is_empty()).map(String::from);
                    let rhs = rhs.trim().trim_matches('"').trim_matches('\'').to_string();
                    steps.push(Step::Filter { path: path.collect(), value: rhs, equal });
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    steps.push(Step::Field(inner.trim_matches('\'').trim_matches('"').to_string()));
                }
                i = end + 1;
            }
            _ => {
                // A bare leading field name (`spec.replicas`).
                let start = i;
                let mut j = i;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                steps.push(Step::Field(e[start..j].to_string()));
                i = j;
            }
        }
    }
    Some(steps)
}

fn find_close(e: &str, open: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (k, &c) in e.as_bytes().iter().enumerate().skip(open + 1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b']') => return Some(k),
            _ => {}
        }
    }
    None
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every value the expression selects in `obj` (empty when nothing matches or the
/// expression is outside the supported subset).
pub fn eval<'a>(expr: &str, obj: &'a Value) -> Vec<&'a Value> {
    let Some(steps) = parse(expr) else { return Vec::new() };
    let mut cur: Vec<&'a Value> = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x);
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter { path, value, equal } => {
                    if let Some(a) = v.as_array() {
                        for item in a {
                            let got = path.iter().try_fold(item, |x, k| x.get(k.as_str()));
                            let matched = got.map(text).as_deref() == Some(value.as_str());
                            if matched == *equal {
                                next.push(item);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths_select_values() {
        let o = json!({"spec": {"replicas": 3, "tags": ["a", "b"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}});
        assert_eq!(eval(".spec.replicas", &o), vec![&json!(3)]);
        assert_eq!(eval("{.spec.tags[1]}", &o), vec![&json!("b")]);
        assert_eq!(eval(".spec.tags[*]", &o).len(), 2);
        assert_eq!(eval(".status.conditions[?(@.type==\"Ready\")].status", &o), vec![&json!("True")]);
        assert!(eval(".spec.missing", &o).is_empty());
    }
}
