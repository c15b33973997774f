//! One photo in, its translation out, while the client waits: a repeated photo from the same
//! client is answered from the store; otherwise the pipeline runs. Either way the result is
//! stored under a new unguessable id. A store that fails does not fail the request: the translation is still
//! answered (and counted as not stored), and the store's health decides readiness.

use bytes::Bytes;

use crate::admission::Slot;
use crate::batcher::Lane;
use crate::error::ServeError;
use crate::ids::new_id;
use crate::pipeline::{self, Params};
use crate::results::{self, DedupParts, ResultName};
use crate::state::AppState;

/// A translation as answered.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) bytes: Bytes,
    /// Where it can be fetched again; `None` when the store would not keep it.
    pub(crate) name: Option<ResultName>,
    pub(crate) version: String,
    pub(crate) cached: bool,
}

pub(crate) async fn translate(
    state: &AppState,
    input: Bytes,
    params: &Params,
    slot: Slot,
) -> Result<Output, ServeError> {
    let model = params.style.batcher.model();
    // The slot's owner is the client's tenant id, computed once at admission.
    let mac = DedupParts {
        tenant: slot.owner(),
        input_sha256: results::input_sha256(input.clone()).await,
        version: &model.version,
        precision: &model.precision,
        params,
        crop: &state.config.crop,
    }
    .mac(&state.secret);
    let hit = match results::lookup(&state.store, &mac).await {
        Ok(hit) => hit,
        // The store is down: translate anyway.
        Err(e) => {
            tracing::warn!(error = %e, "result lookup failed; translating without it");
            None
        }
    };
    state.metrics.cache(hit.is_some());
    let (bytes, version, cached) = match hit {
        Some(bytes) => (bytes, model.version.clone(), true),
        None => {
            let out = pipeline::translate(state, input, params, Lane::Interactive, slot).await?;
            (out.bytes, out.version, false)
        }
    };
    let name = ResultName {
        id: new_id().map_err(|e| ServeError::Random(e.to_string()))?,
        format: params.format,
    };
    // A hit is stored again under the new name only: its entry keeps pointing at the original.
    let mac = (!cached).then_some(mac.as_str());
    let stored = match results::save(&state.store, &name, bytes.clone(), mac).await {
        Ok(()) => Some(name),
        Err(e) => {
            state.metrics.unstored();
            tracing::warn!(error = %e, "could not store a result; answering it anyway");
            None
        }
    };
    Ok(Output {
        bytes,
        name: stored,
        version,
        cached,
    })
}
