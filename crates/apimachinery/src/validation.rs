//! Syntax validators for names, label keys and values, and annotations, with the
//! error texts Kubernetes puts in 422 responses.
//!
//! Each `is_*` check returns one message per violated rule (empty when the value is
//! valid), like upstream's `k8s.io/apimachinery/pkg/util/validation`, so that the
//! caller can turn each into a field cause (`metadata.name: Invalid value: ...`).
//! [`FieldError`] renders such a cause the way Kubernetes prints it.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Longest DNS-1123 label (RFC 1123).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain (RFC 1123).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest label value, and longest name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (label key).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Upper bound of the summed length of all annotation keys and values (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// "must be no more than N characters", as upstream words a length violation.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// "must be non-empty".
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream's explanation of a failed pattern: the rule, examples and the regex.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(ex);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f) && is_lower_alnum(l) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

/// Checks a DNS-1123 label (RFC 1123): at most 63 lower-case alphanumerics or `-`,
/// starting and ending alphanumeric. Used for namespace names, among others.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Checks a DNS-1123 subdomain: at most 253 characters of dot-separated DNS-1123
/// labels. This is the rule for most object names.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Checks a DNS-1035 label: like a DNS-1123 label but starting with a letter
/// (Service names).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Checks a qualified name (label key, annotation key, finalizer): an optional
/// DNS-1123 subdomain prefix and `/`, then a name of at most 63 alphanumerics,
/// `-`, `_` or `.` that starts and ends alphanumeric.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for msg in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {msg}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.` that
/// start and end alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Checks that a name can be used as one segment of a URL path: not `.` or `..`,
/// and without `/` or `%`. Does not check for emptiness or length.
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for bad in [".", ".."] {
        if name == bad {
            return vec![format!("may not be '{bad}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// Checks that a name prefix (a `generateName`) contains neither `/` nor `%`.
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Checks a ConfigMap or Secret data key: at most 253 of alphanumerics, `-`, `_`,
/// `.`, and not `.`, `..` or starting with `..`.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let ok = !value.is_empty()
        && value.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_ch_dir_prefix(value));
    errs
}

fn has_ch_dir_prefix(value: &str) -> Option<String> {
    match value {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        v if v.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

/// Checks an environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not `.`,
/// `..` or starting with `..`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let b = value.as_bytes();
    let ok = b.first().is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_'))
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
            "[-._a-zA-Z][-._a-zA-Z0-9]*",
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(has_ch_dir_prefix(value));
    errs
}

/// Checks a C identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_c_identifier(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok = b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        return Vec::new();
    }
    vec![regex_error(
        "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'",
        "[A-Za-z_][A-Za-z0-9_]*",
        &["my_name", "MY_NAME", "MyName"],
    )]
}

/// "must be between LO and HI, inclusive".
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Checks a port number is within 1..=65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        return Vec::new();
    }
    vec![inclusive_range_error(1, 65535)]
}

/// Checks a named port (IANA service name): at most 15 lower-case alphanumerics or
/// `-`, with a letter, no `--`, not starting or ending with `-`.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Checks an HTTP header name: `[-A-Za-z0-9]+`.
pub fn is_http_header_name(value: &str) -> Vec<String> {
    if !value.is_empty() && value.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return Vec::new();
    }
    vec![regex_error(
        "a valid HTTP header must consist of alphanumeric characters or '-'",
        "[-A-Za-z0-9]+",
        &["X-Header-Name"],
    )]
}

/// Checks a percentage string: `[0-9]+%`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let ok = value.strip_suffix('%').is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        return Vec::new();
    }
    vec![regex_error(
        "a valid percent string must be a numeric string followed by an ending '%'",
        "[0-9]+%",
        &["1%", "93%"],
    )]
}

/// Replaces a trailing `-` with a letter so that a `generateName` prefix (which will
/// get random characters appended) can be checked with a full-name rule.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        // Upstream drops the last two bytes and appends "a"; keep that exact shape.
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]);
        }
        return format!("{}a", &name[..name.len() - 1]);
    }
    name.to_string()
}

/// Which rule an object name must follow. Each kind's strategy picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Dns1123Subdomain,
    /// DNS-1123 label (Namespace, ...).
    Dns1123Label,
    /// DNS-1035 label (Service, ...).
    Dns1035Label,
    /// Only the path-segment rule (kinds such as RBAC roles, whose names are free-form).
    PathSegment,
}

