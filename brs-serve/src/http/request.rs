//! What the routes read from a request, each bounded before it is read: who is asking (peer
//! address, forwarded-for from trusted proxies, API key), and the body, under a size limit and a
//! deadline that grows with its size (a minimum rate), so a slow sender cannot hold a slot.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::multipart::{Field, Multipart};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use crate::config::HttpLimits;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The socket address of the other end, when the request came over a socket (the server inserts
/// it; a router driven in-process has none and counts as loopback).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The address a request came from as this server decides it (peer, or the client behind our
/// trusted proxies).
pub(crate) fn client_ip(state: &AppState, peer: Peer, headers: &HeaderMap) -> IpAddr {
    let peer = peer
        .0
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    state.clients.address(peer, xff)
}

/// The API key a request carries (`Authorization: Bearer KEY` or `x-api-key: KEY`).
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The declared length, if any.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads and discards, in the background, the body of a request answered before it was read, for
/// at most `http.body_grace` and `max_upload_bytes`: a client still sending then reads the answer
/// instead of a reset connection (nginx's lingering close). Memory: one chunk at a time.
fn linger(body: Body, config: &crate::config::Config) {
    let (limit, grace) = (config.max_upload_bytes, config.http.body_grace);
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0usize;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
    });
}

/// Refuses a request whose `body` is not read to the end: the body [`linger`]s, and the answer
/// says `Connection: close`, because the connection cannot carry another request before that body
/// is read, and past the grace it never is. Without the header a client's pool may send its next
/// request on the connection the server is closing, and that request fails (reqwest:
/// IncompleteMessage, seen in the abuse tests).
pub(crate) fn refuse(body: Body, err: ApiError, config: &crate::config::Config) -> Response {
    linger(body, config);
    closing(err)
}

fn closing(err: ApiError) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The unread rest of a request body, kept where a reader that gives up mid-body cannot take it
/// along (axum's `Multipart` owns the body it parses and drops it on the first error): the route
/// then refuses with the rest lingering, so the client reads the refusal instead of a broken pipe.
pub(crate) struct Unread(Arc<Mutex<Option<Body>>>);

impl Unread {
    /// `req` with a body that reads through the shared slot, and the slot.
    pub(crate) fn split(req: Request) -> (Request, Unread) {
        let (head, body) = req.into_parts();
        let slot = Arc::new(Mutex::new(Some(body)));
        let reader = Arc::clone(&slot);
        let stream = futures::stream::poll_fn(move |cx| {
            let mut guard = reader.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(body) = guard.as_mut() else {
                return Poll::Ready(None);
            };
            loop {
                let frame = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => frame,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                };
                // Trailers carry nothing a route reads.
                if let Ok(data) = frame.into_data() {
                    return Poll::Ready(Some(Ok(data)));
                }
            }
        });
        (
            Request::from_parts(head, Body::from_stream(stream)),
            Unread(slot),
        )
    }

    /// Takes the rest back from the reader and [`refuse`]s the request with `err`.
    pub(crate) fn refuse(self, err: ApiError, config: &crate::config::Config) -> Response {
        let rest = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match rest {
            Some(body) => refuse(body, err, config),
            None => closing(err),
        }
    }
}

/// Reads a whole body of at most `limit` bytes within the deadline its size allows.
pub(crate) async fn read_body(
    body: Body,
    declared: Option<usize>,
    limit: usize,
    http: &HttpLimits,
) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let deadline = http.body_deadline(declared.unwrap_or(limit));
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("reading the body: {e}"))),
    }
}

/// A multipart body read one field at a time, each within the body's deadline, and refused past
/// `http.max_parts` parts (every route that takes multipart shares the cap).
pub(crate) struct Fields {
    mp: Multipart,
    deadline: tokio::time::Instant,
    limit: usize,
    max_parts: usize,
    seen: usize,
}

impl Fields {
    pub(crate) fn new(
        mp: Multipart,
        deadline: tokio::time::Instant,
        limit: usize,
        http: &HttpLimits,
    ) -> Self {
        Fields {
            mp,
            deadline,
            limit,
            max_parts: http.max_parts,
            seen: 0,
        }
    }

    /// The next field, or the refusal of one part too many.
    pub(crate) async fn next(&mut self) -> Result<Option<Field<'_>>, ApiError> {
        let limit = self.limit;
        let field = match tokio::time::timeout_at(self.deadline, self.mp.next_field()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(r) => r.map_err(|e| multipart_error(e.status(), e.body_text(), limit))?,
        };
        if field.is_some() {
            self.seen += 1;
            if self.seen > self.max_parts {
                return Err(ApiError::BadRequest(format!(
                    "more than {} multipart parts",
                    self.max_parts
                )));
            }
        }
        Ok(field)
    }
}

/// A field's name as an error message may quote it (at most 64 characters).
pub(crate) fn shown_name(name: Option<&str>) -> String {
    name.unwrap_or("").chars().take(64).collect()
}

/// A field's bytes (at most `limit`), within the body's deadline.
pub(crate) async fn field_bytes(
    mut field: Field<'_>,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let read = async {
        let mut buf = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(e.status(), e.body_text(), limit))?
        {
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

fn multipart_error(status: axum::http::StatusCode, text: String, limit: usize) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(text)
    }
}

/// Longest accepted field name and file name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// A client's file name reduced to something safe to store and show: its last path component,
/// control and quoting characters removed. Longer than 255 bytes is refused, not cut.
pub(crate) fn clean_filename(raw: &str) -> Result<Option<String>, ApiError> {
    if raw.len() > MAX_NAME_BYTES {
        return Err(ApiError::BadRequest(format!(
            "a file name is {} bytes; at most {MAX_NAME_BYTES} are accepted",
            raw.len()
        )));
    }
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '`'))
        .collect();
    let clean = clean.trim().to_string();
    Ok((!clean.is_empty() && clean != "." && clean != "..").then_some(clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_cleaned_and_bounded() {
        assert_eq!(
            clean_filename("me.jpg").expect("ok").as_deref(),
            Some("me.jpg")
        );
        assert_eq!(
            clean_filename("C:\\Users\\x\\..\\me.jpg")
                .expect("ok")
                .as_deref(),
            Some("me.jpg")
        );
        assert_eq!(
            clean_filename("../../etc/passwd").expect("ok").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_filename("a\u{0}b\n<c>.png").expect("ok").as_deref(),
            Some("abc.png")
        );
        assert_eq!(clean_filename("..").expect("ok"), None);
        assert!(clean_filename(&"x".repeat(256)).is_err());
    }
}
