//! Service-account tokens: JSON Web Tokens this server signs (ES256, a P-256 key kept
//! in the data directory) for the TokenRequest API — `kubectl create token`, the node
//! agent's projected tokens — and accepts back as bearer tokens.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// The issuer (and default audience) of tokens, as a default kube-apiserver names it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew tolerated when checking `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 60;
/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo (the 65-byte point
/// follows); the key id is a hash of the whole.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const PEM_LABEL: &str = "PRIVATE KEY";

/// Signs and checks service-account tokens with one key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).field("issuer", &self.issuer).finish()
    }
}

impl TokenSigner {
    /// A signer with a new key that lives as long as the process.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "generating a service-account signing key failed".to_string())?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A signer with the P-256 key in `der` (PKCS#8).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not a PKCS#8 P-256 private key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Self { key, kid, issuer: DEFAULT_ISSUER.into(), rng })
    }

    /// The key in the PEM file at `path`, created (readable by the owner only) when
    /// there is none, so tokens stay valid across restarts.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = STANDARD
                    .decode(body.trim())
                    .map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?;
                Self::from_pkcs8(&der).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "generating a service-account signing key failed".to_string())?;
                let b64 = STANDARD.encode(pkcs8.as_ref());
                let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
                for chunk in b64.as_bytes().chunks(64) {
                    pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                    pem.push('\n');
                }
                pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
                write_private(path, pem.as_bytes())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Self::from_pkcs8(pkcs8.as_ref())
            }
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as a JSON Web Key (what `/openid/v1/jwks` lists).
    pub fn public_jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            self.key.sign(&self.rng, input.as_bytes()).map_err(|_| "signing a token failed".to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }

    /// The claims of `token` when this key signed it, it is this issuer's, and it is
    /// valid at `now` (Unix seconds) for one of `audiences`. Whether what it names still
    /// exists is the caller's to check.
    pub fn verify(&self, token: &str, now: i64, audiences: &[&str]) -> Option<Value> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
        let head: Value = serde_json::from_slice(&decode(header)?).ok()?;
        if head["alg"] != "ES256" {
            return None;
        }
        let input = &token[..header.len() + 1 + claims.len()];
        ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(input.as_bytes(), &decode(signature)?)
            .ok()?;
        let claims: Value = serde_json::from_slice(&decode(claims)?).ok()?;
        if claims["iss"] != self.issuer.as_str() {
            return None;
        }
        let exp = claims["exp"].as_i64()?;
        if now > exp + LEEWAY || claims["nbf"].as_i64().is_some_and(|nbf| now + LEEWAY < nbf) {
            return None;
        }
        audiences_of(&claims).iter().any(|a| audiences.contains(a)).then_some(claims)
    }
}

/// The audiences a token's claims name (`aud` is a string or a list of them).
pub fn audiences_of(claims: &Value) -> Vec<&str> {
    match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Writes `bytes` to `path` readable by its owner only, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What a verified token says about its holder.
#[derive(Debug, PartialEq)]
pub struct Holder {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    /// The object the token is bound to (`Pod`, `Secret` or `Node`): kind, name, uid.
    pub bound: Option<(String, String, String)>,
}

impl Holder {
    /// From the claims of a verified token; `None` when they do not name an account.
    pub fn of(claims: &Value) -> Option<Self> {
        let k = &claims["kubernetes.io"];
        let namespace = k["namespace"].as_str()?.to_owned();
        let service_account = k.pointer("/serviceaccount/name")?.as_str()?.to_owned();
        if claims["sub"] != format!("system:serviceaccount:{namespace}:{service_account}").as_str() {
            return None;
        }
        let service_account_uid =
            k.pointer("/serviceaccount/uid").and_then(Value::as_str).unwrap_or("").to_owned();
        let bound = ["pod", "secret", "node"].iter().find_map(|field| {
            let o = k.get(*field)?;
            let kind = match *field {
                "pod" => "Pod",
                "secret" => "Secret",
                _ => "Node",
            };
            Some((
                kind.to_owned(),
                o["name"].as_str()?.to_owned(),
                o["uid"].as_str().unwrap_or("").to_owned(),
            ))
        });
        Some(Self { namespace, service_account, service_account_uid, bound })
    }

    /// The user the holder authenticates as.
    pub fn user(&self) -> crate::auth::User {
        let ns_group = format!("system:serviceaccounts:{}", self.namespace);
        let mut user = crate::auth::User::new(
            format!("system:serviceaccount:{}:{}", self.namespace, self.service_account),
            &["system:serviceaccounts", &ns_group],
        );
        user.uid = self.service_account_uid.clone();
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64, aud: &[&str]) -> Value {
        json!({
            "aud": aud, "exp": exp, "iat": exp - 3600, "nbf": exp - 3600, "iss": DEFAULT_ISSUER,
            "jti": "j", "sub": "system:serviceaccount:team:robot",
            "kubernetes.io": {"namespace": "team", "serviceaccount": {"name": "robot", "uid": "u1"},
                              "pod": {"name": "p", "uid": "u2"}},
        })
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires_and_only_for_its_audience() {
        let signer = TokenSigner::generate().unwrap();
        let token = signer.sign(&claims(10_000, &[DEFAULT_ISSUER])).unwrap();
        let got = signer.verify(&token, 9_000, &[DEFAULT_ISSUER]).expect("valid");
        let holder = Holder::of(&got).unwrap();
        assert_eq!(holder.user().name, "system:serviceaccount:team:robot");
        assert!(holder.user().groups.contains(&"system:serviceaccounts:team".to_owned()));
        assert_eq!(holder.bound, Some(("Pod".into(), "p".into(), "u2".into())));
        assert!(signer.verify(&token, 10_000 + LEEWAY + 1, &[DEFAULT_ISSUER]).is_none(), "expired");
        assert!(
            signer.verify(&token, 10_000 - 3600 - LEEWAY - 1, &[DEFAULT_ISSUER]).is_none(),
            "not yet valid"
        );
        assert!(signer.verify(&token, 9_000, &["vault"]).is_none(), "another audience");
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let signer = TokenSigner::generate().unwrap();
        let token = signer.sign(&claims(10_000, &[DEFAULT_ISSUER])).unwrap();
        let other = TokenSigner::generate().unwrap();
        assert!(other.verify(&token, 9_000, &[DEFAULT_ISSUER]).is_none(), "signed by another key");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(10_000, &[DEFAULT_ISSUER]);
        forged["sub"] = json!("system:serviceaccount:kube-system:admin");
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
        assert!(signer.verify(&forged, 9_000, &[DEFAULT_ISSUER]).is_none(), "claims changed");
        let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(signer.verify(&unsigned, 9_000, &[DEFAULT_ISSUER]).is_none(), "alg none");
        assert!(signer.verify("not-a-token", 9_000, &[DEFAULT_ISSUER]).is_none());
        // A subject that disagrees with the claims names no account.
        let mut c = claims(10_000, &[DEFAULT_ISSUER]);
        c["sub"] = json!("system:serviceaccount:other:robot");
        assert_eq!(Holder::of(&c), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        let first = TokenSigner::load_or_create(&path).unwrap();
        let token = first.sign(&claims(10_000, &[DEFAULT_ISSUER])).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = TokenSigner::load_or_create(&path).unwrap();
        assert!(again.verify(&token, 9_000, &[DEFAULT_ISSUER]).is_some(), "same key after a restart");
        assert_eq!(first.public_jwk(), again.public_jwk());
        std::fs::write(&path, "garbage").unwrap();
        assert!(TokenSigner::load_or_create(&path).is_err());
    }
}
