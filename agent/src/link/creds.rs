//! The agent's credentials at run time: the current tokens, their on-disk copy, and the
//! refresh that rotates them.
//!
//! Rotation is dangerous: the panel kills the old refresh token as soon as it hands out a new
//! one. So refreshes are serialized (one at a time, and a refresh whose token was already
//! replaced is skipped), and the new pair is written to disk before it is used.

use crate::config::AgentConfig;
use crate::register::{self, RegisterError};
use crate::token;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Used when the token's lifetime cannot be read: refresh at this interval (the spec
/// recommends rotating every 24 h).
const FALLBACK_REFRESH: Duration = Duration::from_secs(60 * 60);

pub struct Credentials {
    config: Mutex<AgentConfig>,
    /// Unix seconds when the current token was obtained (loaded or refreshed).
    received: Mutex<u64>,
    path: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    refresh_lock: smol::lock::Mutex<()>,
}

impl Credentials {
    pub fn new(config: AgentConfig, path: PathBuf, tls: Arc<rustls::ClientConfig>) -> Self {
        Credentials {
            config: Mutex::new(config),
            received: Mutex::new(proto::time::unix_now()),
            path,
            tls,
            refresh_lock: smol::lock::Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> AgentConfig {
        self.config.lock().clone()
    }

    pub fn token(&self) -> String {
        self.config.lock().token.clone()
    }

    pub fn tls(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }

    /// How long until the current token should be refreshed.
    pub fn refresh_delay(&self) -> Duration {
        let token = self.token();
        match token::lifetime(&token) {
            Ok(life) => token::refresh_delay(life, *self.received.lock(), proto::time::unix_now()),
            Err(e) => {
                log::warn!("cannot read the token's expiry ({e}); refreshing hourly");
                FALLBACK_REFRESH
            }
        }
    }

    /// Rotates the tokens unless `seen_token` is no longer current (someone else already
    /// refreshed). The new pair is persisted before it replaces the old one in memory.
    pub async fn refresh(&self, seen_token: &str) -> Result<(), RegisterError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let current = self.snapshot();
        if current.token != seen_token {
            return Ok(());
        }
        let rest = register::rest_client(&current.panel_url, self.tls.clone())?;
        let fresh = ctrl_io::refresh(&rest, &current.refresh_token).await?;
        let mut next = current;
        next.token = fresh.token;
        next.refresh_token = fresh.refresh_token;
        if let Err(e) = next.save(&self.path) {
            // The old refresh token is already dead: keep going with the new pair in memory
            // and make noise, the operator must fix the disk before the agent restarts.
            log::error!(
                "token refreshed but {e}; the agent works until restarted, then needs `agent register` again"
            );
        }
        *self.config.lock() = next;
        *self.received.lock() = proto::time::unix_now();
        log::info!("agent token refreshed");
        Ok(())
    }

    /// Runs forever: refresh at 80 % of each token's lifetime, retrying failures with a
    /// growing delay (an auth failure is logged as such: re-registration is needed).
    pub async fn refresh_loop(self: Arc<Self>) {
        let mut retry = super::backoff::Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(5),
        );
        loop {
            smol::Timer::after(self.refresh_delay()).await;
            loop {
                let seen = self.token();
                match self.refresh(&seen).await {
                    Ok(()) => {
                        retry.reset();
                        break;
                    }
                    Err(e) if e.is_auth_failure() => {
                        log::error!("token refresh refused: {e}; run `agent register` again");
                    }
                    Err(e) => log::warn!("token refresh failed: {e}"),
                }
                smol::Timer::after(retry.next_delay()).await;
            }
        }
    }
}
