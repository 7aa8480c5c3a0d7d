//! Every error answer: a status and `pureboot_contract::ApiError` as JSON. Only server faults
//! are logged as errors; bad input is the client's business.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pureboot_contract::ApiError;

use crate::nfs_tree::error::NfsTreeError;
use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiErr {
    pub status: StatusCode,
    pub body: ApiError,
    /// Seconds a client should wait before asking again (`Retry-After`, with 429).
    pub retry_after: Option<u64>,
}

impl ApiErr {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            body: ApiError {
                error: code.into(),
                detail: Some(detail.into()),
            },
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn internal(detail: impl Into<String>) -> ApiErr {
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<ServiceError> for ApiErr {
    fn from(e: ServiceError) -> ApiErr {
        let detail = e.to_string();
        match e {
            ServiceError::BadInput(_) | ServiceError::Invalid(_) => ApiErr::bad_request(detail),
            ServiceError::Unprocessable(_) => {
                ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", detail)
            }
            ServiceError::NotFound(_) => ApiErr::new(StatusCode::NOT_FOUND, "not_found", detail),
            ServiceError::Forbidden(_) => ApiErr::new(StatusCode::FORBIDDEN, "forbidden", detail),
            ServiceError::Limited { retry_after, .. } => ApiErr {
                retry_after: Some(retry_after),
                ..ApiErr::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", detail)
            },
            ServiceError::Conflict(_) => ApiErr::new(StatusCode::CONFLICT, "conflict", detail),
            ServiceError::Transition(_) => {
                ApiErr::new(StatusCode::CONFLICT, "invalid_transition", detail)
            }
            ServiceError::Tree(t) | ServiceError::NfsServer { source: t, .. } => {
                tree_error(t, detail)
            }
            // The server's faults: the details (paths, SQL) go to the log, not to clients.
            ServiceError::NodeTree { serial, source } => {
                log::error!("{detail}");
                // A value the tree refuses (a rendered hostname ...) is named; I/O is not.
                let why = match &source {
                    NfsTreeError::InvalidHostname(_)
                    | NfsTreeError::InvalidImageName(_)
                    | NfsTreeError::InvalidPersistSize(_) => format!(": {source}"),
                    _ => String::new(),
                };
                ApiErr::internal(format!(
                    "preparing the node tree of {serial} failed{why}; see the controller log"
                ))
            }
            ServiceError::Workflows(_) => ApiErr::internal(detail),
            ServiceError::Store(_) => {
                log::error!("{detail}");
                ApiErr::internal("internal error; see the controller log")
            }
        }
    }
}

fn tree_error(e: NfsTreeError, detail: String) -> ApiErr {
    use NfsTreeError::*;
    match e {
        InvalidImageName(_) | InvalidHostname(_) | InvalidPersistSize(_) => {
            ApiErr::bad_request(detail)
        }
        // A broken or hostile archive is the uploader's fault, not the server's.
        UnsupportedArchive { .. } | Archive { .. } => ApiErr::bad_request(detail),
        UnsafeEntry { .. } | BadEntry { .. } | TooLarge { .. } => {
            ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", detail)
        }
        BaseImageNotFound { name, .. } => ApiErr::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("base image not found: {name}"),
        ),
        ImageExists { name, .. } => ApiErr::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("base image already exists: {name}"),
        ),
        ImportInProgress(_) => ApiErr::new(StatusCode::CONFLICT, "conflict", detail),
        _ => {
            log::error!("{detail}");
            ApiErr::internal("file system error on the server; see the controller log")
        }
    }
}

impl From<JsonRejection> for ApiErr {
    fn from(r: JsonRejection) -> ApiErr {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiErr::new(r.status(), code, r.body_text())
    }
}

impl From<PathRejection> for ApiErr {
    fn from(r: PathRejection) -> ApiErr {
        let code = if r.status().is_server_error() {
            "internal"
        } else {
            "bad_request"
        };
        ApiErr::new(r.status(), code, r.body_text())
    }
}

impl From<QueryRejection> for ApiErr {
    fn from(r: QueryRejection) -> ApiErr {
        ApiErr::new(r.status(), "bad_request", r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn status_of(e: NfsTreeError) -> (StatusCode, String) {
        let api = ApiErr::from(ServiceError::Tree(e));
        (api.status, api.body.error)
    }

    #[test]
    fn refused_archives_are_client_errors_and_io_faults_are_not() {
        let archive = || "root.tar.gz".to_string();
        let cases = [
            (
                NfsTreeError::UnsupportedArchive {
                    archive: archive(),
                    reason: "not a tar".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                NfsTreeError::Archive {
                    archive: archive(),
                    error: io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                NfsTreeError::UnsafeEntry {
                    archive: archive(),
                    entry: "../etc/passwd".into(),
                    reason: "leaves the target".into(),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                NfsTreeError::BadEntry {
                    archive: archive(),
                    entry: "etc".into(),
                    reason: "file replaces a directory".into(),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                NfsTreeError::EntryIo {
                    archive: archive(),
                    entry: "etc/x".into(),
                    error: io::Error::other("disk full"),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            let (status, code) = status_of(error);
            assert_eq!(status, want, "{text}");
            assert!(!code.is_empty());
            assert_eq!(code == "internal", want.is_server_error(), "{text}: {code}");
            if want.is_server_error() {
                let api = ApiErr::from(ServiceError::Tree(NfsTreeError::Io {
                    op: "write",
                    path: "/srv/nfsroot/nodes/d83add36/upper/etc/hostname".into(),
                    error: io::Error::other("No space left on device"),
                }));
                assert!(!api.body.detail.unwrap().contains("/srv"), "no server path");
            }
        }
    }
}
