//! The scheduler cache: every node with the pods bound to it, kept up to date from the
//! informers, plus pods the scheduler has *assumed* onto a node while their binding is in
//! flight (so that a burst of pods does not oversubscribe a node before the API server
//! reports the bindings), and the pods nominated to nodes by preemption.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::nodeinfo::{NodeInfo, PodInfo};

/// What changed on a node update, for deciding which unschedulable pods to retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub added: bool,
    pub allocatable: bool,
    pub labels: bool,
    pub taints: bool,
    pub unschedulable: bool,
    pub images: bool,
}

impl NodeChange {
    pub fn any(&self) -> bool {
        self.added || self.allocatable || self.labels || self.taints || self.unschedulable || self.images
    }
}

#[derive(Debug)]
struct CachedPod {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// Nodes and their pods. Not synchronized: the scheduler holds it behind one lock.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, CachedPod>,
    /// Pods bound to a node the cache does not know (yet, or any more).
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Image name to the number of nodes that have it.
    image_spread: HashMap<String, usize>,
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node_of: HashMap<String, String>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every known node, in a stable order (changed only by adds and removes).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn image_spread(&self) -> &HashMap<String, usize> {
        &self.image_spread
    }

    fn spread_images(&mut self, images: &HashMap<String, i64>, n: isize) {
        for name in images.keys() {
            let e = self.image_spread.entry(name.clone()).or_insert(0);
            *e = (*e as isize + n).max(0) as usize;
            if *e == 0 {
                self.image_spread.remove(name);
            }
        }
    }

