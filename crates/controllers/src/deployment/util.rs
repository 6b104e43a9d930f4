//! Deployment arithmetic and bookkeeping, as upstream's `deploymentutil`: the
//! pod-template-hash, revisions and the annotations kubectl reads, maxSurge/maxUnavailable
//! fenceposts, proportional-scaling fractions, the new/old ReplicaSet split, replica sums
//! and the conditions of a Deployment.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The label (on ReplicaSets, their selectors, templates and pods) that tells the
/// ReplicaSets of one Deployment apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The rollout sequence number of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet served, when it was rolled back to.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when the ReplicaSet was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The deprecated `rollbackTo` of extensions/v1beta1, carried as an annotation.
pub const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// kubectl's last-applied configuration.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Upper bound of the revision-history annotation.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub const ROLLBACK_REVISION_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
pub const ROLLBACK_TEMPLATE_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
pub const ROLLBACK_DONE: &str = "DeploymentRollback";

/// The value of progressDeadlineSeconds and revisionHistoryLimit that means no limit.
pub const MAX_INT32: i32 = i32::MAX;

// ----- accessors ---------------------------------------------------------------------

/// `spec.replicas` of a Deployment (1 when unset, the API default).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet (1 when unset, the API default).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sets `spec.replicas` of a ReplicaSet.
pub fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// The Deployment's pod template (empty when the spec is missing).
pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// `spec.strategy.type`, `RollingUpdate` when unset (the API default).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

/// Whether a progress deadline applies (set and not MaxInt32).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|v| v != MAX_INT32)
}

pub fn progress_deadline_seconds(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(MAX_INT32)
}

/// Whether old ReplicaSets are cleaned up (limit set and not MaxInt32).
pub fn has_revision_history_limit(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.revision_history_limit).is_some_and(|v| v != MAX_INT32)
}

pub fn revision_history_limit(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(MAX_INT32)
}

fn creation(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

// ----- hashing -----------------------------------------------------------------------

const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps each byte of `s` onto consonants and digits that cannot spell words, as
/// upstream's `rand.SafeEncodeString`.
pub fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| SAFE_ALPHANUMS[b as usize % SAFE_ALPHANUMS.len()] as char).collect()
}

fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The pod-template-hash of a template: FNV-32a over the template's canonical
/// serialization (plus the collision count when set), written as upstream writes it
/// (the decimal value run through [`safe_encode`]). Stable for equal templates, changes
/// when the template does.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(&buf, h);
    }
    safe_encode(&h.to_string())
}

// ----- template equality -------------------------------------------------------------

/// Keys whose values are Go maps: empty and absent are the same to upstream's semantic
/// equality.
const MAP_KEYS: &[&str] = &[
    "labels",
    "annotations",
    "nodeSelector",
    "limits",
    "requests",
    "overhead",
    "volumeAttributes",
    "matchLabels",
    "options",
    "attributes",
];

fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (_, child) in m.iter_mut() {
                normalize(child);
            }
            m.retain(|k, child| match child {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !(o.is_empty() && MAP_KEYS.contains(&k.as_str())),
                _ => true,
            });
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn comparable(t: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    normalize(&mut v);
    v
}

/// Whether two templates are equal apart from the pod-template-hash label (absent,
/// null and empty lists and maps count as equal, as upstream's semantic equality).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable(a) == comparable(b)
}

// ----- labels ------------------------------------------------------------------------

/// A copy of `labels` with `key=value` added.
pub fn clone_and_add_label(
    labels: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> BTreeMap<String, String> {
    let mut out = labels.cloned().unwrap_or_default();
    out.insert(key.into(), value.into());
    out
}

/// A copy of `selector` that also requires `key=value`.
pub fn clone_selector_and_add_label(selector: &LabelSelector, key: &str, value: &str) -> LabelSelector {
    let mut out = selector.clone();
    out.match_labels = Some(clone_and_add_label(selector.match_labels.as_ref(), key, value));
    out
}

/// Whether a label selector is the empty one (selects everything).
pub fn selects_everything(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

// ----- revisions and annotations -----------------------------------------------------

/// The revision annotation: 0 when absent, an error when not a number.
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> Result<i64, String> {
    match annotations.and_then(|a| a.get(REVISION)) {
        None => Ok(0),
        Some(v) => v.parse::<i64>().map_err(|e| format!("invalid revision {v:?}: {e}")),
    }
}

pub fn rs_revision(rs: &ReplicaSet) -> Result<i64, String> {
    revision(rs.metadata.annotations.as_ref())
}

/// The highest revision among the ReplicaSets (unparseable ones skipped).
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().filter_map(|rs| rs_revision(rs).ok()).max().unwrap_or(0).max(0)
}

/// The second highest revision among the ReplicaSets (the last one before the current).
pub fn last_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    let (mut max, mut sec) = (0i64, 0i64);
    for v in rss.into_iter().filter_map(|rs| rs_revision(rs).ok()) {
        if v >= max {
            sec = max;
            max = v;
        } else if v > sec {
            sec = v;
        }
    }
    sec
}

