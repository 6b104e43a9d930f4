//! The agent's own HTTPS API, which the API server calls for `pods/log`, `exec`,
//! `attach` and `portforward` (the kubelet's `/containerLogs/{namespace}/{pod}/{container}`,
//! `/exec/...`, `/attach/...` and `/portForward/{namespace}/{pod}`). Clients must present
//! a certificate the cluster CA signed (the TLS configuration the caller gives enforces
//! it), and only administrators — the API server's own client certificate is one, in
//! the `system:masters` group — may use it: another node's certificate is refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cri::api::{ContainerFilter, ContainerState};
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::logs::{self, Options};
use super::runtime_pod::keys;
use super::{Shared, sandbox};

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(code: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(message.into())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    r
}

/// Serves the agent's API on `listener` until the task is dropped.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "agent API: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "agent API: TLS handshake failed");
                    return;
                }
            };
            let caller = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(caller_of);
            let caller = Arc::new(caller);
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let caller = caller.clone();
                async move {
                    let answer = match refusal(caller.as_ref().as_ref(), &req) {
                        Some(no) => no,
                        None => handle(shared, req).await,
                    };
                    Ok::<_, Infallible>(answer)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "agent API: connection ended");
            }
        });
    }
}

/// Who presented a client certificate: its common name and organizations (groups).
#[derive(Debug, PartialEq)]
struct Caller {
    user: String,
    groups: Vec<String>,
}

fn caller_of(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<Caller> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_owned)).collect();
    Some(Caller { user, groups })
}

/// The answer refusing `req` to `caller`, or `None` when it may go ahead: health is
/// open to any client of the cluster CA, everything else needs `system:masters`
/// (worded as the kubelet's authorizer words a refusal).
fn refusal<B>(caller: Option<&Caller>, req: &Request<B>) -> Option<Response<Body>> {
    if req.uri().path() == "/healthz"
        || caller.is_some_and(|c| c.groups.iter().any(|g| g == "system:masters"))
    {
        return None;
    }
    let user = caller.map(|c| c.user.as_str()).unwrap_or("system:anonymous");
    let verb = if req.method() == http::Method::GET { "get" } else { "create" };
    let subresource = if req.uri().path().starts_with("/containerLogs/") { "log" } else { "proxy" };
    Some(text(
        StatusCode::FORBIDDEN,
        format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{subresource}])"),
    ))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    // Streaming upgrades come as GET (WebSocket) or POST (SPDY), as to the kubelet.
    if req.method() != http::Method::GET && req.method() != http::Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST are served");
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["containerLogs", ns, pod, container] => container_logs(shared, ns, pod, container, &query).await,
        [verb @ ("exec" | "attach"), ns, pod, container] => {
            let (ns, pod, container, verb) =
                (ns.to_string(), pod.to_string(), container.to_string(), verb.to_string());
            stream_session(shared, req, &verb, &ns, &pod, &container, &query).await
        }
        ["portForward", ns, pod] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(shared, req, &ns, &pod, &query).await
        }
        _ => text(StatusCode::NOT_FOUND, format!("404 page not found: {path}")),
    }
}

/// The pod the request names, or the answer saying why there is none.
async fn pod_of(shared: &Shared, ns: &str, name: &str) -> Result<Pod, Response<Body>> {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    match pods.get_opt(name).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, format!("pod {ns}/{name} not found"))),
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading pod {ns}/{name}: {e}"))),
    }
}

