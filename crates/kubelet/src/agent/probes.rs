//! Liveness, readiness and startup probes, as the kubelet's prober runs them: one task
//! per probed container and probe type, honouring `initialDelaySeconds`,
//! `periodSeconds`, `timeoutSeconds` and the success and failure thresholds; liveness
//! and readiness wait for the startup probe; a liveness or startup failure holds until
//! the container is replaced. Readiness starts as failure, liveness as success. Each
//! failed run records an `Unhealthy` event (`Liveness probe failed: ...`), and each
//! change of a cached result wakes the pod's worker, which restarts the container or
//! updates its `ready` flag.
//!
//! Handlers: exec through CRI `ExecSync`, httpGet (HTTP or HTTPS without certificate
//! checks, `User-Agent: kube-probe/1.33`, success for 200-399), tcpSocket (connect),
//! and grpc (`grpc.health.v1.Health/Check`, success for `SERVING`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Buf;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::Shared;
use super::containers::expand;
use super::events::EventType;
use super::runtime_pod::RuntimePod;

/// The most probe output kept (10 KiB, as the kubelet).
const MAX_OUTPUT: usize = 10 * 1024;
/// The User-Agent of HTTP probes and hooks.
pub const USER_AGENT: &str = "kube-probe/1.33";

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As events name it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// A probe's cached result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
}

/// What one probe run found: its result, its output, and whether it errored (could not
/// be run) rather than failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub result: ProbeResult,
    pub output: String,
    pub errored: bool,
}

impl Outcome {
    fn success(output: String) -> Self {
        Self { result: ProbeResult::Success, output, errored: false }
    }

    fn failure(output: String) -> Self {
        Self { result: ProbeResult::Failure, output, errored: false }
    }
}

type WorkerKey = (String, String, ProbeKind);

struct Worker {
    container_id: String,
    task: tokio::task::JoinHandle<()>,
}

/// The probe workers of this node and their cached results.
#[derive(Default)]
pub struct ProbeManager {
    workers: Mutex<HashMap<WorkerKey, Worker>>,
    results: Arc<Mutex<HashMap<(String, ProbeKind), ProbeResult>>>,
}

impl ProbeManager {
    /// The cached result of a probe of a container instance (`None`: not run yet).
    pub fn result(&self, container_id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        let results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.get(&(container_id.to_owned(), kind)).copied()
    }

    /// Sets a cached result (tests, and the workers).
    pub fn set(&self, container_id: &str, kind: ProbeKind, result: ProbeResult) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert((container_id.to_owned(), kind), result);
    }

    /// Starts a worker for every probe of every running container of the pod that has
    /// none, and stops workers whose container instance is gone or not running.
    pub fn sync_pod(
        &self,
        shared: &Arc<Shared>,
        pod: &Arc<Pod>,
        rt: &RuntimePod,
        pod_ip: &str,
        wake: &Arc<Notify>,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else { return };
        let containers: Vec<&Container> =
            spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
        let mut wanted: HashMap<WorkerKey, (String, i64, Container)> = HashMap::new();
        for c in containers {
            let Some(latest) = rt.latest(&c.name) else { continue };
            if !latest.running() {
                continue;
            }
            for kind in [ProbeKind::Liveness, ProbeKind::Readiness, ProbeKind::Startup] {
                if kind.of(c).is_some() {
                    wanted.insert(
                        (uid.clone(), c.name.clone(), kind),
                        (latest.id.clone(), latest.started_at, c.clone()),
                    );
                }
            }
        }
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<WorkerKey> = workers
            .iter()
            .filter(|(k, w)| k.0 == uid && wanted.get(*k).is_none_or(|(id, _, _)| *id != w.container_id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(w) = workers.remove(&key) {
                w.task.abort();
                self.forget(&w.container_id);
            }
        }
        for (key, (container_id, started_at, container)) in wanted {
            if workers.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(probe_loop(ProbeTask {
                shared: shared.clone(),
                pod: pod.clone(),
                container,
                container_id: container_id.clone(),
                started_at,
                pod_ip: pod_ip.to_owned(),
                kind: key.2,
                results: self.results.clone(),
                wake: wake.clone(),
            }));
            workers.insert(key, Worker { container_id, task });
        }
    }

    fn forget(&self, container_id: &str) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.retain(|(id, _), _| id != container_id);
    }

    /// Stops every worker of a pod and forgets their results.
    pub fn remove_pod(&self, uid: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<WorkerKey> = workers.keys().filter(|k| k.0 == uid).cloned().collect();
        for key in keys {
            if let Some(w) = workers.remove(&key) {
                w.task.abort();
                self.forget(&w.container_id);
            }
        }
    }
}

