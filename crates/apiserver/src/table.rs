//! Server-side printing: objects and lists as `meta.k8s.io` `Table` and
//! `PartialObjectMetadata`, with the columns kubectl shows.

use serde_json::{Map, Value, json};

use crate::negotiate::IncludeObject;
use crate::registry::{CustomColumn, Printer, Resource};

fn column_json(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn name_column() -> Value {
    column_json(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace; see the object's metadata.name.",
        0,
    )
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value, beta: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `PartialObjectMetadataList` of objects.
pub fn partial_metadata_list(items: &[Value], list_meta: Value, beta: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "items": items.iter().map(|o| partial_metadata(o, beta)).collect::<Vec<_>>(),
    })
}

/// Builds a `Table` for objects of one resource.
pub fn table(res: &Resource, items: &[Value], list_meta: Value, beta: bool, include: IncludeObject) -> Value {
    let now = jiff::Timestamp::now();
    let (columns, rows): (Vec<Value>, Vec<Vec<Value>>) = match &res.printer {
        Printer::Builtin(p) => (
            p.columns
                .iter()
                .map(|c| column_json(c.name, c.type_, c.format, c.description, c.priority as i64))
                .collect(),
            items.iter().map(|o| (p.row)(o, now)).collect(),
        ),
        Printer::Custom(cols) => custom(cols, items, now),
        Printer::Default => {
            let p = printers::default_printer();
            (
                p.columns
                    .iter()
                    .map(|c| column_json(c.name, c.type_, c.format, c.description, c.priority as i64))
                    .collect(),
                items.iter().map(|o| (p.row)(o, now)).collect(),
            )
        }
    };
    let rows: Vec<Value> = items
        .iter()
        .zip(rows)
        .map(|(obj, cells)| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_metadata(obj, beta));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": if beta { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn custom(cols: &[CustomColumn], items: &[Value], now: jiff::Timestamp) -> (Vec<Value>, Vec<Vec<Value>>) {
    let mut columns = vec![name_column()];
    let mut defs: Vec<CustomColumn> = cols.to_vec();
    if defs.is_empty() {
        defs.push(CustomColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "Time since the object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    for c in &defs {
        columns.push(column_json(&c.name, &c.type_, &c.format, &c.description, c.priority));
    }
    let rows = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(crate::meta::name(o))];
            for c in &defs {
                let found = crate::jsonpath::eval(&c.json_path, o);
                let cell = match found.first() {
                    None => Value::Null,
                    Some(v) if c.type_ == "date" => {
                        match v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
                            Some(t) => json!(printers::human_duration(now.duration_since(t))),
                            None => Value::Null,
                        }
                    }
                    Some(_) if found.len() > 1 => {
                        json!(found.iter().map(|v| cell_text(v)).collect::<Vec<_>>().join(","))
                    }
                    Some(v) => match (c.type_.as_str(), v) {
                        ("integer", Value::Number(_))
                        | ("number", Value::Number(_))
                        | ("boolean", Value::Bool(_)) => (*v).clone(),
                        (_, Value::String(_)) => (*v).clone(),
                        _ => json!(cell_text(v)),
                    },
                };
                cells.push(cell);
            }
            cells
        })
        .collect();
    (columns, rows)
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
