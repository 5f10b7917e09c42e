//! Broker configuration: defaults from flags, topics declared in a TOML file.
//!
//! ```toml
//! # Only the topics declared below exist; a client naming another is refused.
//! # (By default a topic is created on first use, up to --max-topics.)
//! create_topics = false
//!
//! [defaults]
//! capacity_events = 10000
//! capacity_bytes = 67108864
//!
//! [[topic]]
//! name = "orders"
//! capacity_events = 1000
//! capacity_bytes = 8388608
//! # Groups that exist before their first consumer: a blocking one holds every event for it.
//! group = [{ name = "db" }, { name = "dashboard", max_lag = 5000 }]
//! # What a full topic does: block (the default), drop-newest, drop-oldest, reject or conflate.
//! policy = "block"
//! # An event unread this long after it was accepted is not delivered: it is a dead letter.
//! max_age = "30s"
//! # How long a delivery may stay unsettled here (the broker's --ack-wait otherwise).
//! ack_wait = "10s"
//! # With --storage disk: the most bytes this topic's log takes (--max-disk-bytes otherwise).
//! max_disk_bytes = 1073741824
//!
//! # With any token declared, every client must present one whose scope covers it.
//! [[token]]
//! name = "orders-writer"
//! secret = "change-me"  # or secret_sha256 = "<printf %s SECRET | sha256sum>"
//! produce = ["orders"]
//! consume = []          # "*" means every topic
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flowgate_core::{Credit, GroupMode, MarkLimits, Overflow, TopicPolicy};
use serde::Deserialize;

use crate::auth::{TokenGrant, Tokens};
use crate::names;

