//! Why an API request failed, mapped once to its response.
//!
//! Handlers return `Result<Reply, ApiError>` and use `?`; the route table turns an error into
//! its JSON answer `{"success":false,"error":{"code","message"}}` here and nowhere else.
//! Internal failures (storage, keys) are logged in full and answered without details.

use proto::ErrorCode;
use proto::validate::ValidationError;

use crate::auth::AuthError;
use crate::http::{BodyError, Response};
use crate::hub::HubError;
use crate::store::StoreError;
use crate::users::LoginError;
use crate::users::password::Busy;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Refused with this code and message (validation, not found, conflict, …).
    #[error("{code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// Over the client's request budget: 429 with `retry-after: 1`.
    #[error("rate limited")]
    RateLimited,
    /// 401 `AUTH_FAILED` (or 500 for a storage failure behind it).
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// A command that got no usable answer: 503 `AGENT_OFFLINE`, 504 `TIMEOUT`, 502, 413.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A streamed request body that could not be read to its end (400, 408, 413).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A cookie-authenticated request from another origin: 403 `CROSS_ORIGIN`.
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// A login that failed (401), was throttled or found the hasher busy (429).
    #[error(transparent)]
    Login(#[from] LoginError),
    /// An agent refused a step of a longer operation (backup, restore, transfer): 502 with
    /// its code and message.
    #[error("{code}: {message}")]
    Agent { code: String, message: String },
}

impl From<Busy> for ApiError {
    fn from(b: Busy) -> ApiError {
        ApiError::Login(LoginError::Busy(b))
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The JSON answer.
    pub fn into_response(self) -> Response {
        match self {
            ApiError::Refused { code, message } => Response::error(code, message),
            ApiError::RateLimited => Response::error(
                ErrorCode::RateLimited,
                "too many requests from this client; slow down",
            )
            .with_header("retry-after", "1"),
            ApiError::Auth(e) => match e.code() {
                ErrorCode::InternalError => {
                    log::error!("auth: {e}");
                    Response::error(ErrorCode::InternalError, "internal error (see panel log)")
                }
                code => Response::error(code, e.to_string()),
            },
            ApiError::Storage(e) => {
                log::error!("{e}");
                Response::error(
                    ErrorCode::InternalError,
                    "storage error (see panel log); nothing was changed",
                )
            }
            ApiError::Hub(e) => {
                Response::error_with_status(e.http_status(), e.code().as_str(), e.to_string())
            }
            ApiError::Body(e) => e.to_response(),
            ApiError::CrossOrigin => Response::error_with_status(
                403,
                "CROSS_ORIGIN",
                "a request signed in by cookie must come from the panel's own pages",
            ),
            ApiError::Login(e) => match e {
                LoginError::Failed => Response::error(ErrorCode::AuthFailed, e.to_string()),
                LoginError::Throttled | LoginError::Busy(_) => {
                    Response::error(ErrorCode::RateLimited, e.to_string())
                        .with_header("retry-after", "5")
                }
                LoginError::Store(e) => ApiError::Storage(e).into_response(),
            },
            ApiError::Agent { code, message } => Response::error_with_status(502, &code, message),
        }
    }
}

impl ApiError {
    /// An agent's refusal (a response with `success: false`).
    pub fn from_agent(r: &proto::message::Response<'_>) -> ApiError {
        match &r.error {
            Some(e) => ApiError::Agent {
                code: e.code.to_string(),
                message: e.message.to_string(),
            },
            None => ApiError::Agent {
                code: ErrorCode::InternalError.as_str().into(),
                message: "the agent reported a failure without an error body".into(),
            },
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn each_kind_maps_to_its_status_and_code() {
        let r = ApiError::new(ErrorCode::NotFound, "no server `x`").into_response();
        assert_eq!(r.status, 404);
        assert_eq!(body(&r)["error"]["code"], "NOT_FOUND");
        let r = ApiError::RateLimited.into_response();
        assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
        let r = ApiError::Hub(HubError::Offline("a1".into())).into_response();
        assert_eq!(r.status, 503);
        assert_eq!(body(&r)["error"]["code"], "AGENT_OFFLINE");
        let r = ApiError::Storage(StoreError::UnknownAgent("a".into())).into_response();
        assert_eq!(r.status, 500);
        assert_eq!(body(&r)["error"]["code"], "INTERNAL_ERROR");
        assert!(
            !body(&r)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`a`")
        );
        let r = ApiError::from(ValidationError::Path("..".into())).into_response();
        assert_eq!(body(&r)["error"]["code"], "INVALID_PATH");
    }
}
