//! The garbage collector's dependency graph (upstream `graph.go` and the event processing
//! of `graph_builder.go`): one node per object uid, with the ownerReferences it holds and
//! the uids of the objects that name it as an owner. An owner known only from someone's
//! ownerReference is a *virtual* node until its object is observed; virtual nodes are
//! checked against the API server by the attempt-to-delete worker, which turns a missing
//! owner into a virtual delete event, and that makes its dependents candidates for
//! collection. Applying a change returns the work it causes; the graph itself does no I/O.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::discovery::group_of;

/// The finalizer that makes the garbage collector delete dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that makes the garbage collector orphan dependents.
pub const ORPHAN: &str = "orphan";

/// How an object is addressed: its ownerReference coordinates plus its namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// Empty for cluster-scoped objects (and, for virtual nodes, the dependent's namespace
    /// until the owner's scope is known).
    pub namespace: String,
}

impl Identity {
    /// The identity an ownerReference names, for a dependent in `namespace`.
    pub fn of_owner(r: &OwnerReference, namespace: &str) -> Self {
        Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
            namespace: namespace.to_string(),
        }
    }

    /// Whether `r` names this object (same uid, name, kind and API group; the version may differ).
    pub fn matches(&self, r: &OwnerReference) -> bool {
        r.uid == self.uid
            && r.name == self.name
            && r.kind == self.kind
            && group_of(&r.api_version) == group_of(&self.api_version)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// One object in the graph.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub identity: Identity,
    /// The object's ownerReferences as last observed.
    pub owners: Vec<OwnerReference>,
    /// Uids of the objects that name this one as an owner.
    pub dependents: BTreeSet<String>,
    /// False for a virtual node (known only from a dependent's ownerReference).
    pub observed: bool,
    /// Has a deletionTimestamp.
    pub being_deleted: bool,
    /// Being deleted with the `foregroundDeletion` finalizer: waits for its dependents.
    pub deleting_dependents: bool,
    /// Last observed with a deletionTimestamp and the `orphan` finalizer.
    pub orphaning: bool,
}

impl Node {
    /// Dependents whose ownerReference to this node has `blockOwnerDeletion: true`.
    pub fn blocking_dependents<'a>(&self, graph: &'a Graph) -> Vec<&'a Node> {
        self.dependents
            .iter()
            .filter_map(|d| graph.nodes.get(d))
            .filter(|d| {
                d.owners.iter().any(|o| o.uid == self.identity.uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }
}

/// What a watch event says about an object.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Observed {
    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// A change to apply to the graph.
#[derive(Clone, Debug)]
pub enum Change {
    /// The object was added or updated.
    Upsert(Observed),
    /// The object is gone. `virtual_` when the garbage collector concluded it from a live
    /// GET rather than a watch.
    Delete { identity: Identity, virtual_: bool },
}

/// Work a change causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Check whether this uid's object should be deleted (or, deleting dependents, finished).
    AttemptToDelete(String),
    /// Same, after the key's backoff.
    AttemptToDeleteLater(String),
    /// Orphan this owner's dependents, then remove its `orphan` finalizer.
    AttemptToOrphan(String),
}

/// Identities recently verified absent (upstream `absentOwnerCache`, an LRU).
#[derive(Debug)]
pub struct AbsentCache {
    capacity: usize,
    order: VecDeque<Identity>,
    set: HashSet<Identity>,
}

impl AbsentCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, order: VecDeque::new(), set: HashSet::new() }
    }

    pub fn add(&mut self, id: Identity) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn has(&self, id: &Identity) -> bool {
        self.set.contains(id)
    }
}

/// The graph: nodes by uid, and the identities known to be absent.
#[derive(Debug)]
pub struct Graph {
    pub nodes: HashMap<String, Node>,
    pub absent: AbsentCache,
}

impl Default for Graph {
    fn default() -> Self {
        Self { nodes: HashMap::new(), absent: AbsentCache::new(500) }
    }
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Applies a change and returns the work it causes.
    pub fn apply(&mut self, change: Change) -> Vec<Work> {
        let mut work = Vec::new();
        match change {
            Change::Upsert(o) => self.upsert(o, &mut work),
            Change::Delete { identity, virtual_ } => self.delete(identity, virtual_, &mut work),
        }
        work
    }

