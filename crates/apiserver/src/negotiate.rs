//! Content negotiation: which representation a client asked for (JSON, YAML, a `Table`,
//! `PartialObjectMetadata`), and encoding responses in it.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// What a table row carries as its `object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The representation of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// meta.k8s.io Table (`v1` or `v1beta1`).
    Table {
        beta: bool,
        include: IncludeObject,
    },
    /// meta.k8s.io PartialObjectMetadata(List).
    Metadata {
        beta: bool,
    },
    /// Kubernetes protobuf, for clients that accept nothing else.
    Protobuf,
}

struct MediaType<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

fn parse_accept(accept: &str) -> Vec<MediaType<'_>> {
    accept
        .split(',')
        .map(|part| {
            let mut it = part.split(';').map(str::trim);
            let essence = it.next().unwrap_or("");
            let params = it.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
            MediaType { essence, params }
        })
        .collect()
}

impl MediaType<'_> {
    fn param(&self, k: &str) -> Option<&str> {
        self.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v)
    }
}

/// Picks the representation from the `Accept` header and the `includeObject` parameter.
pub fn output(headers: &HeaderMap, include_object: Option<&str>) -> ApiResult<Output> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    let include = match include_object {
        None | Some("") | Some("Metadata") => IncludeObject::Metadata,
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "includeObject parameter unsupported: {other:?}; supported values: \"None\", \"Metadata\", \"Object\""
            )));
        }
    };
    let types = parse_accept(accept);
    let json_acceptable = types
        .iter()
        .any(|m| matches!(m.essence, "application/json" | "*/*" | "application/*" | "application/yaml"));
    if !json_acceptable && types.iter().any(|m| m.essence == "application/vnd.kubernetes.protobuf") {
        return Ok(Output::Protobuf);
    }
    for mt in types {
        let json_like = matches!(mt.essence, "application/json" | "*/*" | "application/*");
        let yaml = mt.essence == "application/yaml";
        if !json_like && !yaml {
            continue;
        }
        match mt.param("as") {
            None => return Ok(if yaml { Output::Yaml } else { Output::Json }),
            Some(as_) => {
                if mt.param("g") != Some("meta.k8s.io") || !json_like {
                    continue;
                }
                let beta = match mt.param("v") {
                    Some("v1") => false,
                    Some("v1beta1") => true,
                    _ => continue,
                };
                match as_ {
                    "Table" => return Ok(Output::Table { beta, include }),
                    "PartialObjectMetadata" | "PartialObjectMetadataList" => {
                        return Ok(Output::Metadata { beta });
                    }
                    _ => continue,
                }
            }
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml".to_string(),
    ))
}

/// Encodes a body in the negotiated format.
pub fn encode(code: StatusCode, body: &Value, out: Output) -> Response {
    let (bytes, ctype) = match out {
        Output::Yaml => (serde_yaml::to_string(body).unwrap_or_default().into_bytes(), "application/yaml"),
        Output::Protobuf => match kubeproto::encode(body) {
            Ok(b) => (b, "application/vnd.kubernetes.protobuf"),
            Err(e) => {
                tracing::warn!(error = %e, "protobuf encoding failed, answering JSON");
                (serde_json::to_vec(body).unwrap_or_default(), "application/json")
            }
        },
        _ => (serde_json::to_vec(body).unwrap_or_default(), "application/json"),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

/// A JSON response with a custom content type (aggregated discovery answers with its own).
pub fn json_with_type(body: &Value, ctype: &str) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    if let Ok(v) = HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Decodes a request body given as JSON or YAML.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    match essence {
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            serde_yaml::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => kubeproto::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the protobuf body: {e}"))),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}': {e}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(
            output(&h, None).unwrap(),
            Output::Table { beta: false, include: IncludeObject::Metadata }
        );
    }

    #[test]
    fn protobuf_with_json_fallback_gets_json() {
        let h = accept("application/vnd.kubernetes.protobuf, application/json");
        assert_eq!(output(&h, None).unwrap(), Output::Json);
        assert_eq!(output(&accept("application/vnd.kubernetes.protobuf"), None).unwrap(), Output::Protobuf);
        assert!(output(&accept("text/html"), None).is_err());
    }
}