async fn container_logs(
    shared: Arc<Shared>,
    ns: &str,
    name: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = match Options::from_query(query, shared.clock.now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let pod = match pod_of(&shared, ns, name).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = sandbox::log_directory(&shared.config.root_dir.join("logs"), &pod);
    let files = logs::container_log_files(&dir, container);
    let chosen = if opts.previous {
        if files.len() < 2 {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{name}\" not found"),
            );
        }
        files[files.len() - 2].clone()
    } else {
        match files.last() {
            Some(f) => f.clone(),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                    ),
                );
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // With follow, the stream ends once the container stops or a newer attempt began.
    let stopped = Arc::new(AtomicBool::new(opts.previous || !opts.follow));
    if opts.follow && !opts.previous {
        let flag = stopped.clone();
        let watcher = shared.clone();
        let (uid, container, newest) = (uid.clone(), container.to_owned(), chosen.clone());
        let closed = tx.clone();
        tokio::spawn(async move {
            loop {
                let replaced = logs::container_log_files(&dir, &container).last() != Some(&newest);
                // A runtime that cannot answer leaves the stream open; the client ends it.
                let stopped = matches!(running_container(&watcher, &uid, &container).await, Ok(None));
                if replaced || stopped {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::select! {
                    _ = closed.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
    }
    tokio::spawn(async move {
        let done = move || stopped.load(Ordering::SeqCst);
        if let Err(e) = logs::stream(chosen.clone(), opts, tx, done).await {
            tracing::debug!(path = %chosen.display(), error = %e, "reading a container log failed");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    })
    .boxed();
    let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(body)));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    r
}

/// The query of an exec or attach request: the command and which streams.
#[derive(Debug, Default, PartialEq)]
struct StreamQuery {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn stream_query(query: &str) -> StreamQuery {
    let mut q = StreamQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = logs::percent_decode(v);
        let on = v == "1" || v == "true";
        match k {
            "command" => q.command.push(v),
            "stdin" | "input" => q.stdin = on,
            "stdout" | "output" => q.stdout = on,
            "stderr" | "error" => q.stderr = on,
            "tty" => q.tty = on,
            _ => {}
        }
    }
    q
}

/// The id of the running container `container` of the pod with `uid`.
async fn running_container(
    shared: &Shared,
    uid: &str,
    container: &str,
) -> Result<Option<String>, cri::Error> {
    let filter = ContainerFilter {
        label_selector: [
            (keys::POD_UID.to_owned(), uid.to_owned()),
            (keys::CONTAINER_NAME.to_owned(), container.to_owned()),
        ]
        .into(),
        ..Default::default()
    };
    let containers = shared.runtime.list_containers(Some(filter)).await?;
    Ok(containers.into_iter().find(|c| c.state == ContainerState::ContainerRunning as i32).map(|c| c.id))
}

/// `exec` and `attach`: asks the runtime for a streaming session, then hands the
/// client's upgrade request (WebSocket, `v4.channel.k8s.io`) to the runtime's streaming
/// server and splices the two connections, as the kubelet proxies to its runtime.
async fn stream_session(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    verb: &str,
    ns: &str,
    name: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let q = stream_query(query);
    if verb == "exec" && q.command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least 1 command");
    }
    if !(q.stdin || q.stdout || q.stderr) {
        return text(StatusCode::BAD_REQUEST, "you must specify at least 1 of stdin, stdout, stderr");
    }
    let pod = match pod_of(&shared, ns, name).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Ok(Some(id)) = running_container(&shared, &uid, container).await else {
        return text(StatusCode::BAD_REQUEST, format!("container not found ({container:?})"));
    };
    let url = if verb == "exec" {
        let request = cri::api::ExecRequest {
            container_id: id,
            cmd: q.command.clone(),
            tty: q.tty,
            stdin: q.stdin,
            stdout: q.stdout,
            stderr: q.stderr && !q.tty,
        };
        shared.runtime.exec(request).await
    } else {
        let request = cri::api::AttachRequest {
            container_id: id,
            stdin: q.stdin,
            tty: q.tty,
            stdout: q.stdout,
            stderr: q.stderr && !q.tty,
        };
        shared.runtime.attach(request).await
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, super::grpc_message(&e)),
    };
    match splice_upgrade(req, &url).await {
        Ok(r) => r,
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("streaming from the container runtime: {e}")),
    }
}

