//! Schema-aware walks over objects for server-side apply: field sets, merge,
//! removal and comparison, following structured-merge-diff's rules.

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Set};

const MAX_REF_DEPTH: usize = 32;

/// The type of a node, from OpenAPI definitions carrying the `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` extensions (see
/// [`crate::openapi_ext::annotate`]). Without a schema, objects are granular maps
/// and lists are atomic, as structured-merge-diff deduces for untyped data.
#[derive(Debug, Clone, Copy)]
pub struct TypeRef<'a> {
    defs: Option<&'a Map<String, Value>>,
    /// The property schema (where field-level extensions live).
    prop: Option<&'a Value>,
    /// The resolved schema.
    schema: Option<&'a Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind<'a> {
    Atomic,
    Set,
    Map(Vec<&'a str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node<'a> {
    Scalar,
    /// A struct or map, granular unless atomic.
    Object {
        atomic: bool,
    },
    List(ListKind<'a>),
}

impl<'a> TypeRef<'a> {
    /// The type of definition `name` in `definitions`; unknown names are untyped.
    pub fn new(definitions: &'a Map<String, Value>, name: &str) -> Self {
        TypeRef { defs: Some(definitions), prop: None, schema: definitions.get(name) }
    }

    /// A type that knows nothing: objects granular, lists atomic.
    pub fn untyped() -> TypeRef<'static> {
        TypeRef { defs: None, prop: None, schema: None }
    }

    fn resolve(&self, mut s: &'a Value) -> Option<&'a Value> {
        for _ in 0..MAX_REF_DEPTH {
            // `allOf: [X]` wraps a reference with siblings; `anyOf`/`oneOf` of a
            // reference and `null` is how some generators spell optional fields.
            if s.get("properties").is_none()
                && let Some(next) = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
                    s.get(*k).and_then(Value::as_array).and_then(|a| {
                        a.iter().find(|x| x.get("type").and_then(Value::as_str) != Some("null"))
                    })
                })
            {
                s = next;
                continue;
            }
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.rsplit_once('/').map_or(r, |(_, name)| name);
                    s = self.defs?.get(name)?;
                }
                None => return Some(s),
            }
        }
        None
    }

    fn with(&self, prop: Option<&'a Value>) -> TypeRef<'a> {
        TypeRef { defs: self.defs, prop, schema: prop.and_then(|p| self.resolve(p)) }
    }

    fn ext(&self, key: &str) -> Option<&'a Value> {
        self.prop.and_then(|p| p.get(key)).or_else(|| self.schema.and_then(|s| s.get(key)))
    }

    fn resolved(&self) -> Option<&'a Value> {
        self.schema.and_then(|s| self.resolve(s))
    }

    /// Whether `name` is a declared property (struct field) rather than a map key.
    pub(crate) fn is_declared(&self, name: &str) -> bool {
        self.resolved().and_then(|s| s.get("properties")).and_then(|p| p.get(name)).is_some()
    }

    /// The type of field or map key `name`.
    pub(crate) fn field(&self, name: &str) -> TypeRef<'a> {
        let Some(s) = self.resolved() else {
            return TypeRef { defs: self.defs, prop: None, schema: None };
        };
        if let Some(p) = s.get("properties").and_then(|p| p.get(name)) {
            return self.with(Some(p));
        }
        match s.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => self.with(Some(ap)),
            _ => TypeRef { defs: self.defs, prop: None, schema: None },
        }
    }

    /// The type of list items.
    pub(crate) fn items(&self) -> TypeRef<'a> {
        self.with(self.resolved().and_then(|s| s.get("items")))
    }

    /// The node kind for value `v` of this type.
    pub(crate) fn node(&self, v: &Value) -> Node<'a> {
        match v {
            Value::Object(_) => {
                let atomic = self.ext("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
                Node::Object { atomic }
            }
            Value::Array(_) => {
                let list_type = self.ext("x-kubernetes-list-type").and_then(Value::as_str);
                match list_type {
                    Some("set") => Node::List(ListKind::Set),
                    Some("map") => {
                        let keys: Vec<&'a str> = self
                            .ext("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        Node::List(ListKind::Map(keys))
                    }
                    _ => Node::List(ListKind::Atomic),
                }
            }
            _ => Node::Scalar,
        }
    }

    /// A default for key field `key` of the items, when the schema gives one or the
    /// key is a `protocol` (Kubernetes defaults those to TCP).
    fn key_default(&self, key: &str) -> Option<Value> {
        let item = self.items();
        if let Some(d) = item.field(key).ext("default") {
            return Some(d.clone());
        }
        (key == "protocol").then(|| Value::from("TCP"))
    }
}

