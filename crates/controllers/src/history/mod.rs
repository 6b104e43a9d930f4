//! ControllerRevisions, as upstream's `pkg/controller/history` keeps them for StatefulSets
//! and DaemonSets: immutable snapshots of a workload's pod template named
//! `<owner>-<hash>`, numbered by `revision`, labelled with their hash, adopted, compared
//! by content, and pruned down to `revisionHistoryLimit`. Also the pieces both
//! history-keeping controllers share: claiming children by controllerRef
//! ([`claim`]) and judging pods ([`pods`]).

pub mod claim;
pub mod pods;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Map, Value};

use crate::runtime::{controller_of, controller_ref};
use crate::{Error, Result};

/// Waits until an informer's cache has listed once; false if it never will.
///
/// `Store::wait_until_ready` wakes only the task that polled it last, so with caches
/// shared by many controllers a plain wait can sleep forever; waiting in short slices
/// and polling again sidesteps that.
pub async fn cache_synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        if let Ok(ready) =
            tokio::time::timeout(std::time::Duration::from_millis(100), store.wait_until_ready()).await
        {
            return ready.is_ok();
        }
    }
}

/// The text of an API error as Go clients print it (the Status message), for Events.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// [`message`] for a reconcile error.
pub fn error_text(e: &Error) -> String {
    match e {
        Error::Kube(k) => message(k),
        other => other.to_string(),
    }
}

/// The label on a StatefulSet's ControllerRevisions holding the hash of their data.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// `v` with the keys of every object sorted, the way Go's `encoding/json` writes maps,
/// so that equal content always serializes to equal bytes (and hashes).
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(m.len());
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The canonical JSON bytes of `v` (sorted keys, no whitespace).
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&canonical(v)).unwrap_or_default()
}

/// 32-bit FNV-1 (Go's `hash/fnv.New32`).
pub fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    }
    h
}

/// 32-bit FNV-1a (Go's `hash/fnv.New32a`).
pub fn fnv1a_32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: maps every character onto an alphabet without
/// vowels (and without digits that read as vowels), so hashes never spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars().map(|c| ALPHANUMS[(c as usize) % ALPHANUMS.len()] as char).collect()
}

/// The hash of a revision's data: FNV-1 over its canonical JSON, then over the decimal
/// `probe` (the owner's collisionCount) if given, safe-encoded.
pub fn hash_revision(data: &Value, probe: Option<i32>) -> String {
    let bytes = canonical_bytes(data);
    let probe = probe.map(|p| p.to_string()).unwrap_or_default();
    safe_encode(&fnv1_32(&[&bytes, probe.as_bytes()]).to_string())
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes so the name stays within 253.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(223);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &prefix[..cut])
}

/// A new ControllerRevision of `parent` (not yet created): the template's labels plus
/// [`HASH_LABEL`], the parent as controller, `data`, and the revision number; named by
/// the hash of `data` and `collision_count`.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    parent: &K,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = canonical(&data);
    let hash = hash_revision(&data, collision_count);
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), hash.clone());
    let parent_name = parent.meta().name.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&parent_name, &hash)),
            namespace: parent.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(parent)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

fn data_of(r: &ControllerRevision) -> &Value {
    static NULL: Value = Value::Null;
    r.data.as_ref().map(|d| &d.0).unwrap_or(&NULL)
}

/// Orders revisions by revision number, then creation time, then name (upstream's
/// `SortControllerRevisions`; stable).
pub fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| compare_revisions(a, b));
}

fn compare_revisions(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Whether two revisions hold the same data. Hash labels that differ (when both parse as
/// numbers, as upstream checks) make them different without looking further.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let numeric = |r: &ControllerRevision| {
        r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).and_then(|h| h.parse::<i32>().ok())
    };
    if let (Some(x), Some(y)) = (numeric(a), numeric(b))
        && x != y
    {
        return false;
    }
    canonical(data_of(a)) == canonical(data_of(b))
}

/// The revisions whose data equals `needle`'s, in the order given.
pub fn find_equal_revisions(
    revisions: &[Arc<ControllerRevision>],
    needle: &ControllerRevision,
) -> Vec<Arc<ControllerRevision>> {
    revisions.iter().filter(|r| equal_revision(r, needle)).cloned().collect()
}

/// The number for a new revision: one past the last of `sorted`, or 1.
pub fn next_revision(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map(|r| r.revision + 1).unwrap_or(1)
}

