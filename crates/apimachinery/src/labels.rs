//! Label selectors: the `?labelSelector=` string syntax and `metav1.LabelSelector`
//! objects, parsed into a [`Selector`] that matches label sets as Kubernetes does.
//!
//! Grammar (as upstream's `labels.Parse`): comma-separated requirements, each one of
//! `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`,
//! `key notin (v1)`, `key>n`, `key<n`. Spaces, tabs, CR and LF separate tokens.
//! Keys must be qualified names and values label values.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::validation::{self, FieldError};

/// A selector that could not be parsed or built. `Display` gives upstream's text,
/// which the API server returns in a 400 response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The selector string is not in the grammar, or one of its requirements is
    /// invalid; the message is upstream's, e.g.
    /// `unable to parse requirement: found 'x', expected: in, notin, =, ==, !=, gt, lt`.
    #[error("{0}")]
    Parse(String),
    /// A requirement's key, operator or values are invalid (one message per problem,
    /// joined like upstream's aggregate errors).
    #[error("{}", aggregate(.0))]
    Invalid(Vec<FieldError>),
    /// A `matchExpressions` entry names an operator other than In, NotIn, Exists or
    /// DoesNotExist.
    #[error("{} is not a valid label selector operator", validation::go_quote(.0))]
    UnknownOperator(String),
    /// The `LabelSelector` value is not shaped like one (e.g. `matchLabels` is a list).
    #[error("invalid label selector: {0}")]
    Malformed(String),
}

/// Renders a list of field errors the way upstream's `utilerrors.Aggregate` does.
pub(crate) fn aggregate(errs: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        let s = e.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// How a requirement relates a label's value to its value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also matches when the label is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also matches when the label is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>n`: the label parses as an integer greater than n
    GreaterThan,
    /// `key<n`: the label parses as an integer less than n
    LessThan,
}

