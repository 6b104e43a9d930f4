//! The codec's one error type.

/// Why a body could not be decoded or an object could not be encoded. Messages name
/// the protobuf message (`io.k8s.api.core.v1.PodSpec`) and field number, or for
/// encoding the JSON path, that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body does not start with `k8s\0`.
    #[error("body is not Kubernetes protobuf: it does not start with the magic bytes k8s\\0")]
    NoMagic,
    /// The envelope carries no apiVersion or no kind.
    #[error("protobuf envelope has no {0} in its typeMeta")]
    MissingTypeMeta(&'static str),
    /// The envelope says the object is compressed or in a content type the codec does not read.
    #[error("protobuf envelope has unsupported {what} {value:?}")]
    Unsupported {
        /// `contentEncoding` or `contentType`.
        what: &'static str,
        /// The value found.
        value: String,
    },
    /// The codec has no table entry for this group/version/kind.
    #[error("unknown kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind {
        /// The apiVersion asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
    },
    /// A field runs past the end of its message.
    #[error("truncated field {field} of message {message}")]
    Truncated {
        /// Full name of the message being read.
        message: &'static str,
        /// Field number, 0 when the field key itself was cut.
        field: u32,
    },
    /// Bytes that are not valid protobuf, or a field whose wire type or value does not
    /// fit its declared type.
    #[error("field {field} of message {message}: {problem}")]
    Malformed {
        /// Full name of the message being read.
        message: &'static str,
        /// Field number (0 when unknown).
        field: u32,
        /// What is wrong.
        problem: String,
    },
    /// An embedded object (`RawExtension`, `FieldsV1`, `JSON`) is not valid JSON.
    #[error("field {field} of message {message} holds invalid embedded JSON")]
    EmbeddedJson {
        /// Full name of the message being read.
        message: &'static str,
        /// Field number.
        field: u32,
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Messages nested deeper than the codec follows.
    #[error("objects nested deeper than {0} levels")]
    TooDeep(usize),
    /// A JSON value does not have the type its field needs (encoding).
    #[error("{path}: {problem}")]
    Json {
        /// JSON path of the value, `spec.template.spec.containers[0].name`.
        path: String,
        /// What is wrong.
        problem: String,
    },
}
