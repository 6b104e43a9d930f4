//! An in-process API server (memory store) and helpers to create nodes and pods, for the
//! scheduler's integration tests and throughput example.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, ServiceAccount, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// A client of a fresh in-process API server, acting as the scheduler. The `default`
/// namespace has its `default` ServiceAccount (no controller runs here to create it,
/// and pods need it).
pub async fn api_server() -> kube::Client {
    let store = Arc::new(store::memory::MemoryStore::default());
    let api = apiserver::Api::new(store, apiserver::Config::default(), apiserver::auth::Authenticator::new())
        .await
        .expect("starting the API server");
    let client = kube::Client::new(
        apiserver::serve::router_as(
            api,
            apiserver::auth::User::new("system:kube-scheduler", &["system:masters"]),
        ),
        "default",
    );
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &account)
        .await
        .expect("creating the default ServiceAccount");
    client
}

pub fn node(name: &str, cpu: &str, mem: &str, taints: Vec<Taint>) -> Node {
    let alloc: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(mem.into())),
        ("pods".to_string(), Quantity("110".into())),
    ]
    .into();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: if taints.is_empty() { None } else { Some(taints) },
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(alloc.clone()),
            allocatable: Some(alloc),
            ..Default::default()
        }),
    }
}

/// Creates a node as a ready kubelet would leave it: its status (allocatable) set, and
/// only its own taints (the API server adds `node.kubernetes.io/not-ready` on creation,
/// which the node lifecycle controller removes once the node is Ready; no such controller
/// runs here).
pub async fn create_node(client: &kube::Client, n: Node) {
    let api: Api<Node> = Api::all(client.clone());
    let name = n.metadata.name.clone().unwrap_or_default();
    let created = api.create(&PostParams::default(), &n).await.expect("creating a node");
    let want = n.spec.as_ref().and_then(|s| s.taints.clone());
    if created.spec.as_ref().and_then(|s| s.taints.clone()) != want {
        let patch = serde_json::json!({"spec": {"taints": want}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("node taints");
    }
    if created.status.as_ref().and_then(|s| s.allocatable.as_ref()).is_none() {
        let patch = serde_json::json!({"status": n.status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("node status");
    }
}

pub fn pod(name: &str, cpu: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), Quantity(cpu.into()));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("nginx".into()),
                resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}