impl Operator {
    /// Upstream's name of the operator (`=`, `in`, `!`, `gt`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One term of a selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a validated requirement. Fails when the key is not a qualified name, a
    /// value is not a label value, In/NotIn has no values, `=`/`==`/`!=` or Gt/Lt do
    /// not have exactly one, Gt/Lt's value is not an integer, or Exists/DoesNotExist
    /// has values. `path` prefixes the field names in the messages (upstream's
    /// `field.WithPath`); pass `""` for none.
    pub fn new(key: &str, operator: Operator, values: Vec<String>, path: &str) -> Result<Self, Error> {
        let child = |name: &str| {
            if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
        };
        let mut errs = Vec::new();
        let key_msgs = validation::is_qualified_name(key);
        if !key_msgs.is_empty() {
            errs.push(FieldError::invalid(child("key"), key, key_msgs.join("; ")));
        }
        let values_path = child("values");
        let values_json = || Value::Array(values.iter().cloned().map(Value::String).collect());
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(FieldError::invalid(
                        values_path.as_str(),
                        values_json(),
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        values_path.as_str(),
                        values_json(),
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(FieldError::invalid(
                        values_path.as_str(),
                        values_json(),
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        values_path.as_str(),
                        values_json(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("{values_path}[{i}]"),
                            v.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = validation::is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{values_path}[{i}][{key}]"),
                    v.as_str(),
                    msgs.join("; "),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(Error::Invalid(errs));
        }
        Ok(Requirement { key: key.to_string(), operator, values })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given (sorted and deduplicated when parsed).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set, seen through `lookup`, satisfies this requirement.
    /// Absent labels satisfy NotIn, `!=` and DoesNotExist only.
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => lookup(&self.key).is_some_and(has),
            Operator::NotIn | Operator::NotEquals => lookup(&self.key).is_none_or(|v| !has(v)),
            Operator::Exists => lookup(&self.key).is_some(),
            Operator::DoesNotExist => lookup(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(actual)) = lookup(&self.key).map(str::parse::<i64>) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { actual > wanted } else { actual < wanted }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, paren) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if paren {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the AND of its requirements, or the selector that matches
/// nothing (what a null `LabelSelector` means).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// Matches every label set (the empty string, an empty `LabelSelector`).
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Matches no label set (a null `LabelSelector`). Displays as `""`.
    pub fn nothing() -> Self {
        Selector { requirements: Vec::new(), nothing: true }
    }

    /// Parses the string syntax (`?labelSelector=`). Requirements come out sorted by
    /// key; `in`/`notin` value lists sorted and deduplicated. The empty string parses
    /// to [`Selector::everything`].
    pub fn parse(selector: &str) -> Result<Self, Error> {
        let mut parser = Parser::new(selector);
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements, nothing: false })
    }

    /// A selector requiring each `key=value` of the set (no validation, as upstream's
    /// `SelectorFromSet`). An empty set matches everything.
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        Selector {
            requirements: set
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
            nothing: false,
        }
    }

    /// Converts a `metav1.LabelSelector` JSON object (`matchLabels`,
    /// `matchExpressions`). `{}` (and an object with both empty) matches everything;
    /// JSON `null` matches nothing. Errors for unknown operators, In/NotIn without
    /// values, Exists/DoesNotExist with values, or invalid keys and values.
    pub fn from_label_selector(selector: &Value) -> Result<Self, Error> {
        match selector {
            Value::Null => Ok(Selector::nothing()),
            Value::Object(map) => Self::from_label_selector_map(map),
            other => Err(Error::Malformed(format!("expected an object, got {other}"))),
        }
    }

    /// Like [`Selector::from_label_selector`] for an optional field: `None` (absent)
    /// and `Some(null)` both match nothing, as a nil `*LabelSelector` does upstream.
    pub fn from_optional_label_selector(selector: Option<&Value>) -> Result<Self, Error> {
        match selector {
            None => Ok(Selector::nothing()),
            Some(v) => Self::from_label_selector(v),
        }
    }

    fn from_label_selector_map(map: &Map<String, Value>) -> Result<Self, Error> {
        let empty = Map::new();
        let match_labels = match map.get("matchLabels") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(Error::Malformed("matchLabels must be an object".into())),
        };
        let no_exprs = Vec::new();
        let exprs = match map.get("matchExpressions") {
            None | Some(Value::Null) => &no_exprs,
            Some(Value::Array(a)) => a,
            Some(_) => return Err(Error::Malformed("matchExpressions must be a list".into())),
        };
        let mut requirements = Vec::with_capacity(match_labels.len() + exprs.len());
        for (k, v) in match_labels {
            let Some(v) = v.as_str() else {
                return Err(Error::Malformed(format!("matchLabels[{k}] must be a string")));
            };
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()], "")?);
        }
        for expr in exprs {
            let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
            let op = expr.get("operator").and_then(Value::as_str).unwrap_or_default();
            let operator = match op {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(Error::UnknownOperator(other.to_string())),
            };
            let values = match expr.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| Error::Malformed("values must be strings".into()))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(Error::Malformed("values must be a list".into())),
            };
            requirements.push(Requirement::new(key, operator, values, "")?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements, nothing: false })
    }

    /// Adds requirements (kept sorted by key).
    pub fn with_requirements(mut self, reqs: impl IntoIterator<Item = Requirement>) -> Self {
        if self.nothing {
            return self;
        }
        self.requirements.extend(reqs);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    /// The requirements, sorted by key. Empty for both everything and nothing.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector restricts nothing (matches every label set).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`Selector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// If the selector pins `label` to one value (`=`, `==`, or `in` with one value
    /// on the first requirement for that key), that value.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }

    /// Whether a label set, seen through `lookup`, satisfies every requirement.
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(&lookup))
    }

    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether a JSON labels object (`metadata.labels`; absent or null means no
    /// labels) satisfies every requirement. Non-string values count as absent.
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        let map = labels.and_then(Value::as_object);
        self.matches_with(|k| map.and_then(|m| m.get(k)).and_then(Value::as_str))
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches_json(object.get("metadata").and_then(|m| m.get("labels")))
    }
}

