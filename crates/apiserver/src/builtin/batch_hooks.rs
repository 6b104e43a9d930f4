//! Strategies of Job and CronJob: defaults, the generated Job selector, schedule and
//! template rules.

use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use super::apps_hooks::validate_selector_and_template;
use super::defaults;
use crate::error::{FieldError, not_supported};
use crate::strategy::Hooks;

fn job_spec_defaults(s: &mut JobSpec) {
    match (s.completions, s.parallelism) {
        (None, None) => {
            s.completions = Some(1);
            s.parallelism = Some(1);
        }
        (_, None) => s.parallelism = Some(1),
        _ => {}
    }
    if s.backoff_limit.is_none() {
        s.backoff_limit = Some(if s.backoff_limit_per_index.is_some() { i32::MAX } else { 6 });
    }
    s.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    s.suspend.get_or_insert(false);
    if s.pod_replacement_policy.is_none() {
        s.pod_replacement_policy =
            Some(if s.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" }.into());
    }
    if s.manual_selector == Some(false) {
        s.manual_selector = None;
    }
    defaults::pod_template(&mut s.template);
}

fn validate_job_spec(s: &JobSpec, errs: &mut Vec<FieldError>) {
    for (f, v) in [
        ("spec.parallelism", s.parallelism),
        ("spec.completions", s.completions),
        ("spec.backoffLimit", s.backoff_limit),
    ] {
        if let Some(n) = v
            && n < 0
        {
            errs.push(FieldError::invalid(f, n, "must be greater than or equal to 0"));
        }
    }
    if let Some(d) = s.active_deadline_seconds
        && d <= 0
    {
        errs.push(FieldError::invalid("spec.activeDeadlineSeconds", d, "must be greater than or equal to 1"));
    }
    if let Some(m) = s.completion_mode.as_deref() {
        if !matches!(m, "NonIndexed" | "Indexed") {
            errs.push(not_supported("spec.completionMode", &json!(m), &["NonIndexed", "Indexed"]));
        }
        if m == "Indexed" && s.completions.is_none() {
            errs.push(FieldError::required("spec.completions", "when completion mode is Indexed"));
        }
    }
    validate_selector_and_template(s.selector.as_ref(), Some(&s.template), &["OnFailure", "Never"], errs);
}

pub struct JobHooks;

impl Hooks<Job> for JobHooks {
    fn default(&self, j: &mut Job) {
        if let Some(s) = j.spec.as_mut() {
            job_spec_defaults(s);
        }
    }

    fn prepare_for_create(&self, j: &mut Job) {
        j.status = Some(Default::default());
        let uid = j.metadata.uid.clone().unwrap_or_default();
        let name = j.metadata.name.clone().unwrap_or_default();
        let Some(s) = j.spec.as_mut() else { return };
        if s.manual_selector == Some(true) {
            return;
        }
        // The selector is generated from the Job's uid, and the template carries it.
        let labels = s
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
        labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
        labels.insert("controller-uid".into(), uid.clone());
        labels.insert("job-name".into(), name);
        if s.selector.is_none() {
            s.selector = Some(LabelSelector {
                match_labels: Some([("batch.kubernetes.io/controller-uid".to_string(), uid)].into()),
                ..Default::default()
            });
        }
    }

    fn validate(&self, j: &Job) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match &j.spec {
            Some(s) => validate_job_spec(s, &mut errs),
            None => errs.push(FieldError::required("spec", "")),
        }
        errs
    }

    fn validate_update(&self, new: &Job, old: &Job) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            if n.selector != o.selector {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    serde_json::to_value(&n.selector).unwrap_or_default(),
                    "field is immutable",
                ));
            }
            let suspended = o.suspend == Some(true);
            if n.template != o.template && !suspended {
                errs.push(FieldError::invalid(
                    "spec.template",
                    serde_json::to_value(&n.template).unwrap_or_default(),
                    "field is immutable",
                ));
            }
            if n.completions != o.completions && n.completion_mode.as_deref() != Some("Indexed") {
                errs.push(FieldError::invalid(
                    "spec.completions",
                    json!(n.completions),
                    "field is immutable",
                ));
            }
            if n.completion_mode != o.completion_mode {
                errs.push(FieldError::invalid(
                    "spec.completionMode",
                    json!(n.completion_mode),
                    "field is immutable",
                ));
            }
        }
        errs
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[("status.successful", "status.succeeded")]
    }
}