    fn upsert(&mut self, o: Observed, work: &mut Vec<Work>) {
        let uid = o.identity.uid.clone();
        if !self.nodes.contains_key(&uid) {
            let node = Node {
                identity: o.identity.clone(),
                owners: o.owners.clone(),
                observed: true,
                being_deleted: o.deleting,
                ..Default::default()
            };
            self.nodes.insert(uid.clone(), node);
            self.add_dependent_to_owners(&uid, &o.owners, work);
            self.process_transitions(&o, work);
            return;
        }
        let mut coordinates_changed = false;
        if let Some(n) = self.nodes.get_mut(&uid)
            && !n.observed
        {
            n.observed = true;
            if n.identity != o.identity {
                coordinates_changed = true;
                n.identity = o.identity.clone();
            }
        }
        if coordinates_changed {
            // Dependents that named the owner with other coordinates refer to an object
            // that does not exist; let them be checked again.
            if let Some(n) = self.nodes.get(&uid) {
                for d in &n.dependents {
                    let mismatched = self
                        .nodes
                        .get(d)
                        .map(|dep| dep.owners.iter().any(|r| r.uid == uid && !o.identity.matches(r)))
                        .unwrap_or(false);
                    if mismatched {
                        work.push(Work::AttemptToDelete(d.clone()));
                    }
                }
            }
        }
        let old_owners = self.nodes.get(&uid).map(|n| n.owners.clone()).unwrap_or_default();
        let (added, removed, changed) = diff_owners(&old_owners, &o.owners);
        if !added.is_empty() || !removed.is_empty() || !changed.is_empty() {
            // Owners waiting in foreground for this object may be unblocked now.
            for r in &removed {
                if r.block_owner_deletion == Some(true) {
                    self.wake_if_deleting_dependents(&r.uid, work);
                }
            }
            for (old, new) in &changed {
                if old.block_owner_deletion == Some(true) && new.block_owner_deletion != Some(true) {
                    self.wake_if_deleting_dependents(&new.uid, work);
                }
            }
            if let Some(n) = self.nodes.get_mut(&uid) {
                n.owners = o.owners.clone();
            }
            self.add_dependent_to_owners(&uid, &added, work);
            for r in &removed {
                if let Some(owner) = self.nodes.get_mut(&r.uid) {
                    owner.dependents.remove(&uid);
                }
            }
        }
        if o.deleting
            && let Some(n) = self.nodes.get_mut(&uid)
        {
            n.being_deleted = true;
        }
        self.process_transitions(&o, work);
    }

    fn wake_if_deleting_dependents(&self, owner_uid: &str, work: &mut Vec<Work>) {
        if self.nodes.get(owner_uid).is_some_and(|n| n.deleting_dependents) {
            work.push(Work::AttemptToDelete(owner_uid.to_string()));
        }
    }

    fn add_dependent_to_owners(&mut self, uid: &str, owners: &[OwnerReference], work: &mut Vec<Work>) {
        let namespace = self.nodes.get(uid).map(|n| n.identity.namespace.clone()).unwrap_or_default();
        for r in owners {
            match self.nodes.get_mut(&r.uid) {
                Some(owner) => {
                    owner.dependents.insert(uid.to_string());
                }
                None => {
                    let mut owner =
                        Node { identity: Identity::of_owner(r, &namespace), ..Default::default() };
                    owner.dependents.insert(uid.to_string());
                    self.nodes.insert(r.uid.clone(), owner);
                    // A virtual owner: find out whether it exists.
                    work.push(Work::AttemptToDelete(r.uid.clone()));
                }
            }
        }
    }