    /// Adds or updates a node; reports what changed.
    pub fn add_node(&mut self, node: Arc<Node>) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(i) = self.index.get(&name).copied() {
            let old = self.nodes[i].node.clone();
            let old_images = std::mem::take(&mut self.nodes[i].images);
            self.spread_images(&old_images, -1);
            self.nodes[i].set_node(node.clone());
            let new_images = self.nodes[i].images.clone();
            self.spread_images(&new_images, 1);
            let spec = |n: &Node| n.spec.clone().unwrap_or_default();
            let (os, ns) = (spec(&old), spec(&node));
            let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
            return NodeChange {
                added: false,
                allocatable: alloc(&old) != alloc(&node),
                labels: old.metadata.labels != node.metadata.labels,
                taints: os.taints != ns.taints,
                unschedulable: os.unschedulable != ns.unschedulable,
                images: old_images.len() != new_images.len()
                    || old_images.keys().any(|k| !new_images.contains_key(k)),
            };
        }
        let mut info = NodeInfo::new(node);
        for p in self.orphans.remove(&name).unwrap_or_default() {
            info.add_pod(p);
        }
        let images = info.images.clone();
        self.spread_images(&images, 1);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        NodeChange { added: true, ..Default::default() }
    }

    /// Removes a node; its pods stay known (as orphans) until they are deleted.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(i) = self.index.remove(name) else { return false };
        let info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        self.spread_images(&info.images, -1);
        if !info.pods.is_empty() {
            self.orphans.insert(name.to_string(), info.pods);
        }
        true
    }

    fn place(&mut self, node: &str, info: Arc<PodInfo>) {
        match self.index.get(node) {
            Some(i) => self.nodes[*i].add_pod(info),
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    fn unplace(&mut self, node: &str, key: &str) {
        match self.index.get(node) {
            Some(i) => {
                self.nodes[*i].remove_pod(key);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(node) {
                    list.retain(|p| p.key != key);
                    if list.is_empty() {
                        self.orphans.remove(node);
                    }
                }
            }
        }
    }

    /// Records a pod the API server reports bound to `info.node_name()`: confirms an
    /// assumed pod, or adds/updates a bound one. Returns the previous info, if any.
    pub fn add_pod(&mut self, info: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let node = info.node_name().to_string();
        let key = info.key.clone();
        self.remove_nominated(&key);
        let old = self.pods.remove(&key);
        if let Some(o) = &old {
            self.unplace(&o.node, &key);
        }
        self.place(&node, info.clone());
        self.pods.insert(key, CachedPod { info, node, assumed: false });
        old.map(|o| o.info)
    }

    /// Forgets a pod (deleted, or finished). Returns it if it was known.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        self.remove_nominated(key);
        let old = self.pods.remove(key)?;
        self.unplace(&old.node, key);
        Some(old.info)
    }

    /// Counts a pod on `node` before its binding is confirmed.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        self.remove_nominated(&key);
        if let Some(o) = self.pods.remove(&key) {
            self.unplace(&o.node, &key);
        }
        self.place(node, info.clone());
        self.pods.insert(key, CachedPod { info, node: node.to_string(), assumed: true });
    }

    /// Undoes [`Cache::assume`] after a failed binding (a confirmed pod is left alone).
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Whether the pod is known as bound or assumed.
    pub fn contains_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Keys of every pod the cache holds (bound or assumed).
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// Node names.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Records that a pending pod waits for room on `node` (its nominatedNodeName).
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_nominated(&info.key);
        if node.is_empty() {
            return;
        }
        self.nominated_node_of.insert(info.key.clone(), node.to_string());
        self.nominated.entry(node.to_string()).or_default().push(info);
    }

    pub fn remove_nominated(&mut self, key: &str) {
        if let Some(node) = self.nominated_node_of.remove(key)
            && let Some(list) = self.nominated.get_mut(&node)
        {
            list.retain(|p| p.key != key);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_for(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn nominated_node_of(&self, key: &str) -> Option<&str> {
        self.nominated_node_of.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bound, node_with_resources, pod_with_requests};

    #[test]
    fn assumed_pods_count_until_forgotten_and_are_confirmed_by_the_informer() {
        let mut c = Cache::new();
        c.add_node(node_with_resources("n1", "4", "8Gi", "110").into());
        let p = Arc::new(PodInfo::new(pod_with_requests("web-1", "1", "1Gi").into()));
        c.assume(p.clone(), "n1");
        assert!(c.is_assumed("default/web-1"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        c.forget("default/web-1");
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
        c.assume(p, "n1");
        let confirmed = Arc::new(PodInfo::new(bound(pod_with_requests("web-1", "1", "1Gi"), "n1").into()));
        c.add_pod(confirmed);
        assert!(!c.is_assumed("default/web-1"));
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        // Forgetting a confirmed pod does nothing.
        c.forget("default/web-1");
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn pods_of_unknown_nodes_wait_for_their_node() {
        let mut c = Cache::new();
        c.add_pod(Arc::new(PodInfo::new(bound(pod_with_requests("a", "1", ""), "late").into())));
        assert!(c.node("late").is_none());
        c.add_node(node_with_resources("late", "4", "8Gi", "110").into());
        assert_eq!(c.node("late").unwrap().requested.milli_cpu, 1000);
        c.add_node(node_with_resources("other", "4", "8Gi", "110").into());
        assert!(c.remove_node("late"));
        assert_eq!(c.nodes().len(), 1);
        assert_eq!(c.node("other").unwrap().name, "other");
        c.add_node(node_with_resources("late", "4", "8Gi", "110").into());
        assert_eq!(c.node("late").unwrap().pods.len(), 1);
        c.remove_pod("default/a");
        assert_eq!(c.node("late").unwrap().pods.len(), 0);
    }

    #[test]
    fn node_updates_report_what_changed() {
        let mut c = Cache::new();
        assert!(c.add_node(node_with_resources("n", "4", "8Gi", "110").into()).added);
        let ch = c.add_node(node_with_resources("n", "8", "8Gi", "110").into());
        assert!(ch.allocatable && !ch.labels && !ch.taints && !ch.added);
        let same = c.add_node(node_with_resources("n", "8", "8Gi", "110").into());
        assert!(!same.any());
    }
}
