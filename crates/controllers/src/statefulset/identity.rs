//! A StatefulSet member's stable identity: ordinal names (`<set>-<ordinal>`), the
//! pod-name and pod-index labels, hostname and subdomain, its claims from
//! `volumeClaimTemplates` (`<claim>-<set>-<ordinal>`), its revision label, and how
//! the claims' ownerReferences follow `persistentVolumeClaimRetentionPolicy`
//! (upstream's `stateful_set_utils.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::history::pods;
use crate::runtime::controller_ref;

/// The label holding a member pod's own name (lets a Service select one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a member pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label holding the name of the ControllerRevision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The set's name, or `""`.
pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

/// The parent set name and ordinal encoded in a pod name `<parent>-<digits>`; `("", -1)`
/// for other names, and ordinal -1 when the digits overflow an i32.
pub fn parent_and_ordinal(name: &str) -> (&str, i32) {
    let Some(dash) = name.rfind('-') else { return ("", -1) };
    let digits = &name[dash + 1..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return ("", -1);
    }
    (&name[..dash], digits.parse::<i32>().unwrap_or(-1))
}

/// The ordinal of a pod, -1 if its name has none.
pub fn ordinal_of(pod: &Pod) -> i32 {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).1
}

/// Whether the pod's name says it belongs to `set`.
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).0 == set_name(set)
}

/// `spec.replicas` (1 when unset, as defaulted).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The first ordinal: `spec.ordinals.start`, else 0.
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// The last ordinal in range (`start + replicas - 1`).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set) + replicas(set) - 1
}

/// Whether the pod's ordinal is within `[start, end]`.
pub fn in_ordinal_range(pod: &Pod, set: &StatefulSet) -> bool {
    let o = ordinal_of(pod);
    o >= start_ordinal(set) && o <= end_ordinal(set)
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// `<claim template>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!("{}-{}-{ordinal}", template.metadata.name.as_deref().unwrap_or(""), set_name(set))
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or(&[])
}

/// The claims of the member with this ordinal, paired with their template names, in
/// template order: each template renamed, in the set's namespace, labelled with its own
/// labels plus the selector's `matchLabels`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let match_labels = set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut claim = t.clone();
            claim.metadata.name = Some(claim_name(set, t, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(match_labels.clone());
            claim.metadata.labels = Some(labels);
            // The API server starts a claim's status afresh.
            claim.status = None;
            (t.metadata.name.clone().unwrap_or_default(), claim)
        })
        .collect()
}

/// Whether the pod's name, namespace and identity labels are those of its ordinal.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let (parent, ordinal) = parent_and_ordinal(name);
    let labels = pod.metadata.labels.as_ref();
    ordinal >= 0
        && parent == set_name(set)
        && name == pod_name(set, ordinal)
        && pod.metadata.namespace == set.metadata.namespace
        && labels.and_then(|l| l.get(POD_NAME_LABEL)).map(String::as_str) == Some(name)
        && labels.and_then(|l| l.get(POD_INDEX_LABEL)) == Some(&ordinal.to_string())
}

/// Whether every claim template is mounted as a volume of the template's name that
/// refers to this member's claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ordinal = ordinal_of(pod);
    if ordinal < 0 {
        return false;
    }
    let volumes: BTreeMap<&str, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|v| v.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default();
    claim_templates(set).iter().all(|t| {
        let wanted = claim_name(set, t, ordinal);
        volumes
            .get(t.metadata.name.as_deref().unwrap_or(""))
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|c| c.claim_name == wanted)
    })
}

/// Points the pod's volumes named after claim templates at this member's claims, keeping
/// its other volumes after them.
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let claims = claims_for(set, ordinal_of(pod));
    let spec = pod.spec.get_or_insert_with(Default::default);
    let current = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(current.into_iter().filter(|v| !claims.iter().any(|(t, _)| *t == v.name)));
    spec.volumes = if volumes.is_empty() { None } else { Some(volumes) };
}

