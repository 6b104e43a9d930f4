//! Strategies of the workload kinds: Deployment, ReplicaSet, StatefulSet, DaemonSet
//! and ReplicationController (defaults, selector rules, immutable fields).

use std::collections::BTreeMap;

use apimachinery::labels::Selector;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDaemonSet,
    RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::core_hooks::validate_pod_spec;
use super::defaults;
use crate::error::{FieldError, not_supported};
use crate::strategy::Hooks;

/// Go's `%#v` rendering of a label map, as Kubernetes prints it in selector errors.
fn go_map(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// The rules every workload's selector and template follow.
pub fn validate_selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    allowed_restart: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let Some(sel) = selector else {
        errs.push(FieldError::required("spec.selector", ""));
        return;
    };
    let sel_json = serde_json::to_value(sel).unwrap_or(Value::Null);
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    if empty {
        errs.push(FieldError::invalid(
            "spec.selector",
            sel_json.clone(),
            "empty selector is invalid for deployment",
        ));
    }
    let parsed = match Selector::from_label_selector(&sel_json) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push(FieldError::invalid("spec.selector", sel_json.clone(), e.to_string()));
            None
        }
    };
    let Some(t) = template else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    if let Some(p) = parsed
        && !empty
        && !p.matches(&labels)
    {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            go_map(&labels),
            "`selector` does not match template `labels`",
        ));
    }
    match &t.spec {
        Some(s) => {
            errs.extend(validate_pod_spec(s, "spec.template.spec"));
            let rp = s.restart_policy.as_deref().unwrap_or("Always");
            if !allowed_restart.contains(&rp) {
                errs.push(not_supported("spec.template.spec.restartPolicy", &json!(rp), allowed_restart));
            }
        }
        None => errs.push(FieldError::required("spec.template.spec", "")),
    }
}

fn non_negative(field: &str, v: Option<i32>, errs: &mut Vec<FieldError>) {
    if let Some(n) = v
        && n < 0
    {
        errs.push(FieldError::invalid(field, n, "must be greater than or equal to 0"));
    }
}

