//! Server-side apply and field ownership (`metadata.managedFields`), after
//! structured-merge-diff as kube-apiserver uses it.
//!
//! [`apply`] merges an applied configuration into the live object, checks it against
//! the fields other managers own (409 conflicts unless forced), records what the
//! applier now owns, and removes fields the applier used to apply but no longer does
//! when no one else owns them. [`update_managed_fields`] records ownership for
//! ordinary writes (create, update, patch) as `Update` entries.
//!
//! Schema knowledge comes from [`TypeRef`] over OpenAPI definitions annotated with
//! list and map types (see [`crate::openapi_ext::annotate`]).
//!
//! Differences from upstream, by design or not yet done: removed list items take the
//! ownership of their children with them (upstream can leave such entries stale);
//! per-resource reset fields (e.g. `status` on the main resource) are the caller's
//! to strip from the applied object; there is no version conversion (managers that
//! wrote under another apiVersion are compared in the current one); union
//! normalization is not done.

mod fieldpath;
mod typed;

use std::fmt;

use serde_json::{Map, Value};

pub use fieldpath::{PathElement, Set, path_string};
pub use typed::TypeRef;

/// Why ownership could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The apply conflicts with fields other managers own (HTTP 409, reason
    /// `Conflict`, one cause of type `FieldManagerConflict` per conflict).
    #[error("{0}")]
    Conflicts(Conflicts),
    /// `metadata.managedFields` cannot be decoded.
    #[error("invalid managedFields: {0}")]
    InvalidManagedFields(String),
    /// The live or applied object is not a JSON object.
    #[error("{0} must be a JSON object")]
    NotAnObject(&'static str),
}

/// The operation recorded in a managed fields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who is writing: the field manager, the apiVersion of the request, the subresource
/// (`""` for the main resource) and the time to record (RFC 3339, e.g.
/// `2024-05-01T10:00:00Z`).
#[derive(Debug, Clone, Copy)]
pub struct Manager<'a> {
    /// `fieldManager` of the request.
    pub name: &'a str,
    /// apiVersion the object was written in, e.g. `apps/v1`.
    pub api_version: &'a str,
    /// Subresource written, or `""`.
    pub subresource: &'a str,
    /// Timestamp recorded on the manager's entry when it changes anything.
    pub time: &'a str,
}

/// One conflict: a field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager as Kubernetes prints it: `"name"` for appliers,
    /// `"name" using apps/v1` for updaters, with `with subresource "status"` when
    /// the entry is for a subresource.
    pub manager: String,
    /// The field, e.g. `.spec.replicas` or `.spec.containers[name="web"].image`.
    pub field: String,
}

/// All conflicts of an apply, sorted by manager and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The `Status` causes: `(message, field)` pairs such as
    /// `("conflict with \"kubectl\" using apps/v1", ".spec.replicas")`.
    pub fn causes(&self) -> Vec<(String, String)> {
        self.0.iter().map(|c| (format!("conflict with {}", c.manager), c.field.clone())).collect()
    }
}

impl fmt::Display for Conflicts {
    /// Kubernetes' message: `Apply failed with 1 conflict: conflict with "x": .a`, or
    /// for several, one `conflicts with "x":` block per manager listing `- .field`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [c] = self.0.as_slice() {
            return write!(f, "Apply failed with 1 conflict: conflict with {}: {}", c.manager, c.field);
        }
        let mut lines = Vec::new();
        let mut managers: Vec<&str> = self.0.iter().map(|c| c.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for c in self.0.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", c.field));
            }
        }
        write!(f, "Apply failed with {} conflicts: {}", self.0.len(), lines.join("\n"))
    }
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    fn is(&self, m: &Manager<'_>, op: Operation) -> bool {
        self.manager == m.name
            && self.operation == op
            && self.subresource == m.subresource
            && (op == Operation::Apply || self.api_version == m.api_version)
    }

    fn printed(&self) -> String {
        let mut s = crate::validation::go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", crate::validation::go_quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

fn decode_entries(list: Option<&Value>) -> Result<Vec<Entry>, Error> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return Err(Error::InvalidManagedFields("must be a list".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(Error::InvalidManagedFields("entries must be objects".into()));
        };
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = match s("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => return Err(Error::InvalidManagedFields(format!("unknown operation {other:?}"))),
        };
        let set = match m.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(v) => Set::from_fields_v1(v)?,
        };
        out.push(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: m.get("time").and_then(Value::as_str).map(str::to_string),
            set,
        });
    }
    Ok(out)
}

fn encode_entries(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .as_str()
            .cmp(b.operation.as_str())
            .then_with(|| a.time.as_deref().unwrap_or("").cmp(b.time.as_deref().unwrap_or("")))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    Value::Array(
        entries
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), Value::from(e.manager));
                m.insert("operation".into(), Value::from(e.operation.as_str()));
                m.insert("apiVersion".into(), Value::from(e.api_version));
                if let Some(t) = e.time {
                    m.insert("time".into(), Value::from(t));
                }
                m.insert("fieldsType".into(), Value::from("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), Value::from(e.subresource));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Paths never recorded as owned (identity and server-set metadata).
fn strip_set() -> Set {
    let mut s = Set::new();
    let f = |n: &str| PathElement::Field(n.to_string());
    for p in [&["apiVersion"][..], &["kind"], &["metadata"]] {
        s.insert(&p.iter().map(|n| f(n)).collect::<Vec<_>>());
    }
    for n in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(n)]);
    }
    s
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    v
}

