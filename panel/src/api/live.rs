//! Live events endpoints: `POST /api/events/ticket` and the `GET /api/events` WebSocket.

use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

use super::{Api, ApiError, Caller};
use crate::auth::TICKET_TTL;
use crate::events::{Audience, Filter, Owner};
use crate::http::{Reply, Request, Response};

/// Subscribers only send close frames; anything big from them is abuse.
const SUBSCRIBER_MAX_MESSAGE: usize = 64 * 1024;

/// `POST /api/events/ticket`: a single-use ticket for `GET /api/events?ticket=`, standing
/// for the caller (the socket then sees what the caller may see).
pub(super) async fn ticket(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let t = api
        .auth
        .issue_ticket(Instant::now(), caller.who()?.clone())?;
    Ok(Response::json(
        200,
        &json!({"success": true, "ticket": t, "expiresIn": TICKET_TTL.as_secs()}),
    )
    .into())
}

/// `GET /api/events[?serverId=S][&agentId=A]`: any caller (bearer, session cookie from
/// our own origin, or `?ticket=`); events are filtered by the caller's rights.
pub(super) async fn subscribe(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let who = caller.who()?;
    let audience = Audience {
        scope: api.scope_of(who),
        owner: who.user().map(|u| Owner {
            user_id: u.id.clone(),
            credential: u.via.clone(),
        }),
    };
    let filter = Filter {
        server_id: req.query_param("serverId").filter(|s| !s.is_empty()),
        agent_id: req.query_param("agentId").filter(|s| !s.is_empty()),
    };
    // Subscribers are sent agent event frames as received: at most `max_frame` bytes each.
    let config = crate::http::socket_config(SUBSCRIBER_MAX_MESSAGE, api.max_frame);
    let events = api.events.clone();
    // Before the 101: a shutdown racing the upgrade then still waits for (and closes) it.
    let admitted = events.admit();
    let shutdown = api.shutdown.clone();
    Ok(Reply::Upgrade {
        config,
        run: Box::new(move |ws| {
            Box::pin(events.serve_admitted(admitted, ws, filter, audience, shutdown))
        }),
    })
}
