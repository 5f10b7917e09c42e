//! The OpenAPI 3 document of the whole API, served at `GET /openapi.json`. A test runs a
//! schema checker against a live server with it, so every status an operation can give is
//! listed here with its body.

use serde_json::{Value, json};

/// The document.
pub fn document() -> Value {
    let error = |what: &str| {
        json!({
            "description": what,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        })
    };
    let retry = |what: &str| {
        json!({
            "description": what,
            "headers": {"Retry-After": {
                "description": "Seconds to wait, from the topic's measured drain rate and the caller's place",
                "schema": {"type": "integer", "minimum": 1}
            }},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        })
    };
    let auth = json!({
        "401": error("No token, or an unknown one, for a broker that requires one"),
        "403": error("The token may not do this on this topic"),
    });
    let topic = json!({"name": "topic", "in": "path", "required": true,
        "description": "Letters, digits, '.', '_' and '-', 1 to 255 bytes",
        "schema": {"type": "string"}});
    let group = json!({"name": "group", "in": "path", "required": true,
        "description": "The consumer group; same rules as a topic name",
        "schema": {"type": "string"}});
    let settle = |verb: &str, what: &str| {
        let mut responses = json!({
            "200": {"description": format!("The known tags were {verb}; the rest are listed"),
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", if verb == "acked" { "Acked" } else { "Nacked" })}}}},
            "400": error("The body is not {\"tags\": [integers]}, or a name is invalid"),
            "404": error("No such topic"),
            "409": error("The topic has as many groups as the broker allows"),
            "413": error("The body is over the largest the gateway takes"),
            "415": error("The body is not application/json"),
            "503": retry("The broker is out of reach"),
        });
        merge(&mut responses, &auth);
        json!({
            "summary": what,
            "parameters": [topic, group],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tags"}}}},
            "responses": responses
        })
    };
    let mut publish = json!({
        "200": {"description": "Every event of the request is held by the broker as its storage promises",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
        "400": error("A bad line (named, 1-based), no events, or an invalid topic name; nothing kept"),
        "404": error("No such topic, and the broker creates no more"),
        "413": error("The body, one event, or the number of events is over the largest taken; nothing kept"),
        "415": error("Not application/x-ndjson or application/json; nothing kept"),
        "429": retry("The client is over its fair share of the topic's queue while others wait; nothing kept"),
        "503": retry("No room within the admit wait, or the broker out of reach; nothing kept"),
    });
    merge(&mut publish, &auth);
    let mut fetch = json!({
        "200": {"description": "The deliveries (none if nothing came within the wait)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Fetched"}}}},
        "400": error("A bad query parameter or name"),
        "404": error("No such topic"),
        "409": error("The topic has as many groups as the broker allows"),
        "503": retry("The broker is out of reach, or the gateway holds as many groups as it may"),
    });
    merge(&mut fetch, &auth);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "flowgate HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish and consume over HTTP with the broker's backpressure: a publish is answered 200 only once every event is confirmed, and refused whole (503 or 429 with Retry-After) when there is no room."
        },
        "paths": {
            "/v1/topics/{topic}/events": {"post": {
                "summary": "Publish events, all or nothing",
                "parameters": [topic, {"name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "A retry with the same key within the dedupe window gets the first answer and stores nothing again",
                    "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": {}}}
                }},
                "responses": publish
            }},
            "/v1/topics/{topic}/groups/{group}/fetch": {"post": {
                "summary": "Fetch deliveries for a consumer group",
                "parameters": [topic, group,
                    {"name": "max", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    {"name": "max_bytes", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "wait", "in": "query", "description": "Up to 30s, as 500ms, 2s", "schema": {"type": "string"}}],
                "responses": fetch
            }},
            "/v1/topics/{topic}/groups/{group}/ack": {"post": settle("acked", "Acknowledge deliveries (committed)")},
            "/v1/topics/{topic}/groups/{group}/nack": {"post": settle("nacked", "Refuse deliveries (deliver again)")},
            "/v1/topics/{topic}": {"get": {
                "summary": "The topic's live figures",
                "parameters": [topic],
                "responses": {
                    "200": {"description": "Figures", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Topic"}}}},
                    "400": error("An invalid topic name"),
                    "404": error("Nothing known of this topic")
                }
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}
            }}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"},
                "retry_after_s": {"type": "integer", "minimum": 1}
            }},
            "Accepted": {"type": "object", "required": ["accepted", "producer_id", "first_seq", "last_seq"], "properties": {
                "accepted": {"type": "integer", "minimum": 1},
                "producer_id": {"type": "string"},
                "first_seq": {"type": "integer"},
                "last_seq": {"type": "integer"}
            }},
            "Fetched": {"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "items": {"type": "object", "required": ["tag", "attempt", "payload"], "properties": {
                    "tag": {"type": "integer"},
                    "attempt": {"type": "integer", "minimum": 1},
                    "payload": {}
                }}}
            }},
            "Tags": {"type": "object", "required": ["tags"], "properties": {
                "tags": {"type": "array", "items": {"type": "integer", "minimum": 0}}
            }},
            "Acked": {"type": "object", "required": ["acked", "unknown"], "properties": {
                "acked": {"type": "integer"}, "unknown": {"type": "array", "items": {"type": "integer"}}
            }},
            "Nacked": {"type": "object", "required": ["nacked", "unknown"], "properties": {
                "nacked": {"type": "integer"}, "unknown": {"type": "array", "items": {"type": "integer"}}
            }},
            "Topic": {"type": "object", "required": ["topic"], "properties": {
                "topic": {"type": "string"},
                "ingest": {"nullable": true, "type": "object"},
                "broker": {"nullable": true, "type": "object"}
            }}
        }}
    })
}

fn merge(into: &mut Value, from: &Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}
