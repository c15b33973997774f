//! What the routes read from a request, each bounded before it is read: who is asking (peer
//! address, forwarded-for from trusted proxies, API key), and the body, under a size limit and a
//! minimum rate measured on what arrives (see [`Pace`]), so a slow or stalled sender cannot hold a
//! slot whatever length it declares.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::multipart::{Field, Multipart};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use tokio::time::{Instant, Sleep};

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
/// at most `http.body_grace` and `max_upload_bytes`, and no longer than `idle` without a byte: a
/// client still sending then reads the answer instead of a reset connection (nginx's lingering
/// close). Memory: one chunk at a time.
fn linger(body: Body, config: &crate::config::Config, idle: Duration) {
    let (limit, grace) = (config.max_upload_bytes, config.http.body_grace);
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0usize;
        let drain = async {
            while let Ok(Some(Ok(frame))) = tokio::time::timeout(idle, body.frame()).await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
    });
}

/// How long the rest of a body cut for its pace is still read after the 408 while bytes keep
/// coming: enough for what was in flight, little for a sender that has stopped, whose connection
/// then closes `body_grace` + this after its last byte (issue 24 asks for 10 s at most).
const SLOW_LINGER: Duration = Duration::from_secs(1);

/// Refuses a request whose `body` is not read to the end: the body [`linger`]s, and the answer
/// says `Connection: close`, because the connection cannot carry another request before that body
/// is read, and past the grace it never is. Without the header a client's pool may send its next
/// request on the connection the server is closing, and that request fails (reqwest:
/// IncompleteMessage, seen in the abuse tests).
pub(crate) fn refuse(body: Body, err: ApiError, config: &crate::config::Config) -> Response {
    linger(body, config, config.http.body_grace);
    closing(err)
}

fn closing(err: ApiError) -> Response {
    let mut resp = err.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A request body as the routes read it: held to a pace (see [`Pace`]), and with its unread rest
/// kept where a reader that gives up mid-body cannot take it along (axum's `Multipart` owns the
/// body it parses and drops it on the first error): the route then refuses with the rest
/// lingering, so the client reads the refusal instead of a broken pipe.
pub(crate) struct Unread {
    rest: Arc<Mutex<Option<Body>>>,
    /// Set when the body fell behind its pace: whatever error the reader made of that (multipart
    /// turns it into a 400), the answer is 408.
    behind: Arc<AtomicBool>,
}

impl Unread {
    /// `req` with a body that reads through the shared slot at the pace `http` sets, and the slot.
    /// Every route that reads a body reads it through here.
    pub(crate) fn split(req: Request, http: &HttpLimits) -> (Request, Unread) {
        let (head, body) = req.into_parts();
        let rest = Arc::new(Mutex::new(Some(body)));
        let behind = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            rest: Arc::clone(&rest),
            pace: Pace::new(http, Arc::clone(&behind)),
        };
        (
            Request::from_parts(head, Body::from_stream(reader)),
            Unread { rest, behind },
        )
    }

    /// Takes the rest back from the reader and [`refuse`]s the request with `err`, or with 408
    /// `body_timeout` if the body fell behind its pace (then the rest lingers only while bytes
    /// keep coming, [`SLOW_LINGER`]).
    pub(crate) fn refuse(self, err: ApiError, config: &crate::config::Config) -> Response {
        let rest = self
            .rest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let slow = self.behind.load(Ordering::Relaxed);
        let err = if slow { ApiError::BodyTimeout } else { err };
        match rest {
            Some(body) if slow => {
                linger(body, config, SLOW_LINGER.min(config.http.body_grace));
                closing(err)
            }
            Some(body) => refuse(body, err, config),
            None => closing(err),
        }
    }
}

/// The error a paced body fails with once its sender falls behind.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than http.body_min_rate")]
struct Behind;

/// The reading end of an [`Unread`]: the slot's data frames, at the slot's [`Pace`].
struct Reader {
    rest: Arc<Mutex<Option<Body>>>,
    pace: Pace,
}

impl futures::Stream for Reader {
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.pace.is_behind() {
            return Poll::Ready(Some(Err(Behind.into())));
        }
        this.pace.resume();
        match next_data(&this.rest, cx) {
            Poll::Ready(Some(Ok(data))) => {
                this.pace.arrived(data.len());
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.pace.poll_behind(cx));
                Poll::Ready(Some(Err(Behind.into())))
            }
        }
    }
}

/// The next data frame of the body in `slot` (trailers carry nothing a route reads).
fn next_data(
    slot: &Mutex<Option<Body>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Bytes, axum::Error>>> {
    let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(body) = guard.as_mut() else {
        return Poll::Ready(None);
    };
    loop {
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Poll::Ready(Some(Ok(data)));
                }
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None => return Poll::Ready(None),
        }
    }
}