/// Sets the Deployment's revision annotation; true when it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let a = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if a.get(REVISION).map(String::as_str) != Some(revision) {
        a.insert(REVISION.into(), revision.into());
        return true;
    }
    false
}

/// Annotations never copied between a Deployment and its ReplicaSets.
pub fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | DEPRECATED_ROLLBACK_TO
    )
}

/// Copies the Deployment's annotations (all but the skipped ones) onto the ReplicaSet;
/// true when any changed.
fn copy_deployment_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || target.get(k) == Some(v) {
            continue;
        }
        target.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Replaces the Deployment's annotations with the ReplicaSet's (keeping the skipped
/// ones of the Deployment): what a rollback to that ReplicaSet carries over.
pub fn set_deployment_annotations_to(d: &mut Deployment, rs: &ReplicaSet) {
    let mut out: BTreeMap<String, String> = d
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| skip_copy_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in rs.metadata.annotations.iter().flatten() {
        if !skip_copy_annotation(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = Some(out);
}

/// Brings a (new or existing) new ReplicaSet's annotations up to date: the Deployment's
/// copyable annotations, the revision raised to `new_revision` when lower (remembering
/// the old one in revision-history, bounded by `limit_chars`), and for a ReplicaSet not
/// yet created the replica annotations. True when anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    limit_chars: usize,
) -> bool {
    let mut changed = copy_deployment_annotations(d, rs);
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old_revision = annotations.get(REVISION).cloned();
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    let Ok(new_int) = new_revision.parse::<i64>() else { return false };
    if old_int < new_int {
        annotations.insert(REVISION.into(), new_revision.into());
        changed = true;
    }
    if let Some(old) = old_revision.filter(|_| old_int < new_int) {
        let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
        if history.is_empty() {
            annotations.insert(REVISION_HISTORY.into(), old);
        } else {
            let parts: Vec<&str> = history.split(',').collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > limit_chars && start < parts.len() {
                total -= parts[start].len() + 1;
                start += 1;
            }
            if total <= limit_chars {
                let mut kept: Vec<&str> = parts[start..].to_vec();
                kept.push(&old);
                annotations.insert(REVISION_HISTORY.into(), kept.join(","));
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse::<i64>().ok().map(|v| v as i32)
}

/// The desired-replicas annotation.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS)
}

/// Sets desired-replicas and max-replicas; true when either changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired.to_string()), (MAX_REPLICAS, max.to_string())] {
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// Whether desired-replicas or max-replicas differ from the given values.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.as_ref();
    a.and_then(|a| a.get(DESIRED_REPLICAS)) != Some(&desired.to_string())
        || a.and_then(|a| a.get(MAX_REPLICAS)) != Some(&max.to_string())
}

// ----- surge and unavailability ------------------------------------------------------

/// An int-or-percent scaled against `total`: percentages rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let pct: i64 = num
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: invalid value {s:?}: {e}"))?;
            let x = pct as f64 * f64::from(total) / 100.0;
            Ok(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// maxSurge and maxUnavailable resolved together against `desired`: surge rounded up,
/// unavailable down, and unavailable forced to 1 if both come out zero.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.as_ref());
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref());
    // Validation rejects values that do not resolve.
    resolve_fenceposts(surge, unavailable, replicas(d)).unwrap_or((0, 0))
}

/// The surge pods a rolling Deployment may run (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// The unavailable pods a rolling Deployment may have (0 for Recreate or 0 replicas),
/// never more than `spec.replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

// ----- finding ReplicaSets -----------------------------------------------------------

/// Upstream's ReplicaSetsByCreationTimestamp: older first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    creation(a).cmp(&creation(b)).then_with(|| name(a).cmp(name(b)))
}

/// Larger first; equal sizes older first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

/// Larger first; equal sizes newer first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

/// Lower revision first; unparseable or equal revisions by creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (rs_revision(a), rs_revision(b)) {
        (Ok(x), Ok(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

/// The ReplicaSet whose template is the Deployment's (the oldest such, should several
/// exist).
pub fn find_new_replica_set(d: &Deployment, rss: &[ReplicaSet]) -> Option<ReplicaSet> {
    let t = template(d);
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|rt| equal_ignore_hash(rt, &t))
        })
        .cloned()
}

