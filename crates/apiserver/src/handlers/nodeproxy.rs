//! `pods/log`: validated here as Kubernetes does, then proxied to the node agent that
//! runs the pod (its API at the node's address and `daemonEndpoints.kubeletEndpoint`
//! port), and streamed back to the client as it arrives. The ways to reach an agent
//! live here too; the streaming subresources are in `nodestream`.

use std::sync::Arc;

use axum::response::Response;
use futures::StreamExt;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Ctx;
use super::read::load;
use crate::error::{ApiError, ApiResult};

/// The query parameters of `PodLogOptions` passed on to the agent, with their types.
const LOG_PARAMS: &[(&str, Kind)] = &[
    ("follow", Kind::Bool),
    ("previous", Kind::Bool),
    ("timestamps", Kind::Bool),
    ("insecureSkipTLSVerifyBackend", Kind::Bool),
    ("tailLines", Kind::Int),
    ("limitBytes", Kind::Int),
    ("sinceSeconds", Kind::Int),
    ("sinceTime", Kind::Time),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    Time,
}

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Which container's log: the one named, else the only one; errors as the API server's.
pub(super) fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let containers = names(pod.pointer("/spec/containers"));
    let init = names(pod.pointer("/spec/initContainers"));
    let ephemeral = names(pod.pointer("/spec/ephemeralContainers"));
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Checks and re-encodes the log options for the agent.
fn log_query(ctx: &Ctx) -> ApiResult<String> {
    let mut out = Vec::new();
    for (param, kind) in LOG_PARAMS {
        let Some(v) = ctx.query.get(param) else { continue };
        let ok = match kind {
            Kind::Bool => matches!(v, "true" | "false" | "1" | "0" | ""),
            Kind::Int => v.parse::<i64>().is_ok_and(|n| n >= 0 || *param == "tailLines" && n == -1),
            Kind::Time => v.parse::<jiff::Timestamp>().is_ok(),
        };
        if !ok {
            return Err(ApiError::bad_request(format!("{param}: invalid value {v:?}")));
        }
        match (*param, v) {
            // A negative tail means all lines.
            ("tailLines", "-1") => {}
            (_, v) => out.push(format!("{param}={}", encode(v))),
        }
    }
    if let Some(n) = ctx.query.get("sinceSeconds")
        && n == "0"
    {
        return Err(ApiError::bad_request("sinceSeconds: Invalid value: 0: must be greater than 0"));
    }
    if ctx.query.get("sinceSeconds").is_some() && ctx.query.get("sinceTime").is_some() {
        return Err(ApiError::bad_request("at most one of `sinceTime` or `sinceSeconds` may be specified"));
    }
    Ok(out.join("&"))
}

pub(super) fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a node's agent listens: its InternalIP (else another address) and port.
fn agent_address(node: &Value) -> Option<String> {
    let port =
        node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(0);
    if port == 0 {
        return None;
    }
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let by_type = |t: &str| {
        addresses.iter().find(|a| a["type"] == t).and_then(|a| a["address"].as_str()).map(str::to_owned)
    };
    let host = by_type("InternalIP").or_else(|| by_type("ExternalIP")).or_else(|| by_type("Hostname"))?;
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// The agent of the node that runs `pod`: its address, the TLS to reach it, the node.
pub(super) async fn agent_for(
    ctx: &Ctx,
    pod: &Value,
    name: &str,
) -> ApiResult<(String, Arc<rustls::ClientConfig>, String)> {
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_owned();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let nodes = ctx.api.registry.get("", "v1", "nodes").ok_or_else(ApiError::path_not_found)?;
    let mut nctx = ctx.for_resource(nodes, &node_name, None);
    nctx.path.namespace = None;
    let (node, _) = load(&nctx, &node_name).await?;
    let Some(address) = agent_address(&node) else {
        return Err(ApiError::bad_request(format!(
            "node {node_name} runs no node agent API, so pod {name} cannot be reached through it"
        )));
    };
    let Some(tls) = ctx.api.config.kubelet_client.clone() else {
        return Err(ApiError::service_unavailable(
            "this API server has no client for node agents configured",
        ));
    };
    Ok((address, tls, node_name))
}

/// GET `pods/{name}/log`.
pub async fn pod_log(ctx: &Ctx) -> ApiResult<Response> {
    let name = ctx.name().to_owned();
    let (pod, _) = load(ctx, &name).await?;
    let container = container_of(&pod, &name, ctx.query.get("container"))?;
    let query = log_query(ctx)?;
    let (address, tls, node_name) = agent_for(ctx, &pod, &name).await?;
    let path = format!("/containerLogs/{}/{name}/{container}?{query}", ctx.ns());
    let upstream = fetch(&address, http::Request::get(path), tls).await.map_err(|e| {
        ApiError::internal(format!("reading the logs of pod {name} from node {node_name}: {e}"))
    })?;
    if !upstream.status().is_success() {
        return Err(refusal(upstream).await);
    }
    let stream = upstream.into_body().into_data_stream().map(|r| r.map_err(std::io::Error::other));
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

pub(super) type AgentStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection to a node agent.
async fn connect(address: &str, tls: Arc<rustls::ClientConfig>) -> Result<AgentStream, String> {
    let tcp =
        tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("connecting to {address}: {e}"))?;
    let host = address.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(address);
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host} is not a valid server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {address}: {e}"))?;
    Ok(stream)
}

/// One request without a body to a node agent over TLS, on a connection of its own
/// that may switch protocols (`hyper::upgrade::on` the answer).
pub(super) async fn fetch(
    address: &str,
    request: http::request::Builder,
    tls: Arc<rustls::ClientConfig>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let stream = connect(address, tls).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP with {address}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node agent connection ended");
        }
    });
    let req = request
        .header(http::header::HOST, address)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let what = format!("{} {}", req.method(), req.uri());
    sender.send_request(req).await.map_err(|e| format!("{what} from {address}: {e}"))
}

/// The API error for an agent's refusal: its status and the text it answered.
pub(super) async fn refusal(answer: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = answer.status().as_u16();
    let bytes = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let message = String::from_utf8_lossy(&bytes).trim().to_owned();
    match code {
        400 => ApiError::bad_request(message),
        404 => ApiError::new(404, "NotFound", message),
        code => ApiError::internal(format!("node agent answered {code}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_named_or_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(container_of(&one, "p", None).unwrap(), "app");
        assert_eq!(container_of(&one, "p", Some("")).unwrap(), "app");
        let e = container_of(&one, "p", Some("nope")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container nope is not valid for pod p"));
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container_of(&two, "p", Some("i")).unwrap(), "i");
        let e = container_of(&two, "p", None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
    }

    #[test]
    fn the_agent_is_reached_at_the_internal_address() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(agent_address(&node).as_deref(), Some("10.0.0.5:10250"));
        let sim = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.6"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}});
        assert_eq!(agent_address(&sim), None);
    }
}