/// Everything the broker needs to run.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Capacity of topics created on first use: all they hold in memory storage, what they
    /// keep in memory in disk storage (the rest waits in the log).
    pub default_capacity: Credit,
    /// Topics with their own capacity, by name.
    pub topics: BTreeMap<String, Credit>,
    /// Consumer groups declared per topic, with their modes, in the order declared.
    pub groups: BTreeMap<String, Vec<(String, GroupMode)>>,
    /// Topics with a policy other than the default (block, no max age), by name.
    pub policies: BTreeMap<String, TopicPolicy>,
    /// Topics with their own ack wait, by name (others have `ack_wait`).
    pub ack_waits: BTreeMap<String, Duration>,
    /// Topics whose disk log has its own limit in bytes, by name (others have the broker's
    /// `--max-disk-bytes`).
    pub disk_limits: BTreeMap<String, u64>,
    /// The most consumer groups a topic takes; a consumer of one more is refused.
    pub max_groups: usize,
    /// Whether a client naming an undeclared topic creates it (up to `max_topics`), or is
    /// refused.
    pub create_topics: bool,
    /// The most topics the broker holds, declared, recovered and created together; a client
    /// that would create one more is refused.
    pub max_topics: usize,
    /// The most connections open at once; one more is refused with an `ERROR` and closed,
    /// and the open ones are not disturbed.
    pub max_connections: usize,
    /// The memory the broker may use: as its resident set nears this, every topic's grants
    /// shrink together (`governor`). `None`: no governor.
    pub memory_budget: Option<u64>,
    /// How long a delivery may stay unsettled before the broker takes it back and gives it to
    /// another consumer of the group; `None` waits for ever.
    pub ack_wait: Option<Duration>,
    /// How long and how many producer ids each topic remembers for deduplication after their
    /// producers leave.
    pub marks: MarkLimits,
    /// The largest frame the broker accepts (and announces in `WELCOME`).
    pub max_frame: u32,
    /// A connection must complete `HELLO` within this.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Tokens and their scopes; empty means an open broker.
    pub tokens: Tokens,
    /// With a TLS configuration every client must connect with TLS; a plaintext client is
    /// told so in a plaintext `ERROR` and closed.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            default_capacity: Credit::new(10_000, 64 << 20),
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            policies: BTreeMap::new(),
            ack_waits: BTreeMap::new(),
            disk_limits: BTreeMap::new(),
            max_groups: flowgate_core::DEFAULT_MAX_GROUPS,
            create_topics: true,
            max_topics: 1000,
            max_connections: 10_000,
            marks: MarkLimits::default(),
            ack_wait: Some(Duration::from_secs(30)),
            memory_budget: None,
            max_frame: flowgate_proto::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            tokens: Tokens::default(),
            tls: None,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML parser said.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    create_topics: Option<bool>,
    defaults: Option<Capacity>,
    #[serde(default)]
    topic: Vec<TopicDecl>,
    #[serde(default)]
    token: Vec<TokenDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDecl {
    name: String,
    secret: Option<String>,
    secret_sha256: Option<String>,
    #[serde(default)]
    produce: Vec<String>,
    #[serde(default)]
    consume: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Capacity {
    capacity_events: u64,
    capacity_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicDecl {
    name: String,
    capacity_events: u64,
    capacity_bytes: u64,
    #[serde(default)]
    group: Vec<GroupDecl>,
    policy: Option<String>,
    max_age: Option<String>,
    ack_wait: Option<String>,
    max_disk_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDecl {
    name: String,
    /// Absent: the group blocks.
    max_lag: Option<u64>,
}

impl BrokerConfig {
    /// Adds what a TOML file declares (its `[defaults]` replace the default capacity).
    pub fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        self.load_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: shown.clone(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: shown.clone(),
                message,
            },
            other => other,
        })
    }

    /// As [`load_file`](Self::load_file), from text.
    pub fn load_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: String::new(),
            message,
        };
        if let Some(create) = file.create_topics {
            self.create_topics = create;
        }
        if let Some(d) = file.defaults {
            self.default_capacity =
                capacity("[defaults]", d.capacity_events, d.capacity_bytes).map_err(invalid)?;
        }
        for t in file.topic {
            names::validate("topic", &t.name).map_err(invalid)?;
            let cap = capacity(
                &format!("topic '{}'", t.name),
                t.capacity_events,
                t.capacity_bytes,
            )
            .map_err(invalid)?;
            if self.topics.insert(t.name.clone(), cap).is_some() {
                return Err(invalid(format!("topic '{}' is declared twice", t.name)));
            }
            let mut groups: Vec<(String, GroupMode)> = Vec::new();
            for g in t.group {
                let what = format!("topic '{}'", t.name);
                names::validate("group", &g.name).map_err(|e| invalid(format!("{what}: {e}")))?;
                if g.max_lag == Some(0) {
                    return Err(invalid(format!(
                        "{what}, group '{}': max_lag must be at least 1 (leave it out for a blocking group)",
                        g.name
                    )));
                }
                if groups.iter().any(|(n, _)| *n == g.name) {
                    return Err(invalid(format!(
                        "{what}: group '{}' is declared twice",
                        g.name
                    )));
                }
                groups.push((g.name, GroupMode::from_max_lag(g.max_lag)));
            }
            if groups.len() > self.max_groups {
                return Err(invalid(format!(
                    "topic '{}' declares {} groups; a topic takes at most {} (--max-groups)",
                    t.name,
                    groups.len(),
                    self.max_groups
                )));
            }
            if !groups.is_empty() {
                self.groups.insert(t.name.clone(), groups);
            }
            let what = format!("topic '{}'", t.name);
            let overflow = match &t.policy {
                Some(p) => p
                    .parse::<Overflow>()
                    .map_err(|e| invalid(format!("{what}: {e}")))?,
                None => Overflow::Block,
            };
            let max_age = t
                .max_age
                .as_deref()
                .map(|v| duration(&what, "max_age", v))
                .transpose()
                .map_err(invalid)?;
            let policy = TopicPolicy { overflow, max_age };
            if policy != TopicPolicy::default() {
                self.policies.insert(t.name.clone(), policy);
            }
            if let Some(v) = &t.ack_wait {
                let wait = duration(&what, "ack_wait", v).map_err(invalid)?;
                self.ack_waits.insert(t.name.clone(), wait);
            }
            if let Some(bytes) = t.max_disk_bytes {
                if bytes < MIN_DISK_BYTES {
                    return Err(invalid(format!(
                        "{what}: max_disk_bytes = {bytes} is below the smallest log, {MIN_DISK_BYTES} bytes (four 4 KiB segments)"
                    )));
                }
                self.disk_limits.insert(t.name.clone(), bytes);
            }
        }
        for t in file.token {
            for topic in t.produce.iter().chain(&t.consume).filter(|t| *t != "*") {
                names::validate("topic", topic)
                    .map_err(|e| invalid(format!("token '{}': {e}", t.name)))?;
            }
            let grant = match (t.secret, t.secret_sha256) {
                (Some(secret), None) => TokenGrant::new(t.name, &secret, t.produce, t.consume),
                (None, Some(hex)) => TokenGrant::from_sha256(t.name, &hex, t.produce, t.consume),
                _ => Err(format!(
                    "token '{}': give exactly one of secret and secret_sha256",
                    t.name
                )),
            };
            self.tokens.add(grant.map_err(invalid)?).map_err(invalid)?;
        }
        Ok(())
    }

    /// The capacity of `topic`: declared, or the default.
    pub fn capacity_of(&self, topic: &str) -> Credit {
        self.topics
            .get(topic)
            .copied()
            .unwrap_or(self.default_capacity)
    }
}

/// The smallest per-topic log: four segments of the smallest size, so one can fill and close.
const MIN_DISK_BYTES: u64 = 16 * 1024;