/// Every ReplicaSet but the new one.
pub fn find_old_replica_sets(d: &Deployment, rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new_replica_set(d, rss).and_then(|rs| rs.metadata.uid);
    rss.iter().filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid).cloned().collect()
}

/// ReplicaSets with `spec.replicas > 0`.
pub fn active<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> Vec<ReplicaSet> {
    rss.into_iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect()
}

/// The only active ReplicaSet, or the newest one when none is active; `None` when more
/// than one is active (they are then scaled proportionally).
pub fn find_active_or_latest(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut olds = old.to_vec();
    olds.sort_by(|a, b| by_creation(b, a));
    let all: Vec<ReplicaSet> = olds.iter().chain(new_rs).cloned().collect();
    let act = active(&all);
    match act.len() {
        0 => new_rs.cloned().or_else(|| olds.first().cloned()),
        1 => act.into_iter().next(),
        _ => None,
    }
}

/// Copies the ReplicaSet template (less the hash label) into the Deployment.
pub fn set_from_replica_set_template(d: &mut Deployment, t: &PodTemplateSpec) {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if let Some(spec) = d.spec.as_mut() {
        spec.template = t;
    }
}

// ----- counting ----------------------------------------------------------------------

pub fn sum_spec_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

pub fn sum_actual_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_status_replicas).sum()
}

pub fn sum_ready_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_ready).sum()
}

pub fn sum_available_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_available).sum()
}

/// How big the new ReplicaSet should be now: for RollingUpdate as much as the surge
/// allows without passing `spec.replicas`; for Recreate `spec.replicas`.
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> Result<i32, String> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge_value = d
                .spec
                .as_ref()
                .and_then(|s| s.strategy.as_ref())
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_surge.clone())
                .unwrap_or(IntOrString::Int(0));
            let surge = scaled_value(&surge_value, replicas(d), true)?;
            let current = sum_spec_replicas(all);
            let max_total = replicas(d) + surge;
            if current >= max_total {
                return Ok(rs_replicas(new_rs));
            }
            let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
            Ok(rs_replicas(new_rs) + up)
        }
        "Recreate" => Ok(replicas(d)),
        other => Err(format!("deployment type {other} isn't supported")),
    }
}

/// Whether the new ReplicaSet holds all desired replicas, all available, and agrees (by
/// its desired-replicas annotation) that it should.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) = rs.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS)) else {
        return false;
    };
    let Ok(desired) = desired.parse::<i64>() else { return false };
    rs_replicas(rs) == replicas(d) && desired as i32 == replicas(d) && rs_available(rs) == replicas(d)
}

/// The share of `to_add` (positive or negative) this ReplicaSet takes in a proportional
/// scale, bounded so the running total never passes `to_add`.
pub fn get_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = int_annotation(rs, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

// ----- conditions and progress -------------------------------------------------------

/// A condition stamped `now` (whole seconds, as the API keeps it).
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    let t = Time(crate::replicaset::reconcile::whole_seconds(now));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
        reason: Some(reason.into()),
        message: Some(message.into()),
    }
}

pub fn get_condition<'a>(
    status: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets a condition; no change when one of that type has the same status and reason;
/// keeps the transition time when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conditions.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// A ReplicaSet condition promoted to the Deployment.
pub fn rs_to_deployment_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        last_transition_time: c.last_transition_time.clone(),
        last_update_time: c.last_transition_time.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

fn st(s: &DeploymentStatus) -> (i32, i32, i32, i64) {
    (
        s.updated_replicas.unwrap_or(0),
        s.replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        s.observed_generation.unwrap_or(0),
    )
}

/// All desired replicas updated and available, no old ones left, generation observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let (updated, total, available, observed) = st(status);
    let want = replicas(d);
    updated == want && total == want && available == want && observed >= d.metadata.generation.unwrap_or(0)
}