/// The revisions in `namespace` matching `selector` that are controlled by `owner_uid`
/// or by nobody (orphans the owner may adopt), as upstream's `ListControllerRevisions`.
pub fn list_revisions(
    store: &Store<ControllerRevision>,
    namespace: &str,
    selector: &apimachinery::labels::Selector,
    owner_uid: &str,
) -> Vec<Arc<ControllerRevision>> {
    store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
        .filter(|r| selector.matches(r.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .filter(|r| controller_of(r.as_ref()).is_none_or(|c| c.uid == owner_uid))
        .collect()
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Creates `revision` for `parent`. When a different revision already holds the name, the
/// collision count is bumped and the name recomputed until the create succeeds or finds
/// an identical revision (which is returned). `collision_count` carries the count the
/// owner must record in its status.
pub async fn create_revision<K>(
    client: &Client,
    parent: &K,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    let ns = parent.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let parent_name = parent.meta().name.clone().unwrap_or_default();
    let mut clone = revision.clone();
    // A runaway loop here would hammer the API server; collisions are rare.
    for _ in 0..100 {
        let hash = hash_revision(data_of(revision), Some(*collision_count));
        clone.metadata.name = Some(revision_name(&parent_name, &hash));
        match api.create(&PostParams::default(), &clone).await {
            Ok(created) => return Ok(created),
            Err(e) if is_already_exists(&e) => {
                let name = clone.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                if canonical(data_of(&existing)) == canonical(data_of(&clone)) {
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!("could not find a free ControllerRevision name for {ns}/{parent_name}")))
}

/// Sets the revision number of an existing revision (a rollback to old content makes
/// it the newest), retrying on conflicts from a fresh read.
pub async fn update_revision_number(
    client: &Client,
    revision: &ControllerRevision,
    new_revision: i64,
) -> Result<ControllerRevision> {
    let ns = revision.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut clone = revision.clone();
    for attempt in 0..5 {
        if clone.revision == new_revision {
            return Ok(clone);
        }
        clone.revision = new_revision;
        match api.replace(&clone.name_any(), &PostParams::default(), &clone).await {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => {
                clone = api.get(&revision.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!("conflicts updating ControllerRevision {ns}/{}", revision.name_any())))
}

/// Deletes a revision; one already gone counts as deleted.
pub async fn delete_revision(client: &Client, revision: &ControllerRevision) -> Result<()> {
    let ns = revision.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    match api.delete(&revision.name_any(), &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use serde_json::json;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // From the FNV reference test suite: "" and "a".
        assert_eq!(fnv1_32(&[b""]), 0x811c9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c5d7e);
        assert_eq!(fnv1a_32(&[b"a"]), 0xe40c292c);
        assert_eq!(fnv1a_32(&[b"foobar"]), 0xbf9cf968);
        assert_eq!(fnv1_32(&[b"foo", b"bar"]), fnv1_32(&[b"foobar"]));
    }

    #[test]
    fn safe_encoding_uses_the_vowel_free_alphabet() {
        // Digits '0'..'9' are bytes 48..57, taken modulo the 27-letter alphabet.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert!(safe_encode("1234567890").chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn hashes_ignore_key_order_and_change_with_the_collision_count() {
        let a = json!({"spec": {"template": {"b": 1, "a": 2}}});
        let b = json!({"spec": {"template": {"a": 2, "b": 1}}});
        assert_eq!(hash_revision(&a, None), hash_revision(&b, None));
        assert_ne!(hash_revision(&a, Some(0)), hash_revision(&a, Some(1)));
        assert_ne!(hash_revision(&a, None), hash_revision(&json!({"spec": {}}), None));
    }

    #[test]
    fn revision_names_cut_long_prefixes_to_223_bytes() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), 225);
    }

    fn rev(name: &str, number: i64, data: Value) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(RawExtension(data)),
            revision: number,
        })
    }

    #[test]
    fn revisions_sort_by_number_then_name_and_the_next_number_follows_the_last() {
        let mut revs = vec![rev("c", 3, json!(1)), rev("b", 1, json!(2)), rev("a", 1, json!(3))];
        sort_revisions(&mut revs);
        let names: Vec<_> = revs.iter().map(|r| r.name_any()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(next_revision(&revs), 4);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn equal_revisions_are_found_by_content() {
        let revs = vec![rev("a", 1, json!({"x": 1, "y": 2})), rev("b", 2, json!({"x": 2}))];
        let needle = rev("new", 3, json!({"y": 2, "x": 1}));
        let found = find_equal_revisions(&revs, &needle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name_any(), "a");
    }

    #[test]
    fn a_new_revision_is_named_after_its_owner_and_hash_and_owned_by_it() {
        let set = StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let labels = BTreeMap::from([("app".to_string(), "nginx".to_string())]);
        let r = new_revision(&set, Some(&labels), json!({"spec": {"template": {}}}), 2, Some(0));
        let hash = hash_revision(&json!({"spec": {"template": {}}}), Some(0));
        assert_eq!(r.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
        assert_eq!(r.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(r.revision, 2);
        let l = r.metadata.labels.unwrap();
        assert_eq!(l["app"], "nginx");
        assert_eq!(l[HASH_LABEL], hash);
        let owner = &r.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("StatefulSet", "uid-1", Some(true))
        );
    }
}
