//! Kubernetes API machinery as pure algorithms over `serde_json::Value`: label and
//! field selectors, name and label validation, strategic merge patch, server-side
//! apply field ownership, and the list semantics of the built-in types.
//!
//! Everything follows upstream `k8s.io/apimachinery` (and structured-merge-diff)
//! behaviour, including the error texts clients see. No I/O, no async.
//!
//! - [`labels`] — `?labelSelector=` strings and `metav1.LabelSelector` objects.
//! - [`fields`] — `?fieldSelector=` strings.
//! - [`validation`] — DNS names, qualified names, label values, annotations,
//!   `generateName`, object metadata, with upstream's messages.
//! - [`strategicpatch`] — `application/strategic-merge-patch+json`.
//! - [`openapi_ext`] — patch strategies, merge keys, list and map types of every
//!   built-in type, and [`openapi_ext::annotate`] to put them into OpenAPI schemas.
//! - [`managedfields`] — server-side apply and `metadata.managedFields`.

pub mod fields;
pub mod labels;
pub mod managedfields;
pub mod openapi_ext;
pub mod quantity;
pub mod strategicpatch;
pub mod validation;