struct ProbeTask {
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    container: Container,
    container_id: String,
    started_at: i64,
    pod_ip: String,
    kind: ProbeKind,
    results: Arc<Mutex<HashMap<(String, ProbeKind), ProbeResult>>>,
    wake: Arc<Notify>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> u64 {
    v.unwrap_or(default).max(min) as u64
}

async fn probe_loop(t: ProbeTask) {
    let Some(probe) = t.kind.of(&t.container).cloned() else { return };
    let period = Duration::from_secs(secs(probe.period_seconds, 10, 1));
    let timeout = Duration::from_secs(secs(probe.timeout_seconds, 1, 1));
    let initial_delay = Duration::from_secs(secs(probe.initial_delay_seconds, 0, 0));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let key = (t.container_id.clone(), t.kind);
    let set = |r: ProbeResult| -> bool {
        let mut results = t.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert(key.clone(), r) != Some(r)
    };
    let get = |kind: ProbeKind| {
        let results = t.results.lock().unwrap_or_else(|e| e.into_inner());
        results.get(&(t.container_id.clone(), kind)).copied()
    };
    match t.kind {
        ProbeKind::Readiness => {
            set(ProbeResult::Failure);
        }
        ProbeKind::Liveness => {
            set(ProbeResult::Success);
        }
        ProbeKind::Startup => {}
    }
    let mut last: Option<ProbeResult> = None;
    let mut run = 0;
    loop {
        if t.kind != ProbeKind::Startup
            && t.container.startup_probe.is_some()
            && get(ProbeKind::Startup) != Some(ProbeResult::Success)
        {
            tokio::time::sleep(period).await;
            continue;
        }
        let started =
            jiff::Timestamp::from_nanosecond(i128::from(t.started_at)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let running_for = t.shared.clock.now().duration_since(started);
        if let Ok(running_for) = Duration::try_from(running_for)
            && running_for < initial_delay
        {
            tokio::time::sleep(initial_delay - running_for).await;
            continue;
        }
        let outcome =
            run_probe(&t.shared, &t.pod, &t.container, &t.container_id, &t.pod_ip, &probe, timeout).await;
        if outcome.result == ProbeResult::Failure {
            let message = if outcome.errored {
                format!("{} probe errored and resulted in Failure state: {}", t.kind.title(), outcome.output)
            } else {
                format!("{} probe failed: {}", t.kind.title(), outcome.output)
            };
            t.shared
                .recorder
                .pod(&t.pod, Some(&t.container.name), EventType::Warning, "Unhealthy", &message)
                .await;
        }
        if last == Some(outcome.result) {
            run += 1;
        } else {
            last = Some(outcome.result);
            run = 1;
        }
        let threshold = match outcome.result {
            ProbeResult::Success => success_threshold,
            ProbeResult::Failure => failure_threshold,
        };
        if run >= threshold {
            if set(outcome.result) {
                t.wake.notify_one();
            }
            let holds = matches!(
                (t.kind, outcome.result),
                (ProbeKind::Liveness | ProbeKind::Startup, ProbeResult::Failure)
                    | (ProbeKind::Startup, ProbeResult::Success)
            );
            if holds {
                // Until the container is replaced (a new worker), nothing changes.
                return;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Runs one probe of a container.
pub async fn run_probe(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    probe: &Probe,
    timeout: Duration,
) -> Outcome {
    if let Some(exec) = &probe.exec {
        let command = static_expand(exec.command.clone().unwrap_or_default(), container);
        return exec_probe(shared, container_id, command, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return match http_target(h, container, pod_ip) {
            Ok(target) => http_get(&target, timeout).await,
            Err(e) => Outcome { result: ProbeResult::Failure, output: e, errored: true },
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
        return match resolve_port(&tcp.port, container) {
            Ok(port) => tcp_probe(&host, port, timeout).await,
            Err(e) => Outcome { result: ProbeResult::Failure, output: e, errored: true },
        };
    }
    if let Some(g) = &probe.grpc {
        let service = g.service.clone().unwrap_or_default();
        return grpc_probe(pod_ip, g.port, &service, timeout).await;
    }
    let _ = pod;
    Outcome { result: ProbeResult::Failure, output: "missing probe handler".into(), errored: true }
}

/// Expands `$(VAR)` in a probe command against the container's literal env values only
/// (the kubelet's `ExpandContainerCommandOnlyStatic`).
pub fn static_expand(command: Vec<String>, container: &Container) -> Vec<String> {
    let vars: HashMap<String, String> =
        container.env.iter().flatten().filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v))).collect();
    command.into_iter().map(|c| expand(&c, &|n| vars.get(n).cloned())).collect()
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Runs a command in the container through `ExecSync`; exit 0 is success, and the
/// output (stdout then stderr) is the probe's output.
pub async fn exec_probe(
    shared: &Shared,
    container_id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Outcome {
    let joined = command.join(" ");
    match shared.runtime.exec_sync(container_id, command, timeout).await {
        Ok(r) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            let output = truncate(String::from_utf8_lossy(&out).into_owned());
            if r.exit_code == 0 { Outcome::success(output) } else { Outcome::failure(output) }
        }
        Err(cri::Error::Timeout { .. }) => Outcome::failure(format!("command \"{joined}\" timed out")),
        Err(e) if e.code() == Some(tonic::Code::DeadlineExceeded) => {
            Outcome::failure(format!("command \"{joined}\" timed out"))
        }
        Err(e) => Outcome { result: ProbeResult::Failure, output: super::grpc_message(&e), errored: true },
    }
}

/// A port number, or the named port of the container.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port number: {p}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

/// Where an HTTP probe or hook goes.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpTarget {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    /// The URL, as Go's HTTP client prints it in errors.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{}://{host}:{}{}", if self.https { "https" } else { "http" }, self.port, self.path)
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The target of an `httpGet` action: its host (else the pod IP), port, path (default
/// `/`), scheme and headers.
pub fn http_target(h: &HTTPGetAction, container: &Container, pod_ip: &str) -> Result<HttpTarget, String> {
    let port = resolve_port(&h.port, container)?;
    let mut path = h.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Ok(HttpTarget {
        https: h.scheme.as_deref() == Some("HTTPS"),
        host: h.host.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| pod_ip.to_owned()),
        port,
        path,
        headers: h.http_headers.iter().flatten().map(|hh| (hh.name.clone(), hh.value.clone())).collect(),
    })
}

/// Go's wording for a failed dial.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".to_owned(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_owned(),
        _ => format!("connect: {e}"),
    };
    format!("dial tcp {addr}: {what}")
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(dial_error(addr, &e)),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Connects to `host:port`; success once the connection is made.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    match connect(&addr, timeout).await {
        Ok(_) => Outcome::success(String::new()),
        Err(e) => Outcome::failure(e),
    }
}

/// Accepts any server certificate, as the kubelet's HTTPS probes do.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn send<I>(io: I, target: &HttpTarget) -> Result<(u16, String), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::get(&target.path)
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "*/*");
    let mut has_host = false;
    for (k, v) in &target.headers {
        if k.eq_ignore_ascii_case("host") {
            has_host = true;
        }
        req = req.header(k.as_str(), v.as_str());
    }
    if !has_host {
        req = req.header(http::header::HOST, target.addr());
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while out.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    let take = data.remaining().min(MAX_OUTPUT - out.len());
                    out.extend_from_slice(&data.copy_to_bytes(take));
                }
            }
            _ => break,
        }
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// One HTTP GET; success for status 200-399 (the body is the output), failure
/// otherwise (`HTTP probe failed with statuscode: 500`) or when the request fails.
pub async fn http_get(target: &HttpTarget, timeout: Duration) -> Outcome {
    let url = target.url();
    let work = async {
        let stream = connect(&target.addr(), timeout).await?;
        if target.https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name =
                rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
            let tls = connector.connect(name, stream).await.map_err(|e| e.to_string())?;
            send(TokioIo::new(tls), target).await
        } else {
            send(TokioIo::new(stream), target).await
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((status, body))) if (200..400).contains(&status) => Outcome::success(body),
        Ok(Ok((status, _))) => Outcome::failure(format!("HTTP probe failed with statuscode: {status}")),
        Ok(Err(e)) => Outcome::failure(format!("Get \"{url}\": {e}")),
        Err(_) => Outcome::failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// A tonic codec that sends and receives raw protobuf bytes, for the one health RPC.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// `HealthCheckRequest { service }` in protobuf.
fn health_request(service: &str) -> Vec<u8> {
    if service.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0x0a];
    let mut len = service.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(service.as_bytes());
    out
}

/// The `status` of a `HealthCheckResponse` (0 when absent).
fn health_status(bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        let key = bytes[i];
        i += 1;
        let mut value: u64 = 0;
        let mut shift = 0;
        match key & 7 {
            0 => {
                while i < bytes.len() {
                    let b = bytes[i];
                    i += 1;
                    value |= u64::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                if key >> 3 == 1 {
                    return value;
                }
            }
            2 => {
                let mut len: usize = 0;
                while i < bytes.len() {
                    let b = bytes[i];
                    i += 1;
                    len |= usize::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                i += len;
            }
            _ => return 0,
        }
    }
    0
}

/// The gRPC health check of `service` on the pod's `port`.
pub async fn grpc_probe(pod_ip: &str, port: i32, service: &str, timeout: Duration) -> Outcome {
    let addr = if pod_ip.contains(':') { format!("[{pod_ip}]:{port}") } else { format!("{pod_ip}:{port}") };
    let secs = timeout.as_secs().max(1);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return Outcome { result: ProbeResult::Failure, output: e.to_string(), errored: true },
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        _ => {
            return Outcome::failure(format!(
                "timeout: failed to connect service \"{addr}\" within {secs}s: context deadline exceeded"
            ));
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = async {
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        grpc.unary(tonic::Request::new(health_request(service)), path, RawCodec).await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => match health_status(resp.get_ref()) {
            1 => Outcome::success(String::new()),
            s => {
                let name = match s {
                    0 => "UNKNOWN",
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "UNKNOWN",
                };
                Outcome::failure(format!("service unhealthy (responded with \"{name}\")"))
            }
        },
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
            Outcome::failure(format!("timeout: health rpc did not complete within {secs}s"))
        }
        Ok(Err(status)) => Outcome::failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
        Err(_) => Outcome::failure(format!("timeout: health rpc did not complete within {secs}s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn health_messages_encode_and_decode() {
        assert_eq!(health_request(""), Vec::<u8>::new());
        assert_eq!(health_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(health_status(&[0x08, 0x01]), 1);
        assert_eq!(health_status(&[]), 0);
        assert_eq!(health_status(&[0x12, 0x01, b'x', 0x08, 0x02]), 2);
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "web",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    async fn serve_once(status: &'static str, body: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            assert!(req.contains("user-agent: kube-probe/1.33"), "{req}");
            let resp = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        port
    }

    fn target(port: u16) -> HttpTarget {
        HttpTarget { https: false, host: "127.0.0.1".into(), port, path: "/healthz".into(), headers: vec![] }
    }

    #[tokio::test]
    async fn http_probes_succeed_below_400_and_report_the_status_otherwise() {
        let ok = http_get(&target(serve_once("200 OK", "fine").await), Duration::from_secs(2)).await;
        assert_eq!(ok, Outcome::success("fine".into()));
        let bad =
            http_get(&target(serve_once("500 Internal Server Error", "").await), Duration::from_secs(2))
                .await;
        assert_eq!(bad, Outcome::failure("HTTP probe failed with statuscode: 500".into()));
    }

    #[tokio::test]
    async fn connection_failures_use_go_wording() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let out = tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await;
        assert_eq!(out, Outcome::failure(format!("dial tcp 127.0.0.1:{port}: connect: connection refused")));
        let out = http_get(&target(port), Duration::from_secs(1)).await;
        assert_eq!(
            out.output,
            format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }
}
