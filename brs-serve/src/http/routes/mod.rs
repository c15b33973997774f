//! HTTP handlers, one module per resource; each only parses, calls the domain, and answers.

pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod models;
pub(crate) mod openapi;
pub(crate) mod page;
pub(crate) mod results;
pub(crate) mod translate;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::clients::{ClientId, InFlightGuard};
use crate::drain::WorkGuard;
use crate::error::ServeError;
use crate::http::error::ApiError;
use crate::http::request::{self, Peer, api_key, client_ip};
use crate::pipeline::Params;
use crate::state::AppState;

/// Query parameters of /v1/translate and /v1/jobs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageQuery {
    pub(crate) style: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) size: Option<u32>,
    pub(crate) crop: Option<String>,
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found("no_route", format!("route {path}"))
}

/// Query parse failures become our JSON 400.
pub(crate) fn query<T>(q: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// A request that brings images, past every check that costs nothing: the server takes work, the
/// client is known and within its rate and in-flight limits, the parameters are valid.
pub(crate) struct Admitted {
    pub(crate) client: ClientId,
    pub(crate) params: Params,
    _work: WorkGuard,
    _in_flight: InFlightGuard,
}

/// Admits a request that brings images (charged one image now; a job pays for the rest once they
/// are counted), then takes what `then` needs before the body is read (a queue slot, an upload
/// permit). A refusal comes as the response to send: the body unread ([`request::refuse`]).
pub(crate) fn admit<T>(
    state: &AppState,
    peer: Peer,
    q: Result<Query<ImageQuery>, QueryRejection>,
    req: Request,
    then: impl FnOnce(&Admitted) -> Result<T, ApiError>,
) -> Result<(Admitted, T, Request), Box<Response>> {
    let (head, body) = req.into_parts();
    let admitted = checks(state, peer, q, &head.headers).and_then(|a| {
        let extra = then(&a)?;
        Ok((a, extra))
    });
    match admitted {
        Ok((a, extra)) => Ok((a, extra, Request::from_parts(head, body))),
        Err(e) => Err(Box::new(request::refuse(body, e, &state.config))),
    }
}

fn checks(
    state: &AppState,
    peer: Peer,
    q: Result<Query<ImageQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Admitted, ApiError> {
    if state.drain.is_refusing() {
        return Err(ServeError::Draining.into());
    }
    let work = state.drain.request();
    let ip = client_ip(state, peer, headers);
    let client = state.clients.for_work(ip, api_key(headers))?;
    state.clients.charge_images(&client, 1)?;
    let in_flight = state.clients.begin_work(&client)?;
    let q = query(q)?;
    let params = Params::parse(
        state,
        q.style.as_deref(),
        q.format.as_deref(),
        q.size,
        q.crop.as_deref(),
    )?;
    Ok(Admitted {
        client,
        params,
        _work: work,
        _in_flight: in_flight,
    })
}

/// Reads by capability (a job or result id) are charged to the address's bucket of other calls.
pub(crate) fn charge_read(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
) -> Result<ClientId, ApiError> {
    let client = crate::clients::Clients::by_address(client_ip(state, peer, headers));
    state.clients.charge_read(&client)?;
    Ok(client)
}
