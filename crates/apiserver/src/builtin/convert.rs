//! Kinds served in one version and stored in another: autoscaling/v1
//! HorizontalPodAutoscaler (stored as v2) and events.k8s.io/v1 Event (stored as core/v1).

use k8s_openapi::api::autoscaling::v1 as hpav1;
use k8s_openapi::api::events::v1 as eventsv1;
use serde_json::{Map, Value, json};

use crate::error::ApiResult;
use crate::strategy::{Plain, Strategy, Typed};

/// autoscaling/v1 HPAs: the v1 shape outside, v2 in storage.
pub struct HpaV1;

fn cpu_target(v2: &Value) -> Option<Value> {
    v2.pointer("/spec/metrics")?.as_array()?.iter().find_map(|m| {
        (m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["target"]["type"] == "Utilization")
            .then(|| m["resource"]["target"]["averageUtilization"].clone())
    })
}

fn cpu_current(v2: &Value) -> Option<Value> {
    v2.pointer("/status/currentMetrics")?.as_array()?.iter().find_map(|m| {
        (m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .then(|| m["resource"]["current"]["averageUtilization"].clone())
            .filter(|v| !v.is_null())
    })
}

impl Strategy for HpaV1 {
    fn decode(&self, obj: Value) -> ApiResult<Value> {
        Typed::<hpav1::HorizontalPodAutoscaler, Plain>::new(Plain).decode(obj)
    }

    fn convert_out(&self, v2: Value, api_version: &str) -> Value {
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(api_version));
        out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
        out.insert("metadata".into(), v2.get("metadata").cloned().unwrap_or_else(|| json!({})));
        let mut spec = Map::new();
        for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            if let Some(v) = v2.pointer(&format!("/spec/{k}")) {
                spec.insert(k.into(), v.clone());
            }
        }
        if let Some(t) = cpu_target(&v2) {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
        out.insert("spec".into(), Value::Object(spec));
        let mut status = Map::new();
        for k in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(v) = v2.pointer(&format!("/status/{k}")) {
                status.insert(k.into(), v.clone());
            }
        }
        status.entry("currentReplicas").or_insert(json!(0));
        status.entry("desiredReplicas").or_insert(json!(0));
        if let Some(c) = cpu_current(&v2) {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
        out.insert("status".into(), Value::Object(status));
        Value::Object(out)
    }

    fn convert_in(&self, v1: Value, storage_api_version: &str) -> Value {
        let mut spec = Map::new();
        for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            if let Some(v) = v1.pointer(&format!("/spec/{k}")) {
                spec.insert(k.into(), v.clone());
            }
        }
        let target = v1.pointer("/spec/targetCPUUtilizationPercentage").cloned().unwrap_or(json!(80));
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]),
        );
        let mut status = Map::new();
        for k in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(v) = v1.pointer(&format!("/status/{k}")) {
                status.insert(k.into(), v.clone());
            }
        }
        if let Some(c) = v1.pointer("/status/currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
            );
        }
        json!({
            "apiVersion": storage_api_version,
            "kind": "HorizontalPodAutoscaler",
            "metadata": v1.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "spec": spec,
            "status": status,
        })
    }
}

/// events.k8s.io/v1 field names and their core/v1 twins.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: Value, forward: bool, api_version: &str) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    for (new, old) in EVENT_RENAMES {
        let (from, to) = if forward { (*old, *new) } else { (*new, *old) };
        if let Some(v) = m.remove(from) {
            m.insert(to.to_string(), v);
        }
    }
    m.insert("apiVersion".into(), json!(api_version));
    m.insert("kind".into(), json!("Event"));
    Value::Object(m)
}

/// events.k8s.io/v1 Events, stored as core/v1 Events.
pub struct EventsV1;

impl Strategy for EventsV1 {
    fn decode(&self, obj: Value) -> ApiResult<Value> {
        Typed::<eventsv1::Event, Plain>::new(Plain).decode(obj)
    }

    fn convert_out(&self, core: Value, api_version: &str) -> Value {
        rename(core, true, api_version)
    }

    fn convert_in(&self, ev: Value, storage_api_version: &str) -> Value {
        rename(ev, false, storage_api_version)
    }

    fn field_labels(&self) -> &[(&'static str, &'static str)] {
        &[
            ("regarding.kind", "regarding.kind"),
            ("regarding.namespace", "regarding.namespace"),
            ("regarding.name", "regarding.name"),
            ("regarding.uid", "regarding.uid"),
            ("reason", "reason"),
            ("reportingController", "reportingController"),
            ("type", "type"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_v1_round_trips_through_v2_storage() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                     "targetCPUUtilizationPercentage": 50}});
        let stored = HpaV1.convert_in(v1, "autoscaling/v2");
        assert_eq!(stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
        let back = HpaV1.convert_out(stored, "autoscaling/v1");
        assert_eq!(back["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(back["spec"]["maxReplicas"], 5);
    }

    #[test]
    fn events_rename_between_groups() {
        let core =
            json!({"apiVersion": "v1", "kind": "Event", "message": "hi", "involvedObject": {"name": "p"}});
        let ev = EventsV1.convert_out(core, "events.k8s.io/v1");
        assert_eq!(ev["note"], "hi");
        assert_eq!(ev["regarding"]["name"], "p");
        let back = EventsV1.convert_in(ev, "v1");
        assert_eq!(back["message"], "hi");
    }
}
