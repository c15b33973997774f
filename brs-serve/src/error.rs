//! Why a translation or a job could not be served: the domain's errors, which know nothing of
//! HTTP (the HTTP layer maps each to one status and a stable code, `http::error`). Each says
//! whether trying again could help, which decides a job image's retries.

use std::time::Duration;

use brs_image::decode::DecodeError;

use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The image itself is refused (too big, not an image, corrupt, animated...).
    #[error(transparent)]
    Image(#[from] DecodeError),
    #[error("style {0:?} not found")]
    UnknownStyle(String),
    #[error("{0}")]
    BadParameter(String),
    #[error("crop=face: no face found in the image")]
    NoFace,
    #[error("the inference queue is full; retry shortly")]
    QueueFull,
    #[error("this instance is shutting down; retry on another")]
    Draining,
    #[error("models are still loading")]
    NotReady,
    /// The style's model has not been deployed yet (or its first checkpoint failed to load).
    #[error("style {style:?} has no model yet: {reason}")]
    ModelUnavailable { style: String, reason: String },
    #[error("the translation took longer than {0:?}")]
    Timeout(Duration),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("face detector: {0}")]
    Detector(String),
    #[error("encoding the result as {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("job {0:?} not found")]
    UnknownJob(String),
    #[error("result {0:?} not found")]
    UnknownResult(String),
    #[error("the job's input {0} is gone from the store")]
    InputMissing(String),
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error("a blocking task failed: {0}")]
    Task(String),
}

impl ServeError {
    /// A short, stable, machine-readable name (HTTP bodies, job item states, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Image(e) => e.code(),
            ServeError::UnknownStyle(_) => "unknown_style",
            ServeError::BadParameter(_) => "bad_request",
            ServeError::NoFace => "no_face",
            ServeError::QueueFull => "queue_full",
            ServeError::Draining => "draining",
            ServeError::NotReady => "not_ready",
            ServeError::ModelUnavailable { .. } => "model_unavailable",
            ServeError::Timeout(_) => "timeout",
            ServeError::Inference(_)
            | ServeError::Detector(_)
            | ServeError::Encode { .. }
            | ServeError::Random(_)
            | ServeError::Task(_) => "internal",
            ServeError::Store(_) => "store_unavailable",
            ServeError::Queue(_) => "queue_unavailable",
            ServeError::UnknownJob(_) => "unknown_job",
            ServeError::UnknownResult(_) => "unknown_result",
            ServeError::InputMissing(_) => "input_missing",
        }
    }

    /// What a client may read: internal details (paths, library messages) stay in the log.
    pub fn public_message(&self) -> String {
        match self.code() {
            "internal" => "internal error; see the server log".into(),
            "store_unavailable" => "the result store is unavailable; retry shortly".into(),
            "queue_unavailable" => "the job queue is unavailable; retry shortly".into(),
            _ => self.to_string(),
        }
    }

    /// True when the same work could succeed later (a full queue, a store outage, a slow
    /// moment); false when it never will (the image or its parameters are the problem).
    pub fn is_transient(&self) -> bool {
        match self {
            ServeError::Image(e) => matches!(e, DecodeError::Io { .. }),
            ServeError::UnknownStyle(_)
            | ServeError::BadParameter(_)
            | ServeError::NoFace
            | ServeError::UnknownJob(_)
            | ServeError::UnknownResult(_)
            | ServeError::InputMissing(_)
            | ServeError::Encode { .. } => false,
            ServeError::QueueFull
            | ServeError::Draining
            | ServeError::NotReady
            | ServeError::ModelUnavailable { .. }
            | ServeError::Timeout(_)
            | ServeError::Inference(_)
            | ServeError::Detector(_)
            | ServeError::Store(_)
            | ServeError::Queue(_)
            | ServeError::Random(_)
            | ServeError::Task(_) => true,
        }
    }
}
