//! `GET /api/failover` (admin): whether failover is paused and why, dead and total nodes,
//! servers being failed over, totals; `POST /api/failover/resume` (admin): resume after a
//! mass-death pause (see `crate::failover::pause`).

use serde_json::json;
use std::sync::Arc;

use super::{Api, ApiError, Caller};
use crate::http::{Reply, Request, Response};

pub(super) async fn status(api: Arc<Api>, _: Request, _: Caller) -> Result<Reply, ApiError> {
    let body = json!({"success": true, "failover": api.failover.to_json()});
    Ok(Response::json(200, &body).into())
}

pub(super) async fn resume(api: Arc<Api>, _: Request, _: Caller) -> Result<Reply, ApiError> {
    let was = api.failover.resume();
    let body = json!({"success": true, "wasPaused": was, "failover": api.failover.to_json()});
    Ok(Response::json(200, &body).into())
}
