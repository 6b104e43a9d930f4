//! The HorizontalPodAutoscaler printer. Upstream formats the autoscaling/v2 shape of
//! metrics; an autoscaling/v1 object is first converted the way kube-apiserver
//! converts it (the CPU target becomes a Resource metric, other metrics come from the
//! `autoscaling.alpha.kubernetes.io/*metrics` annotations).

use jiff::Timestamp;
use serde_json::{Value, json};

use super::core::age;
use crate::columns::{AGE, NAME, col};
use crate::quantity::quantity_ptr_string;
use crate::value::{annotation, arr_at, at, i64_at, int, name, opt_i64_at, s, str_at};
use crate::{Column, Printer};

pub(crate) static HORIZONTAL_POD_AUTOSCALER: Printer = Printer {
    columns: &[
        NAME,
        col("Reference", "string", "Kind and name of the scaled workload."),
        col("Targets", "string", "Current and target value of each metric, the first two of them."),
        col("MinPods", "string", "Lowest replica count the autoscaler scales down to."),
        col("MaxPods", "string", "Highest replica count the autoscaler scales up to."),
        col("Replicas", "string", "Current number of replicas."),
        AGE,
    ],
    row: hpa_row,
};

/// The `scale` subresource (`kubectl get --subresource=scale`). Upstream's Name column
/// lacks the "name" format here.
pub(crate) static SCALE: Printer = Printer {
    columns: &[
        Column { format: "", ..NAME },
        col("Desired", "integer", "Replicas asked for."),
        col("Available", "integer", "Replicas that exist."),
        AGE,
    ],
    row: scale_row,
};

fn scale_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        s(name(obj)),
        int(i64_at(obj, "/spec/replicas")),
        int(i64_at(obj, "/status/replicas")),
        age(obj, now),
    ]
}

const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Target CPU utilization (percent) the defaulting gives an autoscaler without metrics.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn hpa_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (mut specs, statuses) = if is_v1(obj) {
        v1_metrics(obj)
    } else {
        (arr_at(obj, "/spec/metrics").to_vec(), arr_at(obj, "/status/currentMetrics").to_vec())
    };
    // kube-apiserver's defaulting never lets an autoscaler reach the printer without
    // metrics or minReplicas; assume the same defaults when the served JSON lacks them.
    if specs.is_empty() {
        specs.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}));
    }
    let min_pods = opt_i64_at(obj, "/spec/minReplicas").unwrap_or(1).to_string();
    vec![
        s(name(obj)),
        s(format!(
            "{}/{}",
            str_at(obj, "/spec/scaleTargetRef/kind"),
            str_at(obj, "/spec/scaleTargetRef/name")
        )),
        s(format_metrics(&specs, &statuses)),
        s(min_pods),
        int(i64_at(obj, "/spec/maxReplicas")),
        int(i64_at(obj, "/status/currentReplicas")),
        age(obj, now),
    ]
}

fn is_v1(obj: &Value) -> bool {
    match str_at(obj, "/apiVersion") {
        "autoscaling/v1" => true,
        "" => at(obj, "/spec/metrics").is_none() && at(obj, "/spec/targetCPUUtilizationPercentage").is_some(),
        _ => false,
    }
}

/// Upstream's `formatHPAMetrics` over v2-shaped metric specs and statuses, matched
/// by index.
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            // The status entry's source of the same kind, when the status has one.
            let current = |source: &str| status.and_then(|st| at(st, source));
            let unknown = || "<unknown>".to_string();
            match str_at(spec, "/type") {
                kind @ ("External" | "Object") => {
                    let source = if kind == "External" { "/external" } else { "/object" };
                    let target = at(spec, &format!("{source}/target"));
                    if let Some(avg) = target.and_then(|t| at(t, "/averageValue")) {
                        let cur = current(source)
                            .and_then(|c| at(c, "/current/averageValue"))
                            .map_or_else(unknown, |q| quantity_ptr_string(Some(q)));
                        format!("{cur}/{} (avg)", quantity_ptr_string(Some(avg)))
                    } else {
                        let cur = current(source)
                            .map_or_else(unknown, |c| quantity_ptr_string(at(c, "/current/value")));
                        format!("{cur}/{}", quantity_ptr_string(target.and_then(|t| at(t, "/value"))))
                    }
                }
                "Pods" => {
                    let cur = current("/pods")
                        .map_or_else(unknown, |c| quantity_ptr_string(at(c, "/current/averageValue")));
                    format!("{cur}/{}", quantity_ptr_string(at(spec, "/pods/target/averageValue")))
                }
                kind @ ("Resource" | "ContainerResource") => {
                    let source = if kind == "Resource" { "/resource" } else { "/containerResource" };
                    let resource = str_at(spec, &format!("{source}/name"));
                    let target = at(spec, &format!("{source}/target"));
                    if let Some(avg) = target.and_then(|t| at(t, "/averageValue")) {
                        let cur = current(source)
                            .map_or_else(unknown, |c| quantity_ptr_string(at(c, "/current/averageValue")));
                        format!("{resource}: {cur}/{}", quantity_ptr_string(Some(avg)))
                    } else {
                        let cur = current(source)
                            .and_then(|c| opt_i64_at(c, "/current/averageUtilization"))
                            .map_or_else(unknown, |u| format!("{u}%"));
                        let goal = target
                            .and_then(|t| opt_i64_at(t, "/averageUtilization"))
                            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                        format!("{resource}: {cur}/{goal}")
                    }
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if list.len() > MAX {
        return format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX);
    }
    list.join(", ")
}

