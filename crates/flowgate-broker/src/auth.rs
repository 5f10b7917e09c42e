//! Who may do what: tokens declared in the broker's configuration, each allowed to produce to
//! some topics and consume from some. With no token declared the broker is open; with any,
//! every `HELLO` must carry a token whose scope covers its role and topic.
//!
//! The broker keeps only each secret's SHA-256: a configuration may give the digest
//! (`secret_sha256`) instead of the secret, and a presented token is hashed and compared
//! digest to digest, without an early exit.

use std::fmt;

use flowgate_proto::Role;
use ring::digest::{SHA256, digest};

/// A secret's SHA-256.
type Digest = [u8; 32];

fn sha256(secret: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
    out
}

/// One declared token.
#[derive(Clone)]
pub struct TokenGrant {
    /// A name for logs and errors (the secret is never shown).
    pub name: String,
    secret: Digest,
    /// Topics it may produce to; `*` is any.
    pub produce: Vec<String>,
    /// Topics it may consume from; `*` is any.
    pub consume: Vec<String>,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("name", &self.name)
            .field("secret", &"<hidden>")
            .field("produce", &self.produce)
            .field("consume", &self.consume)
            .finish()
    }
}

impl TokenGrant {
    /// A token `secret` called `name` with its topic scopes. An empty secret is refused.
    pub fn new(
        name: impl Into<String>,
        secret: &str,
        produce: Vec<String>,
        consume: Vec<String>,
    ) -> Result<Self, String> {
        let name = name.into();
        if secret.is_empty() {
            return Err(format!("token '{name}' has an empty secret"));
        }
        Ok(TokenGrant {
            name,
            secret: sha256(secret),
            produce,
            consume,
        })
    }

    /// A token given by its secret's SHA-256 in hex (`printf %s SECRET | sha256sum`).
    pub fn from_sha256(
        name: impl Into<String>,
        hex: &str,
        produce: Vec<String>,
        consume: Vec<String>,
    ) -> Result<Self, String> {
        let name = name.into();
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        let secret: Digest = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("token '{name}': secret_sha256 must be 64 hex digits"))?;
        Ok(TokenGrant {
            name,
            secret,
            produce,
            consume,
        })
    }

    fn allows(&self, role: Role, topic: &str) -> bool {
        let scope = match role {
            Role::Producer => &self.produce,
            Role::Consumer => &self.consume,
        };
        scope.iter().any(|t| t == "*" || t == topic)
    }
}

/// The declared tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    grants: Vec<TokenGrant>,
}

impl Tokens {
    /// Adds a token; a secret declared twice is refused.
    pub fn add(&mut self, grant: TokenGrant) -> Result<(), String> {
        if let Some(other) = self.grants.iter().find(|g| g.secret == grant.secret) {
            return Err(format!(
                "tokens '{}' and '{}' share a secret",
                other.name, grant.name
            ));
        }
        self.grants.push(grant);
        Ok(())
    }

    /// Whether any token is declared (then every client needs one).
    pub fn required(&self) -> bool {
        !self.grants.is_empty()
    }

    /// Whether `token` may act as `role` on `topic`; the error says why not.
    pub fn check(&self, token: &str, role: Role, topic: &str) -> Result<(), String> {
        if !self.required() {
            return Ok(());
        }
        if token.is_empty() {
            return Err("this broker requires a token and none was given".into());
        }
        // Every digest is compared in full, so timing does not tell which one nearly matched.
        let presented = sha256(token);
        let found =
            self.grants
                .iter()
                .fold(None, |hit, g| match (hit, same(&g.secret, &presented)) {
                    (None, true) => Some(g),
                    (hit, _) => hit,
                });
        let Some(grant) = found else {
            return Err("unknown token".into());
        };
        if grant.allows(role, topic) {
            return Ok(());
        }
        let verb = match role {
            Role::Producer => "produce to",
            Role::Consumer => "consume from",
        };
        Err(format!(
            "token '{}' may not {verb} topic '{topic}' (produce: {}; consume: {})",
            grant.name,
            list(&grant.produce),
            list(&grant.consume)
        ))
    }
}

/// Equal digests, compared without an early exit on the first differing byte.
fn same(a: &Digest, b: &Digest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn list(topics: &[String]) -> String {
    if topics.is_empty() {
        "none".into()
    } else {
        topics.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let mut t = Tokens::default();
        let writer = TokenGrant::new("writer", "w-secret", vec!["orders".into()], vec![]);
        t.add(writer.unwrap()).unwrap();
        // printf %s r-secret | sha256sum
        let reader = TokenGrant::from_sha256(
            "reader",
            "f70b45721aa3c282fbc537b643b6b1824a22aadfe2f0e8accccdbc20167a50e1",
            vec![],
            vec!["*".into()],
        );
        t.add(reader.unwrap()).unwrap();
        t
    }

    #[test]
    fn an_open_broker_lets_anyone_in() {
        assert_eq!(Tokens::default().check("", Role::Producer, "x"), Ok(()));
    }

    #[test]
    fn tokens_are_checked_against_role_and_topic_with_a_reason() {
        let t = tokens();
        assert_eq!(t.check("w-secret", Role::Producer, "orders"), Ok(()));
        assert_eq!(t.check("r-secret", Role::Consumer, "anything"), Ok(()));
        assert!(
            t.check("", Role::Producer, "orders")
                .unwrap_err()
                .contains("requires a token")
        );
        assert_eq!(
            t.check("w-secreT", Role::Producer, "orders"),
            Err("unknown token".into())
        );
        let e = t.check("w-secret", Role::Producer, "payments").unwrap_err();
        assert!(
            e.contains("'writer' may not produce to topic 'payments'"),
            "{e}"
        );
        let e = t.check("w-secret", Role::Consumer, "orders").unwrap_err();
        assert!(e.contains("consume: none"), "{e}");
        assert!(
            !format!("{t:?}").contains("w-secret"),
            "secrets never shown"
        );
    }

    #[test]
    fn empty_malformed_and_shared_secrets_are_refused() {
        let mut t = tokens();
        assert!(TokenGrant::new("x", "", vec![], vec![]).is_err());
        let bad_hex = TokenGrant::from_sha256("x", "abc", vec![], vec![]).unwrap_err();
        assert!(bad_hex.contains("64 hex digits"), "{bad_hex}");
        let e = t
            .add(TokenGrant::new("y", "w-secret", vec![], vec![]).unwrap())
            .unwrap_err();
        assert!(e.contains("'writer' and 'y' share a secret"), "{e}");
    }
}
