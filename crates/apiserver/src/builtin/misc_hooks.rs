//! Strategies of smaller kinds: Ingress, NetworkPolicy, StorageClass, PriorityClass.

use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use crate::error::{FieldError, not_supported};
use crate::strategy::Hooks;

pub struct IngressHooks;

impl Hooks<Ingress> for IngressHooks {
    fn prepare_for_create(&self, i: &mut Ingress) {
        i.status = Some(Default::default());
    }

    fn validate(&self, i: &Ingress) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &i.spec else { return vec![FieldError::required("spec", "")] };
        if s.default_backend.is_none() && s.rules.as_ref().is_none_or(|r| r.is_empty()) {
            errs.push(FieldError::invalid(
                "spec.rules",
                json!([]),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        for (i, r) in s.rules.iter().flatten().enumerate() {
            for (j, p) in r.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{j}]");
                match p.path_type.as_str() {
                    "" => errs
                        .push(FieldError::required(format!("{at}.pathType"), "pathType must be specified")),
                    "Exact" | "Prefix" | "ImplementationSpecific" => {}
                    other => errs.push(not_supported(
                        format!("{at}.pathType"),
                        &json!(other),
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                }
                if let Some(path) = &p.path
                    && p.path_type != "ImplementationSpecific"
                    && !path.starts_with('/')
                {
                    errs.push(FieldError::invalid(
                        format!("{at}.path"),
                        path.as_str(),
                        "must be an absolute path",
                    ));
                }
            }
        }
        errs
    }
}

pub struct NetworkPolicyHooks;

impl Hooks<NetworkPolicy> for NetworkPolicyHooks {
    fn default(&self, n: &mut NetworkPolicy) {
        let Some(s) = n.spec.as_mut() else { return };
        if s.policy_types.as_ref().is_none_or(|p| p.is_empty()) {
            let mut t = vec!["Ingress".to_string()];
            if s.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push("Egress".into());
            }
            s.policy_types = Some(t);
        }
        for rule in s.ingress.iter_mut().flatten() {
            for p in rule.ports.iter_mut().flatten() {
                p.protocol.get_or_insert_with(|| "TCP".into());
            }
        }
        for rule in s.egress.iter_mut().flatten() {
            for p in rule.ports.iter_mut().flatten() {
                p.protocol.get_or_insert_with(|| "TCP".into());
            }
        }
    }
}

pub struct StorageClassHooks;

impl Hooks<StorageClass> for StorageClassHooks {
    fn default(&self, s: &mut StorageClass) {
        s.reclaim_policy.get_or_insert_with(|| "Delete".into());
        s.volume_binding_mode.get_or_insert_with(|| "Immediate".into());
    }

    fn validate(&self, s: &StorageClass) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if s.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        }
        if let Some(m) = s.volume_binding_mode.as_deref()
            && !matches!(m, "Immediate" | "WaitForFirstConsumer")
        {
            errs.push(not_supported("volumeBindingMode", &json!(m), &["Immediate", "WaitForFirstConsumer"]));
        }
        errs
    }

    fn validate_update(&self, new: &StorageClass, old: &StorageClass) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.provisioner != old.provisioner {
            errs.push(FieldError::forbidden("provisioner", "updates to provisioner are forbidden."));
        }
        if new.parameters != old.parameters {
            errs.push(FieldError::forbidden("parameters", "updates to parameters are forbidden."));
        }
        errs
    }
}

pub struct PriorityClassHooks;

impl Hooks<PriorityClass> for PriorityClassHooks {
    fn default(&self, p: &mut PriorityClass) {
        p.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".into());
    }

    fn validate(&self, p: &PriorityClass) -> Vec<FieldError> {
        let name = p.metadata.name.clone().unwrap_or_default();
        if name.starts_with("system-") && p.value < 1_000_000_000 {
            return vec![FieldError::forbidden(
                "metadata.name",
                "priority class names with 'system-' prefix are reserved",
            )];
        }
        Vec::new()
    }

    fn validate_update(&self, new: &PriorityClass, old: &PriorityClass) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.value != old.value {
            errs.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        errs
    }
}
