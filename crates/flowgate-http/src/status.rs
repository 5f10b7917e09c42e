//! Every answer the API gives, as a status, a JSON body and, for a refusal, a `Retry-After`;
//! and the client library's errors mapped onto them (a refused token is 401 or 403, an unknown
//! topic 404, one group too many 409, a broker out of reach 503).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flowgate_client::ClientError;
use flowgate_core::EventId;
use flowgate_proto::ErrorCode;
use serde_json::{Value, json};

/// One answer: its status, body and the seconds of its `Retry-After`, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// `Retry-After` in seconds.
    pub retry_after: Option<u64>,
}

impl Answer {
    /// 200: every event confirmed by the broker.
    pub fn accepted(count: u64, first: EventId, last: EventId) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: json!({
                "accepted": count,
                "producer_id": format!("{:016x}", first.producer),
                "first_seq": first.seq,
                "last_seq": last.seq,
            }),
            retry_after: None,
        }
    }

    /// Any other status, with the error in words.
    pub fn error(status: StatusCode, why: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({ "error": why.into() }),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(why: impl Into<String>) -> Answer {
        Answer::error(StatusCode::BAD_REQUEST, why)
    }

    /// 413.
    pub fn too_large(why: impl Into<String>) -> Answer {
        Answer::error(StatusCode::PAYLOAD_TOO_LARGE, why)
    }

    /// 429, come back after `after` seconds.
    pub fn over_share(why: impl Into<String>, after: u64) -> Answer {
        Answer {
            retry_after: Some(after),
            ..Answer::error(StatusCode::TOO_MANY_REQUESTS, why)
        }
    }

    /// 503, come back after `after` seconds.
    pub fn unavailable(why: impl Into<String>, after: u64) -> Answer {
        Answer {
            retry_after: Some(after),
            ..Answer::error(StatusCode::SERVICE_UNAVAILABLE, why)
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut body = self.body;
        if let (Some(after), Value::Object(map)) = (self.retry_after, &mut body) {
            map.insert("retry_after_s".into(), after.into());
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        response
    }
}

/// The answer for a client library error on `topic`; `had_token`: the request carried one.
pub fn client_error(e: &ClientError, had_token: bool, topic: &str) -> Answer {
    match e {
        ClientError::Refused {
            code: ErrorCode::Unauthorized,
            message,
        } => {
            // A known token out of its scope is forbidden; a missing or unknown one is not
            // authenticated.
            if had_token && message.contains("may not") {
                Answer::error(StatusCode::FORBIDDEN, message.clone())
            } else {
                Answer::error(StatusCode::UNAUTHORIZED, message.clone())
            }
        }
        ClientError::Refused {
            code: ErrorCode::UnknownTopic,
            message,
        } => Answer::error(StatusCode::NOT_FOUND, format!("topic '{topic}': {message}")),
        ClientError::Refused {
            code: ErrorCode::TooManyGroups,
            message,
        } => Answer::error(StatusCode::CONFLICT, message.clone()),
        other => Answer::unavailable(format!("the broker is out of reach: {other}"), 1),
    }
}
