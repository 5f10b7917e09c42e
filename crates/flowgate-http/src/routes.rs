//! The API's routes: each handler checks what it was given (name, content type, size, body,
//! query), answers a bad request by naming the problem, and hands the rest to the topic's
//! ingest or the group's consumer.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::oneshot;

use crate::body::{self, BodyKind};
use crate::fetch::{FetchLimits, Group};
use crate::idempotency::{Claim, Keys};
use crate::ingest::{Ingest, Request};
use crate::status::Answer;
use crate::{GatewayConfig, openapi};

/// The longest a fetch may wait.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A group consumer per topic, group and token.
type GroupKey = (String, String, Option<String>);

pub(crate) struct Gateway {
    pub config: GatewayConfig,
    ingests: Mutex<HashMap<String, Ingest>>,
    groups: tokio::sync::Mutex<HashMap<GroupKey, Group>>,
    keys: Keys,
    /// Keys the hash that turns a token into a client's label (never shown).
    hasher: std::collections::hash_map::RandomState,
}

pub(crate) fn router(config: GatewayConfig) -> Router {
    let state = Arc::new(Gateway {
        keys: Keys::new(config.dedupe_window),
        config,
        ingests: Mutex::new(HashMap::new()),
        groups: tokio::sync::Mutex::new(HashMap::new()),
        hasher: Default::default(),
    });
    Router::new()
        .route("/v1/topics/{topic}/events", post(publish))
        .route("/v1/topics/{topic}/groups/{group}/fetch", post(fetch))
        .route("/v1/topics/{topic}/groups/{group}/ack", post(ack))
        .route("/v1/topics/{topic}/groups/{group}/nack", post(nack))
        .route("/v1/topics/{topic}", get(topic))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .fallback(|| async {
            Answer::error(StatusCode::NOT_FOUND, "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here; see /openapi.json",
            )
        })
        .with_state(state)
}

type Shared = State<Arc<Gateway>>;

/// The request's bearer token, if it has one.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, Answer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("");
    match value.strip_prefix("Bearer ") {
        Some(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_string())),
        _ => Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "Authorization must be 'Bearer TOKEN'",
        )),
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), Answer> {
    flowgate_proto::names::validate(kind, name).map_err(Answer::bad_request)
}

impl Gateway {
    /// The token to reach the backend with: the request's, else the gateway's own.
    fn token(&self, headers: &HeaderMap) -> Result<Option<String>, Answer> {
        Ok(bearer(headers)?.or_else(|| self.config.default_token.clone()))
    }

    /// Who is asking: a token's label (a keyed hash, never the token) or the peer's address.
    fn client(&self, token: &Option<String>, peer: SocketAddr) -> String {
        match token {
            Some(t) => {
                let mut h = self.hasher.build_hasher();
                h.write(t.as_bytes());
                format!("token-{:08x}", h.finish() as u32)
            }
            None => peer.ip().to_string(),
        }
    }

    fn ingest(&self, topic: &str) -> Result<Ingest, Answer> {
        let mut ingests = self.ingests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = ingests.get(topic) {
            return Ok(i.clone());
        }
        if ingests.len() >= self.config.max_topics {
            return Err(at_limit("topics", self.config.max_topics));
        }
        let i = Ingest::start(self.config.ingest(), topic.to_string());
        ingests.insert(topic.to_string(), i.clone());
        Ok(i)
    }

    async fn group(
        &self,
        topic: &str,
        group: &str,
        token: Option<String>,
    ) -> Result<Group, Answer> {
        let key = (topic.to_string(), group.to_string(), token.clone());
        let mut groups = self.groups.lock().await;
        groups.retain(|_, g| g.is_alive());
        if let Some(g) = groups.get(&key) {
            return Ok(g.clone());
        }
        if groups.len() >= self.config.max_groups {
            return Err(at_limit("group consumers", self.config.max_groups));
        }
        let g = Group::connect(&self.config.group(), topic, group, token).await?;
        groups.insert(key, g.clone());
        Ok(g)
    }
}

/// 503: the gateway holds as many `what` as it may.
fn at_limit(what: &str, limit: usize) -> Answer {
    Answer::unavailable(
        format!("the gateway holds as many {what} as it may ({limit})"),
        flowgate_core::MAX_RETRY_AFTER_S,
    )
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, Answer> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        Answer::too_large(format!(
            "the body is over the largest this gateway takes ({max} bytes)"
        ))
    })
}

async fn publish(
    State(gw): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match publish_inner(&gw, peer, &topic, &headers, body).await {
        Ok(a) | Err(a) => a.into_response(),
    }
}

