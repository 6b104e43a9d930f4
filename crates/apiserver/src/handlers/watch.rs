//! watch: a stream of newline-delimited `WatchEvent`s from the watch cache, with
//! selectors, bookmarks, initial events and timeouts as Kubernetes defines them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Ctx;
use super::read::{Filter, served};
use crate::cache::{EventType, WatchEvent};
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Output};
use crate::registry::Resource;

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// What one watch event becomes for this watcher, after selectors, in the served version.
fn project(res: &Resource, filter: &Filter, ev: &WatchEvent) -> Option<(&'static str, Value)> {
    let obj = served(res, (*ev.object).clone());
    let now = filter.is_everything() || filter.matches(&obj);
    let type_ = match ev.type_ {
        EventType::Added => now.then_some("ADDED")?,
        EventType::Deleted => now.then_some("DELETED")?,
        EventType::Modified if filter.is_everything() => "MODIFIED",
        EventType::Modified => {
            let before = ev.prev.as_ref().is_some_and(|p| filter.matches(&served(res, (**p).clone())));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
    };
    Some((type_, obj))
}

struct Encoder {
    res: Arc<Resource>,
    out: Output,
    first: bool,
}

impl Encoder {
    fn line(&mut self, type_: &str, obj: &Value) -> Bytes {
        let object = match self.out {
            Output::Table { beta, include } => {
                let meta = json!({"resourceVersion": crate::meta::resource_version(obj)});
                let mut t = crate::table::table(&self.res, std::slice::from_ref(obj), meta, beta, include);
                if !self.first {
                    // Column definitions travel with the first event only, as in Kubernetes.
                    t["columnDefinitions"] = json!([]);
                }
                self.first = false;
                t
            }
            Output::Metadata { beta } => crate::table::partial_metadata(obj, beta),
            _ => obj.clone(),
        };
        let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// A line for an event whose object is served exactly as stored.
    fn raw_line(type_: &str, object: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(type_.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&mut self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

pub async fn watch(ctx: &Ctx) -> ApiResult<Response> {
    let out = negotiate::output(&ctx.headers, ctx.query.get("includeObject"))?;
    if out == Output::Protobuf {
        return Err(ApiError::not_acceptable("watch is served as application/json only"));
    }
    let filter = Filter::from_ctx(ctx)?;
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let send_initial = match ctx.query.get("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let rv_match = ctx.query.get("resourceVersionMatch").unwrap_or("");
    if send_initial.is_some() {
        if rv_match != "NotOlderThan" {
            return Err(ApiError::invalid_watch(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::invalid_watch(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is true",
            ));
        }
    } else if !rv_match.is_empty() {
        return Err(ApiError::bad_request("resourceVersionMatch is forbidden for watch"));
    }
    let parsed: Option<i64> = if rv.is_empty() {
        None
    } else {
        Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?)
    };
    let cache = ctx.api.caches.cache(&ctx.res.storage.prefix).await?;
    // Which state the watch starts from: the current objects (synthetic ADDED events) when
    // no version is given, "0" is given, or initial events are asked for; else history.
    let after = match (send_initial, parsed) {
        (Some(true), Some(min)) => {
            if min > 0 {
                ctx.api.caches.wait_for(min).await?;
            }
            None
        }
        (Some(true), None) => {
            ctx.api.caches.wait_consistent().await?;
            None
        }
        (_, None) => {
            ctx.api.caches.wait_consistent().await?;
            None
        }
        (_, Some(0)) => None,
        (_, Some(v)) => {
            if v > ctx.api.caches.revision() {
                ctx.api.caches.wait_for(v).await?;
            }
            Some(v)
        }
    };
    let prefix = ctx.res.storage.list_prefix(ctx.namespace());
    let start = match cache.watch(&prefix, after) {
        Ok(s) => s,
        // As Kubernetes: a watch from a version no longer kept gets 200 and one ERROR
        // event carrying the 410 Status, which tells clients to list again.
        Err(e) if e.code == 410 => {
            let mut line =
                serde_json::to_vec(&json!({"type": "ERROR", "object": e.status()})).unwrap_or_default();
            line.push(b'\n');
            let mut resp = Response::new(Body::from(line));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Kubernetes picks a random length between the minimum request timeout and twice it.
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let res = ctx.res.clone();
    let initial_end_bookmark = send_initial == Some(true);
    // Without selectors, conversion or tables, every watcher sends the stored bytes.
    let verbatim = out == Output::Json
        && filter.is_everything()
        && res.storage.group == res.group
        && res.storage.storage_version == res.version;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut enc = Encoder { res: res.clone(), out, first: true };
        let mut last_rv = start.revision;
        for ev in &start.initial {
            if verbatim {
                if tx.send(Ok(Encoder::raw_line(ev.type_.as_str(), ev.object_json()))).await.is_err() {
                    return;
                }
                continue;
            }
            if let Some((t, obj)) = project(&res, &filter, ev)
                && tx.send(Ok(enc.line(t, &obj))).await.is_err()
            {
                return;
            }
        }
        if initial_end_bookmark && tx.send(Ok(enc.bookmark(start.revision, true))).await.is_err() {
            return;
        }
        let mut live = start.live;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(enc.bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if !ev.key.starts_with(&prefix) {
                            continue;
                        }
                        last_rv = ev.revision;
                        if verbatim {
                            if tx.send(Ok(Encoder::raw_line(ev.type_.as_str(), ev.object_json()))).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        if let Some((t, obj)) = project(&res, &filter, &ev)
                            && tx.send(Ok(enc.line(t, &obj))).await.is_err() {
                                return;
                            }
                    }
                    // A watcher that fell behind, or a cache that was reset: end the
                    // stream; the client resumes from its last version.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                }
            }
        }
        if bookmarks {
            let _ = tx.send(Ok(enc.bookmark(last_rv, false))).await;
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let ctype = if matches!(out, Output::Yaml) { "application/yaml" } else { "application/json" };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}
