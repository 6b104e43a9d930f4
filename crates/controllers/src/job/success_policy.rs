//! `spec.successPolicy` of Indexed Jobs: the Job succeeds early once the succeeded
//! indexes satisfy a rule (a set of indexes, a count, or a count within a set).

use k8s_openapi::api::batch::v1::SuccessPolicy;

use super::indexes::OrderedIntervals;

/// The SuccessCriteriaMet message when a rule is met (`"Matched rules at index N"`).
pub fn matches(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &OrderedIntervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match &rule.succeeded_indexes {
            Some(s) => {
                let required = OrderedIntervals::parse(s, completions);
                if required.is_empty() {
                    continue;
                }
                indexes_rule_met(&required, succeeded, rule.succeeded_count)
            }
            None => rule.succeeded_count.is_some_and(|c| succeeded.total() >= c),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// Whether the succeeded indexes cover all required ones, or at least `count` of them.
fn indexes_rule_met(required: &OrderedIntervals, succeeded: &OrderedIntervals, count: Option<i32>) -> bool {
    let (r, s) = (&required.0, &succeeded.0);
    let (mut i, mut j, mut contains) = (0, 0, 0);
    while i < r.len() && j < s.len() {
        let overlap = r[i].last.min(s[j].last) - r[i].first.max(s[j].first) + 1;
        if overlap > 0 {
            contains += overlap;
        }
        match s[j].last.cmp(&r[i].last) {
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    contains == required.total() || count.is_some_and(|c| contains >= c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::SuccessPolicyRule;

    fn rule(indexes: Option<&str>, count: Option<i32>) -> SuccessPolicyRule {
        SuccessPolicyRule { succeeded_indexes: indexes.map(Into::into), succeeded_count: count }
    }

    #[test]
    fn rules_are_met_by_indexes_counts_or_both() {
        let cases: &[(Vec<SuccessPolicyRule>, &str, Option<&str>)] = &[
            (vec![rule(Some("0"), None)], "0", Some("Matched rules at index 0")),
            (vec![rule(Some("0-2"), None)], "0,1", None),
            (vec![rule(Some("0-2"), Some(2))], "0,1", Some("Matched rules at index 0")),
            (vec![rule(None, Some(3))], "1,4", None),
            (vec![rule(None, Some(3))], "1,4,6", Some("Matched rules at index 0")),
            (vec![rule(Some("8"), None), rule(Some("1,3-4"), None)], "1-4", Some("Matched rules at index 1")),
            (vec![rule(Some("0"), None)], "", None),
        ];
        for (rules, succeeded, want) in cases {
            let policy = SuccessPolicy { rules: rules.clone() };
            let got = matches(Some(&policy), 10, &OrderedIntervals::parse(succeeded, 10));
            assert_eq!(got.as_deref(), *want, "{succeeded}");
        }
    }
}
