//! The scheduling framework's vocabulary: plugins (as bits of a set), filter statuses with
//! their codes and reasons, the diagnosis of a failed cycle and the FitError message that
//! kubectl shows ("0/3 nodes are available: 1 Insufficient cpu, ...").

use std::collections::BTreeMap;

/// The in-tree plugins this scheduler runs, as bits so that a pod can remember which
/// plugins rejected it (and which cluster events may make it schedulable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Plugin {
    NodeUnschedulable = 1,
    NodeName = 1 << 1,
    TaintToleration = 1 << 2,
    NodeAffinity = 1 << 3,
    NodePorts = 1 << 4,
    NodeResourcesFit = 1 << 5,
    PodTopologySpread = 1 << 6,
    InterPodAffinity = 1 << 7,
    DefaultPreemption = 1 << 8,
    DefaultBinder = 1 << 9,
}

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::NodeUnschedulable => "NodeUnschedulable",
            Plugin::NodeName => "NodeName",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::NodePorts => "NodePorts",
            Plugin::NodeResourcesFit => "NodeResourcesFit",
            Plugin::PodTopologySpread => "PodTopologySpread",
            Plugin::InterPodAffinity => "InterPodAffinity",
            Plugin::DefaultPreemption => "DefaultPreemption",
            Plugin::DefaultBinder => "DefaultBinder",
        }
    }
}

/// A set of plugins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PluginSet(pub u16);

impl PluginSet {
    pub const EMPTY: PluginSet = PluginSet(0);

    pub fn of(plugins: &[Plugin]) -> Self {
        PluginSet(plugins.iter().fold(0, |acc, p| acc | *p as u16))
    }

    pub fn insert(&mut self, p: Plugin) {
        self.0 |= p as u16;
    }

    pub fn contains(self, p: Plugin) -> bool {
        self.0 & p as u16 != 0
    }

    pub fn intersects(self, other: PluginSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The outcome class of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// The node may fit after pods are removed from it (preemption may help).
    Unschedulable,
    /// Removing pods would not help on this node.
    UnschedulableAndUnresolvable,
    Error,
}

/// The result of running a plugin against one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: Option<Plugin>,
}

impl Status {
    pub fn success() -> Self {
        Self { code: Code::Success, reasons: Vec::new(), plugin: None }
    }

    pub fn new(code: Code, plugin: Plugin, reason: impl Into<String>) -> Self {
        Self { code, reasons: vec![reason.into()], plugin: Some(plugin) }
    }

    pub fn unschedulable(plugin: Plugin, reason: impl Into<String>) -> Self {
        Self::new(Code::Unschedulable, plugin, reason)
    }

    pub fn unresolvable(plugin: Plugin, reason: impl Into<String>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, plugin, reason)
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// Why a pod fits nowhere: each node's status (nodes not listed get `absent`), the plugins
/// that rejected it, and the preemption outcome.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub node_to_status: BTreeMap<String, Status>,
    /// The status of nodes missing from `node_to_status`.
    pub absent: Option<Status>,
    pub unschedulable_plugins: PluginSet,
    /// A message from a failing pre-filter (then per-node reasons are not listed).
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
}

/// A pod that fits no node.
#[derive(Clone, Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl std::fmt::Display for FitError {
    /// The message kube-scheduler puts in the PodScheduled condition and the
    /// FailedScheduling event: a sorted histogram of reasons, then the preemption outcome.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let mut hist: BTreeMap<&str, usize> = BTreeMap::new();
            for s in d.node_to_status.values() {
                for r in &s.reasons {
                    *hist.entry(r.as_str()).or_default() += 1;
                }
            }
            if let Some(absent) = &d.absent {
                let missing = self.num_all_nodes.saturating_sub(d.node_to_status.len());
                if missing > 0 {
                    for r in &absent.reasons {
                        *hist.entry(r.as_str()).or_default() += missing;
                    }
                }
            }
            // Sorted as strings ("count reason"), as upstream does.
            let mut parts: Vec<String> = hist.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            if !parts.is_empty() {
                write!(f, " {}.", parts.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}", d.post_filter_msg)?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_is_a_sorted_histogram_then_the_preemption_outcome() {
        let mut d = Diagnosis::default();
        d.node_to_status
            .insert("node-1".into(), Status::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"));
        for n in ["node-2", "node-3"] {
            d.node_to_status.insert(
                n.into(),
                Status::unresolvable(
                    Plugin::TaintToleration,
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
                ),
            );
        }
        d.post_filter_msg =
            "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".into();
        let e = FitError { num_all_nodes: 3, diagnosis: d };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: \
             3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn absent_nodes_count_with_the_default_status() {
        let d = Diagnosis {
            absent: Some(Status::unresolvable(
                Plugin::DefaultPreemption,
                "Preemption is not helpful for scheduling",
            )),
            ..Default::default()
        };
        let e = FitError { num_all_nodes: 2, diagnosis: d };
        assert_eq!(e.to_string(), "0/2 nodes are available: 2 Preemption is not helpful for scheduling.");
    }
}