/// Checks a cron schedule's shape: five fields or one of the `@` macros.
pub fn schedule_errors(schedule: &str) -> Option<String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Some("empty spec string".into());
    }
    let s = match s.strip_prefix("TZ=").or_else(|| s.strip_prefix("CRON_TZ=")) {
        Some(_) => return Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into()),
        None => s,
    };
    if s.starts_with('@') {
        return match s {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => None,
            _ if s.starts_with("@every ") => None,
            _ => Some(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!("expected exactly 5 fields, found {}: {s}", fields.len()));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?');
    for f in fields {
        if !f.chars().all(ok) {
            return Some(format!("failed to parse field: {f}"));
        }
    }
    None
}

pub struct CronJobHooks;

impl Hooks<CronJob> for CronJobHooks {
    fn default(&self, c: &mut CronJob) {
        let Some(s) = c.spec.as_mut() else { return };
        s.concurrency_policy.get_or_insert_with(|| "Allow".into());
        s.suspend.get_or_insert(false);
        s.successful_jobs_history_limit.get_or_insert(3);
        s.failed_jobs_history_limit.get_or_insert(1);
        if let Some(js) = s.job_template.spec.as_mut() {
            // Job defaults apply when the Job is created; the template keeps its own.
            defaults::pod_template(&mut js.template);
        }
    }

    fn prepare_for_create(&self, c: &mut CronJob) {
        c.status = Some(Default::default());
    }

    fn validate(&self, c: &CronJob) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = c.metadata.name.clone().unwrap_or_default();
        if name.len() > 52 {
            errs.push(FieldError::invalid(
                "metadata.name",
                name.as_str(),
                "must be no more than 52 characters",
            ));
        }
        let Some(s) = &c.spec else { return vec![FieldError::required("spec", "")] };
        if s.schedule.is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else if let Some(e) = schedule_errors(&s.schedule) {
            errs.push(FieldError::invalid("spec.schedule", s.schedule.as_str(), e));
        }
        if let Some(p) = s.concurrency_policy.as_deref()
            && !matches!(p, "Allow" | "Forbid" | "Replace")
        {
            errs.push(not_supported("spec.concurrencyPolicy", &json!(p), &["Allow", "Forbid", "Replace"]));
        }
        if let Some(tz) = s.time_zone.as_deref()
            && jiff::tz::TimeZone::get(tz).is_err()
        {
            errs.push(FieldError::invalid("spec.timeZone", tz, "unknown time zone"));
        }
        match &s.job_template.spec {
            Some(js) => {
                let rp =
                    js.template.spec.as_ref().and_then(|p| p.restart_policy.as_deref()).unwrap_or("Always");
                if !matches!(rp, "OnFailure" | "Never") {
                    errs.push(not_supported(
                        "spec.jobTemplate.spec.template.spec.restartPolicy",
                        &json!(rp),
                        &["OnFailure", "Never"],
                    ));
                }
                if let Some(ps) = &js.template.spec {
                    errs.extend(super::core_hooks::validate_pod_spec(
                        ps,
                        "spec.jobTemplate.spec.template.spec",
                    ));
                }
            }
            None => errs.push(FieldError::required("spec.jobTemplate.spec", "")),
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_for_shape() {
        assert_eq!(schedule_errors("*/5 * * * *"), None);
        assert_eq!(schedule_errors("@hourly"), None);
        assert!(schedule_errors("* * *").is_some());
        assert!(schedule_errors("@sometimes").is_some());
        assert!(schedule_errors("TZ=UTC * * * * *").is_some());
    }
}
