//! The Event printer, shared by core/v1 and events.k8s.io/v1 Events: upstream prints
//! both from the same internal type, so an events.k8s.io object is first read
//! through the field mapping of its conversion (regarding → involvedObject,
//! note → message, deprecated* → the core fields).

use jiff::Timestamp;
use serde_json::Value;

use crate::Column;
use crate::Printer;
use crate::columns::{NAME, col, wide};
use crate::duration::translate_since;
use crate::value::{at, i64_at, int, name, s, str_at, time_at};

const COLUMNS: &[Column] = &[
    col("Last Seen", "string", "How long ago the event was last observed."),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Short machine-readable reason for the event."),
    col("Object", "string", "Kind and name of the object the event is about."),
    wide("Subobject", "string", "Field path within the object, such as a container."),
    wide("Source", "string", "Component (and host) that reported the event."),
    col("Message", "string", "Human-readable description of what happened."),
    wide("First Seen", "string", "How long ago the event was first observed."),
    wide("Count", "string", "How many times the event has occurred."),
    Column { priority: 1, ..NAME },
];

pub(crate) static EVENT: Printer = Printer { columns: COLUMNS, row: core_event_row };

pub(crate) static EVENTS_V1_EVENT: Printer = Printer { columns: COLUMNS, row: events_v1_event_row };

/// The fields of the internal Event type the printer reads.
struct EventView<'a> {
    first_timestamp: Option<Timestamp>,
    last_timestamp: Option<Timestamp>,
    event_time: Option<Timestamp>,
    count: i64,
    series: Option<&'a Value>,
    object: Option<&'a Value>,
    kind_type: &'a str,
    reason: &'a str,
    message: &'a str,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    name: &'a str,
}

fn core_event_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    event_row(
        &EventView {
            first_timestamp: time_at(obj, "/firstTimestamp"),
            last_timestamp: time_at(obj, "/lastTimestamp"),
            event_time: time_at(obj, "/eventTime"),
            count: i64_at(obj, "/count"),
            series: at(obj, "/series"),
            object: at(obj, "/involvedObject"),
            kind_type: str_at(obj, "/type"),
            reason: str_at(obj, "/reason"),
            message: str_at(obj, "/message"),
            source_component: str_at(obj, "/source/component"),
            source_host: str_at(obj, "/source/host"),
            // core/v1 serializes ReportingController as "reportingComponent".
            reporting_controller: str_at(obj, "/reportingComponent"),
            reporting_instance: str_at(obj, "/reportingInstance"),
            name: name(obj),
        },
        now,
    )
}

fn events_v1_event_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    event_row(
        &EventView {
            first_timestamp: time_at(obj, "/deprecatedFirstTimestamp"),
            last_timestamp: time_at(obj, "/deprecatedLastTimestamp"),
            event_time: time_at(obj, "/eventTime"),
            count: i64_at(obj, "/deprecatedCount"),
            series: at(obj, "/series"),
            object: at(obj, "/regarding"),
            kind_type: str_at(obj, "/type"),
            reason: str_at(obj, "/reason"),
            message: str_at(obj, "/note"),
            source_component: str_at(obj, "/deprecatedSource/component"),
            source_host: str_at(obj, "/deprecatedSource/host"),
            reporting_controller: str_at(obj, "/reportingController"),
            reporting_instance: str_at(obj, "/reportingInstance"),
            name: name(obj),
        },
        now,
    )
}