/// Sets the pod's name, namespace and identity labels from its ordinal.
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let ordinal = ordinal_of(pod);
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The identity of a new pod: [`update_identity`] plus hostname `<pod>` and subdomain
/// `serviceName` (fields that cannot change once the pod exists).
pub fn init_identity(set: &StatefulSet, pod: &mut Pod) {
    update_identity(set, pod);
    let name = pod.metadata.name.clone();
    let service = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = name;
    spec.subdomain = service;
}

/// The member pod with this ordinal, built from the set's template.
pub fn new_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pods::from_template(&template, set_name(set), Some(controller_ref(set)));
    pod.metadata.name = Some(pod_name(set, ordinal));
    init_identity(set, &mut pod);
    update_storage(set, &mut pod);
    pod
}

/// The revision a pod was made from (its `controller-revision-hash` label), or `""`.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or("")
}

fn set_pod_revision(pod: &mut Pod, revision: &str) {
    pod.metadata.labels.get_or_insert_with(Default::default).insert(REVISION_LABEL.into(), revision.into());
}

fn update_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// The rolling update's partition, if the strategy has a `rollingUpdate` block.
pub fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0))
}

/// Whether the update strategy is OnDelete.
pub fn is_on_delete(set: &StatefulSet) -> bool {
    update_type(set) == "OnDelete"
}

/// A missing member recreated at the right revision: below the partition (or, with no
/// `rollingUpdate` block, below the current replicas) at the current revision, else at
/// the update revision. Upstream's grouping of the condition is kept: a partition
/// applies whatever the strategy type.
pub fn new_versioned_pod(
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current_revision: &str,
    update_revision: &str,
    ordinal: i32,
) -> Pod {
    let start = start_ordinal(current_set);
    let current_replicas = current_set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
    let partition = partition(current_set);
    let below_current = (update_type(current_set) == "RollingUpdate"
        && partition.is_none()
        && ordinal < start + current_replicas)
        || partition.is_some_and(|p| ordinal < start + p);
    if below_current {
        let mut pod = new_pod(current_set, ordinal);
        set_pod_revision(&mut pod, current_revision);
        pod
    } else {
        let mut pod = new_pod(update_set, ordinal);
        set_pod_revision(&mut pod, update_revision);
        pod
    }
}

/// Running with a true Ready condition.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

/// Running and ready for at least `min_ready_seconds`.
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    pods::phase(pod) == "Running" && pods::is_available(pod, min_ready_seconds, now)
}

/// Known to the API server (it has a phase); pods built locally have none.
pub fn is_created(pod: &Pod) -> bool {
    !pods::phase(pod).is_empty()
}

/// Running, ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !pods::is_terminating(pod)
}

/// Not healthy, or not yet ready for `min_ready_seconds`.
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    !is_healthy(pod) || !is_running_and_available(pod, min_ready_seconds, now)
}

/// Parallel pod management lets creates and deletes burst; OrderedReady does not.
pub fn allows_burst(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel")
}

/// The set's claim retention policy, `(whenDeleted, whenScaled)`, each Retain unless
/// it says Delete.
pub fn retention_policy(set: &StatefulSet) -> (Retention, Retention) {
    let p = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let parse = |v: Option<&str>| if v == Some("Delete") { Retention::Delete } else { Retention::Retain };
    (parse(p.and_then(|p| p.when_deleted.as_deref())), parse(p.and_then(|p| p.when_scaled.as_deref())))
}

/// What happens to a claim when its owner goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Retain,
    Delete,
}

fn uid_of<K: Resource>(obj: &K) -> &str {
    obj.meta().uid.as_deref().unwrap_or("")
}

/// Whether `r` names `obj` by kind, apiVersion and name (whatever its UID).
fn matches_ref<K: Resource<DynamicType = ()>>(r: &OwnerReference, obj: &K) -> bool {
    r.api_version == K::api_version(&())
        && r.kind == K::kind(&())
        && Some(&r.name) == obj.meta().name.as_ref()
}

