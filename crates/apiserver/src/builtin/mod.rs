//! The built-in resources: every kind kubectl users touch, registered from its
//! `k8s-openapi` type with its names, subresources and strategy.

use std::sync::Arc;

use apimachinery::validation::NameRule;
use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscalingv1, autoscaling::v2 as autoscalingv2, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::registry::{Printer, Registry, Resource, ScalePaths, Schema, StorageInfo};
use crate::strategy::{Hooks, Plain, Strategy, Typed};
use crate::{Api, ApiResult};

pub mod admission;
pub mod apps_hooks;
pub mod batch_hooks;
pub mod convert;
pub mod core_hooks;
pub mod defaults;
pub mod misc_hooks;
pub mod quota;

/// A function that adds a kind's schema (and everything it references) to a generator.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// How one built-in kind is served, beyond what its type says.
pub struct Def {
    pub short: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub status: bool,
    pub generation: bool,
    pub scale: bool,
    pub rule: NameRule,
    pub strategy: Arc<dyn Strategy>,
    pub extra: Vec<(&'static str, &'static str, Vec<&'static str>)>,
    pub create_on_update: bool,
    pub return_deleted: bool,
    /// Share another resource's storage (group, plural) instead of having one's own.
    pub storage: Option<Arc<StorageInfo>>,
    pub verbs: Vec<&'static str>,
}

const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl Def {
    pub fn new(strategy: Arc<dyn Strategy>) -> Self {
        Self {
            short: &[],
            categories: &[],
            status: false,
            generation: false,
            scale: false,
            rule: NameRule::Dns1123Subdomain,
            strategy,
            extra: Vec::new(),
            create_on_update: false,
            return_deleted: false,
            storage: None,
            verbs: ALL_VERBS.to_vec(),
        }
    }
    fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short = s;
        self
    }
    fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }
    fn status(mut self) -> Self {
        self.status = true;
        self
    }
    fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
    fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    fn rule(mut self, r: NameRule) -> Self {
        self.rule = r;
        self
    }
    fn extra(mut self, name: &'static str, kind: &'static str, verbs: &[&'static str]) -> Self {
        self.extra.push((name, kind, verbs.to_vec()));
        self
    }
    fn create_on_update(mut self) -> Self {
        self.create_on_update = true;
        self
    }
    fn return_deleted(mut self) -> Self {
        self.return_deleted = true;
        self
    }
    fn storage(mut self, s: Arc<StorageInfo>) -> Self {
        self.storage = Some(s);
        self
    }
}

fn typed<T, H>(hooks: H) -> Arc<dyn Strategy>
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + Send + Sync + 'static,
    H: Hooks<T>,
{
    Arc::new(Typed::<T, H>::new(hooks))
}

fn plain<T>() -> Arc<dyn Strategy>
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    typed::<T, Plain>(Plain)
}

fn schema_of<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// Registers one built-in kind.
pub fn add<T>(r: &Registry, def: Def) -> Arc<Resource>
where
    T: k8s_openapi::Resource + k8s_openapi::ListableResource + schemars::JsonSchema,
{
    let namespaced = std::any::type_name::<T::Scope>().ends_with("NamespaceResourceScope");
    let storage = def
        .storage
        .unwrap_or_else(|| Arc::new(StorageInfo::new(T::GROUP, T::URL_PATH_SEGMENT, namespaced, T::VERSION)));
    let scale = def.scale.then(|| ScalePaths {
        spec_replicas: "spec.replicas".into(),
        status_replicas: "status.replicas".into(),
        label_selector: None,
        selector_object: Some("spec.selector".into()),
    });
    let definition = T::schema_name().to_string();
    let printer = match printers::printer_for(T::GROUP, T::KIND) {
        Some(p) => Printer::Builtin(p),
        None => Printer::Default,
    };
    r.add(Resource {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        kind: T::KIND.into(),
        list_kind: T::LIST_KIND.into(),
        plural: T::URL_PATH_SEGMENT.into(),
        singular: T::KIND.to_lowercase(),
        namespaced,
        short_names: def.short.iter().map(|s| s.to_string()).collect(),
        categories: def.categories.iter().map(|s| s.to_string()).collect(),
        verbs: def.verbs,
        status_subresource: def.status,
        scale,
        tracks_generation: def.generation,
        storage,
        strategy: def.strategy,
        printer,
        schema: Schema::Definition(definition.clone()),
        definition: Some(definition),
        schema_fn: Some(schema_of::<T>),
        extra_subresources: def.extra,
        name_rule: def.rule,
        allow_create_on_update: def.create_on_update,
        return_deleted_object: def.return_deleted,
    })
}