async fn publish_inner(
    gw: &Gateway,
    peer: SocketAddr,
    topic: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, Answer> {
    check_name("topic", topic)?;
    let own = bearer(headers)?;
    let client = gw.client(&own, peer);
    let token = own.or_else(|| gw.config.default_token.clone());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = BodyKind::from_content_type(content_type).ok_or_else(|| {
        Answer::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type '{content_type}': send application/x-ndjson (one JSON value per line) or application/json (an array)"
            ),
        )
    })?;
    let bytes = read_body(body, gw.config.max_body).await?;
    let events = body::parse(kind, &bytes, u64::MAX).map_err(|e| match e {
        body::BodyError::TooLarge { .. } => Answer::too_large(e.to_string()),
        other => Answer::bad_request(other.to_string()),
    })?;
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| Answer::bad_request("Idempotency-Key must be visible ASCII"))?;
    let now = std::time::Instant::now();
    let claim = key.as_ref().map(|k| gw.keys.claim(&client, topic, k, now));
    let first = match claim {
        Some(Claim::Answered(a)) => return Ok(a),
        Some(Claim::Wait(mut rx)) => {
            let answered = rx.wait_for(Option::is_some).await.map(|a| a.clone());
            return Ok(match answered {
                Ok(Some(a)) => a,
                _ => Answer::unavailable("the first request with this key was abandoned; retry", 1),
            });
        }
        Some(Claim::First(tx)) => Some(tx),
        None => None,
    };
    let answer = submit(gw, topic, client.clone(), token, events).await;
    if let (Some(tx), Some(k)) = (first, &key) {
        gw.keys
            .finish(&client, topic, k, &answer, tx, std::time::Instant::now());
    }
    Ok(answer)
}

async fn submit(
    gw: &Gateway,
    topic: &str,
    client: String,
    token: Option<String>,
    events: Vec<body::Parsed>,
) -> Answer {
    let ingest = match gw.ingest(topic) {
        Ok(i) => i,
        Err(a) => return a,
    };
    let (reply, answer) = oneshot::channel();
    let request = Request {
        client,
        token,
        events: events.into_iter().map(|p| (p.line, p.payload)).collect(),
        reply,
    };
    if ingest.submit(request).is_err() {
        return Answer::unavailable(format!("topic '{topic}' has too many requests waiting"), 1);
    }
    answer
        .await
        .unwrap_or_else(|_| Answer::unavailable("the topic's ingest stopped; retry", 1))
}

/// `max`, `max_bytes` and `wait` from a query string.
fn fetch_limits(query: Option<&str>) -> Result<FetchLimits, Answer> {
    let mut limits = FetchLimits {
        max: 100,
        max_bytes: 1 << 20,
        wait: Duration::ZERO,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |what: &str| {
            v.parse::<u64>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                Answer::bad_request(format!("{what}={v}: expected a whole number of at least 1"))
            })
        };
        match k {
            "max" => limits.max = number("max")?.min(10_000),
            "max_bytes" => limits.max_bytes = number("max_bytes")?,
            "wait" => {
                let wait = humantime::parse_duration(v).map_err(|e| {
                    Answer::bad_request(format!("wait={v}: {e} (give e.g. 500ms or 2s)"))
                })?;
                if wait > MAX_WAIT {
                    return Err(Answer::bad_request(format!("wait={v}: at most 30s")));
                }
                limits.wait = wait;
            }
            other => {
                return Err(Answer::bad_request(format!(
                    "unknown query parameter '{other}' (max, max_bytes, wait)"
                )));
            }
        }
    }
    Ok(limits)
}

async fn fetch(
    State(gw): Shared,
    Path((topic, group)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        check_name("topic", &topic)?;
        check_name("group", &group)?;
        let token = gw.token(&headers)?;
        let limits = fetch_limits(query.as_deref())?;
        let g = gw.group(&topic, &group, token).await?;
        Ok::<_, Answer>(g.fetch(limits).await)
    };
    match answer.await {
        Ok(a) | Err(a) => a.into_response(),
    }
}

async fn ack(
    state: Shared,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    settle(state, path, headers, body, true).await
}

async fn nack(
    state: Shared,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    settle(state, path, headers, body, false).await
}

async fn settle(
    State(gw): Shared,
    Path((topic, group)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
    ack: bool,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tags {
        tags: Vec<u64>,
    }
    let answer = async {
        check_name("topic", &topic)?;
        check_name("group", &group)?;
        let token = gw.token(&headers)?;
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| BodyKind::from_content_type(t) == Some(BodyKind::JsonArray));
        if !json {
            return Err(Answer::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send {\"tags\": [...]} as application/json",
            ));
        }
        let bytes = read_body(body, gw.config.max_body).await?;
        let tags: Tags = serde_json::from_slice(&bytes)
            .map_err(|e| Answer::bad_request(format!("expected {{\"tags\": [integers]}}: {e}")))?;
        let g = gw.group(&topic, &group, token).await?;
        Ok(g.settle(ack, tags.tags).await)
    };
    match answer.await {
        Ok(a) | Err(a) => a.into_response(),
    }
}

async fn topic(State(gw): Shared, Path(topic): Path<String>) -> Response {
    if let Err(a) = check_name("topic", &topic) {
        return a.into_response();
    }
    let ingest = gw
        .ingests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&topic)
        .map(Ingest::figures);
    let broker = gw.config.topic_stats.as_ref().and_then(|f| f(&topic));
    if ingest.is_none() && broker.is_none() {
        return Answer::error(
            StatusCode::NOT_FOUND,
            format!("nothing known of topic '{topic}' here"),
        )
        .into_response();
    }
    axum::Json(json!({"topic": topic, "ingest": ingest, "broker": broker})).into_response()
}