/// The path element naming list item `item` at `index`.
pub(crate) fn item_element(kind: &ListKind<'_>, ty: &TypeRef<'_>, item: &Value, index: usize) -> PathElement {
    match kind {
        ListKind::Set => PathElement::Value(item.clone()),
        ListKind::Map(keys) if !keys.is_empty() => {
            let Some(m) = item.as_object() else {
                return PathElement::Index(index);
            };
            let mut fields = Vec::with_capacity(keys.len());
            for k in keys {
                match m.get(*k).cloned().or_else(|| ty.key_default(k)) {
                    Some(v) => fields.push((k.to_string(), v)),
                    None => continue,
                }
            }
            if fields.is_empty() {
                return PathElement::Index(index);
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            PathElement::Key(fields)
        }
        _ => PathElement::Index(index),
    }
}

/// The set of leaf paths a value sets, as structured-merge-diff's `ToFieldSet`.
pub(crate) fn to_field_set(v: &Value, ty: &TypeRef<'_>) -> Set {
    let mut set = Set::new();
    walk_set(v, ty, &mut Vec::new(), &mut set);
    set
}

fn walk_set(v: &Value, ty: &TypeRef<'_>, path: &mut Path, set: &mut Set) {
    match (ty.node(v), v) {
        (Node::Object { atomic: false }, Value::Object(m)) => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                walk_set(child, &ty.field(k), path, set);
                let empty = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty || !ty.is_declared(k) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        (Node::List(kind @ (ListKind::Set | ListKind::Map(_))), Value::Array(items)) => {
            let item_ty = ty.items();
            for (i, item) in items.iter().enumerate() {
                path.push(item_element(&kind, ty, item, i));
                walk_set(item, &item_ty, path, set);
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// Merges `rhs` (an applied configuration) into `lhs` (the live object).
pub(crate) fn merge(lhs: Option<&Value>, rhs: &Value, ty: &TypeRef<'_>) -> Value {
    let Some(lhs) = lhs else {
        return rhs.clone();
    };
    match (ty.node(rhs), lhs, rhs) {
        (Node::Object { atomic: false }, Value::Object(l), Value::Object(r)) => {
            let mut out = l.clone();
            for (k, rv) in r {
                let merged = merge(l.get(k), rv, &ty.field(k));
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Node::List(kind @ (ListKind::Set | ListKind::Map(_))), Value::Array(l), Value::Array(r)) => {
            Value::Array(merge_list(&kind, ty, l, r))
        }
        _ => rhs.clone(),
    }
}

/// Merges associative lists keeping the live order for live items and placing
/// applied items in the applied order, as structured-merge-diff does.
fn merge_list(kind: &ListKind<'_>, ty: &TypeRef<'_>, lhs: &[Value], rhs: &[Value]) -> Vec<Value> {
    let item_ty = ty.items();
    let lpes: Vec<PathElement> = lhs.iter().enumerate().map(|(i, v)| item_element(kind, ty, v, i)).collect();
    let rpes: Vec<PathElement> = rhs.iter().enumerate().map(|(i, v)| item_element(kind, ty, v, i)).collect();
    let find = |pes: &[PathElement], pe: &PathElement| pes.iter().position(|p| p == pe);
    let mut shared =
        rpes.iter().filter(|pe| find(&lpes, pe).is_some()).cloned().collect::<Vec<_>>().into_iter();
    let mut next_shared = shared.next();
    let mut merged_rhs: Vec<PathElement> = Vec::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let merge_item = |l: Option<&Value>, r: Option<&Value>| -> Value {
        match (l, r) {
            (l, Some(r)) => merge(l, r, &item_ty),
            (Some(l), None) => l.clone(),
            (None, None) => Value::Null,
        }
    };
    let (mut li, mut ri) = (0, 0);
    while li < lpes.len() || ri < rpes.len() {
        if li < lpes.len() && ri < rpes.len() {
            let pe = &lpes[li];
            if *pe == rpes[ri] {
                merged_rhs.push(pe.clone());
                let l = find(&lpes, pe).map(|i| &lhs[i]);
                let r = find(&rpes, pe).map(|i| &rhs[i]);
                out.push(merge_item(l, r));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if find(&rpes, pe).is_some() && next_shared.as_ref().is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            let pe = &lpes[li];
            if find(&rpes, pe).is_none() {
                out.push(lhs[li].clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rpes.len() {
            let pe = rpes[ri].clone();
            merged_rhs.push(pe.clone());
            let l = find(&lpes, &pe).map(|i| &lhs[i]);
            let r = find(&rpes, &pe).map(|i| &rhs[i]);
            out.push(merge_item(l, r));
            ri += 1;
            if next_shared.as_ref().is_some_and(|n| *n == pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Removes the paths of `remove` from `v`. Containers emptied by the removal are
/// dropped (`None`), as upstream turns them into nulls the typed decoder discards.
pub(crate) fn remove(v: &Value, remove: &Set, ty: &TypeRef<'_>) -> Option<Value> {
    match (ty.node(v), v) {
        (Node::Object { atomic: false }, Value::Object(m)) if !m.is_empty() => {
            let mut out = Map::new();
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(sub) => {
                        if let Some(c) = self::remove(child, sub, &ty.field(k)) {
                            out.insert(k.clone(), c);
                        }
                    }
                    None => {
                        out.insert(k.clone(), child.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Node::List(kind @ (ListKind::Set | ListKind::Map(_))), Value::Array(items)) if !items.is_empty() => {
            let item_ty = ty.items();
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let pe = item_element(&kind, ty, item, i);
                if remove.has_member(&pe) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(sub) => out.extend(self::remove(item, sub, &item_ty)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(v.clone()),
    }
}

/// What changed between two versions of an object, by path.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares `lhs` and `rhs`: paths only in `rhs` are added, only in `lhs` removed,
/// and leaf paths in both with different values modified.
pub(crate) fn compare(lhs: &Value, rhs: &Value, ty: &TypeRef<'_>) -> Comparison {
    let mut out = Comparison::default();
    let (a_in, b_in) = (!granular(ty, lhs), !granular(ty, rhs));
    compare_at(lhs, rhs, ty, &mut Vec::new(), a_in, b_in, &mut out);
    out
}

/// Whether `v` is a container whose members are tracked one by one (a non-atomic
/// struct or map, a set or an associative list): such a value is not itself a leaf
/// path of its field set.
fn granular(ty: &TypeRef<'_>, v: &Value) -> bool {
    matches!(
        (ty.node(v), v),
        (Node::Object { atomic: false }, Value::Object(_))
            | (Node::List(ListKind::Set | ListKind::Map(_)), Value::Array(_))
    )
}

/// Whether an object's child `k` is itself in the field set, besides its own members:
/// a null or empty value, or a field the schema does not declare.
fn child_is_member(parent: &TypeRef<'_>, k: &str, child: &Value) -> bool {
    child.is_null() || child.as_object().is_some_and(Map::is_empty) || !parent.is_declared(k)
}

/// Adds the field set of `v` at `path` (and `path` itself when `member`) to `set`.
fn add_subtree(v: &Value, ty: &TypeRef<'_>, path: &mut Path, member: bool, set: &mut Set) {
    walk_set(v, ty, path, set);
    if member {
        set.insert(path);
    }
}

/// The elements of a list's items, or None when two items share one (then the
/// generic comparison decides).
fn elements(kind: &ListKind<'_>, ty: &TypeRef<'_>, items: &[Value]) -> Option<Vec<PathElement>> {
    let out: Vec<PathElement> =
        items.iter().enumerate().map(|(i, item)| item_element(kind, ty, item, i)).collect();
    let mut seen = std::collections::BTreeSet::new();
    out.iter().all(|pe| seen.insert(pe)).then_some(out)
}

/// [`compare`] below `path`: `a_in`/`b_in` say whether `path` itself is in the field
/// set of each side. Equal subtrees are skipped without building their field sets.
fn compare_at(
    a: &Value,
    b: &Value,
    ty: &TypeRef<'_>,
    path: &mut Path,
    a_in: bool,
    b_in: bool,
    out: &mut Comparison,
) {
    if a == b {
        return;
    }
    match (ty.node(a), ty.node(b), a, b) {
        (
            Node::Object { atomic: false },
            Node::Object { atomic: false },
            Value::Object(ma),
            Value::Object(mb),
        ) => {
            for (k, ca) in ma {
                let cty = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                let ca_in = child_is_member(ty, k, ca) || !granular(&cty, ca);
                match mb.get(k) {
                    Some(cb) => {
                        let cb_in = child_is_member(ty, k, cb) || !granular(&cty, cb);
                        compare_at(ca, cb, &cty, path, ca_in, cb_in, out);
                    }
                    None => add_subtree(ca, &cty, path, child_is_member(ty, k, ca), &mut out.removed),
                }
                path.pop();
            }
            for (k, cb) in mb {
                if !ma.contains_key(k) {
                    path.push(PathElement::Field(k.clone()));
                    add_subtree(cb, &ty.field(k), path, child_is_member(ty, k, cb), &mut out.added);
                    path.pop();
                }
            }
        }
        (
            Node::List(ka @ (ListKind::Set | ListKind::Map(_))),
            Node::List(kb @ (ListKind::Set | ListKind::Map(_))),
            Value::Array(ia),
            Value::Array(ib),
        ) if ka == kb => {
            let (Some(ea), Some(eb)) = (elements(&ka, ty, ia), elements(&kb, ty, ib)) else {
                return compare_generic(a, b, ty, path, a_in, b_in, out);
            };
            let item_ty = ty.items();
            let rhs: std::collections::BTreeMap<&PathElement, &Value> = eb.iter().zip(ib).collect();
            for (pe, item) in ea.iter().zip(ia) {
                path.push(pe.clone());
                match rhs.get(pe) {
                    Some(other) => compare_at(item, other, &item_ty, path, true, true, out),
                    None => add_subtree(item, &item_ty, path, true, &mut out.removed),
                }
                path.pop();
            }
            let lhs: std::collections::BTreeSet<&PathElement> = ea.iter().collect();
            for (pe, item) in eb.iter().zip(ib) {
                if !lhs.contains(pe) {
                    path.push(pe.clone());
                    add_subtree(item, &item_ty, path, true, &mut out.added);
                    path.pop();
                }
            }
        }
        _ => return compare_generic(a, b, ty, path, a_in, b_in, out),
    }
    // A granular container on both sides: only its own membership can differ.
    match (a_in, b_in) {
        (true, false) => out.removed.insert(path),
        (false, true) => out.added.insert(path),
        _ => {}
    }
}

/// The comparison of two subtrees by their whole field sets.
fn compare_generic(
    a: &Value,
    b: &Value,
    ty: &TypeRef<'_>,
    path: &mut Path,
    a_in: bool,
    b_in: bool,
    out: &mut Comparison,
) {
    let mut la = Set::new();
    add_subtree(a, ty, path, a_in, &mut la);
    let mut lb = Set::new();
    add_subtree(b, ty, path, b_in, &mut lb);
    for p in lb.difference(&la).paths() {
        out.added.insert(&p);
    }
    for p in la.difference(&lb).paths() {
        out.removed.insert(&p);
    }
    let both = la.intersection(&lb);
    modified_paths(a, b, ty, path, &both, &mut out.modified);
}

/// The paths of `both` whose values differ between `a` and `b`, leaves and atomic
/// values only. Walks both values together and skips every equal subtree, so a small
/// change to a large object costs little.
pub(crate) fn modified_paths(
    a: &Value,
    b: &Value,
    ty: &TypeRef<'_>,
    path: &mut Path,
    both: &Set,
    out: &mut Set,
) {
    if a == b {
        return;
    }
    match (ty.node(a), a, b) {
        (Node::Object { atomic: false }, Value::Object(ma), Value::Object(mb)) => {
            for (k, ca) in ma {
                if let Some(cb) = mb.get(k) {
                    path.push(PathElement::Field(k.clone()));
                    modified_paths(ca, cb, &ty.field(k), path, both, out);
                    path.pop();
                }
            }
        }
        (Node::List(kind @ (ListKind::Set | ListKind::Map(_))), Value::Array(ia), Value::Array(ib)) => {
            let item_ty = ty.items();
            // An element names the first item that has it, on each side.
            let mut rhs: std::collections::BTreeMap<PathElement, &Value> = std::collections::BTreeMap::new();
            for (i, item) in ib.iter().enumerate() {
                rhs.entry(item_element(&kind, ty, item, i)).or_insert(item);
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, item) in ia.iter().enumerate() {
                let pe = item_element(&kind, ty, item, i);
                if !seen.insert(pe.clone()) {
                    continue;
                }
                if let Some(other) = rhs.get(&pe) {
                    path.push(pe);
                    modified_paths(item, other, &item_ty, path, both, out);
                    path.pop();
                }
            }
        }
        _ => {
            if both.has(path) {
                out.insert(path);
            }
        }
    }
}
