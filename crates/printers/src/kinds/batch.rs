//! Printers of the batch group: Job (STATUS, COMPLETIONS, DURATION) and CronJob.

use jiff::Timestamp;
use serde_json::Value;

use super::core::age;
use crate::Printer;
use crate::columns::{AGE, CONTAINERS, IMAGES, NAME, SELECTOR, col};
use crate::duration::{human_duration, since, translate_since};
use crate::format::{bool_ptr_string, container_cells, format_label_selector};
use crate::value::{arr_at, at, i64_at, int, name, opt_bool_at, opt_i64_at, opt_str_at, s, str_at, time_at};

pub(crate) static JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Complete, Failed, Terminating, Suspended, FailureTarget or Running."),
        col("Completions", "string", "Succeeded pods out of the completions asked for."),
        col("Duration", "string", "How long the job ran, or has been running."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: job_row,
};

fn job_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = i64_at(obj, "/status/succeeded");
    let completions = match opt_i64_at(obj, "/spec/completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => match i64_at(obj, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time_at(obj, "/status/startTime"), time_at(obj, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(since(now, start)),
        (Some(start), Some(end)) => human_duration(since(end, start)),
    };
    let conditions = arr_at(obj, "/status/conditions");
    let status = if has_condition(conditions, "Complete") {
        "Complete"
    } else if has_condition(conditions, "Failed") {
        "Failed"
    } else if at(obj, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(conditions, "Suspended") {
        "Suspended"
    } else if has_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = container_cells(obj, "/spec/template");
    vec![
        s(name(obj)),
        s(status),
        s(completions),
        s(duration),
        age(obj, now),
        names,
        images,
        s(format_label_selector(at(obj, "/spec/selector"))),
    ]
}

/// Whether the first condition of type `kind` has status True.
fn has_condition(conditions: &[Value], kind: &str) -> bool {
    conditions.iter().find(|c| str_at(c, "/type") == kind).is_some_and(|c| str_at(c, "/status") == "True")
}

pub(crate) static CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Schedule", "string", "The cron schedule jobs are created on."),
        col("Timezone", "string", "Time zone the schedule is read in."),
        col("Suspend", "boolean", "Whether creating new jobs is suspended."),
        col("Active", "integer", "Number of jobs currently running."),
        col("Last Schedule", "string", "How long ago a job was last scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: cron_job_row,
};

fn cron_job_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match at(obj, "/status/lastScheduleTime") {
        None => "<none>".to_string(),
        Some(_) => translate_since(time_at(obj, "/status/lastScheduleTime"), now),
    };
    let active = i64::try_from(arr_at(obj, "/status/active").len()).unwrap_or(i64::MAX);
    let [names, images] = container_cells(obj, "/spec/jobTemplate/spec/template");
    vec![
        s(name(obj)),
        s(str_at(obj, "/spec/schedule")),
        s(opt_str_at(obj, "/spec/timeZone").unwrap_or("<none>")),
        s(bool_ptr_string(opt_bool_at(obj, "/spec/suspend"))),
        int(active),
        s(last_schedule),
        age(obj, now),
        names,
        images,
        s(format_label_selector(at(obj, "/spec/jobTemplate/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::kinds::testing::{headers, narrow_headers, render};

    fn job(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["template"] =
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}});
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": "2024-05-01T11:50:00Z"},
               "spec": spec, "status": status})
    }

    fn selector() -> Value {
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "4f5e"}})
    }

    #[test]
    fn columns_match_kubectl_get_jobs() {
        assert_eq!(narrow_headers(&JOB), ["Name", "Status", "Completions", "Duration", "Age"]);
        assert_eq!(headers(&JOB)[5..], ["Containers", "Images", "Selector"]);
    }

    #[test]
    fn job_status_completions_and_duration() {
        let cases = vec![
            (
                "running",
                job(
                    json!({"completions": 1, "parallelism": 1, "selector": selector()}),
                    json!({"startTime": "2024-05-01T11:50:00Z", "active": 1}),
                ),
                ["Running", "0/1", "10m"],
            ),
            (
                "complete",
                job(
                    json!({"completions": 3, "parallelism": 1}),
                    json!({"startTime": "2024-05-01T11:50:00Z", "completionTime": "2024-05-01T11:50:42Z", "succeeded": 3,
                           "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
                ),
                ["Complete", "3/3", "42s"],
            ),
            (
                "failed",
                job(
                    json!({"completions": 1}),
                    json!({"startTime": "2024-05-01T11:50:00Z", "failed": 7,
                           "conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
                ),
                ["Failed", "0/1", "10m"],
            ),
            (
                "failure target only",
                job(
                    json!({"completions": 1}),
                    json!({"startTime": "2024-05-01T11:55:00Z", "conditions": [{"type": "FailureTarget", "status": "True"}]}),
                ),
                ["FailureTarget", "0/1", "5m"],
            ),
            (
                "suspended before starting",
                job(
                    json!({"suspend": true, "completions": 5, "parallelism": 2}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                ),
                ["Suspended", "0/5", ""],
            ),
            (
                "resumed: suspended condition false",
                job(
                    json!({"completions": 2}),
                    json!({"conditions": [{"type": "Suspended", "status": "False"}]}),
                ),
                ["Running", "0/2", ""],
            ),
            (
                "work queue with parallelism",
                job(json!({"parallelism": 4}), json!({"succeeded": 1, "startTime": "2024-05-01T11:58:00Z"})),
                ["Running", "1/1 of 4", "2m"],
            ),
        ];
        for (case, obj, [status, completions, duration]) in cases {
            let cells = render(&JOB, &obj);
            assert_eq!(cells[0], json!("pi"), "{case}");
            assert_eq!(cells[1], json!(status), "{case}: STATUS");
            assert_eq!(cells[2], json!(completions), "{case}: COMPLETIONS");
            assert_eq!(cells[3], json!(duration), "{case}: DURATION");
            assert_eq!(cells[4], json!("10m"), "{case}: AGE");
            assert_eq!(cells[5..7], [json!("pi"), json!("perl:5.34")], "{case}");
        }

        let mut deleting = job(json!({"completions": 1}), json!({"startTime": "2024-05-01T11:50:00Z"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(render(&JOB, &deleting)[1], json!("Terminating"));
        let with_selector = job(json!({"selector": selector()}), json!({}));
        assert_eq!(render(&JOB, &with_selector)[7], json!("batch.kubernetes.io/controller-uid=4f5e"));
    }

    #[test]
    fn cron_jobs() {
        assert_eq!(
            narrow_headers(&CRON_JOB),
            ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
        );
        let cj = json!({"metadata": {"name": "backup", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "backup", "image": "restic:0.16"}]}}}}},
            "status": {"active": [{"name": "backup-28571234"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}});
        assert_eq!(
            render(&CRON_JOB, &cj),
            [
                json!("backup"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("30d"),
                json!("backup"),
                json!("restic:0.16"),
                json!("<none>")
            ]
        );
        let never_ran =
            json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Europe/Paris"}});
        let cells = render(&CRON_JOB, &never_ran);
        assert_eq!(cells[2..6], [json!("Europe/Paris"), json!("<unset>"), json!(0), json!("<none>")]);
    }
}