    fn process_transitions(&mut self, o: &Observed, work: &mut Vec<Work>) {
        let uid = o.identity.uid.clone();
        let Some(n) = self.nodes.get_mut(&uid) else { return };
        let orphaning = o.deleting && o.has(ORPHAN);
        if orphaning && !n.orphaning {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        n.orphaning = orphaning;
        if o.deleting && o.has(FOREGROUND) && !n.deleting_dependents {
            n.deleting_dependents = true;
            for d in &n.dependents {
                work.push(Work::AttemptToDelete(d.clone()));
            }
            work.push(Work::AttemptToDelete(uid));
        }
    }

    fn delete(&mut self, deleted: Identity, virtual_: bool, work: &mut Vec<Work>) {
        let uid = deleted.uid.clone();
        let Some(existing) = self.nodes.get(&uid).cloned() else { return };
        if virtual_ {
            let (matching, nonmatching): (Vec<String>, Vec<String>) =
                existing.dependents.iter().cloned().partition(|d| {
                    self.nodes
                        .get(d)
                        .map(|dep| dep.owners.iter().any(|r| r.uid == uid && deleted.matches(r)))
                        .unwrap_or(false)
                });
            if existing.observed && existing.identity != deleted {
                // A live object disagrees with the coordinates that were found absent:
                // only the dependents that used those coordinates are affected.
                if !matching.is_empty() {
                    self.absent.add(deleted.clone());
                    work.extend(matching.into_iter().map(Work::AttemptToDelete));
                }
                return;
            }
            if !existing.observed && !nonmatching.is_empty() {
                // Some dependents name this uid with other coordinates: keep the virtual
                // node under one of those and verify it too.
                if !matching.is_empty() {
                    self.absent.add(deleted.clone());
                    work.extend(matching.into_iter().map(Work::AttemptToDelete));
                }
                if existing.identity == deleted {
                    let alternative = nonmatching.iter().find_map(|d| {
                        self.nodes.get(d).and_then(|dep| {
                            dep.owners
                                .iter()
                                .find(|r| r.uid == uid && !deleted.matches(r))
                                .map(|r| Identity::of_owner(r, &dep.identity.namespace))
                        })
                    });
                    if let Some(alt) = alternative {
                        if let Some(n) = self.nodes.get_mut(&uid) {
                            n.identity = alt;
                        }
                        work.push(Work::AttemptToDeleteLater(uid));
                    }
                }
                return;
            }
        }
        self.nodes.remove(&uid);
        for r in &existing.owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(&uid);
            }
        }
        if !existing.dependents.is_empty() {
            self.absent.add(deleted);
        }
        work.extend(existing.dependents.iter().cloned().map(Work::AttemptToDelete));
        for r in &existing.owners {
            self.wake_if_deleting_dependents(&r.uid, work);
        }
    }
}

type Changed = (OwnerReference, OwnerReference);