impl fmt::Display for Selector {
    /// The canonical string: requirements sorted by key, joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Selector::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    // A NUL byte ends the input, as upstream's lexer reads 0 as end of string.
    fn read(&mut self) -> u8 {
        let b = self.s.get(self.pos).copied().unwrap_or(0);
        if self.pos < self.s.len() {
            self.pos += 1;
        }
        b
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special(ch) {
            let mut buf = Vec::new();
            let mut last: Option<(Token, usize)> = None;
            loop {
                let c = self.read();
                if c == 0 {
                    break;
                }
                if !is_special(c) {
                    self.unread();
                    break;
                }
                buf.push(c);
                if let Some(t) = literal_token(&buf) {
                    last = Some((t, buf.len()));
                } else if last.is_some() {
                    self.unread();
                    break;
                }
            }
            return match last {
                Some((t, len)) => (t, Self::text(&buf[..len])),
                None => (Token::Error, format!("error expected: keyword found '{}'", Self::text(&buf))),
            };
        }
        let start = self.pos;
        loop {
            let c = self.read();
            if c == 0 {
                break;
            }
            if is_special(c) || is_whitespace(c) {
                self.unread();
                break;
            }
        }
        let end = self.pos.min(self.s.len());
        let word = &self.s[start..end];
        // Everything up to a NUL counts; trim it if the loop stopped on one.
        let word = match word.iter().position(|&b| b == 0) {
            Some(i) => &word[..i],
            None => word,
        };
        match literal_token(word) {
            Some(t) => (t, Self::text(word)),
            None => (Token::Identifier, Self::text(word)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(selector: &str) -> Self {
        let mut lexer = Lexer { s: selector.as_bytes(), pos: 0 };
        let mut items = Vec::new();
        loop {
            let (t, lit) = lexer.lex();
            items.push((t, lit));
            if t == Token::EndOfString {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn item(&self, at: usize, ctx: Context) -> (Token, String) {
        let (mut t, lit) = self.items.get(at).cloned().unwrap_or((Token::EndOfString, String::new()));
        if ctx == Context::Values && matches!(t, Token::In | Token::NotIn) {
            t = Token::Identifier;
        }
        (t, lit)
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.item(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let it = self.item(self.position, ctx);
        self.position += 1;
        it
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, Error> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| Error::Parse(format!("unable to parse requirement: {e}")))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(Error::Parse(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(Error::Parse(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(reqs),
                _ => {
                    return Err(Error::Parse(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, Error> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new(), "");
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values, "")
    }

    /// Returns the key and, when no binary operator follows, Exists/DoesNotExist.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), Error> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(Error::Parse(format!("found '{lit}', expected: identifier")));
        }
        let msgs = validation::is_qualified_name(&lit);
        if !msgs.is_empty() {
            // Upstream validates the key against a nil path here, hence "<nil>".
            return Err(Error::Invalid(vec![FieldError::invalid("<nil>", lit.as_str(), msgs.join("; "))]));
        }
        let (t, _) = self.lookahead(Context::Values);
        if matches!(t, Token::EndOfString | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, Error> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(Error::Parse(format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt")));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, Error> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(Error::Parse(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Context::Values);
                if t != Token::ClosedPar {
                    return Err(Error::Parse(format!("found '{lit}', expected: ')'")));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(Error::Parse(format!("found '{lit}', expected: ',', ')' or identifier"))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, Error> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set.into_iter().collect()),
                        _ => {
                            return Err(Error::Parse(format!("found '{l2}', expected: ',' or ')'")));
                        }
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set.into_iter().collect());
                    }
                    if t2 == Token::Comma {
                        set.insert(String::new());
                    }
                }
                _ => {
                    return Err(Error::Parse(format!("found '{lit}', expected: ',', or identifier")));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, Error> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            return Ok(vec![lit]);
        }
        Err(Error::Parse(format!("found '{lit}', expected: identifier")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn valid_selectors_parse_and_print_canonically() {
        // (input, canonical form)
        let cases = [
            ("", ""),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("x = a, y = b , z = c", "x=a,y=b,z=c"),
            ("x==a", "x==a"),
            ("x!=a,y!=b", "x!=a,y!=b"),
            ("z=c,x=a", "x=a,z=c"),
            ("x in (b,a,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
            ("x in (,)", "x in ()"),
            ("x in ( , a)", "x in (,a)"),
            ("!x", "!x"),
            ("x", "x"),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            ("x=", "x="),
            ("x= ,z= ", "x=,z="),
            ("x\tin\t(a)", "x in (a)"),
            ("environment in (production, qa)", "environment in (production,qa)"),
            ("tier notin (frontend, backend)", "tier notin (backend,frontend)"),
            ("partition", "partition"),
            ("!partition", "!partition"),
            ("environment=production,tier!=frontend", "environment=production,tier!=frontend"),
            (
                "partition in (customerA, customerB),environment!=qa",
                "environment!=qa,partition in (customerA,customerB)",
            ),
            ("x in (in)", "x in (in)"),
            ("example.com/app=web", "example.com/app=web"),
        ];
        for (input, canonical) in cases {
            let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), canonical, "{input:?}");
            let again = Selector::parse(canonical).unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
            assert_eq!(again, sel, "{input:?} round trip");
        }
    }

    #[test]
    fn invalid_selectors_fail_with_upstream_messages() {
        let cases = [
            ("x=a||y=b", "unable to parse requirement: "),
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x>", "unable to parse requirement: "),
            ("x<a", "for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("x in (a b)", "found 'b', expected: ',' or ')'"),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("x,", "found '', expected: identifier after ','"),
            (",x", "found ',', expected: !, identifier, or 'end of string'"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x=(a)", "found '(', expected: identifier"),
            ("x in ()", ""),
        ];
        for (input, want) in cases {
            let res = Selector::parse(input);
            if want.is_empty() {
                assert!(res.is_ok(), "{input:?}");
                continue;
            }
            let err = res.expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn invalid_keys_and_values_are_reported_like_kubernetes() {
        let err = Selector::parse("Key!=x y").unwrap_err().to_string();
        assert_eq!(err, "found 'y', expected: ',' or 'end of string'");
        let err = Selector::parse("-bad=x").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of"
            ),
            "{err}"
        );
        let err = Selector::parse("app=-web").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unable to parse requirement: values[0][app]: Invalid value: \"-web\": a valid label must be"
            ),
            "{err}"
        );
    }

    #[test]
    fn matching_follows_the_documented_semantics() {
        let labels = set(&[("environment", "production"), ("tier", "frontend"), ("n", "5")]);
        let cases = [
            ("", true),
            ("environment=production", true),
            ("environment==production", true),
            ("environment=qa", false),
            ("environment!=qa", true),
            ("missing!=qa", true),
            ("environment in (production, qa)", true),
            ("environment in (qa)", false),
            ("missing in (qa)", false),
            ("tier notin (frontend, backend)", false),
            ("missing notin (frontend)", true),
            ("environment", true),
            ("missing", false),
            ("!missing", true),
            ("!environment", false),
            ("environment=production,tier=frontend", true),
            ("environment=production,tier=backend", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("tier>1", false),
            ("missing<1", false),
            ("environment=", false),
            ("absent=", false),
            ("absent!=", true),
        ];
        for (sel, want) in cases {
            let s = Selector::parse(sel).unwrap();
            assert_eq!(s.matches(&labels), want, "{sel}");
            let as_json = json!({"environment": "production", "tier": "frontend", "n": "5"});
            assert_eq!(s.matches_json(Some(&as_json)), want, "{sel} (json)");
        }
    }

    #[test]
    fn label_selector_objects_convert_with_null_and_empty_semantics() {
        let labels = json!({"app": "web"});
        assert!(Selector::from_label_selector(&json!({})).unwrap().matches_json(Some(&labels)));
        assert!(Selector::from_label_selector(&json!({})).unwrap().matches_json(None));
        assert!(!Selector::from_label_selector(&Value::Null).unwrap().matches_json(Some(&labels)));
        assert!(!Selector::from_optional_label_selector(None).unwrap().matches_json(Some(&labels)));
        let s = Selector::from_label_selector(&json!({
            "matchLabels": {"component": "redis"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["cache"]},
                {"key": "environment", "operator": "NotIn", "values": ["dev"]},
                {"key": "app", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert_eq!(s.to_string(), "app,component=redis,environment notin (dev),tier in (cache)");
        assert!(s.matches_json(Some(&json!({"app": "x", "component": "redis", "tier": "cache"}))));
        assert!(!s.matches_json(Some(
            &json!({"app": "x", "component": "redis", "tier": "cache", "environment": "dev"})
        )));
    }

    #[test]
    fn label_selector_objects_are_validated() {
        let err =
            Selector::from_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
        );
        let err = Selector::from_label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
        );
        let err =
            Selector::from_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}))
                .unwrap_err();
        assert_eq!(err.to_string(), "\"Foo\" is not a valid label selector operator");
        assert!(Selector::from_label_selector(&json!({"matchLabels": ["a"]})).is_err());
        assert!(Selector::from_label_selector(&json!("x")).is_err());
        assert!(Selector::from_label_selector(&json!({"matchLabels": {"a b": "c"}})).is_err());
    }

    #[test]
    fn exact_match_is_reported_for_equals_and_single_in() {
        let s = Selector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
        assert_eq!(s.requires_exact_match("a"), Some("1"));
        assert_eq!(s.requires_exact_match("b"), Some("2"));
        assert_eq!(s.requires_exact_match("c"), None);
        assert_eq!(s.requires_exact_match("d"), None);
        assert_eq!(s.requires_exact_match("e"), None);
    }

    #[test]
    fn odd_inputs_never_panic() {
        let inputs = [
            "\0",
            "a\0b",
            "((((",
            "))))",
            "!!!!",
            "=!=",
            "<>",
            "x in (((",
            "é=ü",
            "x=é",
            "\u{1F600}",
            "in",
            "notin",
            "in in (in)",
            "x notin",
            "x in",
            ",,,",
            "a,,b",
            "a=b,",
            "a=\0",
        ];
        for i in inputs {
            let _ = Selector::parse(i).map(|s| s.to_string());
        }
        assert!(Selector::parse("a\0b").is_err());
        assert_eq!(Selector::parse("a\0").unwrap().to_string(), "a");
        assert_eq!(Selector::parse("in in (in)").unwrap().to_string(), "in in (in)");
    }

    #[test]
    fn nothing_matches_nothing_and_prints_empty() {
        let n = Selector::nothing();
        assert!(!n.matches(&BTreeMap::new()));
        assert_eq!(n.to_string(), "");
        assert!(!n.is_empty());
        assert!(Selector::everything().matches(&BTreeMap::new()));
        assert!(Selector::from_set(&set(&[("a", "b")])).matches(&set(&[("a", "b"), ("c", "d")])));
    }
}