/// The metrics of an autoscaling/v1 object in the v2 shape, as upstream's conversion
/// to the internal type builds them.
fn v1_metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut specs: Vec<Value> = annotation(obj, METRIC_SPECS_ANNOTATION)
        .and_then(|a| serde_json::from_str::<Vec<Value>>(a).ok())
        .unwrap_or_default()
        .iter()
        .map(v1_metric_spec)
        .collect();
    if let Some(cpu) = opt_i64_at(obj, "/spec/targetCPUUtilizationPercentage") {
        specs.push(json!({"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    let statuses = match annotation(obj, METRIC_STATUSES_ANNOTATION) {
        Some(a) => {
            serde_json::from_str::<Vec<Value>>(a).unwrap_or_default().iter().map(v1_metric_status).collect()
        }
        None => match opt_i64_at(obj, "/status/currentCPUUtilizationPercentage") {
            Some(cpu) => vec![json!({"type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}})],
            None => Vec::new(),
        },
    };
    (specs, statuses)
}

/// Copies the fields of `from` named in `pairs` (source field, v2 field) that are set.
fn pick(from: Option<&Value>, pairs: &[(&str, &str)]) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(from) = from {
        for (src, dst) in pairs {
            if let Some(v) = at(from, &format!("/{src}")) {
                out.insert((*dst).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// A v1 (v2beta1-style) MetricSpec in the v2 shape.
fn v1_metric_spec(m: &Value) -> Value {
    let kind = str_at(m, "/type");
    let (source, target): (&str, Value) = match kind {
        "Resource" => (
            "resource",
            pick(
                at(m, "/resource"),
                &[("targetAverageUtilization", "averageUtilization"), ("targetAverageValue", "averageValue")],
            ),
        ),
        "ContainerResource" => (
            "containerResource",
            pick(
                at(m, "/containerResource"),
                &[("targetAverageUtilization", "averageUtilization"), ("targetAverageValue", "averageValue")],
            ),
        ),
        "Pods" => ("pods", pick(at(m, "/pods"), &[("targetAverageValue", "averageValue")])),
        "Object" => {
            ("object", pick(at(m, "/object"), &[("targetValue", "value"), ("averageValue", "averageValue")]))
        }
        "External" => (
            "external",
            pick(at(m, "/external"), &[("targetValue", "value"), ("targetAverageValue", "averageValue")]),
        ),
        _ => return json!({"type": kind}),
    };
    let mut body = pick(at(m, &format!("/{source}")), &[("name", "name"), ("container", "container")]);
    body["target"] = target;
    json!({"type": kind, source: body})
}

/// A v1 (v2beta1-style) MetricStatus in the v2 shape.
fn v1_metric_status(m: &Value) -> Value {
    let kind = str_at(m, "/type");
    let (source, current): (&str, Value) = match kind {
        "Resource" => (
            "resource",
            pick(
                at(m, "/resource"),
                &[
                    ("currentAverageUtilization", "averageUtilization"),
                    ("currentAverageValue", "averageValue"),
                ],
            ),
        ),
        "ContainerResource" => (
            "containerResource",
            pick(
                at(m, "/containerResource"),
                &[
                    ("currentAverageUtilization", "averageUtilization"),
                    ("currentAverageValue", "averageValue"),
                ],
            ),
        ),
        "Pods" => ("pods", pick(at(m, "/pods"), &[("currentAverageValue", "averageValue")])),
        "Object" => {
            ("object", pick(at(m, "/object"), &[("currentValue", "value"), ("averageValue", "averageValue")]))
        }
        "External" => (
            "external",
            pick(at(m, "/external"), &[("currentValue", "value"), ("currentAverageValue", "averageValue")]),
        ),
        _ => return json!({"type": kind}),
    };
    let mut body = pick(at(m, &format!("/{source}")), &[("name", "name"), ("container", "container")]);
    body["current"] = current;
    json!({"type": kind, source: body})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{headers, render};

    fn v2(metrics: Value, current: Value) -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T11:00:00Z"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 10, "metrics": metrics},
               "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": current}})
    }

    fn cpu_target(pct: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": pct}}})
    }

    #[test]
    fn v2_targets() {
        assert_eq!(
            headers(&HORIZONTAL_POD_AUTOSCALER),
            ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
        );
        let cases = vec![
            (
                "utilization with a current value",
                v2(
                    json!([cpu_target(80)]),
                    json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 50, "averageValue": "25m"}}}]),
                ),
                "cpu: 50%/80%",
            ),
            ("utilization not measured yet", v2(json!([cpu_target(80)]), json!(null)), "cpu: <unknown>/80%"),
            (
                "average value target",
                v2(
                    json!([{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}}]),
                    json!([{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "700Mi"}}}]),
                ),
                "memory: 700Mi/1Gi",
            ),
            ("no metrics: the defaulted CPU target", v2(json!([]), json!([])), "cpu: <unknown>/80%"),
            (
                "pods, object and external metrics, cut after two",
                v2(
                    json!([
                        {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                        {"type": "Object", "object": {"metric": {"name": "hits"}, "target": {"type": "Value", "value": "10"}}},
                        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}}
                    ]),
                    json!([{"type": "Pods", "pods": {"current": {"averageValue": "500"}}}]),
                ),
                "500/1k, <unknown>/10 + 1 more...",
            ),
            (
                "external metrics",
                v2(
                    json!([
                        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                        {"type": "External", "external": {"metric": {"name": "lag"}, "target": {"type": "Value", "value": "100"}}}
                    ]),
                    json!([
                        {"type": "External", "external": {"current": {"averageValue": "12"}}},
                        {"type": "External", "external": {"current": {"value": "250m"}}}
                    ]),
                ),
                "12/30 (avg), 250m/100",
            ),
            (
                "container resource",
                v2(
                    json!([{"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                            "target": {"type": "Utilization", "averageUtilization": 60}}}]),
                    json!([{"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                            "current": {"averageUtilization": 75}}}]),
                ),
                "cpu: 75%/60%",
            ),
            ("unknown type", v2(json!([{"type": "Custom"}]), json!([])), "<unknown type>"),
        ];
        for (case, obj, targets) in cases {
            let cells = render(&HORIZONTAL_POD_AUTOSCALER, &obj);
            assert_eq!(
                cells,
                [
                    json!("web"),
                    json!("Deployment/web"),
                    json!(targets),
                    json!("1"),
                    json!(10),
                    json!(3),
                    json!("60m")
                ],
                "{case}"
            );
        }
    }

    #[test]
    fn scale_subresource() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}});
        assert_eq!(render(&SCALE, &scale), [json!("web"), json!(3), json!(2), json!("60m")]);
        assert_eq!(SCALE.columns[0].format, "");
    }

    #[test]
    fn v1_objects_convert_their_cpu_target_and_annotations() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "php", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "php-apache"}, "minReplicas": 1,
                     "maxReplicas": 10, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 0}});
        assert_eq!(
            render(&HORIZONTAL_POD_AUTOSCALER, &v1),
            [
                json!("php"),
                json!("Deployment/php-apache"),
                json!("cpu: 0%/50%"),
                json!("1"),
                json!(10),
                json!(1),
                json!("60s")
            ]
        );

        let mut unmeasured = v1.clone();
        unmeasured["status"] = json!({"currentReplicas": 0});
        unmeasured["spec"]["minReplicas"] = Value::Null;
        let cells = render(&HORIZONTAL_POD_AUTOSCALER, &unmeasured);
        assert_eq!((&cells[2], &cells[3]), (&json!("cpu: <unknown>/50%"), &json!("1")));

        let mut untargeted = unmeasured.clone();
        untargeted["spec"]["targetCPUUtilizationPercentage"] = Value::Null;
        assert_eq!(render(&HORIZONTAL_POD_AUTOSCALER, &untargeted)[2], json!("cpu: <unknown>/80%"));
        assert_eq!(format_metrics(&[], &[]), "<none>");

        let mut annotated = v1.clone();
        annotated["metadata"]["annotations"] = json!({
            METRIC_SPECS_ANNOTATION: r#"[{"type":"Pods","pods":{"metricName":"rps","targetAverageValue":"100"}}]"#,
            METRIC_STATUSES_ANNOTATION: r#"[{"type":"Pods","pods":{"metricName":"rps","currentAverageValue":"42"}}]"#,
        });
        assert_eq!(render(&HORIZONTAL_POD_AUTOSCALER, &annotated)[2], json!("42/100, cpu: <unknown>/50%"));
    }
}
