//! The streaming subresources of pods: `exec`, `attach` and `portforward`. Each is
//! validated here, then carried to the agent of the pod's node, which hands it to the
//! container runtime's streaming server. Three ways a client arrives:
//!
//! - SPDY/3.1 (client-go's classic transport), or a WebSocket subprotocol the runtime
//!   speaks itself (`v4.channel.k8s.io` and older, `portforward.k8s.io`): the upgrade
//!   goes to the agent unchanged and the connections are spliced.
//! - A `v5.channel.k8s.io` WebSocket (kubectl 1.29 and later for exec and attach):
//!   translated here into a SPDY session with the agent, so that v5's "stdin is done"
//!   signal becomes end-of-file for the command (a FIN on its stdin stream), which no
//!   older WebSocket protocol can carry. `v4.channel.k8s.io` (the official Python
//!   client) is translated the same way: clients send stdin in text messages too, which
//!   the runtime's own WebSocket server drops.
//! - `SPDY/3.1+portforward.k8s.io` (kubectl 1.30 and later for port-forward): SPDY
//!   tunnelled in WebSocket binary messages; unwrapped here into a SPDY upgrade.
//!
//! A request the agent refuses is answered without switching protocols, which is what
//! makes client-go fall back from a WebSocket to SPDY.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::ws::{self, WebSocket};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Ctx;
use super::nodeproxy::{agent_for, container_of, encode, fetch, refusal};
use super::read::load;
use super::spdy::{self, Frame};
use crate::error::{ApiError, ApiResult};

/// exec/attach over WebSocket with a close signal for stdin; translated to SPDY.
const V5: &str = "v5.channel.k8s.io";
/// The same without the close signal; also translated, so that text messages (which
/// some clients send stdin in, and the runtime drops) arrive as data.
const V4: &str = "v4.channel.k8s.io";
/// port-forward's SPDY carried in WebSocket binary messages.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// What the runtime is asked for when this side speaks SPDY to it.
const REMOTE_COMMAND: &str = "v4.channel.k8s.io";
const PORT_FORWARD: &str = "portforward.k8s.io";

/// How the client asked to switch protocols.
#[derive(Debug, PartialEq)]
enum Upgrade {
    Spdy,
    /// A WebSocket and the subprotocols it offers, in its order.
    WebSocket(Vec<String>),
}

fn upgrade_of(headers: &HeaderMap) -> Option<Upgrade> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.trim().to_ascii_lowercase();
    if upgrade.starts_with("spdy/") {
        return Some(Upgrade::Spdy);
    }
    if upgrade != "websocket" {
        return None;
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Some(Upgrade::WebSocket(offered))
}

/// Which streams an exec or attach session has, from its query.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// `ports` of `PodPortForwardOptions`: repeated, each possibly comma-separated.
fn forward_ports(ctx: &Ctx) -> ApiResult<Vec<u16>> {
    let mut ports = Vec::new();
    for value in ctx.query.all("ports") {
        for p in value.split(',') {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "ports: invalid value {p:?}: must be a port number between 1 and 65535"
                    )));
                }
            }
        }
    }
    Ok(ports)
}

/// The agent path and stream set of an exec or attach request, checked as Kubernetes
/// checks them.
fn remote_command(ctx: &Ctx, pod: &Value, verb: &str, name: &str) -> ApiResult<(String, Streams)> {
    let container = container_of(pod, name, ctx.query.get("container"))?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!(
            "cannot {verb} into a container in a completed pod; current phase is {phase}"
        )));
    }
    let on = |k: &str| ctx.query.flag(k);
    let s = Streams { stdin: on("stdin"), stdout: on("stdout"), stderr: on("stderr"), tty: on("tty") };
    let mut params: Vec<String> =
        ctx.query.all("command").iter().map(|c| format!("command={}", encode(c))).collect();
    if verb == "exec" && params.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    if !(s.stdin || s.stdout || s.stderr) {
        return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    for (k, v) in [("stdin", s.stdin), ("stdout", s.stdout), ("stderr", s.stderr), ("tty", s.tty)] {
        params.push(format!("{k}={}", if v { 1 } else { 0 }));
    }
    Ok((format!("/{verb}/{}/{name}/{container}?{}", ctx.ns(), params.join("&")), s))
}

