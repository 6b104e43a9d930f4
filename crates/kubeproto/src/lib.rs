//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) for the
//! built-in kinds, translated to and from the JSON the rest of krust works on.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose
//! `typeMeta` names the kind and whose `raw` holds the object. [`decode`] yields the
//! object exactly as Go's types would marshal it to JSON after reading those bytes;
//! [`encode`] writes what a Go client would send for a JSON object.
//!
//! The field numbers, JSON names and Go field semantics (pointer, `omitempty`,
//! embedded) come from a generated table (`src/table.rs`) covering every
//! message reachable from the kinds of the core groups; [`knows`] says whether a
//! group/version/kind is in it.
//!
//! What decoding does not do: canonicalise quantities (`"1000m"` stays `"1000m"`, as
//! it would in a JSON body), apply defaults, or read gzip-compressed envelopes.

mod decode;
mod encode;
mod error;
mod schema;
mod table;
mod wellknown;
mod wire;

pub use error::Error;

/// Decodes a Kubernetes protobuf body (the magic `k8s\0` and a `runtime.Unknown`
/// envelope) into the object's JSON, with `kind` and `apiVersion` from the envelope.
///
/// Unknown fields are skipped, as Go skips them. Never panics; malformed, truncated or
/// too deeply nested input is an [`Error`] naming the message and field.
pub fn decode(body: &[u8]) -> Result<serde_json::Value, Error> {
    decode::body(body, 0)
}

/// Encodes a JSON object of a known kind (`apiVersion` and `kind` set) as a protobuf
/// body with the envelope. JSON keys that are not fields of the kind are dropped;
/// embedded objects of known kinds (watch events, list items) become nested protobuf
/// bodies. A value of the wrong JSON type is an [`Error::Json`] with its path.
pub fn encode(obj: &serde_json::Value) -> Result<Vec<u8>, Error> {
    encode::body(obj)
}

/// Whether the codec has a table entry for this kind in this apiVersion. The meta kinds
/// (`Status`, `DeleteOptions`, `WatchEvent`, ...) are known under every known apiVersion.
pub fn knows(api_version: &str, kind: &str) -> bool {
    schema::kind(api_version, kind).is_some()
}
