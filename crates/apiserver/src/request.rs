//! What a request asks for: the path decoded into a resource address, and the query
//! options Kubernetes defines for each verb.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// A request aimed at a resource (the path after `/api/v1` or `/apis/<g>/<v>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Anything after the subresource (e.g. a proxy path).
    pub rest: Option<String>,
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion(String, String),
    Resource(ResourcePath),
}

fn segs(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect()
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an API path. `is_namespaced` tells whether a plural names a namespaced
/// resource in the group/version (it disambiguates `/namespaces/<ns>/<x>`).
pub fn parse_path(path: &str) -> Option<Target> {
    let s = segs(path);
    let (group, version, rest) = match s.first().map(String::as_str) {
        Some("api") => match s.len() {
            1 => return Some(Target::CoreVersions),
            2 => return Some(Target::GroupVersion(String::new(), s[1].clone())),
            _ => (String::new(), s[1].clone(), &s[2..]),
        },
        Some("apis") => match s.len() {
            1 => return Some(Target::Groups),
            2 => return Some(Target::Group(s[1].clone())),
            3 => return Some(Target::GroupVersion(s[1].clone(), s[2].clone())),
            _ => (s[1].clone(), s[2].clone(), &s[3..]),
        },
        _ => return None,
    };
    let mut rp = ResourcePath { group, version, ..Default::default() };
    let rest: Vec<String> = rest.to_vec();
    // `watch` as a path prefix is the deprecated form of `?watch=true`; it is handled by
    // the caller through `ResourcePath::plural == "watch"` never matching a resource.
    if rest[0] == "namespaces" && rest.len() >= 3 {
        // /namespaces/<ns>/<plural>[/<name>[/<sub>...]]  or  /namespaces/<ns>/<sub of namespace>
        rp.namespace = Some(rest[1].clone());
        rp.plural = rest[2].clone();
        if let Some(n) = rest.get(3) {
            rp.name = Some(n.clone());
        }
        if let Some(sr) = rest.get(4) {
            rp.subresource = Some(sr.clone());
        }
        if rest.len() > 5 {
            rp.rest = Some(rest[5..].join("/"));
        }
    } else {
        rp.plural = rest[0].clone();
        if let Some(n) = rest.get(1) {
            rp.name = Some(n.clone());
        }
        if let Some(sr) = rest.get(2) {
            rp.subresource = Some(sr.clone());
        }
        if rest.len() > 3 {
            rp.rest = Some(rest[3..].join("/"));
        }
    }
    Some(Target::Resource(rp))
}

impl ResourcePath {
    /// `/namespaces/<ns>/status` (and `finalize`) parse as plural=status in namespace ns;
    /// when `status` is not a namespaced resource, this re-reads it as the namespace's
    /// subresource.
    pub fn as_namespace_subresource(&self) -> Option<ResourcePath> {
        let ns = self.namespace.as_ref()?;
        if self.name.is_some() || !self.group.is_empty() {
            return None;
        }
        Some(ResourcePath {
            group: String::new(),
            version: self.version.clone(),
            namespace: None,
            plural: "namespaces".into(),
            name: Some(ns.clone()),
            subresource: Some(self.plural.clone()),
            rest: None,
        })
    }
}

/// Query parameters, decoded once.
#[derive(Clone, Debug, Default)]
pub struct Query {
    params: HashMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(form_decode(k)).or_default().push(form_decode(v));
        }
        Self { params }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> &[String] {
        self.params.get(k).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter: present with `true`/`1`/empty is true.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1") | Some("True"))
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for query parameter {k}"))),
        }
    }

    /// `dryRun`: only `All` is defined.
    pub fn dry_run(&self) -> ApiResult<bool> {
        let vals = self.all("dryRun");
        for v in vals {
            if v != "All" {
                return Err(ApiError::bad_request(format!(
                    "Invalid dry run value: {v:?}; supported values: \"All\""
                )));
            }
        }
        Ok(!vals.is_empty())
    }
}

fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// How unknown or duplicate fields in a request body are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}; supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(path: &str) -> ResourcePath {
        match parse_path(path) {
            Some(Target::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_decode_into_resource_addresses() {
        let r = rp("/api/v1/namespaces/default/pods/web-1/log");
        assert_eq!(
            r,
            ResourcePath {
                group: "".into(),
                version: "v1".into(),
                namespace: Some("default".into()),
                plural: "pods".into(),
                name: Some("web-1".into()),
                subresource: Some("log".into()),
                rest: None
            }
        );
        let r = rp("/apis/apps/v1/deployments");
        assert_eq!((r.group.as_str(), r.plural.as_str(), r.namespace), ("apps", "deployments", None));
        let r = rp("/api/v1/namespaces");
        assert_eq!((r.plural.as_str(), r.name), ("namespaces", None));
        let r = rp("/api/v1/namespaces/kube-system");
        assert_eq!((r.plural.as_str(), r.name.as_deref()), ("namespaces", Some("kube-system")));
        let r = rp("/api/v1/namespaces/x/finalize").as_namespace_subresource().unwrap();
        assert_eq!((r.name.as_deref(), r.subresource.as_deref()), (Some("x"), Some("finalize")));
        assert_eq!(parse_path("/apis/apps"), Some(Target::Group("apps".into())));
        assert_eq!(parse_path("/api"), Some(Target::CoreVersions));
    }

    #[test]
    fn query_values_are_form_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&dryRun=All"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(q.dry_run().unwrap());
    }
}
