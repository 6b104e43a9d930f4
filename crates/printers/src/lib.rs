//! Server-side table printing: the columns and cells kube-apiserver puts in a
//! `meta.k8s.io/v1` Table when a client such as `kubectl get` asks for `as=Table`.
//!
//! Each built-in kind with a printer upstream has a [`Printer`] here: its column
//! definitions and a row function that turns the object, as JSON in the version it is
//! served, into one cell per column. Kinds without a printer get [`default_printer`]
//! (Name, Created At), as kube-apiserver does; custom resources' additional printer
//! columns are computed elsewhere.
//!
//! Like kube-apiserver, which always renders with `Wide: true`, a row always carries
//! every column, priority 1 ("-o wide") ones included; the client hides those.
//! Where upstream reads a field of the internal type that differs from the served JSON
//! (Pod `podIP`/`podIPs`, Service `clusterIP`/`clusterIPs`, `events.k8s.io` Events,
//! `autoscaling/v1` HorizontalPodAutoscalers), the row function applies the same
//! conversion first, so every served version prints alike. Where kube-apiserver's
//! defaulting always fills a field the printer shows (workload `replicas`, Service
//! `type` and port `protocol`, HorizontalPodAutoscaler `minReplicas` and `metrics`),
//! an object lacking it prints as if defaulted. Quantities print in canonical form
//! ("1Gi" for "1024Mi"), as upstream prints decoded quantities.
//!
//! The printers follow Kubernetes 1.32 (`pkg/printers/internalversion`), which 1.33
//! matches for the kinds covered.

mod columns;
mod duration;
mod format;
mod kinds;
mod quantity;
mod value;

use jiff::Timestamp;
use serde_json::Value;

pub use duration::human_duration;

/// One column definition of a Table (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header as kube-apiserver names it ("Name", "Nominated Node"); kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type of the cells: "string", "integer", "number", "boolean" or "date".
    /// Upstream does not always honour it (a "string" column may hold integers).
    pub type_: &'static str,
    /// OpenAPI format: "name" for the column that identifies the object, otherwise "".
    pub format: &'static str,
    /// A short human-readable description of the column.
    pub description: &'static str,
    /// 0 for columns always shown, 1 for those kubectl shows only with `-o wide`.
    pub priority: i32,
}

/// How one kind is printed: its columns, and the function computing a row's cells.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// The column definitions, in order.
    pub columns: &'static [Column],
    /// The cells of one object, one per column and in the same order: JSON strings,
    /// integers or booleans, as upstream's printers produce them. Relative times
    /// (AGE, LAST SEEN, ...) are computed against `now`. Never panics: a missing or
    /// malformed field prints as upstream prints the field's zero value.
    pub row: fn(&Value, Timestamp) -> Vec<Value>,
}

impl Printer {
    /// The cells of `obj` at time `now`; shorthand for calling [`Printer::row`].
    pub fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        (self.row)(obj, now)
    }
}

/// The printer for a kind in an API group ("" for the core group), if Kubernetes has
/// one. `None` means kube-apiserver uses the [`default_printer`] (Role, ClusterRole,
/// LimitRange, CustomResourceDefinition, APIService, ...).
pub fn printer_for(group: &str, kind: &str) -> Option<&'static Printer> {
    kinds::REGISTRY.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, _, p)| *p)
}

/// The fallback for kinds without a printer: "Name" and "Created At", the latter an
/// RFC 3339 UTC timestamp (not an age), as kube-apiserver's default table convertor.
pub fn default_printer() -> &'static Printer {
    &kinds::DEFAULT
}

/// Every (group, kind) that has a printer of its own, in no particular order.
pub fn registered() -> impl Iterator<Item = (&'static str, &'static str)> {
    kinds::REGISTRY.iter().map(|(g, k, _)| (*g, *k))
}
