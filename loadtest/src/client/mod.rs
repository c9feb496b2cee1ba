//! The async HTTPS/WSS client shared by `loadtest`, the panel's integration tests and the
//! end-to-end tests: a hand-written HTTPS/1.1 keep-alive client ([`Rest`]), a `wss://`
//! connector with small buffers ([`ws_connect`]), and typed helpers for registration.
//!
//! Runtime: smol (callers use `smol::block_on` or an executor of their choice).

mod conn;
mod error;
mod register;
mod rest;
mod tls;
mod url;
mod ws;

pub use conn::{TlsConn, connect_tls};
pub use error::{ClientError, ErrorKind};
pub use register::{
    connect_agent, connect_agent_with, refresh, register, register_with, registration_request,
};
pub use rest::{DEFAULT_TIMEOUT, Rest};
pub use tls::{tls_config, tls_config_from_pem};
pub use url::Target;
pub use ws::{
    MAX_MESSAGE, Ws, WsOptions, large_config, small_config, ws_connect, ws_connect_with, ws_error,
};
