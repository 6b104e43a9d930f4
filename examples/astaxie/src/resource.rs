//! The `AstaXie` custom resource (group `demo.krust.dev`, version `v1`): the kind the seed
//! talk's demo adds to the cluster, defined once as Rust types from which the CRD, its
//! OpenAPI schema and the typed client are derived.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer the controller puts on every `AstaXie`, so that it can say farewell
/// before the object goes away.
pub const FINALIZER: &str = "demo.krust.dev/farewell";

/// The field manager (and event reporter) name of the controller's writes.
pub const FIELD_MANAGER: &str = "astaxie";

/// The guest to invite: the language they speak, and whether they are handsome (it changes the message).
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "demo.krust.dev",
    version = "v1",
    kind = "AstaXie",
    namespaced,
    status = "AstaXieStatus",
    shortname = "ax",
    derive = "PartialEq",
    doc = "A guest invited to the talk: the controller sends the invitation, then records its acceptance.",
    printcolumn(
        name = "Language",
        type_ = "string",
        json_path = ".spec.language",
        description = "The language the guest speaks"
    ),
    printcolumn(name = "Handsome", type_ = "boolean", json_path = ".spec.handsome"),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Invited, then Accepted"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1)
)]
pub struct AstaXieSpec {
    /// The language the guest speaks on stage.
    pub language: String,
    /// Whether the guest is handsome; true unless said otherwise.
    #[serde(default = "handsome_unless_told_otherwise")]
    pub handsome: bool,
}

fn handsome_unless_told_otherwise() -> bool {
    true
}

/// Where the invitation stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum State {
    /// The invitation was sent; the guest is thinking it over.
    Invited,
    /// The guest accepted.
    Accepted,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Invited => "Invited",
            State::Accepted => "Accepted",
        })
    }
}

/// What the controller observed and did, written only through the status subresource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AstaXieStatus {
    /// `Invited`, then `Accepted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// A human-readable account of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the invitation was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_at: Option<Time>,
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CustomResourceDefinition of `astaxies.demo.krust.dev`, derived from the types above.
pub fn crd() -> CustomResourceDefinition {
    AstaXie::crd()
}

/// The CRD as YAML, ready for `kubectl apply -f -`.
pub fn crd_yaml() -> anyhow::Result<String> {
    use anyhow::Context as _;
    serde_yaml::to_string(&crd()).context("serializing the AstaXie CRD to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_names_the_kind_as_kubectl_knows_it() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("astaxies.demo.krust.dev"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ax".to_string()]));
        let v1 = &crd.spec.versions[0];
        assert!(v1.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
        let columns: Vec<_> =
            v1.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Language", "Handsome", "State", "Age", "Message"]);
    }

    #[test]
    fn crd_schema_defaults_handsome_and_requires_language() {
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], json!(["language"]));
        assert_eq!(spec["properties"]["handsome"]["default"], json!(true));
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(status["properties"]["state"]["enum"], json!(["Invited", "Accepted"]));
    }

    #[test]
    fn crd_yaml_round_trips() {
        let yaml = crd_yaml().unwrap();
        let back: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, crd());
    }
}