/// Registers every built-in resource.
pub fn register_all(r: &Registry) {
    use NameRule::*;
    // core/v1
    add::<core::Pod>(
        r,
        Def::new(typed::<core::Pod, _>(core_hooks::PodHooks))
            .short(&["po"])
            .all()
            .status()
            .return_deleted()
            .extra("binding", "Binding", &["create"])
            .extra("eviction", "Eviction", &["create"])
            .extra("log", "Pod", &["get"])
            .extra("exec", "PodExecOptions", &["create", "get"])
            .extra("attach", "PodAttachOptions", &["create", "get"])
            .extra("portforward", "PodPortForwardOptions", &["create", "get"])
            .extra("proxy", "PodProxyOptions", &["create", "delete", "get", "patch", "update"])
            .extra("ephemeralcontainers", "Pod", &["get", "patch", "update"]),
    );
    add::<core::Service>(
        r,
        Def::new(typed::<core::Service, _>(core_hooks::ServiceHooks))
            .short(&["svc"])
            .all()
            .status()
            .rule(Dns1035Label)
            .return_deleted()
            .extra("proxy", "ServiceProxyOptions", &["create", "delete", "get", "patch", "update"]),
    );
    add::<core::Endpoints>(r, Def::new(plain::<core::Endpoints>()).short(&["ep"]).create_on_update());
    add::<core::Namespace>(
        r,
        Def::new(typed::<core::Namespace, _>(core_hooks::NamespaceHooks))
            .short(&["ns"])
            .status()
            .rule(Dns1123Label)
            .return_deleted()
            .extra("finalize", "Namespace", &["update"]),
    );
    add::<core::Node>(
        r,
        Def::new(typed::<core::Node, _>(core_hooks::NodeHooks)).short(&["no"]).status().extra(
            "proxy",
            "NodeProxyOptions",
            &["create", "delete", "get", "patch", "update"],
        ),
    );
    add::<core::ConfigMap>(
        r,
        Def::new(typed::<core::ConfigMap, _>(core_hooks::ConfigMapHooks)).short(&["cm"]),
    );
    add::<core::Secret>(r, Def::new(typed::<core::Secret, _>(core_hooks::SecretHooks)));
    add::<core::ServiceAccount>(
        r,
        Def::new(plain::<core::ServiceAccount>()).short(&["sa"]).create_on_update().extra(
            "token",
            "TokenRequest",
            &["create"],
        ),
    );
    add::<core::Event>(
        r,
        Def::new(typed::<core::Event, _>(core_hooks::EventHooks)).short(&["ev"]).create_on_update(),
    );
    add::<core::PersistentVolume>(
        r,
        Def::new(typed::<core::PersistentVolume, _>(core_hooks::PvHooks)).short(&["pv"]).status(),
    );
    add::<core::PersistentVolumeClaim>(
        r,
        Def::new(typed::<core::PersistentVolumeClaim, _>(core_hooks::PvcHooks)).short(&["pvc"]).status(),
    );
    add::<core::LimitRange>(r, Def::new(plain::<core::LimitRange>()).short(&["limits"]).create_on_update());
    add::<core::ResourceQuota>(r, Def::new(plain::<core::ResourceQuota>()).short(&["quota"]).status());
    add::<core::ReplicationController>(
        r,
        Def::new(typed::<core::ReplicationController, _>(apps_hooks::RcHooks))
            .short(&["rc"])
            .all()
            .status()
            .generation()
            .scale(),
    );
    add::<core::PodTemplate>(r, Def::new(typed::<core::PodTemplate, _>(core_hooks::PodTemplateHooks)));
    // apps/v1
    add::<apps::Deployment>(
        r,
        Def::new(typed::<apps::Deployment, _>(apps_hooks::DeploymentHooks))
            .short(&["deploy"])
            .all()
            .status()
            .generation()
            .scale(),
    );
    add::<apps::ReplicaSet>(
        r,
        Def::new(typed::<apps::ReplicaSet, _>(apps_hooks::ReplicaSetHooks))
            .short(&["rs"])
            .all()
            .status()
            .generation()
            .scale(),
    );
    add::<apps::StatefulSet>(
        r,
        Def::new(typed::<apps::StatefulSet, _>(apps_hooks::StatefulSetHooks))
            .short(&["sts"])
            .all()
            .status()
            .generation()
            .scale(),
    );
    add::<apps::DaemonSet>(
        r,
        Def::new(typed::<apps::DaemonSet, _>(apps_hooks::DaemonSetHooks))
            .short(&["ds"])
            .all()
            .status()
            .generation(),
    );
    add::<apps::ControllerRevision>(r, Def::new(plain::<apps::ControllerRevision>()));
    // batch/v1
    add::<batch::Job>(r, Def::new(typed::<batch::Job, _>(batch_hooks::JobHooks)).all().status().generation());
    add::<batch::CronJob>(
        r,
        Def::new(typed::<batch::CronJob, _>(batch_hooks::CronJobHooks))
            .short(&["cj"])
            .all()
            .status()
            .generation(),
    );
    // autoscaling: stored as v2, served as v2 (preferred) and v1.
    let hpa = add::<autoscalingv2::HorizontalPodAutoscaler>(
        r,
        Def::new(plain::<autoscalingv2::HorizontalPodAutoscaler>()).short(&["hpa"]).all().status(),
    );
    add::<autoscalingv1::HorizontalPodAutoscaler>(
        r,
        Def::new(Arc::new(convert::HpaV1)).short(&["hpa"]).all().status().storage(hpa.storage.clone()),
    );
    r.set_group_versions("autoscaling", vec!["v2".into(), "v1".into()]);
    // networking.k8s.io/v1
    add::<networking::Ingress>(
        r,
        Def::new(typed::<networking::Ingress, _>(misc_hooks::IngressHooks))
            .short(&["ing"])
            .status()
            .generation(),
    );
    add::<networking::IngressClass>(r, Def::new(plain::<networking::IngressClass>()));
    add::<networking::NetworkPolicy>(
        r,
        Def::new(typed::<networking::NetworkPolicy, _>(misc_hooks::NetworkPolicyHooks))
            .short(&["netpol"])
            .generation(),
    );
    // policy/v1
    add::<policy::PodDisruptionBudget>(
        r,
        Def::new(plain::<policy::PodDisruptionBudget>()).short(&["pdb"]).status().generation(),
    );
    // rbac.authorization.k8s.io/v1
    add::<rbac::ClusterRole>(r, Def::new(plain::<rbac::ClusterRole>()).rule(PathSegment).create_on_update());
    add::<rbac::ClusterRoleBinding>(
        r,
        Def::new(plain::<rbac::ClusterRoleBinding>()).rule(PathSegment).create_on_update(),
    );
    add::<rbac::Role>(r, Def::new(plain::<rbac::Role>()).rule(PathSegment).create_on_update());
    add::<rbac::RoleBinding>(r, Def::new(plain::<rbac::RoleBinding>()).rule(PathSegment).create_on_update());
    // coordination.k8s.io/v1
    add::<coordination::Lease>(r, Def::new(plain::<coordination::Lease>()));
    // discovery.k8s.io/v1
    add::<discovery::EndpointSlice>(r, Def::new(plain::<discovery::EndpointSlice>()).generation());
    // events.k8s.io/v1: the same events as core/v1, another shape.
    let core_events = r.get("", "v1", "events").map(|r| r.storage.clone());
    let mut ev = Def::new(Arc::new(convert::EventsV1)).short(&["ev"]);
    if let Some(s) = core_events {
        ev = ev.storage(s);
    }
    add::<events::Event>(r, ev);
    // storage.k8s.io/v1
    add::<storage::StorageClass>(
        r,
        Def::new(typed::<storage::StorageClass, _>(misc_hooks::StorageClassHooks)).short(&["sc"]),
    );
    add::<storage::CSIDriver>(r, Def::new(plain::<storage::CSIDriver>()));
    add::<storage::CSINode>(r, Def::new(plain::<storage::CSINode>()));
    add::<storage::CSIStorageCapacity>(r, Def::new(plain::<storage::CSIStorageCapacity>()));
    add::<storage::VolumeAttachment>(r, Def::new(plain::<storage::VolumeAttachment>()).status());
    // scheduling.k8s.io/v1
    add::<scheduling::PriorityClass>(
        r,
        Def::new(typed::<scheduling::PriorityClass, _>(misc_hooks::PriorityClassHooks)).short(&["pc"]),
    );
    // node.k8s.io/v1
    add::<node::RuntimeClass>(r, Def::new(plain::<node::RuntimeClass>()));
    // admissionregistration.k8s.io/v1
    add::<admissionregistration::MutatingWebhookConfiguration>(
        r,
        Def::new(plain::<admissionregistration::MutatingWebhookConfiguration>()).generation(),
    );
    add::<admissionregistration::ValidatingWebhookConfiguration>(
        r,
        Def::new(plain::<admissionregistration::ValidatingWebhookConfiguration>()).generation(),
    );
    add::<admissionregistration::ValidatingAdmissionPolicy>(
        r,
        Def::new(plain::<admissionregistration::ValidatingAdmissionPolicy>()).status().generation(),
    );
    add::<admissionregistration::ValidatingAdmissionPolicyBinding>(
        r,
        Def::new(plain::<admissionregistration::ValidatingAdmissionPolicyBinding>()).generation(),
    );
    // apiextensions.k8s.io/v1
    add::<apiextensions::CustomResourceDefinition>(
        r,
        Def::new(typed::<apiextensions::CustomResourceDefinition, _>(crate::crd::CrdHooks))
            .short(&["crd", "crds"])
            .status()
            .generation(),
    );
    // Create-only kinds that are answered, never stored.
    add_create_only::<core::Binding>(r, "bindings", true);
    add_create_only::<authentication::TokenReview>(r, "tokenreviews", false);
    add_create_only::<authentication::SelfSubjectReview>(r, "selfsubjectreviews", false);
    add_create_only::<authorization::SubjectAccessReview>(r, "subjectaccessreviews", false);
    add_create_only::<authorization::LocalSubjectAccessReview>(r, "localsubjectaccessreviews", true);
    add_create_only::<authorization::SelfSubjectAccessReview>(r, "selfsubjectaccessreviews", false);
    add_create_only::<authorization::SelfSubjectRulesReview>(r, "selfsubjectrulesreviews", false);
}