fn selector_immutable(new: Option<&LabelSelector>, old: Option<&LabelSelector>, errs: &mut Vec<FieldError>) {
    if new != old {
        errs.push(FieldError::invalid(
            "spec.selector",
            serde_json::to_value(new).unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

fn pct(s: &str) -> Option<IntOrString> {
    Some(IntOrString::String(s.into()))
}

pub struct DeploymentHooks;

impl Hooks<Deployment> for DeploymentHooks {
    fn default(&self, d: &mut Deployment) {
        let Some(s) = d.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        let st = s.strategy.get_or_insert_with(DeploymentStrategy::default);
        let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
        if ty == "RollingUpdate" {
            let ru = st.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
            if ru.max_unavailable.is_none() {
                ru.max_unavailable = pct("25%");
            }
            if ru.max_surge.is_none() {
                ru.max_surge = pct("25%");
            }
        }
        s.revision_history_limit.get_or_insert(10);
        s.progress_deadline_seconds.get_or_insert(600);
        defaults::pod_template(&mut s.template);
    }

    fn prepare_for_create(&self, d: &mut Deployment) {
        d.status = Some(Default::default());
    }

    fn validate(&self, d: &Deployment) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &d.spec else { return vec![FieldError::required("spec", "")] };
        non_negative("spec.replicas", s.replicas, &mut errs);
        validate_selector_and_template(Some(&s.selector), Some(&s.template), &["Always"], &mut errs);
        if let Some(st) = &s.strategy {
            let ty = st.type_.as_deref().unwrap_or("RollingUpdate");
            if !matches!(ty, "RollingUpdate" | "Recreate") {
                errs.push(not_supported("spec.strategy.type", &json!(ty), &["Recreate", "RollingUpdate"]));
            }
            if ty == "Recreate" && st.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            if let Some(ru) = &st.rolling_update {
                let zero = |v: &Option<IntOrString>| match v {
                    Some(IntOrString::Int(0)) | None => true,
                    Some(IntOrString::String(s)) => s == "0%" || s == "0",
                    _ => false,
                };
                if zero(&ru.max_unavailable) && zero(&ru.max_surge) {
                    errs.push(FieldError::invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        serde_json::to_value(&ru.max_unavailable).unwrap_or(Value::Null),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            selector_immutable(Some(&n.selector), Some(&o.selector), &mut errs);
        }
        errs
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

pub struct ReplicaSetHooks;

impl Hooks<ReplicaSet> for ReplicaSetHooks {
    fn default(&self, r: &mut ReplicaSet) {
        let Some(s) = r.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        if let Some(t) = s.template.as_mut() {
            defaults::pod_template(t);
        }
    }

    fn prepare_for_create(&self, r: &mut ReplicaSet) {
        r.status = Some(Default::default());
        if let Some(st) = r.status.as_mut() {
            st.replicas = 0;
        }
    }

    fn validate(&self, r: &ReplicaSet) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &r.spec else { return vec![FieldError::required("spec", "")] };
        non_negative("spec.replicas", s.replicas, &mut errs);
        validate_selector_and_template(Some(&s.selector), s.template.as_ref(), &["Always"], &mut errs);
        errs
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            selector_immutable(Some(&n.selector), Some(&o.selector), &mut errs);
        }
        errs
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[("status.replicas", "status.replicas")]
    }
}

pub struct StatefulSetHooks;

impl Hooks<StatefulSet> for StatefulSetHooks {
    fn default(&self, ss: &mut StatefulSet) {
        let Some(s) = ss.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        s.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
        let us = s.update_strategy.get_or_insert_with(StatefulSetUpdateStrategy::default);
        let ty = us.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
        if ty == "RollingUpdate" {
            let ru = us.rolling_update.get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
            ru.partition.get_or_insert(0);
        }
        s.revision_history_limit.get_or_insert(10);
        let pr = s
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        pr.when_deleted.get_or_insert_with(|| "Retain".into());
        pr.when_scaled.get_or_insert_with(|| "Retain".into());
        defaults::pod_template(&mut s.template);
        for pvc in s.volume_claim_templates.iter_mut().flatten() {
            if let Some(ps) = pvc.spec.as_mut() {
                ps.volume_mode.get_or_insert_with(|| "Filesystem".into());
            }
            if pvc.status.is_none() {
                pvc.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
                    phase: Some("Pending".into()),
                    ..Default::default()
                });
            }
        }
    }

    fn prepare_for_create(&self, ss: &mut StatefulSet) {
        ss.status = Some(Default::default());
    }

    fn validate(&self, ss: &StatefulSet) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &ss.spec else { return vec![FieldError::required("spec", "")] };
        non_negative("spec.replicas", s.replicas, &mut errs);
        // Pods mount their claims by the templates' names, as volumes the controller adds.
        let mut template = s.template.clone();
        if let Some(spec) = template.spec.as_mut() {
            let volumes = spec.volumes.get_or_insert_with(Vec::new);
            for claim in s.volume_claim_templates.iter().flatten() {
                let name = claim.metadata.name.clone().unwrap_or_default();
                if !name.is_empty() && !volumes.iter().any(|v| v.name == name) {
                    volumes.push(k8s_openapi::api::core::v1::Volume {
                        name: name.clone(),
                        persistent_volume_claim: Some(
                            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                claim_name: name,
                                read_only: None,
                            },
                        ),
                        ..Default::default()
                    });
                }
            }
        }
        validate_selector_and_template(Some(&s.selector), Some(&template), &["Always"], &mut errs);
        if let Some(p) = s.pod_management_policy.as_deref()
            && !matches!(p, "OrderedReady" | "Parallel")
        {
            errs.push(not_supported("spec.podManagementPolicy", &json!(p), &["OrderedReady", "Parallel"]));
        }
        if let Some(t) = s.update_strategy.as_ref().and_then(|u| u.type_.as_deref())
            && !matches!(t, "RollingUpdate" | "OnDelete")
        {
            errs.push(not_supported("spec.updateStrategy.type", &json!(t), &["OnDelete", "RollingUpdate"]));
        }
        errs
    }

    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            let mut n2 = n.clone();
            n2.replicas = o.replicas;
            n2.ordinals = o.ordinals.clone();
            n2.template = o.template.clone();
            n2.update_strategy = o.update_strategy.clone();
            n2.persistent_volume_claim_retention_policy = o.persistent_volume_claim_retention_policy.clone();
            n2.min_ready_seconds = o.min_ready_seconds;
            n2.revision_history_limit = o.revision_history_limit;
            if n2 != *o {
                errs.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        errs
    }
}

/// The annotation recording how often a DaemonSet's template changed.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

pub struct DaemonSetHooks;

impl Hooks<DaemonSet> for DaemonSetHooks {
    fn default(&self, ds: &mut DaemonSet) {
        let Some(s) = ds.spec.as_mut() else { return };
        let us = s.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        let ty = us.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
        if ty == "RollingUpdate" {
            let ru = us.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            if ru.max_unavailable.is_none() {
                ru.max_unavailable = Some(IntOrString::Int(1));
            }
            if ru.max_surge.is_none() {
                ru.max_surge = Some(IntOrString::Int(0));
            }
        }
        s.revision_history_limit.get_or_insert(10);
        defaults::pod_template(&mut s.template);
    }

    fn prepare_for_create(&self, ds: &mut DaemonSet) {
        ds.status = Some(Default::default());
        ds.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_GENERATION.into(), "1".into());
    }

    fn prepare_for_update(&self, new: &mut DaemonSet, old: &DaemonSet) {
        // The template generation counts template changes (kubectl and the controller
        // label daemon pods with it).
        let old_gen: i64 = old
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let changed = new.spec.as_ref().map(|s| &s.template) != old.spec.as_ref().map(|s| &s.template);
        let value = if changed { old_gen + 1 } else { old_gen };
        new.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TEMPLATE_GENERATION.into(), value.to_string());
    }

    fn validate(&self, ds: &DaemonSet) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &ds.spec else { return vec![FieldError::required("spec", "")] };
        validate_selector_and_template(Some(&s.selector), Some(&s.template), &["Always"], &mut errs);
        errs
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            selector_immutable(Some(&n.selector), Some(&o.selector), &mut errs);
        }
        errs
    }
}

