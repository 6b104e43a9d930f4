//! Building blocks for column definitions shared by many printers.

use crate::Column;

/// A column shown by plain `kubectl get`.
pub(crate) const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// A column shown only by `kubectl get -o wide`.
pub(crate) const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

/// The object's name, first column of nearly every printer.
pub(crate) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name of the object, unique within its namespace or, for cluster-scoped kinds, the cluster.",
    priority: 0,
};

/// Time elapsed since the object was created.
pub(crate) const AGE: Column = col("Age", "string", "How long ago the object was created.");

/// Wide column listing the pod template's container names.
pub(crate) const CONTAINERS: Column =
    wide("Containers", "string", "Names of the containers in the pod template.");

/// Wide column listing the pod template's container images.
pub(crate) const IMAGES: Column = wide("Images", "string", "Images of the containers in the pod template.");

/// Wide column with the label selector choosing the managed pods.
pub(crate) const SELECTOR: Column =
    wide("Selector", "string", "Label selector of the pods this object manages.");