/// A kind clients only create (`bindings`, `tokenreviews`, ...): what discovery and
/// OpenAPI say about it; its handler answers without storing anything.
fn add_create_only<T>(r: &Registry, plural: &str, namespaced: bool)
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema + Send + Sync + 'static,
{
    let definition = T::schema_name().to_string();
    r.add(Resource {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        kind: T::KIND.into(),
        list_kind: format!("{}List", T::KIND),
        plural: plural.into(),
        singular: T::KIND.to_ascii_lowercase(),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        verbs: vec!["create"],
        status_subresource: false,
        scale: None,
        tracks_generation: false,
        storage: Arc::new(StorageInfo::new(T::GROUP, plural, namespaced, T::VERSION)),
        strategy: plain::<T>(),
        printer: Printer::Default,
        schema: Schema::Definition(definition.clone()),
        definition: Some(definition),
        schema_fn: Some(schema_of::<T>),
        extra_subresources: Vec::new(),
        name_rule: NameRule::Dns1123Subdomain,
        allow_create_on_update: false,
        return_deleted_object: false,
    });
}

/// How long a delete of this object waits before the object is gone (pods only: their
/// containers get the grace period to stop).
pub fn graceful_deletion_period(res: &Resource, obj: &Value, requested: Option<i64>) -> i64 {
    if !(res.group.is_empty() && res.plural == "pods") {
        return 0;
    }
    core_hooks::pod_grace_period(obj, requested)
}

