//! The shape of the generated field table and the lookups over it: message by name,
//! message by apiVersion and kind.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::table::{KINDS, MESSAGES};

/// The field is repeated (a list, or a map written as repeated entry messages).
pub(crate) const REP: u8 = 1;
/// The Go field is a pointer: present on the wire exactly when set, zero values included.
pub(crate) const PTR: u8 = 2;
/// The Go field has `omitempty`: a zero scalar, an empty list or map is left out of JSON.
pub(crate) const OMIT: u8 = 4;
/// The Go field is an embedded struct whose fields JSON flattens into the parent.
pub(crate) const INLINE: u8 = 8;

/// How a field is written on the wire and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    /// A nested message, by full name.
    Msg(&'static str),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`.
    MapBytes,
    /// `map<string, Message>`, by the value message's full name.
    MapMsg(&'static str),
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `meta.v1.Time`: RFC 3339 with seconds precision, `null` when zero.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with six fractional digits, `null` when zero.
    MicroTime,
    /// `meta.v1.Duration`: a Go duration string.
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`: an embedded object, JSON or protobuf.
    RawExtension,
    /// `meta.v1.FieldsV1`, `apiextensions.v1.JSON`: embedded JSON.
    RawJson,
    /// `JSONSchemaPropsOrArray`: a schema object or an array of them.
    PropsOrArray,
    /// `JSONSchemaPropsOrBool`: a schema object or a boolean.
    PropsOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema object or an array of strings.
    PropsOrStringArray,
    /// A Go named slice type (`Verbs`, `ExtraValue`) wrapped as `{items = 1}`.
    StringList,
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub tag: u32,
    /// The JSON key; empty for inline fields.
    pub json: &'static str,
    pub kind: Kind,
    pub flags: u8,
}

impl Field {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Builds a [`Field`]; keeps the generated table short.
pub(crate) const fn f(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Field {
    Field { tag, json, kind, flags }
}

/// One message: its full name (`io.k8s.api.core.v1.Pod`) and its fields in JSON order.
#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    pub special: Special,
    pub fields: &'static [Field],
}

impl Message {
    /// The field with this tag, if the table knows it.
    pub(crate) fn field(&self, tag: u32) -> Option<(usize, &'static Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.tag == tag)
    }
}

/// The group version of the meta kinds (`Status`, `DeleteOptions`, ...), which every
/// group version also serves.
const META: &str = "meta.k8s.io/v1";

struct Index {
    by_name: HashMap<&'static str, &'static Message>,
    by_kind: HashMap<(&'static str, &'static str), &'static Message>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let by_name: HashMap<_, _> = MESSAGES.iter().map(|m| (m.name, m)).collect();
        let by_kind = KINDS
            .iter()
            .filter_map(|&(api_version, kind, name)| Some(((api_version, kind), *by_name.get(name)?)))
            .collect();
        Index { by_name, by_kind }
    })
}

/// The message with this full name.
pub(crate) fn message(name: &str) -> Option<&'static Message> {
    index().by_name.get(name).copied()
}

/// The message carrying `kind` in `api_version`. Meta kinds (`Status`, `DeleteOptions`,
/// `WatchEvent`, ...) are found under `meta.k8s.io/v1` and under every known group version.
pub(crate) fn kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    let idx = index();
    if let Some(m) = idx.by_kind.get(&(api_version, kind)) {
        return Some(m);
    }
    let meta = idx.by_kind.get(&(META, kind))?;
    idx.by_kind.keys().any(|(av, _)| *av == api_version).then_some(*meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_referenced_message_is_in_the_table() {
        for m in MESSAGES {
            for f in m.fields {
                if let Kind::Msg(name) | Kind::MapMsg(name) = f.kind {
                    assert!(message(name).is_some(), "{}.{} refers to missing {name}", m.name, f.json);
                }
            }
        }
    }

    #[test]
    fn every_kind_points_at_a_message() {
        for (av, k, name) in KINDS {
            assert!(message(name).is_some(), "{av} {k} -> {name}");
            assert!(kind(av, k).is_some());
        }
    }

    #[test]
    fn tags_are_unique_within_a_message() {
        for m in MESSAGES {
            let mut tags: Vec<u32> = m.fields.iter().map(|f| f.tag).collect();
            tags.sort_unstable();
            tags.dedup();
            assert_eq!(tags.len(), m.fields.len(), "{}", m.name);
        }
    }

    #[test]
    fn inline_fields_are_messages_without_a_json_name() {
        for m in MESSAGES {
            for f in m.fields {
                assert_eq!(f.has(INLINE), f.json.is_empty(), "{}.{}", m.name, f.tag);
                if f.has(INLINE) {
                    assert!(matches!(f.kind, Kind::Msg(_)) && !f.has(REP));
                }
            }
        }
    }

    fn json_names(message_name: &str) -> Vec<&'static str> {
        message(message_name).map(|m| m.fields.iter().map(|f| f.json).collect()).unwrap_or_default()
    }

    #[test]
    fn json_names_use_the_kubernetes_spelling_not_camel_case_of_the_proto_name() {
        let cases = [
            ("io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource", "volumeID"),
            ("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
            ("io.k8s.api.core.v1.PodSpec", "hostIPC"),
            ("io.k8s.api.core.v1.PodSpec", "setHostnameAsFQDN"),
            ("io.k8s.api.core.v1.VolumeSource", "downwardAPI"),
            ("io.k8s.api.core.v1.VolumeSource", "scaleIO"),
            ("io.k8s.api.core.v1.DaemonEndpoint", "Port"),
            ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "$ref"),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
                "x-kubernetes-list-map-keys",
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.ConversionRequest",
                "desiredAPIVersion",
            ),
            ("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs"),
        ];
        for (msg, name) in cases {
            assert!(json_names(msg).contains(&name), "{msg} lacks {name}: {:?}", json_names(msg));
        }
    }

    #[test]
    fn list_kinds_and_subresource_kinds_are_indexed() {
        for (av, k) in [
            ("v1", "PodList"),
            ("apps/v1", "DeploymentList"),
            ("policy/v1", "Eviction"),
            ("autoscaling/v1", "Scale"),
            ("v1", "Binding"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("v1", "List"),
        ] {
            assert!(kind(av, k).is_some(), "{av} {k}");
        }
    }

    #[test]
    fn meta_kinds_are_served_by_every_group_version() {
        assert!(kind("policy/v1", "DeleteOptions").is_some());
        assert!(kind("v1", "Status").is_some());
        assert!(kind("apps/v1", "WatchEvent").is_some());
        assert!(kind("example.com/v1", "DeleteOptions").is_none());
        assert!(kind("apps/v1", "Pod").is_none());
    }
}
