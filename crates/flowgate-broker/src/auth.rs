//! Who may do what: tokens declared in the broker's configuration, each allowed to produce to
//! some topics and consume from some. With no token declared the broker is open; with any,
//! every `HELLO` must carry a token whose scope covers its role and topic.

use std::fmt;

use flowgate_proto::Role;

/// One declared token.
#[derive(Clone)]
pub struct TokenGrant {
    /// A name for logs and errors (the secret is never shown).
    pub name: String,
    secret: String,
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
    /// A token `secret` called `name` with its topic scopes.
    pub fn new(
        name: impl Into<String>,
        secret: impl Into<String>,
        produce: Vec<String>,
        consume: Vec<String>,
    ) -> Self {
        TokenGrant {
            name: name.into(),
            secret: secret.into(),
            produce,
            consume,
        }
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
    /// Adds a token; an empty secret or a secret declared twice is refused.
    pub fn add(&mut self, grant: TokenGrant) -> Result<(), String> {
        if grant.secret.is_empty() {
            return Err(format!("token '{}' has an empty secret", grant.name));
        }
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
        // Every secret is compared in full, so timing does not tell which one nearly matched.
        let found = self
            .grants
            .iter()
            .fold(None, |hit, g| match (hit, same(&g.secret, token)) {
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

/// Equal strings, compared without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
        t.add(TokenGrant::new(
            "writer",
            "w-secret",
            vec!["orders".into()],
            vec![],
        ))
        .unwrap();
        t.add(TokenGrant::new(
            "reader",
            "r-secret",
            vec![],
            vec!["*".into()],
        ))
        .unwrap();
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
    fn empty_and_shared_secrets_are_refused() {
        let mut t = tokens();
        assert!(t.add(TokenGrant::new("x", "", vec![], vec![])).is_err());
        let e = t
            .add(TokenGrant::new("y", "w-secret", vec![], vec![]))
            .unwrap_err();
        assert!(e.contains("'writer' and 'y' share a secret"), "{e}");
    }
}
