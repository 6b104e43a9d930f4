//! Strategic merge patch (`application/strategic-merge-patch+json`), applied as
//! kube-apiserver applies it to built-in types: the patches `kubectl apply`, `edit`,
//! `patch`, `label`, `annotate`, `scale`, `set image` and `rollout restart` send.
//!
//! Semantics, as upstream's `StrategicMergeMapPatch`:
//! - maps merge key by key; `null` deletes a key; `$patch: replace` replaces the map
//!   with the patch, `$patch: delete` empties it; `$retainKeys: [..]` drops the keys
//!   not listed;
//! - lists with strategy `merge` and a merge key merge item by item (`$patch: delete`
//!   items delete by key, a `$patch: replace` item replaces the whole list); lists of
//!   primitives with strategy `merge` are unions; other lists are replaced;
//! - `$deleteFromPrimitiveList/<field>` removes values from a primitive list and
//!   `$setElementOrder/<field>` fixes the order of the merged list;
//! - without `$setElementOrder`, patch items keep the patch's order and come before
//!   live-only items unless the live order says otherwise.
//!
//! One deliberate difference: upstream leaves stray directive keys in newly added
//! values and lets the typed decoder drop them; this implementation removes
//! `$patch`, `$retainKeys`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…`
//! keys from the result instead, which is what the stored object ends up as.

mod gofmt;
mod gosort;
mod meta;

pub use meta::{FieldMeta, NoPatchMeta, OpenApiPatchMeta, PatchMeta, Strategy};

use serde_json::{Map, Value};

use gofmt::Kind;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Why a patch could not be applied. `Display` is upstream's message;
/// [`Error::http_status`] is the code kube-apiserver answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A merged list contains lists.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A `$deleteFromPrimitiveList` key is malformed.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// `$retainKeys` is not a list, or the patch sets a key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A `$setElementOrder` key is malformed.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// A list item lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The item, printed as Go prints a map.
        map: String,
        /// The merge key.
        key: String,
    },
    /// A value has the wrong JSON type (e.g. a string where a list is merged).
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// Go's name of the expected type.
        expected: &'static str,
        /// Go's name of the type found.
        actual: &'static str,
    },
    /// `$patch` has a value other than `replace`/`delete` (maps) or
    /// `replace`/`delete` (list items).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive value.
        directive: String,
        /// The map holding it.
        map: String,
    },
    /// A list item says `$patch: merge`, which upstream does not support.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// The schema asks to merge a list of maps but names no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyInSchema(String),
    /// A merged list mixes element types.
    #[error("list element types are not identical: {0}")]
    MixedElementTypes(String),
    /// An element type was needed but both lists were empty or held only nulls.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// A list of maps contains something else at this index.
    #[error("value for key {0} is not a map")]
    NotAMap(usize),
    /// The patch list's order contradicts its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch {
        /// The patch list, printed as Go prints it.
        patch: String,
        /// The `$setElementOrder` list, printed as Go prints it.
        order: String,
    },
}

impl Error {
    /// The HTTP status kube-apiserver answers with: 400 for malformed documents and
    /// directive syntax, 422 for lists of lists, 500 for everything else (upstream
    /// does not classify those).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadJsonDoc
            | Error::BadPatchFormatForPrimitiveList
            | Error::BadPatchFormatForRetainKeys
            | Error::BadPatchFormatForSetElementOrderList => 400,
            Error::NoListOfLists => 422,
            _ => 500,
        }
    }
}

fn bad_arg(expected: &'static str, actual: &Value) -> Error {
    Error::BadArgType { expected, actual: gofmt::type_name(actual) }
}

const MAP_TYPE: &str = "map[string]interface {}";
const SLICE_TYPE: &str = "[]interface {}";

fn no_merge_key(map: &Map<String, Value>, key: &str) -> Error {
    Error::NoMergeKey { map: gofmt::v(&Value::Object(map.clone())), key: key.to_string() }
}

