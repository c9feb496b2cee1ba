//! ctrl-io: the I/O code that the panel, the agent, the loadtest and the tests share, so each
//! piece exists once (`proto` stays pure: types and codecs, no I/O).
//!
//! - The HTTPS/WSS client stack, bottom up: [`url`] (the `https://`/`wss://` URLs we accept),
//!   [`tls`] (the rustls client configuration), [`conn`] (TCP + TLS connect), [`http`] (the
//!   HTTP/1.1 response reader with its one chunked decoder; every size from the wire is
//!   checked), [`rest`] (a keep-alive REST client), [`register`] (agent registration and
//!   token refresh), [`ws`] (WebSocket connect). One error type: [`ClientError`].
//! - [`fs::atomic_write`]: replace a file holding secrets (0600, fsync, rename, fsync dir).
//! - [`logger`]: the stderr logger behind the `log` facade.
//! - [`procfs`]: a process's RSS and CPU time from `/proc` (loadtest, measurement tests).
//!
//! Runtime: smol. Depends on `proto` only, never on the panel or the agent.

pub mod conn;
pub mod error;
pub mod fs;
pub mod http;
pub mod logger;
pub mod procfs;
pub mod register;
pub mod rest;
pub mod tls;
pub mod url;
pub mod ws;

pub use conn::{TlsConn, connect_tls, with_deadline};
pub use error::{ClientError, ErrorKind};
pub use fs::{atomic_write, atomic_write_mode};
pub use register::{refresh, register, register_with, registration_request};
pub use rest::{DEFAULT_TIMEOUT, Rest};
pub use tls::{tls_config, tls_config_from_pem, with_own_sessions};
pub use url::{Scheme, Url};
pub use ws::{
    MAX_MESSAGE, Ws, WsOptions, connect_agent, connect_agent_with, large_config, small_config,
    ws_connect, ws_connect_with, ws_error,
};