/// Whether the new status shows progress over the Deployment's current one: more
/// updated, fewer old, more ready or more available replicas.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Whether the Deployment has gone `progressDeadlineSeconds` without progress since its
/// Progressing condition was last updated (or already timed out).
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(Some(new), PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref().map(|t| t.0) else { return false };
    let deadline = jiff::SignedDuration::from_secs(i64::from(progress_deadline_seconds(d)));
    from.checked_add(deadline).is_ok_and(|at| at < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ios(s: &str) -> IntOrString {
        match s.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        // (maxSurge, maxUnavailable, desired) -> (surge, unavailable), cases from the
        // upstream ResolveFenceposts docs and tests.
        let cases = [
            ("25%", "25%", 10, (3, 2)),
            ("25%", "25%", 3, (1, 0)),
            ("0%", "1%", 2, (0, 1)),
            ("0%", "1%", 1, (0, 1)),
            ("1%", "25%", 2, (1, 0)),
            ("1%", "0%", 1, (1, 0)),
            ("0", "0", 5, (0, 1)),
            ("2", "50%", 5, (2, 2)),
            ("100%", "0", 4, (4, 0)),
        ];
        for (s, u, desired, want) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&ios(s)), Some(&ios(u)), desired),
                Ok(want),
                "{s} {u} {desired}"
            );
        }
        assert!(resolve_fenceposts(Some(&IntOrString::String("5".into())), None, 3).is_err());
    }

    fn tmpl(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_template_hash_is_stable_short_and_follows_the_template() {
        let a = compute_hash(&tmpl("nginx:1"), None);
        assert_eq!(a, compute_hash(&tmpl("nginx:1"), None));
        assert_ne!(a, compute_hash(&tmpl("nginx:2"), None));
        assert_ne!(a, compute_hash(&tmpl("nginx:1"), Some(1)));
        assert!(a.len() <= 10 && !a.is_empty());
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{a}");
        // Upstream's encoding of the decimal digits of an FNV-32a sum.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn templates_differing_only_in_the_hash_label_or_empty_maps_are_equal() {
        let a = tmpl("nginx:1");
        let mut b = a.clone();
        b.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), "abc".into());
        b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        assert!(equal_ignore_hash(&a, &b));
        assert!(!equal_ignore_hash(&a, &tmpl("nginx:2")));
    }

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(ios(surge)),
                        max_unavailable: Some(ios(unavailable)),
                    }),
                }),
                template: tmpl("nginx:1"),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, max_replicas: Option<i32>) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: max_replicas.map(|m| [(MAX_REPLICAS.to_string(), m.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // A 10-replica deployment (surge 3 -> 13 max) scaled to 20 (surge 5 -> 25 max),
        // with old=8, new=5: each gets its share of the 12 to add.
        let d = deployment(20, "25%", "25%");
        let old = rs("old", 8, Some(13));
        let new = rs("new", 5, Some(13));
        assert_eq!(get_proportion(&old, &d, 12, 0), 7);
        assert_eq!(get_proportion(&new, &d, 12, 7), 5);
        // Never more than what is left to add, and zero-sized sets take nothing.
        assert_eq!(get_proportion(&old, &d, 3, 0), 3);
        assert_eq!(get_proportion(&rs("empty", 0, Some(13)), &d, 12, 0), 0);
        // Scaling to zero takes everything.
        let zero = deployment(0, "25%", "25%");
        assert_eq!(get_proportion(&old, &zero, -13, 0), -8);
    }

    #[test]
    fn rolling_update_never_exceeds_max_surge() {
        // (desired, surge, current sizes of old+new, new size) -> new RS size
        let cases = [
            (10, "25%", 10, 0, 3),
            (10, "25%", 13, 3, 3),
            (10, "25%", 12, 3, 4),
            (3, "1", 3, 0, 1),
            (3, "100%", 3, 0, 3),
            (3, "100%", 4, 2, 3),
        ];
        for (desired, surge, total, new_size, want) in cases {
            let d = deployment(desired, surge, "0");
            let new = rs("new", new_size, None);
            let old = rs("old", total - new_size, None);
            let got = new_rs_new_replicas(&d, &[old, new.clone()], &new).unwrap();
            assert_eq!(got, want, "desired {desired} surge {surge} total {total} new {new_size}");
            assert!(got + total - new_size <= desired + scaled_value(&ios(surge), desired, true).unwrap());
        }
    }

    #[test]
    fn a_rolled_back_replica_set_gets_the_next_revision_and_remembers_its_old_one() {
        let mut d = deployment(3, "25%", "25%");
        d.metadata.annotations = Some(
            [
                ("kubernetes.io/change-cause".to_string(), "v1".to_string()),
                (REVISION.to_string(), "3".to_string()),
            ]
            .into(),
        );
        let mut r = rs("web-1", 0, None);
        r.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_replica_set_annotations(&d, &mut r, "4", true, MAX_REV_HISTORY_CHARS));
        let a = r.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "4");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "v1");
        assert!(!a.contains_key(DESIRED_REPLICAS), "existing sets keep their replica annotations");

        let mut fresh = rs("web-2", 0, None);
        set_new_replica_set_annotations(&d, &mut fresh, "1", false, MAX_REV_HISTORY_CHARS);
        let a = fresh.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
    }

    #[test]
    fn last_revision_is_the_second_highest() {
        let mk = |rev: &str| {
            let mut r = rs("x", 0, None);
            r.metadata.annotations = Some([(REVISION.to_string(), rev.to_string())].into());
            r
        };
        let all = [mk("1"), mk("5"), mk("3")];
        assert_eq!(max_revision(&all), 5);
        assert_eq!(last_revision(&all), 3);
    }
}
