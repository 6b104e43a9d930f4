//! `spec.podFailurePolicy`: the first rule a failed pod matches (by container exit
//! codes or by pod conditions) decides whether the Job fails at once (FailJob), the
//! index fails (FailIndex), the failure is not counted (Ignore) or counted (Count).

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The action of the matched rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::FailJob => "FailJob",
            Action::FailIndex => "FailIndex",
            Action::Ignore => "Ignore",
            Action::Count => "Count",
        }
    }
}

/// What the policy says about one failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The Job failure message, when a FailJob rule matched.
    pub fail_job_message: Option<String>,
    /// Whether the failure counts toward backoffLimit (false only for Ignore).
    pub count_failed: bool,
    pub action: Option<Action>,
}

const NO_MATCH: Outcome = Outcome { fail_job_message: None, count_failed: true, action: None };

fn operator_matches(exit_code: i32, req: &PodFailurePolicyOnExitCodesRequirement) -> bool {
    match req.operator.as_str() {
        "In" => req.values.contains(&exit_code),
        "NotIn" => !req.values.contains(&exit_code),
        _ => false,
    }
}

fn matching_container<'a>(
    statuses: Option<&'a Vec<ContainerStatus>>,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a ContainerStatus, i32)> {
    statuses?.iter().find_map(|c| {
        let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
        let name_ok = req.container_name.as_deref().is_none_or(|n| n == c.name);
        (name_ok && code != 0 && operator_matches(code, req)).then_some((c, code))
    })
}

/// Matches a failed pod against the rules, in order. A pod that matches no rule
/// counts as an ordinary failure.
pub fn match_pod(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Outcome {
    let Some(policy) = policy else { return NO_MATCH };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => Action::FailJob,
            "FailIndex" => Action::FailIndex,
            "Ignore" => Action::Ignore,
            "Count" => Action::Count,
            _ => continue,
        };
        let failure = if let Some(req) = &rule.on_exit_codes {
            let found = matching_container(status.and_then(|s| s.container_statuses.as_ref()), req)
                .or_else(|| matching_container(status.and_then(|s| s.init_container_statuses.as_ref()), req));
            match found {
                Some((c, code)) => format!(
                    "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                    c.name,
                    action.as_str()
                ),
                None => continue,
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_ref());
            let found = conditions
                .into_iter()
                .flatten()
                .find(|c| patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status));
            match found {
                Some(c) => format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                    c.type_,
                    action.as_str()
                ),
                None => continue,
            }
        } else {
            continue;
        };
        return match action {
            Action::Ignore => Outcome { fail_job_message: None, count_failed: false, action: Some(action) },
            Action::FailIndex | Action::Count => {
                Outcome { fail_job_message: None, count_failed: true, action: Some(action) }
            }
            Action::FailJob => {
                Outcome { fail_job_message: Some(failure), count_failed: true, action: Some(action) }
            }
        };
    }
    NO_MATCH
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    exit_codes
                        .iter()
                        .map(|(n, code)| ContainerStatus {
                            name: n.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| PodCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn exit_rule(action: &str, container: Option<&str>, op: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn rules_match_in_order_on_exit_codes_and_conditions() {
        // The Kubernetes docs example: fail the Job on exit code 42 of "main", ignore
        // disruptions.
        let policy = PodFailurePolicy {
            rules: vec![
                exit_rule("FailJob", Some("main"), "In", &[42]),
                condition_rule("Ignore", "DisruptionTarget"),
                exit_rule("Count", None, "NotIn", &[1, 2]),
            ],
        };
        let cases: Vec<(Pod, Outcome)> = vec![
            (
                failed_pod(&[("main", 42)], &[]),
                Outcome {
                    fail_job_message: Some(
                        "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0".into(),
                    ),
                    count_failed: true,
                    action: Some(Action::FailJob),
                },
            ),
            // Rule 0 names another container; rule 2 (NotIn 1,2) takes it.
            (
                failed_pod(&[("sidecar", 42)], &[]),
                Outcome { fail_job_message: None, count_failed: true, action: Some(Action::Count) },
            ),
            (
                failed_pod(&[("main", 1)], &[("DisruptionTarget", "True")]),
                Outcome { fail_job_message: None, count_failed: false, action: Some(Action::Ignore) },
            ),
            (
                failed_pod(&[("main", 7)], &[]),
                Outcome { fail_job_message: None, count_failed: true, action: Some(Action::Count) },
            ),
            (failed_pod(&[("main", 2)], &[]), NO_MATCH),
            // Exit code 0 never matches an exit-code rule.
            (failed_pod(&[("main", 0)], &[]), NO_MATCH),
        ];
        for (pod, want) in cases {
            assert_eq!(match_pod(Some(&policy), &pod), want);
        }
        assert_eq!(match_pod(None, &failed_pod(&[("main", 42)], &[])), NO_MATCH);
    }

    #[test]
    fn a_condition_rule_can_fail_the_job() {
        let policy = PodFailurePolicy { rules: vec![condition_rule("FailJob", "ConfigIssue")] };
        let out = match_pod(Some(&policy), &failed_pod(&[], &[("ConfigIssue", "True")]));
        assert_eq!(
            out.fail_job_message.as_deref(),
            Some("Pod ns/p has condition ConfigIssue matching FailJob rule at index 0")
        );
    }
}
