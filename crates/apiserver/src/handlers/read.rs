//! get and list: from storage for consistent single reads and paged lists, from the
//! watch cache otherwise, with label and field selectors.

use std::sync::Arc;

use apimachinery::{fields, labels};
use axum::response::Response;
use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Output};
use crate::registry::Resource;
use crate::strategy::field_label_value;

/// Label and field selectors of a list or watch, checked against what the kind supports.
pub struct Filter {
    pub labels: labels::Selector,
    pub fields: fields::Selector,
    res: Arc<Resource>,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx) -> ApiResult<Self> {
        let labels = labels::Selector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = fields::Selector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        for r in fields.requirements() {
            let empty = json!({});
            if field_label_value(&*ctx.res.strategy, &empty, &r.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", r.field)));
            }
        }
        Ok(Self { labels, fields, res: ctx.res.clone() })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj)
            && self.fields.matches(|f| field_label_value(&*self.res.strategy, obj, f))
    }
}

/// An object read from storage, in the served version.
pub fn served(res: &Resource, obj: Value) -> Value {
    res.strategy.convert_out(obj, &res.api_version())
}

/// Decodes a stored value and stamps its revision.
pub fn decode_stored(kv: &store::KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("undecodable object at {}: {e}", kv.key)))?;
    crate::meta::set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

/// Reads one object from storage (a consistent read), in the storage version.
pub async fn load(ctx: &Ctx, name: &str) -> ApiResult<(Value, store::Revision)> {
    let key = ctx.res.key(ctx.ns(), name);
    match ctx.api.store.get(&key).await? {
        Some(kv) => Ok((decode_stored(&kv)?, kv.mod_revision)),
        None => Err(ApiError::not_found(&ctx.res.group, &ctx.res.plural, name)),
    }
}

/// Renders one object in the representation the client asked for.
pub fn respond_object(ctx: &Ctx, code: StatusCode, obj: &Value) -> ApiResult<Response> {
    let out = negotiate::output(&ctx.headers, ctx.query.get("includeObject"))?;
    Ok(match out {
        Output::Table { beta, include } => {
            let meta = json!({"resourceVersion": crate::meta::resource_version(obj)});
            negotiate::encode(
                code,
                &crate::table::table(&ctx.res, std::slice::from_ref(obj), meta, beta, include),
                out,
            )
        }
        Output::Metadata { beta } => negotiate::encode(code, &crate::table::partial_metadata(obj, beta), out),
        _ => negotiate::encode(code, obj, out),
    })
}

pub async fn get(ctx: &Ctx) -> ApiResult<Response> {
    let name = ctx.name();
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let obj = if rv.is_empty() {
        load(ctx, name).await?.0
    } else {
        let min: i64 =
            rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        let cache = ctx.api.caches.cache(&ctx.res.storage.prefix).await?;
        if min > 0 {
            ctx.api.caches.wait_for(min).await?;
        }
        match cache.get(&ctx.res.key(ctx.ns(), name)).0 {
            Some(o) => (*o).clone(),
            None => return Err(ApiError::not_found(&ctx.res.group, &ctx.res.plural, name)),
        }
    };
    respond_object(ctx, StatusCode::OK, &served(&ctx.res, obj))
}

/// The decoded `continue` token: the revision of the first page and the last key seen.
struct Continue {
    rv: i64,
    start_after: String,
}

fn encode_continue(rv: i64, last_key: &str, prefix: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<Continue> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok(Continue { rv, start_after: format!("{prefix}{start}") })
}

/// Everything a list produced, before rendering.
pub struct Listed {
    pub items: Vec<Value>,
    pub rv: i64,
    pub cont: Option<String>,
    pub remaining: Option<i64>,
}