fn has_owner_ref<K: Resource>(claim: &PersistentVolumeClaim, owner: &K) -> bool {
    let uid = uid_of(owner);
    claim.owner_references().iter().any(|r| r.uid == uid)
}

/// A reference naming `obj` but with another UID: left by an earlier object of the same
/// name (or a pod not created yet).
pub fn has_stale_owner_ref<K: Resource<DynamicType = ()>>(claim: &PersistentVolumeClaim, obj: &K) -> bool {
    claim.owner_references().iter().find(|r| matches_ref(r, obj)).is_some_and(|r| r.uid != uid_of(obj))
}

/// Whether, under a policy that deletes anything, something other than this set and pod
/// controls the claim (or a stale reference to either does).
pub fn has_unexpected_controller(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if retention_policy(set) == (Retention::Retain, Retention::Retain) {
        return false;
    }
    for r in claim.owner_references() {
        if matches_ref(r, set) {
            if r.uid != uid_of(set) {
                return true;
            }
            continue;
        }
        if matches_ref(r, pod) {
            if r.uid != uid_of(pod) {
                return true;
            }
            continue;
        }
        if r.controller == Some(true) {
            return true;
        }
    }
    false
}

fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    claim
        .owner_references()
        .iter()
        .any(|r| (r.uid == uid_of(set) || r.uid == uid_of(pod)) && r.controller != Some(true))
}

/// Whether the claim's ownerReferences are what the retention policy asks for: Retain on
/// both, no reference; delete on set deletion, the set; delete on scale-down, the pod once
/// the pod is out of range. Claims with stale references or a foreign controller are left
/// alone (they count as up to date).
pub fn is_claim_owner_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if has_stale_owner_ref(claim, set) || has_stale_owner_ref(claim, pod) {
        return true;
    }
    if has_unexpected_controller(claim, set, pod) {
        return !(has_owner_ref(claim, set) || has_owner_ref(claim, pod));
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let scaled_down = !in_ordinal_range(pod, set);
    let (set_ref, pod_ref) = (has_owner_ref(claim, set), has_owner_ref(claim, pod));
    match retention_policy(set) {
        (Retention::Retain, Retention::Retain) => !set_ref && !pod_ref,
        (Retention::Delete, Retention::Retain) => set_ref && !pod_ref,
        (Retention::Retain, Retention::Delete) => !set_ref && scaled_down == pod_ref,
        (Retention::Delete, Retention::Delete) => scaled_down != set_ref && scaled_down == pod_ref,
    }
}

fn add_controller_ref(refs: &mut Vec<OwnerReference>, r: OwnerReference) {
    if let Some(existing) = refs.iter_mut().find(|x| x.uid == r.uid) {
        existing.controller = Some(true);
    } else {
        refs.push(r);
    }
}