fn object_or_empty(v: &Value, what: &'static str) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(without_managed_fields(v)),
        _ => Err(Error::NotAnObject(what)),
    }
}

fn set_managed_fields(obj: &mut Value, managed: &Value) {
    if let Value::Object(o) = obj {
        let meta = o.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            if managed.as_array().is_some_and(Vec::is_empty) {
                meta.shift_remove("managedFields");
            } else {
                meta.insert("managedFields".to_string(), managed.clone());
            }
        }
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (null or `{}` when
/// creating). Returns the new object, with `metadata.managedFields` set, and the
/// new managed fields list. Fails with [`Error::Conflicts`] when, without `force`,
/// the apply would change fields other managers own; with `force` those fields
/// move to the applier.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &Manager<'_>,
    force: bool,
    ty: &TypeRef<'_>,
) -> Result<(Value, Value), Error> {
    let mut entries = decode_entries(live.get("metadata").and_then(|m| m.get("managedFields")))?;
    let live = object_or_empty(live, "the live object")?;
    let applied = match applied {
        Value::Object(_) => without_managed_fields(applied),
        _ => return Err(Error::NotAnObject("the applied configuration")),
    };

    let mine = entries.iter().position(|e| e.is(manager, Operation::Apply));
    let last_set = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
    let new_set = typed::to_field_set(&applied, ty);
    let merged = typed::merge(Some(&live), &applied, ty);

    let cmp = typed::compare(&live, &merged, ty);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        let clash = e.set.intersection(&changed);
        if !clash.is_empty() {
            for p in clash.paths() {
                conflicts.push(Conflict { manager: e.printed(), field: path_string(&p) });
            }
            e.set = e.set.difference(&clash);
        }
        e.set = e.set.difference(&cmp.removed);
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        return Err(Error::Conflicts(Conflicts(conflicts)));
    }

    let mine = match mine {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.name.to_string(),
                operation: Operation::Apply,
                api_version: manager.api_version.to_string(),
                subresource: manager.subresource.to_string(),
                time: None,
                set: Set::new(),
            });
            entries.len() - 1
        }
    };
    entries[mine].set = new_set;
    entries[mine].api_version = manager.api_version.to_string();

    let mut result = merged;
    if !last_set.is_empty() {
        let owned = entries.iter().fold(Set::new(), |acc, e| acc.union(&e.set));
        let to_remove = last_set.with_ancestors().difference(&owned.with_ancestors());
        if !to_remove.is_empty() {
            result = typed::remove(&result, &to_remove, ty).unwrap_or_else(|| Value::Object(Map::new()));
            let cmp2 = typed::compare(&live, &result, ty);
            for (i, e) in entries.iter_mut().enumerate() {
                if i != mine {
                    e.set = e.set.difference(&cmp2.removed);
                }
            }
        }
    }
    // kube-apiserver runs the updater with ReturnInputOnNoop, so an applier's entry
    // is stamped even when its apply changes nothing.
    entries[mine].time = Some(manager.time.to_string());
    let strip = strip_set();
    for e in &mut entries {
        e.set = e.set.difference(&strip);
    }
    let managed = encode_entries(entries);
    set_managed_fields(&mut result, &managed);
    Ok((result, managed))
}

/// Records the ownership of a non-apply write (create, update, patch) by `manager`
/// turning `old` (null when creating) into `new`: the manager gains the fields it
/// added or changed, every other manager loses them, and removed fields lose their
/// owners. Returns the new `metadata.managedFields` list (empty when nothing is
/// owned). Managed fields sent in `new` replace the stored ones unless absent or
/// `[]`; `[{}]` clears them.
pub fn update_managed_fields(
    old: &Value,
    new: &Value,
    manager: &Manager<'_>,
    ty: &TypeRef<'_>,
) -> Result<Value, Error> {
    let stored = old.get("metadata").and_then(|m| m.get("managedFields"));
    let sent = new.get("metadata").and_then(|m| m.get("managedFields"));
    let mut entries = match sent {
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) => Vec::new(),
        Some(Value::Array(a)) if !a.is_empty() => decode_entries(sent)?,
        _ => decode_entries(stored)?,
    };
    let old = object_or_empty(old, "the old object")?;
    let new = object_or_empty(new, "the new object")?;
    let cmp = typed::compare(&old, &new, ty);
    let changed = cmp.modified.union(&cmp.added);
    let mut mine = None;
    for (i, e) in entries.iter_mut().enumerate() {
        if e.is(manager, Operation::Update) {
            mine = Some(i);
            e.set = e.set.difference(&cmp.removed);
        } else {
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
    }
    let strip = strip_set();
    let gained = changed.difference(&strip);
    if !gained.is_empty() {
        let i = match mine {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    manager: manager.name.to_string(),
                    operation: Operation::Update,
                    api_version: manager.api_version.to_string(),
                    subresource: manager.subresource.to_string(),
                    time: None,
                    set: Set::new(),
                });
                entries.len() - 1
            }
        };
        entries[i].set = entries[i].set.union(&gained);
        entries[i].time = Some(manager.time.to_string());
    }
    for e in &mut entries {
        e.set = e.set.difference(&strip);
    }
    Ok(encode_entries(entries))
}

#[cfg(test)]
mod tests;
