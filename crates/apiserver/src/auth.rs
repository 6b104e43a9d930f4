//! Authentication: who is calling. Client certificates (verified by the TLS layer, which
//! puts the identity into the request) and bearer tokens.

use std::collections::HashMap;
use std::sync::RwLock;

use http::{HeaderMap, header};

/// An authenticated caller, as Kubernetes' `user.Info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self { name: name.into(), uid: String::new(), groups }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The identity a verified client certificate carries (set as a request extension by
/// the TLS acceptor).
#[derive(Clone, Debug)]
pub struct CertIdentity(pub User);

/// Maps bearer tokens to users.
#[derive(Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl Authenticator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `user` from now on.
    pub fn add_token(&self, token: &str, user: User) {
        self.tokens.write().unwrap_or_else(|e| e.into_inner()).insert(token.to_string(), user);
    }

    pub fn remove_token(&self, token: &str) {
        self.tokens.write().unwrap_or_else(|e| e.into_inner()).remove(token);
    }

    /// The caller of a request: its certificate identity, else its bearer token's user.
    pub fn authenticate(&self, headers: &HeaderMap, cert: Option<&CertIdentity>) -> Option<User> {
        if let Some(c) = cert {
            return Some(c.0.clone());
        }
        let token = bearer(headers)?;
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_map_to_users_and_unknown_ones_do_not() {
        let a = Authenticator::new();
        a.add_token("abc", User::new("alice", &["dev"]));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(a.authenticate(&h, None).unwrap().name, "alice");
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(a.authenticate(&h, None).is_none());
        assert!(a.authenticate(&HeaderMap::new(), None).is_none());
    }
}