/// A duration such as "500ms" or "30s", at least a millisecond.
fn duration(what: &str, key: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| {
        format!("{what}: {key} = \"{value}\" is not a duration ({e}); e.g. \"500ms\", \"30s\"")
    })?;
    if d < Duration::from_millis(1) {
        return Err(format!("{what}: {key} must be at least 1ms"));
    }
    Ok(d)
}

fn capacity(what: &str, events: u64, bytes: u64) -> Result<Credit, String> {
    if events == 0 || bytes == 0 {
        return Err(format!(
            "{what}: capacity_events and capacity_bytes must be at least 1"
        ));
    }
    Ok(Credit::new(events, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_topics_get_their_capacity_and_others_the_default() {
        let mut c = BrokerConfig::default();
        c.load_str(
            "[defaults]\ncapacity_events = 5\ncapacity_bytes = 500\n\n\
             [[topic]]\nname = \"orders\"\ncapacity_events = 7\ncapacity_bytes = 700\n",
        )
        .unwrap();
        assert_eq!(c.capacity_of("orders"), Credit::new(7, 700));
        assert_eq!(c.capacity_of("other"), Credit::new(5, 500));
    }

    #[test]
    fn declared_groups_keep_their_order_and_modes_and_bad_ones_are_named() {
        let mut c = BrokerConfig::default();
        c.load_str(
            "[[topic]]\nname = \"orders\"\ncapacity_events = 7\ncapacity_bytes = 700\n\
             group = [{ name = \"db\" }, { name = \"dash\", max_lag = 50 }]\n",
        )
        .unwrap();
        assert_eq!(
            c.groups["orders"],
            [
                ("db".to_string(), GroupMode::Block),
                ("dash".to_string(), GroupMode::Skip { max_lag: 50 })
            ]
        );
        let topic = "[[topic]]\nname = \"t\"\ncapacity_events = 1\ncapacity_bytes = 1\n";
        let e = BrokerConfig::default().load_str(&format!(
            "{topic}group = [{{ name = \"d\", max_lag = 0 }}]\n"
        ));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("max_lag must be at least 1")
        );
        let e = BrokerConfig::default().load_str(&format!(
            "{topic}group = [{{ name = \"d\" }}, {{ name = \"d\" }}]\n"
        ));
        assert!(e.unwrap_err().to_string().contains("declared twice"));
        let e =
            BrokerConfig::default().load_str(&format!("{topic}group = [{{ name = \"a b\" }}]\n"));
        assert!(e.unwrap_err().to_string().contains("group"));
    }

    #[test]
    fn policies_max_ages_and_ack_waits_are_per_topic_and_bad_ones_are_named() {
        let topic = |name: &str, extra: &str| {
            format!(
                "[[topic]]\nname = \"{name}\"\ncapacity_events = 9\ncapacity_bytes = 900\n{extra}"
            )
        };
        let mut c = BrokerConfig::default();
        let text = [
            topic("a", "policy = \"drop-oldest\"\nmax_age = \"250ms\"\n"),
            topic("b", "ack_wait = \"2s\"\nmax_disk_bytes = 65536\n"),
        ]
        .concat();
        c.load_str(&text).unwrap();
        assert_eq!(
            c.policies["a"],
            TopicPolicy {
                overflow: Overflow::DropOldest,
                max_age: Some(Duration::from_millis(250)),
            }
        );
        assert!(
            !c.policies.contains_key("b"),
            "block, no max age: the default"
        );
        assert_eq!(c.ack_waits["b"], Duration::from_secs(2));
        assert_eq!(c.disk_limits["b"], 65536);
        let e = BrokerConfig::default().load_str(&topic("t", "max_disk_bytes = 100\n"));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("below the smallest log")
        );
        let e = BrokerConfig::default().load_str(&topic("t", "policy = \"drop\"\n"));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("topic 't'") && e.contains("conflate"), "{e}");
        let e = BrokerConfig::default().load_str(&topic("t", "max_age = \"soon\"\n"));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("max_age = \"soon\" is not a duration")
        );
    }

    #[test]
    fn topic_creation_on_first_use_can_be_turned_off() {
        let mut c = BrokerConfig::default();
        assert!(c.create_topics);
        c.load_str("create_topics = false\n").unwrap();
        assert!(!c.create_topics);
        let e = c.load_str("create_topics = \"no\"\n");
        assert!(e.unwrap_err().to_string().contains("create_topics"));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let mut c = BrokerConfig::default();
        let e = c.load_str("[[topic]]\nname = \"a b\"\ncapacity_events = 1\ncapacity_bytes = 1\n");
        assert!(e.unwrap_err().to_string().contains("use A-Z"));
        let e = c.load_str("[[topic]]\nname = \"t\"\ncapacity_events = 0\ncapacity_bytes = 1\n");
        assert!(e.unwrap_err().to_string().contains("at least 1"));
        let e = c.load_str("[defaults]\ncapacity = 3\n");
        assert!(e.unwrap_err().to_string().contains("unknown field"));
    }
}
