//! A small, hand-written HTTP/1.1 server over rustls, with WebSocket upgrade.
//!
//! The panel serves a handful of JSON endpoints and a few thousand long-lived WebSockets;
//! a web framework would cost more (memory per idle socket, dependency weight, tokio) than
//! the ~1.5k lines here. Pieces, one per file:
//!
//! - [`request`]: the parsed [`Request`] and its helpers (headers, params, query, JSON body);
//! - [`response`]: [`Response`] constructors, always JSON errors
//!   `{"success":false,"error":{"code","message"}}`;
//! - [`router`]: pattern routes with `{param}` segments, 404/405 answers, [`Reply`];
//! - [`parse`]: the wire format — request head, `Content-Length` and chunked bodies, limits;
//! - [`body`]: streamed request and response bodies (file transfers), never whole in memory;
//! - [`server`]: accept loop, TLS, keep-alive, timeouts, connection caps, shutdown;
//! - [`slots`]: per-client-IP connection slots (slow clients evict each other, not others);
//! - [`socket`]: the accepted TCP socket, without the failed `recv` per small frame;
//! - [`ws`]: the WebSocket handshake and the [`Upgraded`] stream handed to the app.

pub mod body;
pub mod cork;
pub mod parse;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod slots;
pub mod socket;
pub mod ws;

pub use body::{BodyError, BodyStream, ResponseBody, Streamed};
pub use request::{Method, Request};
pub use response::Response;
pub use router::{Handler, Reply, Router, UpgradeFn, handler};
pub use server::{
    LISTEN_BACKLOG, SHUTDOWN_GRACE, ServerConfig, ServerStats, WS_READ_BUFFER_MAX, bind, serve,
};
pub use ws::{Upgraded, WS_WRITE_BUFFER, WsStream, socket_config};