/// GET or POST `pods/{name}/exec`, `pods/{name}/attach` and `pods/{name}/portforward`.
pub async fn pod_stream(ctx: &Ctx, parts: &mut http::request::Parts) -> ApiResult<Response> {
    let verb = ctx.path.subresource.clone().unwrap_or_default();
    let name = ctx.name().to_owned();
    let Some(upgrade) = upgrade_of(&parts.headers) else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let (pod, _) = load(ctx, &name).await?;
    let (path, streams) = if verb == "portforward" {
        let ports = forward_ports(ctx)?;
        let query: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
        let mut path = format!("/portForward/{}/{name}", ctx.ns());
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        (path, Streams::default())
    } else {
        remote_command(ctx, &pod, &verb, &name)?
    };
    let (address, tls, node_name) = agent_for(ctx, &pod, &name).await?;
    let failed = |e: String| ApiError::internal(format!("error dialing backend on node {node_name}: {e}"));
    let offered = match &upgrade {
        Upgrade::WebSocket(offered) => offered.as_slice(),
        Upgrade::Spdy => &[],
    };
    let translated = match verb.as_str() {
        "portforward" if offered.iter().any(|p| p == TUNNEL) => Some((TUNNEL, PORT_FORWARD)),
        "exec" | "attach" if offered.iter().any(|p| p == V5) => Some((V5, REMOTE_COMMAND)),
        "exec" | "attach" if offered.iter().any(|p| p == V4) => Some((V4, REMOTE_COMMAND)),
        _ => None,
    };
    let Some((protocol, upstream)) = translated else {
        return splice(parts, &address, tls, &path).await.map_err(|e| e.or_else(failed));
    };
    use axum::extract::FromRequestParts;
    let client = ws::WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::bad_request("Upgrade request required"))?;
    let request = http::Request::post(path)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", upstream);
    let mut answer = fetch(&address, request, tls).await.map_err(failed)?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(answer).await);
    }
    let agent = hyper::upgrade::on(&mut answer).await.map_err(|e| failed(e.to_string()))?;
    let agent = TokioIo::new(agent);
    Ok(client.protocols([protocol]).on_upgrade(move |client| async move {
        if protocol == TUNNEL { tunnel(client, agent).await } else { translate(client, agent, streams).await }
    }))
}

/// Why a splice failed: an answer for the client, or a transport error to word.
enum SpliceError {
    Api(ApiError),
    Transport(String),
}

impl SpliceError {
    fn or_else(self, f: impl FnOnce(String) -> ApiError) -> ApiError {
        match self {
            SpliceError::Api(e) => e,
            SpliceError::Transport(e) => f(e),
        }
    }
}

/// Sends the client's upgrade request on to the agent; once both switched protocols,
/// copies bytes between them until either side ends.
async fn splice(
    parts: &mut http::request::Parts,
    address: &str,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Response, SpliceError> {
    let Some(client) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(SpliceError::Api(ApiError::bad_request("Upgrade request required")));
    };
    let mut request = http::Request::builder().method(parts.method.clone()).uri(path);
    for (k, v) in &parts.headers {
        // The agent knows this server by its client certificate, not the user's token.
        if k != header::HOST && k != header::AUTHORIZATION && k != header::CONTENT_LENGTH {
            request = request.header(k, v);
        }
    }
    let mut answer = fetch(address, request, tls).await.map_err(SpliceError::Transport)?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(SpliceError::Api(refusal(answer).await));
    }
    let mut reply = Response::new(axum::body::Body::empty());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *reply.headers_mut() = answer.headers().clone();
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client, hyper::upgrade::on(&mut answer)) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "streaming upgrade failed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    Ok(reply)
}

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

fn normal_close() -> ws::Message {
    ws::Message::Close(Some(ws::CloseFrame { code: ws::close_code::NORMAL, reason: "".into() }))
}