/// `portForward`: asks the runtime for a port-forward session into the pod's sandbox
/// and splices the client's upgrade (SPDY/3.1 with `portforward.k8s.io`, or a
/// `portforward.k8s.io` WebSocket) to it. One session carries every connection the
/// client opens; the runtime dials each in the pod's network namespace.
async fn port_forward(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    query: &str,
) -> Response<Body> {
    let pod = match pod_of(&shared, ns, name).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let sandbox = match super::runtime_pod::inspect(shared.runtime.as_ref(), &uid).await {
        Ok(p) => p.ready_sandbox().map(|s| s.id.clone()),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, super::grpc_message(&e)),
    };
    let Some(sandbox) = sandbox else {
        return text(StatusCode::BAD_REQUEST, format!("pod {ns}/{name} has no running sandbox on this node"));
    };
    // A WebSocket session names its ports in the query (`?port=80`), which the runtime
    // takes from the CRI request; SPDY names them per stream.
    let mut ports = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(("port", v)) = pair.split_once('=') {
            match v.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(i32::from(p)),
                _ => return text(StatusCode::BAD_REQUEST, format!("invalid port {v:?}")),
            }
        }
    }
    let url = match shared.runtime.port_forward(&sandbox, ports).await {
        Ok(u) => u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, super::grpc_message(&e)),
    };
    match splice_upgrade(req, &url).await {
        Ok(r) => r,
        Err(e) => text(StatusCode::BAD_GATEWAY, format!("port-forward through the container runtime: {e}")),
    }
}

/// Sends the client's upgrade request to the runtime's streaming `url` (plain HTTP
/// on the node), answers the client with the runtime's answer, and once both sides
/// switched protocols, copies bytes between them until either ends.
async fn splice_upgrade(req: Request<Incoming>, url: &str) -> Result<Response<Body>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad streaming URL {url:?}: {e}"))?;
    let authority = uri.authority().ok_or_else(|| format!("streaming URL {url:?} has no host"))?.to_string();
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut upstream = http::Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        let name = k.as_str();
        if name == "host" || name == "authorization" {
            continue;
        }
        upstream = upstream.header(k, v);
    }
    let upstream = upstream
        .header(http::header::HOST, authority.as_str())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let mut answer = sender.send_request(upstream).await.map_err(|e| e.to_string())?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = answer.status();
        let body = answer.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Ok(text(code, String::from_utf8_lossy(&body).into_owned()));
    }
    let mut reply = Response::new(http_body_util::Empty::<Bytes>::new().boxed_unsync());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *reply.headers_mut() = answer.headers().clone();
    tokio::spawn(async move {
        let (client, runtime) =
            match tokio::try_join!(hyper::upgrade::on(req), hyper::upgrade::on(&mut answer)) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "streaming upgrade failed");
                    return;
                }
            };
        let (mut client, mut runtime) = (TokioIo::new(client), TokioIo::new(runtime));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut runtime).await;
    });
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, orgs: &[&str]) -> rustls::pki_types::CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_client_certificate_names_its_user_and_groups() {
        let c = caller_of(&cert("kube-apiserver-kubelet-client", &["system:masters"])).unwrap();
        assert_eq!(c.user, "kube-apiserver-kubelet-client");
        assert_eq!(c.groups, ["system:masters"]);
        let node = caller_of(&cert("system:node:n2", &["system:nodes"])).unwrap();
        assert_eq!(node.groups, ["system:nodes"]);
        assert_eq!(caller_of(&rustls::pki_types::CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn only_administrators_may_use_the_api_beyond_health() {
        let admin =
            Caller { user: "kube-apiserver-kubelet-client".into(), groups: vec!["system:masters".into()] };
        let node = Caller { user: "system:node:n2".into(), groups: vec!["system:nodes".into()] };
        let get = |path: &str| Request::get(path).body(()).unwrap();
        assert!(refusal(Some(&admin), &get("/containerLogs/default/p/c")).is_none());
        assert!(refusal(Some(&node), &get("/healthz")).is_none());
        let no = refusal(Some(&node), &get("/containerLogs/default/p/c")).expect("refused");
        assert_eq!(no.status(), StatusCode::FORBIDDEN);
        let exec = Request::post("/exec/default/p/c?command=sh").body(()).unwrap();
        assert!(refusal(Some(&node), &exec).is_some());
        assert!(refusal(None, &get("/portForward/default/p")).is_some());
    }

    #[test]
    fn exec_queries_name_the_command_and_the_streams() {
        let q = stream_query("command=sh&command=-c&command=echo%20hi%3B+exit%203&stdout=1&stderr=1&tty=0");
        assert_eq!(q.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(q.stdout && q.stderr && !q.stdin && !q.tty);
        let q = stream_query("input=1&output=1&tty=true");
        assert!(q.stdin && q.stdout && q.tty && !q.stderr);
    }
}