/// Applies a strategic merge patch to `original` using `meta` for list strategies and
/// merge keys. `original` must be an object (or null, read as `{}`); `patch` must be
/// an object (null is a no-op). Neither input is modified.
pub fn apply(original: &Value, patch: &Value, meta: &dyn PatchMeta) -> Result<Value, Error> {
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(Error::BadJsonDoc),
    };
    let patch = match patch {
        Value::Object(m) => m.clone(),
        Value::Null => return Ok(Value::Object(original)),
        _ => return Err(Error::BadJsonDoc),
    };
    let mut merged = Value::Object(merge_map(original, patch, meta)?);
    strip_directives(&mut merged);
    Ok(merged)
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE_MARKER
        || k == RETAIN_KEYS_DIRECTIVE
        || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// Drops directive keys everywhere, as decoding into the typed object does upstream.
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !is_directive_key(k));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Removes maps holding `$patch` (and list items that are such maps); `None` means
/// the value itself is such a map and must not be kept.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// Drops `null` map values recursively (not null list items).
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, Error> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.shift_remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(Error::BadPatchType {
                directive: gofmt::s(directive),
                map: gofmt::v(&Value::Object(patch.clone())),
            }),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order_lists(&mut original, &mut patch, meta)?;

    for (key, patch_v) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) => (field.to_string(), true),
                None => return Err(Error::BadPatchFormatForPrimitiveList),
            },
            None => (key, false),
        };
        if patch_v.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let original_kind = original.get(&key).map(gofmt::kind);
        if original_kind != Some(gofmt::kind(&patch_v)) {
            if !is_delete_list {
                let mut v = patch_v;
                discard_nulls(&mut v);
                match remove_directives(v) {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            continue;
        }
        let Some(original_v) = original.get_mut(&key) else {
            continue;
        };
        match (original_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                let field = meta.field(&key);
                let o = std::mem::take(o);
                let merged = if field.strategy == Strategy::Replace {
                    p
                } else {
                    merge_map(o, p, field.element.as_ref())?
                };
                original.insert(key, Value::Object(merged));
            }
            (Value::Array(o), Value::Array(p)) => {
                let field = meta.field(&key);
                let merged = if field.strategy == Strategy::Merge || is_delete_list {
                    let o = std::mem::take(o);
                    merge_slice(
                        o,
                        p,
                        field.element.as_ref(),
                        field.merge_key.as_deref().unwrap_or(""),
                        is_delete_list,
                    )?
                } else {
                    p
                };
                original.insert(key, Value::Array(merged));
            }
            (_, p) => match remove_directives(p) {
                Some(v) => {
                    original.insert(key, v);
                }
                None => {
                    original.shift_remove(&key);
                }
            },
        }
    }
    Ok(original)
}

fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), Error> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(Error::BadPatchFormatForRetainKeys);
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(Error::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>` of `patch` together with `<field>`,
/// leaving the merged, ordered list in `original` and removing both from `patch`.
fn merge_set_element_order_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<(), Error> {
    let keys: Vec<String> =
        patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg(SLICE_TYPE, &order));
        };
        let field = match key.split_once('/') {
            Some((SET_ELEMENT_ORDER_PREFIX, field)) => field.to_string(),
            _ => return Err(Error::BadPatchFormatForSetElementOrderList),
        };
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg(SLICE_TYPE, other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(bad_arg(SLICE_TYPE, other)),
        };
        let fm = meta.field(&field);
        let merge_key = fm.merge_key.as_deref().unwrap_or("");
        validate_patch_with_set_order_list(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(v)) => v,
                _ => continue,
            },
            (Some(o), Some(p)) => {
                if fm.strategy == Strategy::Merge {
                    merge_slice(o.clone(), p.clone(), fm.element.as_ref(), merge_key, false)?
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &order)
        } else {
            partition_maps(merged, &order, merge_key)?
        };
        let original_list = original_list.unwrap_or_default();
        let kind = slice_element_kind(&[&original_list, patch_list.as_deref().unwrap_or(&[])])?;
        let both =
            normalize_element_order(patch_items, server_only, &order, &original_list, merge_key, kind)?;
        original.insert(field.clone(), Value::Array(both));
        patch.shift_remove(&field);
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, Error> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left.as_object().ok_or_else(|| bad_arg(MAP_TYPE, left))?;
    let r = right.as_object().ok_or_else(|| bad_arg(MAP_TYPE, right))?;
    let lk = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rk = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(lk == rk)
}

/// Checks that the patch list is in the `$setElementOrder` list's relative order.
fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), Error> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut keep = Vec::new();
        for v in patch_list {
            let m = v.as_object().ok_or_else(|| bad_arg(MAP_TYPE, v))?;
            if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) != Some(DELETE_DIRECTIVE) {
                keep.push(v);
            }
        }
        keep
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER)) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(Error::SetElementOrderMismatch {
            patch: gofmt::v(&Value::Array(patch_list.to_vec())),
            order: gofmt::v(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

/// The common Go type of the elements of the lists; lists of lists and mixed
/// types are errors.
fn slice_element_kind(lists: &[&[Value]]) -> Result<Kind, Error> {
    let mut prev: Option<Kind> = None;
    for list in lists {
        for v in list.iter() {
            let k = gofmt::kind(v);
            match prev {
                None => {
                    if k == Kind::Slice {
                        return Err(Error::NoListOfLists);
                    }
                    if k == Kind::Nil {
                        // Upstream dereferences the nil type here and panics.
                        return Err(Error::NoElements);
                    }
                    prev = Some(k);
                }
                Some(p) if p != k => return Err(Error::MixedElementTypes(gofmt::lists(lists))),
                Some(_) => {}
            }
        }
    }
    prev.ok_or(Error::NoElements)
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &dyn PatchMeta,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>, Error> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_kind(&[&original, &patch])?;
    let (merged, original, patch) = if kind != Kind::Map {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        (merged, original, patch)
    } else {
        if merge_key.is_empty() {
            return Err(Error::NoMergeKeyInSchema("struct".to_string()));
        }
        let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key)?;
        let merged = merge_slice_without_special_elements(original.clone(), &patch, merge_key, meta)?;
        (merged, original, patch)
    };
    let (patch_items, server_only) = if merge_key.is_empty() {
        partition_primitives(merged, &patch)
    } else {
        partition_maps(merged, &patch, merge_key)?
    };
    normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)
}

/// Applies `$patch: delete` and `$patch: replace` items; returns the new original
/// and the patch without directive items.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(bad_arg(MAP_TYPE, &v));
        };
        let Some(directive) = m.get(DIRECTIVE_MARKER) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let key_value = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
                for (i, item) in original.iter().enumerate() {
                    if !item.is_object() {
                        return Err(Error::NotAMap(i));
                    }
                }
                original.retain(|item| item.get(merge_key) != Some(key_value));
            }
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => return Err(Error::MergeDirectiveInList),
            _ => {
                return Err(Error::BadPatchType { directive: gofmt::s(directive), map: gofmt::v(&v) });
            }
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    Ok((original, plain))
}

fn find_by_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>, Error> {
    for (i, v) in list.iter().enumerate() {
        let m = v.as_object().ok_or(Error::NotAMap(i))?;
        if m.get(merge_key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    meta: &dyn PatchMeta,
) -> Result<Vec<Value>, Error> {
    for v in patch {
        let Value::Object(pm) = v else {
            return Err(bad_arg(MAP_TYPE, v));
        };
        let key_value = pm.get(merge_key).ok_or_else(|| no_merge_key(pm, merge_key))?;
        match find_by_key(&original, merge_key, key_value)? {
            Some(i) => {
                let Value::Object(om) = std::mem::take(&mut original[i]) else {
                    return Err(Error::NotAMap(i));
                };
                original[i] = Value::Object(merge_map(om, pm.clone(), meta)?);
            }
            None => original.push(v.clone()),
        }
    }
    Ok(original)
}

fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let m = v.as_object().ok_or_else(|| bad_arg(MAP_TYPE, &v))?;
        let key_value = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
        if find_by_key(by, merge_key, key_value)?.is_some() {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// Position of `item` in `list`: by merge key value for maps, by value otherwise.
fn index_of(list: &[Value], item: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    if kind == Kind::Map {
        fn key_of<'v>(v: &'v Value, merge_key: &str) -> Option<&'v Value> {
            v.as_object().and_then(|m| m.get(merge_key))
        }
        let want = key_of(item, merge_key);
        list.iter().position(|v| key_of(v, merge_key) == want)
    } else {
        list.iter().position(|v| v == item)
    }
}

/// Sorts `patch` by `patch_order` and `server_only` by `server_order`, then
/// interleaves them: a server-only item goes first only when both it and the next
/// patch item are in the live list and it comes earlier there.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, Error> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    let mut out = Vec::with_capacity(patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_of(server_order, l, merge_key, kind), index_of(server_order, r, merge_key, kind)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn normalize_slice_order(
    mut to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, Error> {
    let mut to_delete = Vec::new();
    if kind == Kind::Map {
        for v in to_sort.iter().chain(order.iter()) {
            let m = v.as_object().ok_or_else(|| bad_arg(MAP_TYPE, v))?;
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(m, merge_key));
            }
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE_MARKER).and_then(Value::as_str) != Some(DELETE_DIRECTIVE));
        to_sort = keep;
        to_delete = delete;
    }
    gosort::slice_stable(&mut to_sort, &|a: &Value, b: &Value| match (
        index_of(order, a, merge_key, kind),
        index_of(order, b, merge_key, kind),
    ) {
        (Some(ia), Some(ib)) => ia < ib,
        _ => true,
    });
    to_sort.extend(to_delete);
    Ok(to_sort)
}

#[cfg(test)]
mod tests;