/// Changes a delete request makes besides deletionTimestamp (a namespace turns Terminating).
pub fn on_delete_requested(res: &Resource, obj: &mut Value) {
    if res.group.is_empty() && res.plural == "namespaces" {
        obj["status"]["phase"] = json!("Terminating");
    }
}

/// Writes an object the server itself owns (no request, no admission): decoded and
/// defaulted by its strategy, created if missing, else left as it is unless `replace`.
pub async fn ensure(api: &Api, group: &str, plural: &str, obj: Value, replace: bool) -> ApiResult<()> {
    let Some(res) = api.registry.preferred(group, plural) else { return Ok(()) };
    let mut obj = res.strategy.decode(obj)?;
    let ns = crate::meta::namespace(&obj).to_string();
    let name = crate::meta::name(&obj).to_string();
    let key = res.key(&ns, &name);
    let existing = api.store.get(&key).await?;
    if existing.is_some() && !replace {
        return Ok(());
    }
    if existing.is_none() {
        res.strategy.prepare_for_create(&mut obj);
    }
    let m = crate::meta::metadata_mut(&mut obj);
    let (uid, created) = match &existing {
        Some(kv) => {
            let old: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            (
                crate::meta::uid(&old).to_string(),
                old.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
            )
        }
        None => (uuid::Uuid::new_v4().to_string(), json!(crate::meta::now_rfc3339())),
    };
    m.insert("uid".into(), json!(uid));
    m.insert("creationTimestamp".into(), created);
    let bytes = crate::handlers::write::to_storage(&res, &obj)?;
    let result = match existing {
        Some(kv) => {
            if kv.value == bytes {
                return Ok(());
            }
            api.store.update(&key, bytes, kv.mod_revision).await.map(|_| ())
        }
        None => api.store.create(&key, bytes).await.map(|_| ()),
    };
    match result {
        Ok(()) | Err(store::Error::AlreadyExists { .. }) | Err(store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates what a fresh cluster has: the four system namespaces and the `kubernetes`
/// Service with this server as its endpoint.
pub async fn bootstrap(api: &Arc<Api>) -> ApiResult<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            api,
            "",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            false,
        )
        .await?;
    }
    let first_ip = match admission::parse_cidr(&api.config.service_cidr) {
        Some((net, _)) => std::net::Ipv4Addr::from(net + 1).to_string(),
        None => return Ok(()),
    };
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        api,
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {"type": "ClusterIP", "clusterIP": first_ip, "clusterIPs": [first_ip], "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.config.advertise_port}]}}),
        false,
    )
    .await?;
    let addr = api.config.advertise_address.clone();
    let port = api.config.advertise_port;
    ensure(
        api,
        "",
        "endpoints",
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
        true,
    )
    .await?;
    ensure(
        api,
        "discovery.k8s.io",
        "endpointslices",
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        true,
    )
    .await?;
    Ok(())
}