impl NameRule {
    /// Validates `name` under this rule. With `prefix` true the value is a
    /// `generateName` and may end in `-`.
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && self != NameRule::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => {
                if prefix {
                    is_valid_path_segment_prefix(name)
                } else {
                    is_valid_path_segment_name(name)
                }
            }
        }
    }
}

/// Summed length of annotation keys and values, checked against
/// [`TOTAL_ANNOTATION_SIZE_LIMIT_BYTES`]. Returns upstream's message when over.
pub fn validate_annotations_size<'a>(
    annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let total: usize = annotations.into_iter().map(|(k, v)| k.len() + v.len()).sum();
    (total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES)
        .then(|| format!("annotations size {total} is larger than limit {TOTAL_ANNOTATION_SIZE_LIMIT_BYTES}"))
}

/// The characters `generateName` suffixes are drawn from (no vowels, no look-alikes).
pub const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// How many random characters `generateName` appends.
pub const GENERATE_NAME_RANDOM_LENGTH: usize = 5;
/// Longest prefix kept from `generateName` (63 - 5), so generated names fit a label.
pub const MAX_GENERATED_NAME_PREFIX_LENGTH: usize = 63 - GENERATE_NAME_RANDOM_LENGTH;

/// Builds a name from a `generateName` prefix: the prefix cut to 58 bytes, then five
/// characters of [`GENERATE_NAME_ALPHABET`], each picked by `pick(27)` (which must
/// return a number below its argument; larger values are reduced modulo 27).
pub fn generate_name_with(base: &str, mut pick: impl FnMut(usize) -> usize) -> String {
    let mut cut = base.len().min(MAX_GENERATED_NAME_PREFIX_LENGTH);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + GENERATE_NAME_RANDOM_LENGTH);
    out.push_str(&base[..cut]);
    for _ in 0..GENERATE_NAME_RANDOM_LENGTH {
        let i = pick(GENERATE_NAME_ALPHABET.len()) % GENERATE_NAME_ALPHABET.len();
        out.push(GENERATE_NAME_ALPHABET[i] as char);
    }
    out
}

/// [`generate_name_with`] using the process's randomly seeded hasher as the source of
/// randomness (not cryptographic; collisions are caught by the store's create-if-absent).
pub fn generate_name(base: &str) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let mut h = state.build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut bits = h.finish();
    generate_name_with(base, |n| {
        let v = (bits % n as u64) as usize;
        bits /= n as u64;
        v
    })
}

/// The type of a field error, as in a `Status` cause's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `FieldValueRequired`
    Required,
    /// `FieldValueInvalid`
    Invalid,
    /// `FieldValueForbidden`
    Forbidden,
    /// `FieldValueTooLong`
    TooLong,
    /// `FieldValueNotSupported`
    NotSupported,
    /// `FieldValueDuplicate`
    Duplicate,
}

impl ErrorType {
    /// The machine-readable cause type (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
        }
    }
}

/// One field-level validation failure: `field: Type: value: detail` when displayed,
/// exactly as Kubernetes prints it in a 422 message and a cause's `message`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What went wrong.
    pub error_type: ErrorType,
    /// The JSON path, e.g. `metadata.labels`.
    pub field: String,
    /// The offending value, if it is shown (`Required`, `Forbidden` and `TooLong`
    /// never show one).
    pub bad_value: Option<Value>,
    /// The explanation, possibly empty.
    pub detail: String,
}

impl FieldError {
    /// `Invalid value` of `value` at `field`.
    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: ErrorType::Invalid,
            field: field.into(),
            bad_value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// `Required value` at `field`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: ErrorType::Required,
            field: field.into(),
            bad_value: None,
            detail: detail.into(),
        }
    }

    /// `Forbidden` at `field`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: ErrorType::Forbidden,
            field: field.into(),
            bad_value: None,
            detail: detail.into(),
        }
    }

    /// `Too long` at `field`: "may not be more than N bytes".
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        FieldError {
            error_type: ErrorType::TooLong,
            field: field.into(),
            bad_value: None,
            detail: format!("may not be more than {max_bytes} bytes"),
        }
    }

    /// The message without the field name, as upstream's `ErrorBody`.
    pub fn body(&self) -> String {
        let mut s = self.error_type.text().to_string();
        if let Some(v) = &self.bad_value {
            s.push_str(": ");
            match v {
                Value::String(text) => s.push_str(&go_quote(text)),
                Value::Null => s.push_str("null"),
                other => s.push_str(&other.to_string()),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Quotes a string the way Go's `%q` (`strconv.Quote`) does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Validates a labels map (`metadata.labels` and selectors' `matchLabels`): every key
/// a qualified name, every value a label value. `field` is the map's path.
pub fn validate_labels(labels: &BTreeMap<String, String>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(field, k.as_str(), msg));
        }
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(field, v.as_str(), msg));
        }
    }
    errs
}