/// Lists objects per the request's options (selectors, resourceVersion rules, paging).
pub async fn list_objects(ctx: &Ctx) -> ApiResult<Listed> {
    let filter = Filter::from_ctx(ctx)?;
    let prefix = ctx.res.storage.list_prefix(ctx.namespace());
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let rv_match = ctx.query.get("resourceVersionMatch").unwrap_or("");
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0);
    let cont = ctx.query.get("continue").filter(|c| !c.is_empty());
    match rv_match {
        "" | "NotOlderThan" | "Exact" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    }
    if !rv_match.is_empty() && rv.is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if cont.is_some() && !rv.is_empty() && rv != "0" {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    if rv_match == "Exact" && rv == "0" {
        return Err(ApiError::bad_request(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ));
    }
    let parsed_rv: Option<i64> = if rv.is_empty() {
        None
    } else {
        Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?)
    };

    // Paged reads and exact reads of the past come from storage, at one revision.
    let from_store_at: Option<Option<i64>> = if let Some(token) = cont {
        Some(Some(decode_continue(token, &prefix)?.rv))
    } else if rv_match == "Exact" {
        Some(parsed_rv)
    } else if limit.is_some() && parsed_rv.is_none() {
        Some(None)
    } else {
        None
    };
    if let Some(at) = from_store_at {
        let start_after = match cont {
            Some(token) => Some(decode_continue(token, &prefix)?.start_after),
            None => None,
        };
        return list_from_store(ctx, &filter, &prefix, at, start_after, limit).await;
    }

    let cache = ctx.api.caches.cache(&ctx.res.storage.prefix).await?;
    match parsed_rv {
        None => {
            ctx.api.caches.wait_consistent().await?;
        }
        Some(0) => {}
        Some(min) => ctx.api.caches.wait_for(min).await?,
    }
    let (objs, rev) = cache.list(&prefix);
    let items = objs.iter().map(|o| served(&ctx.res, (**o).clone())).filter(|o| filter.matches(o)).collect();
    Ok(Listed { items, rv: rev, cont: None, remaining: None })
}

async fn list_from_store(
    ctx: &Ctx,
    filter: &Filter,
    prefix: &str,
    at: Option<i64>,
    mut start_after: Option<String>,
    limit: Option<i64>,
) -> ApiResult<Listed> {
    let want = limit.map(|l| l as usize);
    let mut items = Vec::new();
    let mut revision = at;
    let mut last_key: Option<String> = None;
    let mut more;
    loop {
        let page = ctx
            .api
            .store
            .range(
                prefix,
                store::RangeOptions {
                    start_after: start_after.clone(),
                    limit: want.map(|w| (w - items.len()).max(1)),
                    revision,
                },
            )
            .await
            .map_err(|e| match e {
                store::Error::Compacted { .. } if ctx.query.get("continue").is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => other.into(),
            })?;
        revision = Some(page.revision);
        more = page.more;
        for kv in &page.kvs {
            last_key = Some(kv.key.clone());
            let obj = served(&ctx.res, decode_stored(kv)?);
            if filter.matches(&obj) {
                items.push(obj);
                if want.is_some_and(|w| items.len() >= w) {
                    break;
                }
            }
        }
        let full = want.is_some_and(|w| items.len() >= w);
        if full {
            // More exists if the page had more or we stopped inside it.
            let stopped_early = page.kvs.last().map(|kv| &kv.key) != last_key.as_ref();
            more = more || stopped_early;
            break;
        }
        if !page.more || page.kvs.is_empty() {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    let rv = revision.unwrap_or(0);
    let cont = match (&last_key, more) {
        (Some(k), true) => Some(encode_continue(rv, k, prefix)),
        _ => None,
    };
    Ok(Listed { items, rv, cont, remaining: None })
}

pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let out = negotiate::output(&ctx.headers, ctx.query.get("includeObject"))?;
    let listed = list_objects(ctx).await?;
    let mut meta = json!({"resourceVersion": listed.rv.to_string()});
    if let Some(c) = &listed.cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let body = match out {
        Output::Table { beta, include } => crate::table::table(&ctx.res, &listed.items, meta, beta, include),
        Output::Metadata { beta } => crate::table::partial_metadata_list(&listed.items, meta, beta),
        _ => json!({
            "kind": ctx.res.list_kind,
            "apiVersion": ctx.res.api_version(),
            "metadata": meta,
            "items": listed.items,
        }),
    };
    Ok(negotiate::encode(StatusCode::OK, &body, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_escapes() {
        let p = "/registry/core/pods/";
        let t = encode_continue(42, "/registry/core/pods/default/web-1", p);
        let c = decode_continue(&t, p).unwrap();
        assert_eq!((c.rv, c.start_after.as_str()), (42, "/registry/core/pods/default/web-1"));
        let evil = base64::engine::general_purpose::URL_SAFE
            .encode(json!({"v": "meta.k8s.io/v1", "rv": 1, "start": "../x"}).to_string());
        assert!(decode_continue(&evil, p).is_err());
        assert!(decode_continue("!!!", p).is_err());
    }
}
