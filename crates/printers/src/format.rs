//! Formatting helpers shared by printers: label sets and selectors, container lists,
//! truncated lists, access modes, and Go's renderings of booleans and IntOrString.

use serde_json::Value;

use crate::value::{arr_at, at, obj_at, str_at};

/// A label map as `labels.FormatLabels` prints it: `k=v` pairs sorted by key and
/// joined by ",", or "<none>" when empty or absent.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else { return "<none>".to_string() };
    if map.is_empty() {
        return "<none>".to_string();
    }
    let mut pairs: Vec<(&str, String)> = map.iter().map(|(k, v)| (k.as_str(), scalar(v))).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A `metav1.LabelSelector` rendered as upstream's `labels.Selector.String()`:
/// requirements sorted by key and joined by ",", each `k=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k` or `!k`. Nil and empty selectors render as "".
/// `Err` when upstream's `LabelSelectorAsSelector` would reject the selector.
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else { return Ok(String::new()) };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = obj_at(sel, "/matchLabels") {
        for (k, v) in labels {
            let v = v.as_str().ok_or(())?;
            check_requirement(k, "In", std::slice::from_ref(&v))?;
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for expr in arr_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let op = str_at(expr, "/operator");
        let values: Vec<&str> =
            arr_at(expr, "/values").iter().map(|v| v.as_str().ok_or(())).collect::<Result<_, _>>()?;
        check_requirement(key, op, &values)?;
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let rendered = match op {
            "In" => format!("{key} in ({})", sorted.join(",")),
            "NotIn" => format!("{key} notin ({})", sorted.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        };
        reqs.push((key.to_string(), rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// Upstream's `metav1.FormatLabelSelector`: "<none>" for a selector matching nothing
/// or everything, "<error>" for one that does not parse.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Err(()) => "<error>".to_string(),
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
    }
}

/// The checks of upstream's `labels.NewRequirement` for one selector requirement.
/// `op` is the LabelSelector operator; "In" with one value stands for matchLabels.
fn check_requirement(key: &str, op: &str, values: &[&str]) -> Result<(), ()> {
    if !is_qualified_name(key) {
        return Err(());
    }
    let count_ok = match op {
        "In" | "NotIn" => !values.is_empty(),
        "Exists" | "DoesNotExist" => values.is_empty(),
        _ => false,
    };
    if !count_ok || !values.iter().all(|v| is_label_value(v)) {
        return Err(());
    }
    Ok(())
}

/// A label key: an optional DNS-1123 subdomain prefix and "/", then a name of at most
/// 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
pub(crate) fn is_qualified_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() || !is_dns1123_subdomain(prefix) {
                return false;
            }
            name
        }
        _ => return false,
    };
    !name.is_empty() && name.len() <= 63 && is_label_body(name)
}

/// A label value: empty, or at most 63 characters of the label-name alphabet.
pub(crate) fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_label_body(s))
}

fn is_label_body(s: &str) -> bool {
    let b = s.as_bytes();
    let inner_ok = b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    inner_ok
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The Go string of a `*metav1.LabelSelector` (gogo-protobuf's generated `String()`),
/// which a few printers show verbatim.
pub(crate) fn go_label_selector_struct(sel: &Value) -> String {
    let mut labels: Vec<(&String, String)> = obj_at(sel, "/matchLabels")
        .map(|m| m.iter().map(|(k, v)| (k, scalar(v))).collect())
        .unwrap_or_default();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let exprs: String = arr_at(sel, "/matchExpressions")
        .iter()
        .map(|e| {
            let values: Vec<String> = arr_at(e, "/values").iter().map(scalar).collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                str_at(e, "/key"),
                str_at(e, "/operator"),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// Upstream's `layoutContainerCells`: the names and the images of a pod spec's
/// containers, each joined by ",".
pub(crate) fn layout_containers(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |spec| arr_at(spec, "/containers"));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// The CONTAINERS and IMAGES cells of a workload whose pod template is at `ptr`.
pub(crate) fn container_cells(obj: &Value, template_ptr: &str) -> [Value; 2] {
    let (names, images) = layout_containers(at(obj, &format!("{template_ptr}/spec")));
    [Value::String(names), Value::String(images)]
}

/// Upstream's `listWithMoreString`: the first `max` items joined by ",", then
/// " + N more..." when there were more; "<unset>" for none at all.
pub(crate) fn list_with_more(items: &[String], max: usize) -> String {
    let shown = items.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if items.len() > max {
        return format!("{shown} + {} more...", items.len() - max);
    }
    if shown.is_empty() {
        return "<unset>".to_string();
    }
    shown
}

/// Go's rendering of a `*bool` in printers: "True", "False" or "<unset>".
pub(crate) fn bool_ptr_string(b: Option<bool>) -> String {
    match b {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

/// An `intstr.IntOrString` as its `String()`: the number, or the string.
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), |i| i.to_string()),
        other => scalar(other),
    }
}

/// Access modes abbreviated and ordered as upstream's `GetAccessModesAsString`.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Go's `net.JoinHostPort`: brackets around hosts containing a colon (IPv6).
pub(crate) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted_and_empty_sets_print_none() {
        assert_eq!(format_labels(Some(&json!({"tier": "web", "app": "nginx"}))), "app=nginx,tier=web");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn label_selectors_render_like_upstream() {
        let cases = [
            (json!({"matchLabels": {"app": "nginx"}}), "app=nginx"),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "cache"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "arm", "operator": "DoesNotExist"}
                ], "matchLabels": {"app": "x"}}),
                "app=x,!arm,env notin (prod),gpu,tier in (cache,web)",
            ),
            (json!({}), "<none>"),
            (json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}), "<error>"),
            (json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}), "<error>"),
            (json!({"matchLabels": {"bad key!": "x"}}), "<error>"),
            (json!({"matchLabels": {"example.com/app": "a.b-c_d"}}), "example.com/app=a.b-c_d"),
        ];
        for (sel, want) in cases {
            assert_eq!(format_label_selector(Some(&sel)), want, "{sel}");
        }
        assert_eq!(format_label_selector(None), "<none>");
    }

    #[test]
    fn lists_are_cut_after_max_items() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(list_with_more(&items, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..3], 3), "a,b,c");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }

    #[test]
    fn access_modes_use_upstream_order_and_abbreviations() {
        let modes = json!(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]);
        assert_eq!(access_modes(modes.as_array().unwrap()), "RWO,RWX");
        assert_eq!(access_modes(&[]), "");
    }

    #[test]
    fn go_selector_struct_string() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]});
        assert_eq!(
            go_label_selector_struct(&sel),
            "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}"
        );
    }
}
