//! Test support: builders for nodes and pods.

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeSpec, NodeStatus, Pod, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PodSpec, ResourceRequirements, Taint, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;

fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

pub fn node_with_resources(name: &str, cpu: &str, mem: &str, pods: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(
                [("cpu".to_string(), q(cpu)), ("memory".to_string(), q(mem)), ("pods".to_string(), q(pods))]
                    .into(),
            ),
            ..Default::default()
        }),
    }
}

pub fn node(name: &str) -> Node {
    node_with_resources(name, "4", "8Gi", "110")
}

/// A node with exactly these labels (and default resources).
pub fn node_with_labels(name: &str, labels: &[(&str, &str)]) -> Node {
    let mut n = node(name);
    n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    n
}

pub fn node_with_images(name: &str, images: &[(&str, i64)]) -> Node {
    let mut n = node(name);
    n.status.as_mut().unwrap().images = Some(
        images
            .iter()
            .map(|(i, size)| ContainerImage { names: Some(vec![i.to_string()]), size_bytes: Some(*size) })
            .collect(),
    );
    n
}

pub fn pod_in(ns: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            labels: if labels.is_empty() {
                None
            } else {
                Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            },
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            scheduler_name: Some("default-scheduler".into()),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn pod(name: &str) -> Pod {
    pod_in("default", name, &[])
}

/// A pod whose one container requests `cpu` and `mem` ("" for none).
pub fn pod_with_requests(name: &str, cpu: &str, mem: &str) -> Pod {
    let mut p = pod(name);
    let mut req = BTreeMap::new();
    if !cpu.is_empty() {
        req.insert("cpu".to_string(), q(cpu));
    }
    if !mem.is_empty() {
        req.insert("memory".to_string(), q(mem));
    }
    p.spec.as_mut().unwrap().containers[0].resources =
        Some(ResourceRequirements { requests: Some(req), ..Default::default() });
    p
}

pub fn pod_with_image(name: &str, image: &str) -> Pod {
    let mut p = pod(name);
    p.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    p
}

pub fn with_priority(mut p: Pod, prio: i32) -> Pod {
    p.spec.as_mut().unwrap().priority = Some(prio);
    p
}

pub fn bound(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p
}

pub fn with_host_port(mut p: Pod, ip: &str, proto: &str, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
        container_port: port,
        host_port: Some(port),
        host_ip: Some(ip.to_string()).filter(|s| !s.is_empty()),
        protocol: Some(proto.to_string()),
        ..Default::default()
    }]);
    p
}

pub fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    Toleration {
        key: opt(key),
        operator: opt(op),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

pub fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: Some(value.to_string()).filter(|s| !s.is_empty()),
        effect: effect.into(),
        time_added: None,
    }
}

pub fn affinity_term(labels: &[(&str, &str)], topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: None,
        }),
        topology_key: topology_key.into(),
        ..Default::default()
    }
}

pub fn with_pod_affinity(mut p: Pod, affinity: Vec<PodAffinityTerm>, anti: Vec<PodAffinityTerm>) -> Pod {
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        pod_affinity: (!affinity.is_empty()).then(|| PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(affinity),
            ..Default::default()
        }),
        pod_anti_affinity: (!anti.is_empty()).then(|| PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(anti),
            ..Default::default()
        }),
        ..Default::default()
    });
    p
}

/// Adds spread constraints `(maxSkew, topologyKey, whenUnsatisfiable)` selecting the pod's
/// own labels.
pub fn spread(mut p: Pod, constraints: &[(i32, &str, &str)]) -> Pod {
    let labels = p.metadata.labels.clone();
    p.spec.as_mut().unwrap().topology_spread_constraints = Some(
        constraints
            .iter()
            .map(|(skew, key, when)| TopologySpreadConstraint {
                max_skew: *skew,
                topology_key: key.to_string(),
                when_unsatisfiable: when.to_string(),
                label_selector: Some(LabelSelector { match_labels: labels.clone(), match_expressions: None }),
                ..Default::default()
            })
            .collect(),
    );
    p
}