/// The pace a body must keep, measured on what arrives, whatever length it declares: each byte
/// buys `1 / http.body_min_rate` seconds, a sender may be at most `http.body_grace` ahead, and a
/// body whose time runs out before it ends is cut (408). So a body that sends nothing for
/// `body_grace` is cut (however much it sent before), one slower than `body_min_rate` over any
/// stretch is cut once the stretch has used up the grace, one at the rate or faster never is,
/// and no body is waited for longer than `body_grace` + its length / `body_min_rate` in all (the
/// length limit bounds the rest).
///
/// Only time the reader spends waiting for bytes counts: while it works on what it got (a job's
/// image going to the store; a route not yet reading), the clock stops, so a slow store is not
/// the client's fault.
struct Pace {
    secs_per_byte: f64,
    grace: Duration,
    /// When the time bought so far runs out.
    deadline: Instant,
    /// Wakes the reader at `deadline`; made on the first wait, moved only when waited on again.
    timer: Option<Pin<Box<Sleep>>>,
    /// Since when the reader has been busy with what it got, if it is.
    busy_since: Option<Instant>,
    behind: Arc<AtomicBool>,
}

impl Pace {
    fn new(http: &HttpLimits, behind: Arc<AtomicBool>) -> Self {
        let now = Instant::now();
        Pace {
            secs_per_byte: 1.0 / http.body_min_rate.max(1) as f64,
            grace: http.body_grace,
            deadline: now + http.body_grace,
            timer: None,
            busy_since: Some(now),
            behind,
        }
    }

    fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    /// The reader asks for more: the time it was busy is not the sender's.
    fn resume(&mut self) {
        if let Some(since) = self.busy_since.take() {
            self.deadline += since.elapsed();
        }
    }

    /// `n` bytes arrived; the reader goes off to use them.
    fn arrived(&mut self, n: usize) {
        let now = Instant::now();
        let bought = Duration::from_secs_f64(n as f64 * self.secs_per_byte);
        self.deadline = (self.deadline + bought).min(now + self.grace);
        self.busy_since = Some(now);
    }

    /// Ready (and marked behind) once the time bought has run out; else wakes `cx` when it will.
    fn poll_behind(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        self.behind.store(true, Ordering::Relaxed);
        Poll::Ready(())
    }
}

/// Reads a whole body of at most `limit` bytes (its pace is the [`Unread`] body's).
pub(crate) async fn read_body(
    body: Body,
    declared: Option<usize>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ApiError::BadRequest(format!("reading the body: {e}"))),
    }
}

/// A multipart body read one field at a time (at the [`Unread`] body's pace), and refused past
/// `http.max_parts` parts (every route that takes multipart shares the cap).
pub(crate) struct Fields {
    mp: Multipart,
    limit: usize,
    max_parts: usize,
    seen: usize,
}

impl Fields {
    pub(crate) fn new(mp: Multipart, limit: usize, http: &HttpLimits) -> Self {
        Fields {
            mp,
            limit,
            max_parts: http.max_parts,
            seen: 0,
        }
    }

    /// The next field, or the refusal of one part too many.
    pub(crate) async fn next(&mut self) -> Result<Option<Field<'_>>, ApiError> {
        let limit = self.limit;
        let field = self
            .mp
            .next_field()
            .await
            .map_err(|e| multipart_error(e.status(), e.body_text(), limit))?;
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

/// A field's bytes (at most `limit`).
pub(crate) async fn field_bytes(mut field: Field<'_>, limit: usize) -> Result<Bytes, ApiError> {
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

    fn pace(grace: Duration, min_rate: u64) -> HttpLimits {
        HttpLimits {
            body_grace: grace,
            body_min_rate: min_rate,
            ..HttpLimits::default()
        }
    }

    type Feed = tokio::sync::mpsc::Sender<Result<Bytes, std::convert::Infallible>>;

    /// A request whose body is fed by hand; it ends when the feed is dropped.
    fn fed() -> (Feed, Request) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        (tx, Request::new(Body::from_stream(stream)))
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_a_grace_after_its_last_byte_whatever_it_sent_before() {
        let (feed, req) = fed();
        let (req, unread) = Unread::split(req, &pace(Duration::from_millis(300), 1000));
        // Ten seconds' worth at the minimum rate, then nothing: what is banked is capped at the
        // grace.
        feed.send(Ok(Bytes::from(vec![7u8; 10_000])))
            .await
            .expect("feed");
        let sent = Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), req.into_body().collect())
            .await
            .expect("cut, not left waiting");
        let waited = sent.elapsed();
        assert!(read.is_err());
        assert!(unread.behind.load(Ordering::Relaxed));
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(5)).contains(&waited),
            "{waited:?}"
        );
        drop(feed);
    }

    #[tokio::test]
    async fn only_time_spent_waiting_for_the_sender_counts() {
        let (feed, req) = fed();
        let (req, unread) = Unread::split(req, &pace(Duration::from_secs(2), 1_000_000));
        let mut body = req.into_body();
        feed.send(Ok(Bytes::from_static(b"first")))
            .await
            .expect("feed");
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "first");
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            feed.send(Ok(Bytes::from_static(b"second")))
                .await
                .expect("feed");
        });
        // The reader is busy with the first chunk for longer than the grace (a job's image going
        // to a slow store): its time, not the sender's, who then has its whole grace again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let rest = body.collect().await.expect("not cut").to_bytes();
        assert_eq!(rest, "second");
        assert!(!unread.behind.load(Ordering::Relaxed));
        later.await.expect("feeder");
    }
}