/// Owner references added, removed, and changed (same uid, other fields), by uid.
pub fn diff_owners(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (Vec<OwnerReference>, Vec<OwnerReference>, Vec<Changed>) {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for n in new {
        match old.iter().find(|o| o.uid == n.uid) {
            None => added.push(n.clone()),
            Some(o) if o != n => changed.push((o.clone(), n.clone())),
            Some(_) => {}
        }
    }
    let removed = old.iter().filter(|o| !new.iter().any(|n| n.uid == o.uid)).cloned().collect();
    (added, removed, changed)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn id(api_version: &str, kind: &str, ns: &str, name: &str, uid: &str) -> Identity {
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
        }
    }

    pub fn owner_ref(of: &Identity, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: of.api_version.clone(),
            kind: of.kind.clone(),
            name: of.name.clone(),
            uid: of.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    pub fn observed(identity: &Identity, owners: Vec<OwnerReference>) -> Observed {
        Observed { identity: identity.clone(), owners, ..Default::default() }
    }

    fn deploy() -> Identity {
        id("apps/v1", "Deployment", "ns", "web", "d1")
    }

    fn rs() -> Identity {
        id("apps/v1", "ReplicaSet", "ns", "web-1", "r1")
    }

    #[test]
    fn an_owner_seen_only_in_a_reference_becomes_a_virtual_node_to_verify() {
        let mut g = Graph::default();
        let work = g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        assert_eq!(work, [Work::AttemptToDelete("d1".into())]);
        let owner = g.get("d1").unwrap();
        assert!(!owner.observed);
        assert_eq!(owner.identity.namespace, "ns");
        assert!(owner.dependents.contains("r1"));
    }

    #[test]
    fn observing_the_owner_makes_the_virtual_node_real_without_work() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        let work = g.apply(Change::Upsert(observed(&deploy(), vec![])));
        assert!(work.is_empty(), "{work:?}");
        assert!(g.get("d1").unwrap().observed);
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents_and_remembers_it_absent() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&deploy(), vec![])));
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        let work = g.apply(Change::Delete { identity: deploy(), virtual_: false });
        assert_eq!(work, [Work::AttemptToDelete("r1".into())]);
        assert!(g.get("d1").is_none());
        assert!(g.absent.has(&deploy()));
    }

    #[test]
    fn an_owner_deleted_in_foreground_queues_itself_and_every_dependent_once() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&deploy(), vec![])));
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        let deleting =
            Observed { deleting: true, finalizers: vec![FOREGROUND.into()], ..observed(&deploy(), vec![]) };
        let work = g.apply(Change::Upsert(deleting.clone()));
        assert_eq!(work, [Work::AttemptToDelete("r1".into()), Work::AttemptToDelete("d1".into())]);
        assert!(g.get("d1").unwrap().deleting_dependents);
        assert!(g.apply(Change::Upsert(deleting)).is_empty(), "a transition fires once");
    }

    #[test]
    fn the_last_blocking_dependent_going_away_wakes_the_waiting_owner() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        g.apply(Change::Upsert(Observed {
            deleting: true,
            finalizers: vec![FOREGROUND.into()],
            ..observed(&deploy(), vec![])
        }));
        assert_eq!(g.get("d1").unwrap().blocking_dependents(&g).len(), 1);
        let work = g.apply(Change::Delete { identity: rs(), virtual_: false });
        assert_eq!(work, [Work::AttemptToDelete("d1".into())]);
        assert!(g.get("d1").unwrap().dependents.is_empty());
    }

    #[test]
    fn unblocking_a_reference_wakes_the_waiting_owner() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        g.apply(Change::Upsert(Observed {
            deleting: true,
            finalizers: vec![FOREGROUND.into()],
            ..observed(&deploy(), vec![])
        }));
        let work = g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), false)])));
        assert_eq!(work, [Work::AttemptToDelete("d1".into())]);
        assert!(g.get("d1").unwrap().blocking_dependents(&g).is_empty());
    }

    #[test]
    fn an_owner_with_the_orphan_finalizer_is_queued_for_orphaning() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        let work = g.apply(Change::Upsert(Observed {
            deleting: true,
            finalizers: vec![ORPHAN.into()],
            ..observed(&deploy(), vec![])
        }));
        assert_eq!(work, [Work::AttemptToOrphan("d1".into())]);
    }

    #[test]
    fn removing_an_owner_reference_detaches_the_dependent() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&deploy(), vec![])));
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
        g.apply(Change::Upsert(observed(&rs(), vec![])));
        assert!(g.get("d1").unwrap().dependents.is_empty());
    }

    #[test]
    fn a_virtual_delete_does_not_remove_a_live_object_named_with_other_coordinates() {
        let mut g = Graph::default();
        g.apply(Change::Upsert(observed(&deploy(), vec![])));
        let wrong = id("apps/v1", "StatefulSet", "ns", "web", "d1");
        g.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&wrong, true)])));
        let work = g.apply(Change::Delete { identity: wrong.clone(), virtual_: true });
        assert_eq!(work, [Work::AttemptToDelete("r1".into())]);
        assert!(g.get("d1").is_some());
        assert!(g.absent.has(&wrong));
    }

    #[test]
    fn owner_references_are_diffed_by_uid() {
        let a = owner_ref(&deploy(), true);
        let b = owner_ref(&rs(), true);
        let a2 = OwnerReference { block_owner_deletion: Some(false), ..a.clone() };
        let (added, removed, changed) = diff_owners(&[a.clone(), b.clone()], std::slice::from_ref(&a2));
        assert!(added.is_empty());
        assert_eq!(removed, [b]);
        assert_eq!(changed, [(a, a2)]);
    }
}
