//! Printers of admissionregistration.k8s.io: webhook configurations and admission
//! policies with their bindings.

use jiff::Timestamp;
use serde_json::Value;

use super::core::age;
use crate::Printer;
use crate::columns::{AGE, NAME, col};
use crate::format::go_label_selector_struct;
use crate::value::{arr_at, at, int, name, s, str_at};

pub(crate) static MUTATING_WEBHOOK_CONFIGURATION: Printer = Printer {
    columns: &[NAME, col("Webhooks", "integer", "Number of webhooks in the configuration."), AGE],
    row: webhook_configuration_row,
};

pub(crate) static VALIDATING_WEBHOOK_CONFIGURATION: Printer =
    Printer { columns: MUTATING_WEBHOOK_CONFIGURATION.columns, row: webhook_configuration_row };

fn webhook_configuration_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), int(count(arr_at(obj, "/webhooks"))), age(obj, now)]
}

fn count(items: &[Value]) -> i64 {
    i64::try_from(items.len()).unwrap_or(i64::MAX)
}

pub(crate) static VALIDATING_ADMISSION_POLICY: Printer = Printer {
    columns: &[
        NAME,
        col("Validations", "integer", "Number of CEL validation rules in the policy."),
        col("ParamKind", "string", "API version and kind of the policy's parameter resources."),
        AGE,
    ],
    row: validating_policy_row,
};

fn validating_policy_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), int(count(arr_at(obj, "/spec/validations"))), s(param_kind(obj)), age(obj, now)]
}

pub(crate) static MUTATING_ADMISSION_POLICY: Printer = Printer {
    columns: &[
        NAME,
        col("Mutations", "integer", "Number of mutations in the policy."),
        col("ParamKind", "string", "API version and kind of the policy's parameter resources."),
        AGE,
    ],
    row: mutating_policy_row,
};

fn mutating_policy_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), int(count(arr_at(obj, "/spec/mutations"))), s(param_kind(obj)), age(obj, now)]
}

fn param_kind(obj: &Value) -> String {
    match at(obj, "/spec/paramKind") {
        None => "<unset>".to_string(),
        Some(k) => format!("{}/{}", str_at(k, "/apiVersion"), str_at(k, "/kind")),
    }
}

pub(crate) static VALIDATING_ADMISSION_POLICY_BINDING: Printer = Printer {
    columns: &[
        NAME,
        col("PolicyName", "string", "The policy this binding applies."),
        col("ParamRef", "string", "The parameter resource the policy is configured with."),
        AGE,
    ],
    row: policy_binding_row,
};

pub(crate) static MUTATING_ADMISSION_POLICY_BINDING: Printer =
    Printer { columns: VALIDATING_ADMISSION_POLICY_BINDING.columns, row: policy_binding_row };

fn policy_binding_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param = match at(obj, "/spec/paramRef") {
        None => "<unset>".to_string(),
        Some(r) => match (str_at(r, "/name"), str_at(r, "/namespace")) {
            ("", _) => at(r, "/selector").map_or_else(|| "<unset>".to_string(), go_label_selector_struct),
            // Whether the parameter kind is cluster-scoped is unknown here.
            (n, "") => format!("*/{n}"),
            (n, ns) => format!("{ns}/{n}"),
        },
    };
    vec![s(name(obj)), s(str_at(obj, "/spec/policyName")), s(param), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::render;

    #[test]
    fn webhooks_and_policies() {
        let mwc = json!({"metadata": {"name": "istio-sidecar-injector", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "webhooks": [{"name": "a.example.com"}, {"name": "b.example.com"}]});
        assert_eq!(
            render(&MUTATING_WEBHOOK_CONFIGURATION, &mwc),
            [json!("istio-sidecar-injector"), json!(2), json!("60m")]
        );
        assert_eq!(
            render(&VALIDATING_WEBHOOK_CONFIGURATION, &json!({"metadata": {"name": "v"}}))[1],
            json!(0)
        );

        let vap = json!({"metadata": {"name": "replicas"}, "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        assert_eq!(
            render(&VALIDATING_ADMISSION_POLICY, &vap)[..3],
            [json!("replicas"), json!(1), json!("v1/ConfigMap")]
        );
        let map = json!({"metadata": {"name": "m"}, "spec": {"mutations": [{}, {}]}});
        assert_eq!(render(&MUTATING_ADMISSION_POLICY, &map)[1..3], [json!(2), json!("<unset>")]);

        let binding = |param: serde_json::Value| json!({"metadata": {"name": "b"}, "spec": {"policyName": "replicas", "paramRef": param}});
        let cases = [
            (json!({"name": "limits", "namespace": "prod"}), "prod/limits"),
            (json!({"name": "limits"}), "*/limits"),
            (
                json!({"selector": {"matchLabels": {"env": "prod"}}}),
                "&LabelSelector{MatchLabels:map[string]string{env: prod,},MatchExpressions:[]LabelSelectorRequirement{},}",
            ),
            (json!(null), "<unset>"),
        ];
        for (param, want) in cases {
            assert_eq!(
                render(&VALIDATING_ADMISSION_POLICY_BINDING, &binding(param))[1..3],
                [json!("replicas"), json!(want)]
            );
        }
    }
}