pub struct RcHooks;

impl Hooks<ReplicationController> for RcHooks {
    fn default(&self, rc: &mut ReplicationController) {
        let Some(s) = rc.spec.as_mut() else { return };
        s.replicas.get_or_insert(1);
        // The selector defaults to the template's labels (and the labels to them too).
        let tlabels = s.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
        if s.selector.as_ref().is_none_or(|m| m.is_empty())
            && let Some(l) = tlabels.clone()
        {
            s.selector = Some(l);
        }
        if rc.metadata.labels.as_ref().is_none_or(|m| m.is_empty())
            && let Some(l) = tlabels
        {
            rc.metadata.labels = Some(l);
        }
        if let Some(t) = s.template.as_mut() {
            defaults::pod_template(t);
        }
    }

    fn prepare_for_create(&self, rc: &mut ReplicationController) {
        rc.status = Some(Default::default());
    }

    fn validate(&self, rc: &ReplicationController) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &rc.spec else { return vec![FieldError::required("spec", "")] };
        non_negative("spec.replicas", s.replicas, &mut errs);
        let sel = s.selector.clone().unwrap_or_default();
        if sel.is_empty() {
            errs.push(FieldError::required("spec.selector", ""));
        }
        match &s.template {
            None => errs.push(FieldError::required("spec.template", "")),
            Some(t) => {
                let labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
                if !sel.is_empty() && !Selector::from_set(&sel).matches(&labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        go_map(&labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                if let Some(ps) = &t.spec {
                    errs.extend(validate_pod_spec(ps, "spec.template.spec"));
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stateful(mount: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db"},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "x",
                        "volumeMounts": [{"name": mount, "mountPath": "/data"}]}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn stateful_set_pods_may_mount_their_claim_templates() {
        assert!(StatefulSetHooks.validate(&stateful("data")).is_empty());
        let errs = StatefulSetHooks.validate(&stateful("other"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.spec.containers[0].volumeMounts[0].name");
    }
}
