//! Discovery of every resource the API server serves (built-in and custom), tolerant of
//! groups that fail: what could be read is returned together with the failures, as
//! client-go's `ServerPreferredResources` does, so the garbage collector and the namespace
//! controller keep working when one aggregated API is down.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::discovery::ApiResource;

/// One resource of one group version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The resource name in URLs (`deployments`).
    pub plural: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Whether the resource allows `verb` (`list`, `watch`, `delete`, `deletecollection`...).
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The kube-rs description used to build a dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `plural.group`, the way Kubernetes names a group resource in messages (`pods.`).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

/// What discovery found.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// Every top-level resource of every served group version.
    pub all: Vec<ResourceInfo>,
    /// Each group resource once: at its group's preferred version when served there, else
    /// at the first version that serves it.
    pub preferred: Vec<ResourceInfo>,
    /// Group versions whose resource list could not be read, with the error.
    pub failed: BTreeMap<String, String>,
}

/// The group (without version) of an `apiVersion`.
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

impl Resources {
    /// The resource serving `kind` at exactly `api_version` (a REST mapping).
    pub fn find(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        self.all.iter().find(|r| r.kind == kind && r.api_version() == api_version)
    }

    /// Client-go's `ErrGroupDiscoveryFailed` text, when some group version failed.
    pub fn failure_message(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = self.failed.iter().map(|(gv, e)| format!("{gv}: {e}")).collect();
        parts.sort();
        Some(format!("unable to retrieve the complete list of server APIs: {}", parts.join(", ")))
    }

    /// Builds the preferred list from `all` given each group's versions in server order
    /// and its preferred version.
    fn select_preferred(&mut self, groups: &[(String, Vec<String>, String)]) {
        let mut chosen: BTreeMap<(String, String), ResourceInfo> = BTreeMap::new();
        for (group, versions, preferred) in groups {
            for version in versions {
                for r in self.all.iter().filter(|r| &r.group == group && &r.version == version) {
                    let key = (group.clone(), r.plural.clone());
                    if chosen.contains_key(&key) && version != preferred {
                        continue;
                    }
                    chosen.insert(key, r.clone());
                }
            }
        }
        self.preferred = chosen.into_values().collect();
    }
}

fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn push_list(out: &mut Vec<ResourceInfo>, group: &str, version: &str, list: APIResourceList) {
    let mut seen = HashSet::new();
    for r in list.resources {
        // Subresources (`pods/status`) are not resources of their own.
        if r.name.contains('/') || !seen.insert(r.name.clone()) {
            continue;
        }
        out.push(ResourceInfo {
            group: r.group.filter(|g| !g.is_empty()).unwrap_or_else(|| group.to_string()),
            version: r.version.filter(|v| !v.is_empty()).unwrap_or_else(|| version.to_string()),
            kind: r.kind,
            plural: r.name,
            namespaced: r.namespaced,
            verbs: r.verbs,
        });
    }
}

/// Reads `/api` and `/apis` and every group version's resource list. Fails only when the
/// group lists themselves cannot be read; a failing group version is reported in
/// [`Resources::failed`] and the rest is still returned.
pub async fn discover(client: &Client) -> Result<Resources, kube::Error> {
    let mut out = Resources::default();
    let mut groups: Vec<(String, Vec<String>, String)> = Vec::new();
    let core = client.list_core_api_versions().await?;
    let core_versions = core.versions.clone();
    for v in &core_versions {
        match client.list_core_api_resources(v).await {
            Ok(list) => push_list(&mut out.all, "", v, list),
            Err(e) => {
                out.failed.insert(v.clone(), error_text(&e));
            }
        }
    }
    groups.push((String::new(), core_versions.clone(), core_versions.first().cloned().unwrap_or_default()));
    let apis = client.list_api_groups().await?;
    for g in apis.groups {
        let versions: Vec<String> = g.versions.iter().map(|v| v.version.clone()).collect();
        let preferred = g
            .preferred_version
            .as_ref()
            .map(|p| p.version.clone())
            .or_else(|| versions.first().cloned())
            .unwrap_or_default();
        for gv in &g.versions {
            match client.list_api_group_resources(&gv.group_version).await {
                Ok(list) => push_list(&mut out.all, &g.name, &gv.version, list),
                Err(e) => {
                    out.failed.insert(gv.group_version.clone(), error_text(&e));
                }
            }
        }
        groups.push((g.name.clone(), versions, preferred));
    }
    out.select_preferred(&groups);
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use fakeapi::{FakeApi, status};
    use serde_json::json;

    /// A resource for tests.
    pub fn res(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceInfo {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        ResourceInfo {
            group,
            version,
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Discovery answers for a small cluster; `widgets` has two versions, v1 preferred.
    pub fn serve_discovery(api: &FakeApi) {
        api.object(
            "/api",
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        );
        api.object(
            "/api/v1",
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"name": "bindings", "singularName": "binding", "namespaced": true, "kind": "Binding", "verbs": ["create"]}
            ]}),
        );
        api.object(
            "/apis",
            json!({"kind": "APIGroupList", "groups": [
                {"name": "example.com", "versions": [
                    {"groupVersion": "example.com/v1beta1", "version": "v1beta1"},
                    {"groupVersion": "example.com/v1", "version": "v1"}
                 ], "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}},
                {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
                 "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}}
            ]}),
        );
        for v in ["v1beta1", "v1"] {
            api.object(
                &format!("/apis/example.com/{v}"),
                json!({"kind": "APIResourceList", "groupVersion": format!("example.com/{v}"), "resources": [
                    {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget", "verbs": ["delete", "get", "list", "watch"]}
                ]}),
            );
        }
        api.on(
            "GET",
            "/apis/metrics.k8s.io/v1beta1",
            503,
            status(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        );
    }

    #[tokio::test]
    async fn discovery_prefers_the_preferred_version_and_reports_failing_groups() {
        let api = FakeApi::new();
        serve_discovery(&api);
        let found = discover(&api.client()).await.unwrap();
        let plurals: Vec<String> =
            found.preferred.iter().map(|r| format!("{}:{}", r.api_version(), r.plural)).collect();
        assert_eq!(plurals, ["v1:bindings", "v1:namespaces", "v1:pods", "example.com/v1:widgets"]);
        assert!(found.find("example.com/v1beta1", "Widget").is_some(), "every served version maps");
        assert!(found.find("example.com/v2", "Widget").is_none());
        assert_eq!(found.find("v1", "Namespace").map(|r| r.namespaced), Some(false));
        assert_eq!(
            found.failure_message().as_deref(),
            Some(
                "unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request"
            )
        );
    }
}
