//! The operators' thread: the REST command driver and the login driver on an executor of
//! their own, so a command's round trip is not timed behind the subscribers' work.
//!
//! On the controller's thread a command's answer waited its turn behind 1,001 subscriber
//! tasks decoding up to 150,000 events/s, and the wait was counted as the panel's latency.
//! Here the only other tasks are the requests themselves.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::commands::{self, RequestStats};
use crate::logins::{self, LoginUser};
use crate::stats::Errors;
use ctrl_io::Rest;

/// What the operators do until `stop` is closed.
pub struct Operators {
    pub rest: Arc<Rest>,
    pub admin_token: String,
    /// Servers the commands go to, in turn.
    pub servers: Vec<String>,
    pub command_rate: f64,
    pub users: Vec<LoginUser>,
    pub login_rate: f64,
    pub commands: Arc<RequestStats>,
    pub logins: Arc<RequestStats>,
    pub errors: Arc<Errors>,
    pub stop: async_channel::Receiver<()>,
}

/// Longest the thread waits, after `stop`, for requests still in flight (each request
/// times out on its own well before; this only bounds the thread's life).
const DRAIN_CAP: Duration = Duration::from_secs(60);

/// Starts the drivers on a thread named `operators`; it ends once `stop` is closed and the
/// requests in flight are answered (or after [`DRAIN_CAP`]).
pub fn spawn(ops: Operators) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("operators".into())
        .spawn(move || {
            let ex = Rc::new(smol::LocalExecutor::new());
            smol::block_on(ex.run(drive(ex.clone(), ops)));
        })
}

async fn drive(ex: Rc<smol::LocalExecutor<'static>>, ops: Operators) {
    let command_driver = commands::drive(
        ex.clone(),
        ops.rest.clone(),
        Rc::from(ops.admin_token.as_str()),
        Rc::new(ops.servers),
        ops.command_rate,
        ops.commands.clone(),
        ops.errors.clone(),
        ops.stop.clone(),
    );
    let login_driver = logins::drive(
        ex.clone(),
        ops.rest.clone(),
        Rc::new(ops.users),
        ops.login_rate,
        ops.logins.clone(),
        ops.errors.clone(),
        ops.stop.clone(),
    );
    futures_lite::future::zip(command_driver, login_driver).await;
    // The requests are detached tasks on `ex`: keep running it until they are answered.
    let since = Instant::now();
    while (ops.commands.in_flight.get() > 0 || ops.logins.in_flight.get() > 0)
        && since.elapsed() < DRAIN_CAP
    {
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
}
