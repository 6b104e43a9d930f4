//! Field selectors: the `?fieldSelector=` syntax (`a=b`, `a==b`, `a!=b`, comma
//! separated, with `\,` `\=` `\\` escapes in values), parsed into requirements that
//! the API server checks against the fields each resource supports.

use std::fmt;

/// A field selector that could not be parsed; `Display` is upstream's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Syntax {
        /// The whole selector as given.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A backslash is followed by something other than `\`, `,` or `=`, or ends the value.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A `,` or `=` appears unescaped in a value. Upstream prints the character's
    /// code point as a number (`44` for `,`, `61` for `=`).
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedRune(char),
}

/// `=`/`==` (equal) or `!=` (not equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `field=value` or `field==value`
    Equals,
    /// `field!=value`
    NotEquals,
}

/// One term of a field selector. Missing fields compare as the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// Equal or not equal.
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl Requirement {
    /// Whether the field's value (missing = `""`) satisfies the term.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            Operator::Equals => actual == self.value,
            Operator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A parsed field selector: the AND of its requirements. Empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Parses the string syntax. Terms are sorted as strings before parsing, as
    /// upstream does, so the requirements (and `Display`) come out in that order.
    /// Empty terms (`a=b,,c=d`) are skipped.
    pub fn parse(selector: &str) -> Result<Self, Error> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(term) else {
                return Err(Error::Syntax { selector: selector.to_string(), term: term.to_string() });
            };
            requirements.push(Requirement {
                field: lhs.to_string(),
                operator: op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(Selector { requirements })
    }

    /// A selector of one `field=value` term.
    pub fn one_term_equal(field: &str, value: &str) -> Self {
        Selector {
            requirements: vec![Requirement {
                field: field.to_string(),
                operator: Operator::Equals,
                value: value.to_string(),
            }],
        }
    }

    /// The requirements, so the API server can reject unsupported fields
    /// (`field label not supported: X`) and pick out `metadata.name` etc.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value of the first `field=value` term for `field`, if any.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == Operator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Whether an object whose fields are looked up by `get` satisfies every term.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// Applies `f` to every `(field, value)`, e.g. to map legacy field names. A term
    /// mapped to an empty field and empty value is dropped.
    pub fn transform<E>(
        self,
        mut f: impl FnMut(&str, &str) -> Result<(String, String), E>,
    ) -> Result<Self, E> {
        let mut requirements = Vec::with_capacity(self.requirements.len());
        for r in self.requirements {
            let (field, value) = f(&r.field, &r.value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(Requirement { field, operator: r.operator, value });
        }
        Ok(Selector { requirements })
    }
}

impl fmt::Display for Selector {
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

/// Escapes `\`, `,` and `=` in a value so it can be put in a selector string.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`]; rejects unknown escapes and unescaped `,` or `=`.
pub fn unescape_value(s: &str) -> Result<String, Error> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(Error::InvalidEscapeSequence(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(Error::UnescapedRune(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(Error::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op_text, op) in [("!=", Operator::NotEquals), ("==", Operator::Equals), ("=", Operator::Equals)]
        {
            if let Some(value) = rest.strip_prefix(op_text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn selectors_parse_and_print() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("b=c,a=b", "a=b,b=c"),
            ("a=b,,c=d", "a=b,c=d"),
            ("metadata.name=my-pod", "metadata.name=my-pod"),
            (
                "status.phase!=Running,spec.restartPolicy=Always",
                "spec.restartPolicy=Always,status.phase!=Running",
            ),
            ("a=", "a="),
            ("=b", "=b"),
            ("x=a\\,b", "x=a\\,b"),
            ("x=a\\=b\\\\", "x=a\\=b\\\\"),
            ("a=b!c", "a=b!c"),
        ];
        for (input, want) in cases {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), want, "{input}");
        }
    }

    #[test]
    fn escaped_values_are_unescaped() {
        let s = Selector::parse("x=a\\,b\\=c\\\\d").unwrap();
        assert_eq!(s.requirements()[0].value, "a,b=c\\d");
        assert_eq!(escape_value("a,b=c\\d"), "a\\,b\\=c\\\\d");
    }

    #[test]
    fn malformed_selectors_fail_with_upstream_messages() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("x=a=b", "invalid field selector: unescaped character in value: 61"),
            ("x=a\\b", "invalid field selector: invalid escape sequence: \\b"),
            ("x=a\\", "invalid field selector: invalid escape sequence: \\"),
        ];
        for (input, want) in cases {
            assert_eq!(Selector::parse(input).unwrap_err().to_string(), want, "{input}");
        }
    }

    #[test]
    fn matching_treats_missing_fields_as_empty() {
        let fields: HashMap<&str, &str> = [("metadata.name", "web"), ("status.phase", "Running")].into();
        let get = |f: &str| fields.get(f).map(|v| v.to_string());
        let cases = [
            ("", true),
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name=db", false),
            ("metadata.name!=db", true),
            ("status.phase=Running,metadata.name=web", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
        ];
        for (sel, want) in cases {
            assert_eq!(Selector::parse(sel).unwrap().matches(get), want, "{sel}");
        }
    }

    #[test]
    fn transform_can_rename_and_drop_terms() {
        let s = Selector::parse("name=a,host=n1").unwrap();
        let t = s
            .transform(|f, v| -> Result<_, ()> {
                Ok(match f {
                    "host" => ("spec.nodeName".to_string(), v.to_string()),
                    _ => (String::new(), String::new()),
                })
            })
            .unwrap();
        assert_eq!(t.to_string(), "spec.nodeName=n1");
        assert_eq!(t.requires_exact_match("spec.nodeName"), Some("n1"));
    }

    #[test]
    fn odd_inputs_never_panic() {
        for i in ["\\", ",", "é=ü", "=", "!=", "==", "a!==b", "\\,=\\,", "x=é\\", "\u{1F600}=1"] {
            let _ = Selector::parse(i).map(|s| s.to_string());
        }
        assert_eq!(
            Selector::parse("a!==b").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }
}