/// Rewrites the claim's references to this set and pod to follow the retention policy
/// (dropping them all when a foreign controller owns the claim).
pub fn update_claim_owner_refs(claim: &mut PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut refs: Vec<OwnerReference> = claim
        .owner_references()
        .iter()
        .filter(|r| !matches_ref(r, set) && !matches_ref(r, pod))
        .cloned()
        .collect();
    if !unexpected {
        let scaled_down = !in_ordinal_range(pod, set);
        match retention_policy(set) {
            (Retention::Retain, Retention::Retain) => {}
            (Retention::Delete, Retention::Retain) => add_controller_ref(&mut refs, controller_ref(set)),
            (Retention::Retain, Retention::Delete) => {
                if scaled_down {
                    add_controller_ref(&mut refs, controller_ref(pod));
                }
            }
            (Retention::Delete, Retention::Delete) => {
                if scaled_down {
                    add_controller_ref(&mut refs, controller_ref(pod));
                } else {
                    add_controller_ref(&mut refs, controller_ref(set));
                }
            }
        }
    }
    claim.metadata.owner_references = if refs.is_empty() { None } else { Some(refs) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn set(replicas: i32, when_deleted: &str, when_scaled: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("set-uid".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..Default::default()
                },
                service_name: Some("nginx".into()),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some(when_deleted.into()),
                        when_scaled: Some(when_scaled.into()),
                    },
                ),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ordinals_are_parsed_from_the_last_dash() {
        let cases = [
            ("web-0", ("web", 0)),
            ("web-12", ("web", 12)),
            ("my-web-3", ("my-web", 3)),
            ("web", ("", -1)),
            ("web-", ("", -1)),
            ("web-x1", ("", -1)),
            ("web-99999999999", ("web", -1)),
        ];
        for (name, want) in cases {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
    }

    #[test]
    fn a_new_pod_carries_its_identity_and_claims() {
        let s = set(3, "Retain", "Retain");
        let pod = new_pod(&s, 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.as_ref().unwrap();
        assert_eq!(vols[0].name, "data");
        assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
        assert!(identity_matches(&s, &pod));
        assert!(storage_matches(&s, &pod));
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].1.metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claims[0].1.metadata.labels.as_ref().unwrap()["app"], "web");
    }

    #[test]
    fn start_ordinal_shifts_the_range() {
        let mut s = set(2, "Retain", "Retain");
        s.spec.as_mut().unwrap().ordinals =
            Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) });
        let in_range = |n: &str| {
            let p = Pod {
                metadata: ObjectMeta { name: Some(n.into()), ..Default::default() },
                ..Default::default()
            };
            in_ordinal_range(&p, &s)
        };
        assert!(!in_range("web-0"));
        assert!(in_range("web-5"));
        assert!(in_range("web-6"));
        assert!(!in_range("web-7"));
    }

    fn member(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn claim_owner_references_follow_the_retention_policy() {
        // (whenDeleted, whenScaled, pod, expected owners by kind)
        let cases = [
            ("Retain", "Retain", "web-0", vec![]),
            ("Delete", "Retain", "web-0", vec!["StatefulSet"]),
            ("Retain", "Delete", "web-0", vec![]),
            ("Retain", "Delete", "web-5", vec!["Pod"]),
            ("Delete", "Delete", "web-0", vec!["StatefulSet"]),
            ("Delete", "Delete", "web-5", vec!["Pod"]),
        ];
        for (wd, ws, pod_name, want) in cases {
            let s = set(3, wd, ws);
            let pod = member(pod_name, "pod-uid");
            let mut claim = claims_for(&s, ordinal_of(&pod)).remove(0).1;
            update_claim_owner_refs(&mut claim, &s, &pod);
            let kinds: Vec<&str> = claim.owner_references().iter().map(|r| r.kind.as_str()).collect();
            assert_eq!(kinds, want, "{wd}/{ws} {pod_name}");
            assert!(is_claim_owner_up_to_date(&claim, &s, &pod), "{wd}/{ws} {pod_name}");
        }
    }

    #[test]
    fn a_claim_controlled_by_someone_else_is_left_alone() {
        let s = set(3, "Delete", "Delete");
        let pod = member("web-0", "pod-uid");
        let mut claim = claims_for(&s, 0).remove(0).1;
        claim.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "other".into(),
            uid: "other-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(has_unexpected_controller(&claim, &s, &pod));
        assert!(is_claim_owner_up_to_date(&claim, &s, &pod));
    }

    #[test]
    fn a_pod_not_created_yet_makes_a_pod_reference_stale() {
        let s = set(3, "Retain", "Delete");
        let old = member("web-1", "old-pod-uid");
        let mut claim = claims_for(&s, 1).remove(0).1;
        claim.metadata.owner_references = Some(vec![controller_ref(&old)]);
        let fresh = new_pod(&s, 1);
        assert!(has_stale_owner_ref(&claim, &fresh));
    }
}