fn event_row(e: &EventView<'_>, now: Timestamp) -> Vec<Value> {
    let first_seen = match e.first_timestamp {
        Some(t) => translate_since(Some(t), now),
        None => translate_since(e.event_time, now),
    };
    let mut last_seen = match e.last_timestamp {
        Some(t) => translate_since(Some(t), now),
        None => first_seen.clone(),
    };
    let mut count = e.count;
    if let Some(series) = e.series {
        last_seen = translate_since(time_at(series, "/lastObservedTime"), now);
        count = i64_at(series, "/count");
    } else if count == 0 {
        // Events of the new API that happened once carry no count.
        count = 1;
    }

    let (kind, object_name, field_path) = match e.object {
        Some(o) => (str_at(o, "/kind"), str_at(o, "/name"), str_at(o, "/fieldPath")),
        None => ("", "", ""),
    };
    let target = if object_name.is_empty() {
        kind.to_lowercase()
    } else {
        format!("{}/{object_name}", kind.to_lowercase())
    };

    let component = first_non_empty(e.source_component, e.reporting_controller);
    let instance = first_non_empty(e.source_host, e.reporting_instance);
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        s(last_seen),
        s(e.kind_type),
        s(e.reason),
        s(target),
        s(field_path),
        s(source),
        s(e.message.trim()),
        s(first_seen),
        int(count),
        s(e.name),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{headers, narrow_headers, render};

    #[test]
    fn columns_match_kubectl_get_events() {
        assert_eq!(narrow_headers(&EVENT), ["Last Seen", "Type", "Reason", "Object", "Message"]);
        assert_eq!(
            headers(&EVENT),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(EVENT.columns[9].format, "name");
    }

    #[test]
    fn core_events() {
        let scheduled = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-0.17c3a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "message": "Back-off restarting failed container app\n", "type": "Warning",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z", "count": 14
        });
        assert_eq!(
            render(&EVENT, &scheduled),
            [
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container app"),
                json!("60m"),
                json!(14),
                json!("web-0.17c3a"),
            ]
        );

        // Written through the new API: eventTime only, no count, reporting fields.
        let new_style = json!({
            "metadata": {"name": "ev"},
            "involvedObject": {"kind": "Node"},
            "reason": "RegisteredNode", "message": "registered", "type": "Normal",
            "eventTime": "2024-05-01T11:59:30.123456Z",
            "reportingComponent": "node-controller", "reportingInstance": ""
        });
        // 29.88 seconds ago: ages truncate, they do not round.
        assert_eq!(
            render(&EVENT, &new_style),
            [
                json!("29s"),
                json!("Normal"),
                json!("RegisteredNode"),
                json!("node"),
                json!(""),
                json!("node-controller"),
                json!("registered"),
                json!("29s"),
                json!(1),
                json!("ev"),
            ]
        );

        let series = json!({"metadata": {"name": "s"}, "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": "2024-05-01T10:00:00Z", "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:00.000000Z"}});
        let cells = render(&EVENT, &series);
        assert_eq!((&cells[0], &cells[7], &cells[8]), (&json!("60s"), &json!("120m"), &json!(7)));

        let bare = render(&EVENT, &json!({}));
        assert_eq!((&bare[0], &bare[3], &bare[8]), (&json!("<unknown>"), &json!(""), &json!(1)));
    }

    #[test]
    fn events_k8s_io_events_print_like_core_ones() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web-0.17c3b", "namespace": "default"},
            "eventTime": null,
            "regarding": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "note": "Successfully pulled image", "type": "Normal",
            "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedFirstTimestamp": "2024-05-01T11:50:00Z", "deprecatedLastTimestamp": "2024-05-01T11:55:00Z",
            "deprecatedCount": 2
        });
        assert_eq!(
            render(&EVENTS_V1_EVENT, &ev),
            [
                json!("5m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Successfully pulled image"),
                json!("10m"),
                json!(2),
                json!("web-0.17c3b"),
            ]
        );
        let modern = json!({"metadata": {"name": "m"}, "eventTime": "2024-05-01T11:59:00.000000Z",
            "reportingController": "example.com/ctrl", "reportingInstance": "ctrl-7d9",
            "regarding": {"kind": "Deployment", "name": "web"}, "note": "scaled", "type": "Normal", "reason": "Scaled"});
        let cells = render(&EVENTS_V1_EVENT, &modern);
        assert_eq!(
            (&cells[0], &cells[3], &cells[5], &cells[8]),
            (&json!("60s"), &json!("deployment/web"), &json!("example.com/ctrl, ctrl-7d9"), &json!(1))
        );
    }
}
