//! Kubernetes API machinery as pure algorithms over `serde_json::Value`: label and
//! field selectors, name and label validation, strategic merge patch, and the list
//! semantics (patch strategies, merge keys, list types) of the built-in types.
//!
//! Everything here follows upstream `k8s.io/apimachinery` behaviour, including the
//! error texts clients see, and has no I/O and no async.

pub mod fields;
pub mod labels;
pub mod managedfields;
pub mod openapi_ext;
pub mod strategicpatch;
pub mod validation;