/// Validates an annotations map: keys are qualified names (compared lower-cased) and
/// the total size stays within 256 KiB. `field` is the map's path.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in annotations.keys() {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(field, k.as_str(), msg));
        }
    }
    if validate_annotations_size(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_some() {
        errs.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES));
    }
    errs
}

/// Validates a `metav1.LabelSelector` object as upstream's `ValidateLabelSelector`:
/// `matchLabels` as labels; each `matchExpressions[i]` has a qualified-name key, a
/// known operator, values exactly when In/NotIn, and valid label values. `path` is
/// the selector's path, e.g. `spec.selector`. A null selector is valid.
pub fn validate_label_selector(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if selector.is_null() {
        return errs;
    }
    errs.extend(validate_labels(&string_map(selector.get("matchLabels")), &format!("{path}.matchLabels")));
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    for (i, expr) in exprs.into_iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values: Vec<&Value> =
            expr.get("values").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        let op = expr.get("operator").and_then(Value::as_str).unwrap_or_default();
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(format!("{p}.operator"), op, "not a valid selector operator")),
        }
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{p}.key"), key, msg));
        }
        for (j, v) in values.iter().enumerate() {
            let text = v.as_str().unwrap_or_default();
            for msg in is_valid_label_value(text) {
                errs.push(FieldError::invalid(format!("{p}.values[{j}]"), text, msg));
            }
        }
    }
    errs
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// Validates an object's `metadata` on create, as upstream's `ValidateObjectMeta`:
/// `generateName` and `name` under `rule`, namespace presence (required when
/// `namespaced`, forbidden otherwise) and syntax, non-negative generation, labels,
/// annotations, finalizer names. Name generation must already have happened.
/// `path` is the metadata's path, normally `metadata`.
pub fn validate_object_meta(meta: &Value, namespaced: bool, rule: NameRule, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let get_str = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
    let generate_name = get_str("generateName");
    if !generate_name.is_empty() {
        for msg in rule.validate(generate_name, true) {
            errs.push(FieldError::invalid(format!("{path}.generateName"), generate_name, msg));
        }
    }
    let name = get_str("name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), "name or generateName is required"));
    } else {
        for msg in rule.validate(name, false) {
            errs.push(FieldError::invalid(format!("{path}.name"), name, msg));
        }
    }
    let namespace = get_str("namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(format!("{path}.namespace"), ""));
        } else {
            for msg in NameRule::Dns1123Label.validate(namespace, false) {
                errs.push(FieldError::invalid(format!("{path}.namespace"), namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(format!("{path}.namespace"), "not allowed on this type"));
    }
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldError::invalid(format!("{path}.generation"), g, "must be greater than or equal to 0"));
    }
    errs.extend(validate_labels(&string_map(meta.get("labels")), &format!("{path}.labels")));
    errs.extend(validate_annotations(&string_map(meta.get("annotations")), &format!("{path}.annotations")));
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        let field = format!("{path}.finalizers");
        let mut orphan = false;
        let mut foreground = false;
        for f in finalizers.iter().filter_map(Value::as_str) {
            for msg in is_qualified_name(f) {
                errs.push(FieldError::invalid(field.as_str(), f, msg));
            }
            orphan |= f == "orphan";
            foreground |= f == "foregroundDeletion";
        }
        if orphan && foreground {
            errs.push(FieldError::invalid(
                field.as_str(),
                Value::Array(finalizers.clone()),
                "finalizer orphan and foregroundDeletion cannot be both set",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dns1123_subdomain_accepts_and_rejects_like_upstream() {
        let ok = [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "a.a",
            "a.1",
            "1.a",
            "a.b.c",
            &"a".repeat(253),
        ];
        for v in ok {
            assert!(is_dns1123_subdomain(v).is_empty(), "{v}");
        }
        let bad = [
            "",
            "A",
            "ABC",
            "aBc",
            "A1",
            "a_1",
            "a..1",
            "-",
            "a-",
            "-a",
            "a.",
            ".a",
            "a@b",
            "a,b",
            "a/b",
            "a b",
            &"a".repeat(254),
        ];
        for v in bad {
            assert!(!is_dns1123_subdomain(v).is_empty(), "{v:?}");
        }
    }

    #[test]
    fn dns1123_subdomain_error_text_is_upstreams() {
        assert_eq!(
            is_dns1123_subdomain("Foo"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254))[0], "must be no more than 253 characters");
    }

    #[test]
    fn dns1123_label_says_dots_are_not_allowed_for_a_valid_subdomain() {
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert!(is_dns1123_label("a_b")[0].starts_with("a lowercase RFC 1123 label must consist"));
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert!(is_dns1035_label("my-name").is_empty());
        assert!(is_dns1035_label("abc-123").is_empty());
        for bad in ["1abc", "", "a-", "A", "a.b"] {
            assert!(!is_dns1035_label(bad).is_empty(), "{bad}");
        }
        assert!(is_dns1035_label("1a")[0].starts_with("a DNS-1035 label must consist"));
    }

    #[test]
    fn qualified_names_follow_upstream_cases() {
        let ok = [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/simple",
            "now-with.dashes-and.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            &"a".repeat(63),
            &format!("{}/b", "a".repeat(253)),
        ];
        for v in ok {
            assert!(is_qualified_name(v).is_empty(), "{v}");
        }
        let bad = [
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            &"a".repeat(64),
            &format!("{}/b", "a".repeat(254)),
        ];
        for v in bad {
            assert!(!is_qualified_name(v).is_empty(), "{v}");
        }
    }

    #[test]
    fn qualified_name_messages_name_the_part() {
        assert_eq!(is_qualified_name("/simple"), vec!["prefix part must be non-empty"]);
        assert_eq!(
            is_qualified_name("example.com/"),
            vec![
                "name part must be non-empty".to_string(),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()
            ]
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert_eq!(is_qualified_name(&"a".repeat(64))[0], "name part must be no more than 63 characters");
    }

    #[test]
    fn label_values_may_be_empty_but_not_odd() {
        for v in
            ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "", &"a".repeat(63)]
        {
            assert!(is_valid_label_value(v).is_empty(), "{v}");
        }
        for v in ["nospecialchars%^=@", "Tama-nui-te-rā", "Debian (Linux)", "-dash", "dash-", &"a".repeat(64)]
        {
            assert!(!is_valid_label_value(v).is_empty(), "{v}");
        }
        assert!(is_valid_label_value("a b")[0].starts_with("a valid label must be an empty string"));
    }

    #[test]
    fn config_map_keys_env_names_and_ports_follow_upstream_rules() {
        for ok in ["key.name", "KEY_NAME", "key-name", ".dotfile", "a..b"] {
            assert!(is_config_map_key(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_config_map_key(".."), vec!["must not be '..'"]);
        assert_eq!(is_config_map_key("..a"), vec!["must not start with '..'"]);
        assert!(is_config_map_key("a b")[0].starts_with("a valid config key must consist"));
        for ok in ["my.env-name", "MY_ENV.NAME", "MyEnvName1", "_a", "-a"] {
            assert!(is_env_var_name(ok).is_empty(), "{ok}");
        }
        assert!(!is_env_var_name("1abc").is_empty());
        assert!(is_c_identifier("my_name").is_empty());
        assert!(!is_c_identifier("1x").is_empty());
        assert!(is_valid_port_name("http").is_empty());
        assert!(is_valid_port_name("h-2").is_empty());
        assert_eq!(is_valid_port_name("123"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(is_valid_port_name("a--b"), vec!["must not contain consecutive hyphens"]);
        assert_eq!(is_valid_port_name("-ab"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(is_valid_port_name("abcdefghijklmnop")[0], "must be no more than 15 characters");
        assert_eq!(is_valid_port_num(0), vec!["must be between 1 and 65535, inclusive"]);
        assert!(is_valid_port_num(65535).is_empty());
        assert!(is_http_header_name("X-Header-Name").is_empty());
        assert!(!is_http_header_name("X_Header").is_empty());
        assert!(is_valid_percent("93%").is_empty());
        assert!(!is_valid_percent("%").is_empty());
        assert!(!is_valid_percent("1.5%").is_empty());
    }

    #[test]
    fn path_segment_names_reject_dots_slashes_and_percent() {
        assert_eq!(is_valid_path_segment_name("."), vec!["may not be '.'"]);
        assert_eq!(is_valid_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(is_valid_path_segment_name("a/b%c"), vec!["may not contain '/'", "may not contain '%'"]);
        assert!(is_valid_path_segment_name("...").is_empty());
        assert!(is_valid_path_segment_prefix("..").is_empty());
    }

    #[test]
    fn generate_name_prefix_may_end_in_a_dash() {
        assert!(NameRule::Dns1123Subdomain.validate("foo-", true).is_empty());
        assert!(!NameRule::Dns1123Subdomain.validate("foo-", false).is_empty());
        assert!(NameRule::Dns1123Label.validate("web-", true).is_empty());
        assert!(!NameRule::Dns1123Subdomain.validate("-", true).is_empty());
    }

    #[test]
    fn generated_names_keep_at_most_58_prefix_bytes_and_add_five_characters() {
        let name = generate_name_with("web-", |_| 0);
        assert_eq!(name, "web-bbbbb");
        let long = "x".repeat(100);
        let name = generate_name(&long);
        assert_eq!(name.len(), 63);
        assert!(name[58..].bytes().all(|b| GENERATE_NAME_ALPHABET.contains(&b)));
        let multibyte = format!("{}é", "a".repeat(57));
        assert_eq!(generate_name_with(&multibyte, |n| n - 1).len(), 62);
    }

    #[test]
    fn annotations_over_256_kib_are_too_long() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1));
        assert!(validate_annotations(&m, "metadata.annotations").is_empty());
        m.insert("b".to_string(), String::new());
        let errs = validate_annotations(&m, "metadata.annotations");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].to_string(), "metadata.annotations: Too long: may not be more than 262144 bytes");
    }

    #[test]
    fn field_errors_print_like_kubernetes() {
        let e = FieldError::invalid("metadata.name", "Foo", "bad");
        assert_eq!(e.to_string(), "metadata.name: Invalid value: \"Foo\": bad");
        let e = FieldError::required("metadata.name", "name or generateName is required");
        assert_eq!(e.to_string(), "metadata.name: Required value: name or generateName is required");
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "x").to_string(),
            "spec.replicas: Invalid value: -1: x"
        );
    }

    #[test]
    fn label_selectors_are_validated_with_field_paths() {
        let sel = json!({
            "matchLabels": {"app": "-x"},
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c d", "operator": "Near", "values": ["ok", "n o"]}
            ]
        });
        let got: Vec<String> = validate_label_selector(&sel, "spec.selector")
            .iter()
            .map(|e| {
                let s = e.to_string();
                s.split(": ").take(2).collect::<Vec<_>>().join(": ")
            })
            .collect();
        assert_eq!(
            got,
            [
                "spec.selector.matchLabels: Invalid value",
                "spec.selector.matchExpressions[0].values: Required value",
                "spec.selector.matchExpressions[1].values: Forbidden",
                "spec.selector.matchExpressions[2].operator: Invalid value",
                "spec.selector.matchExpressions[2].key: Invalid value",
                "spec.selector.matchExpressions[2].values[1]: Invalid value",
            ]
        );
        assert!(validate_label_selector(&Value::Null, "spec.selector").is_empty());
        assert!(validate_label_selector(&json!({"matchLabels": {"app": "web"}}), "s").is_empty());
    }

    #[test]
    fn object_meta_validation_reports_each_problem() {
        let meta = json!({"name": "Bad_Name", "namespace": "", "labels": {"a b": "c"}, "finalizers": ["orphan", "foregroundDeletion"]});
        let errs = validate_object_meta(&meta, true, NameRule::Dns1123Subdomain, "metadata");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.namespace", "metadata.labels", "metadata.finalizers"]);
        let ok = json!({"name": "web", "namespace": "default", "labels": {"app": "web"}});
        assert!(validate_object_meta(&ok, true, NameRule::Dns1123Subdomain, "metadata").is_empty());
        let cluster = json!({"name": "n1", "namespace": "default"});
        let errs = validate_object_meta(&cluster, false, NameRule::Dns1123Subdomain, "metadata");
        assert_eq!(errs[0].to_string(), "metadata.namespace: Forbidden: not allowed on this type");
        let missing = json!({});
        assert_eq!(
            validate_object_meta(&missing, false, NameRule::Dns1123Subdomain, "metadata")[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
