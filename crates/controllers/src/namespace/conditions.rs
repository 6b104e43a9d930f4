//! The status conditions the namespace controller maintains while it empties a namespace
//! (upstream `status_condition_utils.go`): each deletion run reports its failures, and
//! every condition type the run did not fail is set to its "ok" variant.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The condition types this controller owns, in the order it writes them.
pub const TYPES: [&str; 5] =
    [DISCOVERY_FAILURE, GV_PARSING_FAILURE, CONTENT_FAILURE, CONTENT_REMAINING, FINALIZERS_REMAINING];

fn ok_variant(type_: &str) -> (&'static str, &'static str) {
    match type_ {
        DISCOVERY_FAILURE => ("ResourcesDiscovered", "All resources successfully discovered"),
        GV_PARSING_FAILURE => ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        CONTENT_FAILURE => {
            ("ContentDeleted", "All content successfully deleted, may be waiting on finalization")
        }
        CONTENT_REMAINING => ("ContentRemoved", "All content successfully removed"),
        _ => ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
    }
}

/// The failures of one deletion run.
#[derive(Debug, Default)]
pub struct Updater {
    failed: Vec<(String, String, String)>,
    content_errors: Vec<String>,
}

impl Updater {
    /// Discovery could not read everything.
    pub fn discovery_failed(&mut self, message: String) {
        self.failed.push((DISCOVERY_FAILURE.into(), "DiscoveryFailed".into(), message));
    }

    /// Deleting the content of one resource failed.
    pub fn content_failed(&mut self, message: String) {
        self.content_errors.push(message);
    }

    /// What remains: instances per group resource (`pods.`) and per finalizer.
    pub fn remaining(
        &mut self,
        by_resource: &BTreeMap<String, usize>,
        by_finalizer: &BTreeMap<String, usize>,
    ) {
        let mut resources: Vec<String> = by_resource
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(gr, n)| format!("{gr} has {n} resource instances"))
            .collect();
        if !by_resource.is_empty() {
            resources.sort();
            self.failed.push((
                CONTENT_REMAINING.into(),
                "SomeResourcesRemain".into(),
                format!("Some resources are remaining: {}", resources.join(", ")),
            ));
        }
        let mut finalizers: Vec<String> = by_finalizer
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !by_finalizer.is_empty() {
            finalizers.sort();
            self.failed.push((
                FINALIZERS_REMAINING.into(),
                "SomeFinalizersRemain".into(),
                format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", ")),
            ));
        }
    }

    /// Writes the run's conditions into `status`; returns whether anything changed.
    pub fn update(mut self, status: &mut NamespaceStatus, now: jiff::Timestamp) -> bool {
        if !self.content_errors.is_empty() {
            self.content_errors.sort();
            let msg = format!(
                "Failed to delete all resource types, {} remaining: {}",
                self.content_errors.len(),
                self.content_errors.join(", ")
            );
            self.failed.push((CONTENT_FAILURE.into(), "ContentDeletionFailed".into(), msg));
        }
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let mut changed = false;
        for type_ in TYPES {
            let (status_, reason, message) = match self.failed.iter().find(|(t, _, _)| t == type_) {
                Some((_, r, m)) => ("True", r.clone(), m.clone()),
                None => {
                    let (r, m) = ok_variant(type_);
                    ("False", r.to_string(), m.to_string())
                }
            };
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                None => {
                    conditions.push(NamespaceCondition {
                        type_: type_.into(),
                        status: status_.into(),
                        reason: Some(reason),
                        message: Some(message),
                        last_transition_time: Some(Time(now)),
                    });
                    changed = true;
                }
                Some(c) => {
                    if c.status != status_
                        || c.reason.as_deref() != Some(&reason)
                        || c.message.as_deref() != Some(&message)
                    {
                        if c.status != status_ {
                            c.last_transition_time = Some(Time(now));
                        }
                        c.status = status_.into();
                        c.reason = Some(reason);
                        c.message = Some(message);
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2024-05-01T10:00:00Z".parse().unwrap()
    }

    fn find<'a>(s: &'a NamespaceStatus, t: &str) -> &'a NamespaceCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_clean_run_sets_every_condition_to_its_ok_variant() {
        let mut status = NamespaceStatus::default();
        assert!(Updater::default().update(&mut status, now()));
        let c = find(&status, CONTENT_REMAINING);
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("ContentRemoved")));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 5);
        assert!(!Updater::default().update(&mut status, now()), "nothing changes on a second clean run");
    }

    #[test]
    fn remaining_content_is_listed_per_resource_and_finalizer() {
        let mut status = NamespaceStatus::default();
        let mut u = Updater::default();
        u.remaining(
            &BTreeMap::from([("pods.".to_string(), 2), ("widgets.example.com".to_string(), 1)]),
            &BTreeMap::from([("example.com/keep".to_string(), 1)]),
        );
        u.update(&mut status, now());
        let c = find(&status, CONTENT_REMAINING);
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let f = find(&status, FINALIZERS_REMAINING);
        assert_eq!(
            f.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
            )
        );
    }

    #[test]
    fn content_errors_are_counted_and_sorted() {
        let mut status = NamespaceStatus::default();
        let mut u = Updater::default();
        u.content_failed("b failed".into());
        u.content_failed("a failed".into());
        u.update(&mut status, now());
        let c = find(&status, CONTENT_FAILURE);
        assert_eq!(c.reason.as_deref(), Some("ContentDeletionFailed"));
        assert_eq!(
            c.message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a failed, b failed")
        );
    }

    #[test]
    fn a_condition_keeps_its_transition_time_unless_its_status_flips() {
        let mut status = NamespaceStatus::default();
        let mut u = Updater::default();
        u.remaining(&BTreeMap::from([("pods.".to_string(), 2)]), &BTreeMap::new());
        u.update(&mut status, now());
        let later: jiff::Timestamp = "2024-05-01T10:05:00Z".parse().unwrap();
        let mut u = Updater::default();
        u.remaining(&BTreeMap::from([("pods.".to_string(), 1)]), &BTreeMap::new());
        assert!(u.update(&mut status, later));
        assert_eq!(find(&status, CONTENT_REMAINING).last_transition_time, Some(Time(now())));
        assert!(Updater::default().update(&mut status, later));
        assert_eq!(find(&status, CONTENT_REMAINING).last_transition_time, Some(Time(later)));
    }
}