/// port-forward: the client's WebSocket messages are the bytes of a SPDY session
/// with the runtime, in both directions.
async fn tunnel(client: WebSocket, agent: Upgraded) {
    let (mut from_agent, mut to_agent) = tokio::io::split(agent);
    let (mut to_client, mut from_client) = client.split();
    let down = async {
        let mut buf = vec![0u8; spdy::MAX_DATA];
        loop {
            match from_agent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = ws::Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if to_client.send(message).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to_client.send(normal_close()).await;
    };
    let up = async {
        while let Some(Ok(m)) = from_client.next().await {
            let b = match m {
                ws::Message::Binary(b) => b,
                ws::Message::Close(_) => break,
                _ => continue,
            };
            if to_agent.write_all(&b).await.is_err() || to_agent.flush().await.is_err() {
                break;
            }
        }
        let _ = to_agent.shutdown().await;
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}

/// The v5 channels and the SPDY streams they become.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The SPDY streams of a session: channel -> (stream id, `streamType`), in the order
/// client-go opens them (error first).
fn stream_ids(s: Streams) -> BTreeMap<u8, (u32, &'static str)> {
    let wanted = [
        (ERROR, "error", true),
        (STDIN, "stdin", s.stdin),
        (STDOUT, "stdout", s.stdout),
        // A terminal merges stderr into stdout.
        (STDERR, "stderr", s.stderr && !s.tty),
        (RESIZE, "resize", s.tty),
    ];
    let mut ids = BTreeMap::new();
    let mut next = 1;
    for (channel, kind, on) in wanted {
        if on {
            ids.insert(channel, (next, kind));
            next += 2;
        }
    }
    ids
}

/// exec and attach for a v5 (or v4) client: opens the session's SPDY streams with the runtime,
/// passes stdin and terminal sizes up and stdout, stderr and the final status down,
/// turns the client's close of stdin into a FIN, and ends the WebSocket once the
/// runtime has finished every stream it writes.
async fn translate(client: WebSocket, agent: Upgraded, streams: Streams) {
    let ids = stream_ids(streams);
    let (mut from_agent, mut to_agent) = tokio::io::split(agent);
    let (frames, mut outgoing) = tokio::sync::mpsc::channel::<Bytes>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            // TLS holds written bytes until flushed.
            if to_agent.write_all(&frame).await.is_err() || to_agent.flush().await.is_err() {
                return;
            }
        }
        let _ = to_agent.shutdown().await;
    });
    let mut headers = spdy::Writer::default();
    let mut opened = true;
    // SPDY wants stream ids opened in increasing order.
    let mut order: Vec<(u32, &str)> = ids.values().copied().collect();
    order.sort();
    for (id, kind) in order {
        opened &= frames.send(headers.syn_stream(id, &[("streamType", kind)], false)).await.is_ok();
    }
    let channel_of: BTreeMap<u32, u8> = ids.iter().map(|(ch, (id, _))| (*id, *ch)).collect();
    let stream = |ch: u8| ids.get(&ch).map(|(id, _)| *id);
    let (mut to_client, mut from_client) = client.split();
    let down_frames = frames.clone();
    let down = async {
        // The streams the runtime writes; the session is over when all have ended.
        let mut open: Vec<u32> = [STDOUT, STDERR, ERROR].into_iter().filter_map(stream).collect();
        while opened && !open.is_empty() {
            let frame = match spdy::read_frame(&mut from_agent).await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY session with the node ended");
                    break;
                }
            };
            match frame {
                Frame::Data { stream, fin, payload } => {
                    if let Some(ch) = channel_of.get(&stream).filter(|_| !payload.is_empty()) {
                        let mut m = BytesMut::with_capacity(1 + payload.len());
                        m.put_u8(*ch);
                        m.put_slice(&payload);
                        if to_client.send(ws::Message::Binary(m.freeze())).await.is_err() {
                            return;
                        }
                    }
                    if fin {
                        open.retain(|s| *s != stream);
                    }
                }
                Frame::Reply { stream, fin: true } | Frame::Reset { stream, .. } => {
                    open.retain(|s| *s != stream)
                }
                // Even ids are the runtime's own pings, which want an echo.
                Frame::Ping { id } if id % 2 == 0 && down_frames.send(spdy::ping(id)).await.is_err() => break,
                Frame::GoAway => break,
                _ => {}
            }
        }
        let _ = to_client.send(normal_close()).await;
    };
    let up_frames = frames;
    let up = async {
        while let Some(Ok(m)) = from_client.next().await {
            let b = match m {
                ws::Message::Binary(b) => b,
                ws::Message::Text(t) => Bytes::copy_from_slice(t.as_str().as_bytes()),
                ws::Message::Close(_) => break,
                _ => continue,
            };
            let sent = match (b.first().copied(), b.get(1).copied()) {
                (Some(CLOSE), Some(ch)) => match stream(ch) {
                    Some(id) => up_frames.send(spdy::data(id, &[], true)).await,
                    None => Ok(()),
                },
                (Some(ch @ (STDIN | RESIZE)), _) => match stream(ch) {
                    Some(id) => {
                        let mut result = Ok(());
                        for chunk in b[1..].chunks(spdy::MAX_DATA) {
                            result = up_frames.send(spdy::data(id, chunk, false)).await;
                        }
                        result
                    }
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_kind_comes_from_the_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(upgrade_of(&h), None);
        h.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert_eq!(upgrade_of(&h), Some(Upgrade::Spdy));
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.append(header::SEC_WEBSOCKET_PROTOCOL, "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap());
        h.append(header::SEC_WEBSOCKET_PROTOCOL, "channel.k8s.io".parse().unwrap());
        assert_eq!(
            upgrade_of(&h),
            Some(Upgrade::WebSocket(vec![
                "v5.channel.k8s.io".into(),
                "v4.channel.k8s.io".into(),
                "channel.k8s.io".into()
            ]))
        );
        h.insert(header::UPGRADE, "h2c".parse().unwrap());
        assert_eq!(upgrade_of(&h), None);
    }

    #[test]
    fn streams_open_error_first_and_a_terminal_has_no_stderr() {
        let all = Streams { stdin: true, stdout: true, stderr: true, tty: false };
        let ids = stream_ids(all);
        assert_eq!(ids[&ERROR], (1, "error"));
        assert_eq!(ids[&STDIN], (3, "stdin"));
        assert_eq!(ids[&STDOUT], (5, "stdout"));
        assert_eq!(ids[&STDERR], (7, "stderr"));
        assert!(!ids.contains_key(&RESIZE));
        let tty = stream_ids(Streams { tty: true, ..all });
        assert!(!tty.contains_key(&STDERR));
        assert_eq!(tty[&RESIZE], (7, "resize"));
        let out = stream_ids(Streams { stdout: true, ..Default::default() });
        assert_eq!(out.len(), 2);
        assert_eq!(out[&STDOUT], (3, "stdout"));
    }
}
