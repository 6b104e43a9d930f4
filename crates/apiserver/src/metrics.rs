//! Prometheus metrics: request counts and latencies by verb and code, objects stored,
//! and the process's memory.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, header};

use crate::Api;

const BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Request metrics, updated by the handler of every request.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn verb(method: &Method, path: &str) -> &'static str {
    match *method {
        Method::GET if path.contains("watch=") => "WATCH",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// The resident set size of this process in bytes, from /proc.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Metrics {
    pub fn observe(&self, method: &Method, path: &str, code: u16, took: Duration) {
        let v = verb(method, path).to_string();
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((v.clone(), code)).or_default() += 1;
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat.entry(v).or_default();
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The text exposition of every metric.
    pub fn render(&self, api: &Api) -> Response {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, code), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "apiserver_request_total{{verb=\"{verb}\",code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP apiserver_request_duration_seconds Request latency by verb.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for (verb, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {}", h.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{verb=\"{verb}\"}} {}", h.count);
        }
        out.push_str(
            "# HELP apiserver_storage_revision The newest store revision the watch cache has applied.\n",
        );
        out.push_str("# TYPE apiserver_storage_revision gauge\n");
        let _ = writeln!(out, "apiserver_storage_revision {}", api.caches.revision());
        if let Some(rss) = rss_bytes() {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
            out.push_str("# TYPE process_resident_memory_bytes gauge\n");
            let _ = writeln!(out, "process_resident_memory_bytes {rss}");
        }
        let mut resp = Response::new(Body::from(out));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}
