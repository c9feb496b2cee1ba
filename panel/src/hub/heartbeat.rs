//! Heartbeats: the panel pings every agent each `--heartbeat-secs` (ids `hb_1`, `hb_2`, …);
//! a pong that echoes the id of a ping sent and not yet answered resets the missed count, and
//! its data is kept for the operator API. After [`MAX_MISSED_PONGS`] pings without such a
//! pong the agent is offline and its socket is closed ([`CLOSE_HEARTBEAT`]). Only an echoed
//! id proves the agent reads what the panel sends: a peer that never reads cannot stay
//! online by sending pongs of its own. Each beat also re-checks the token family, so a
//! revoked agent is disconnected within one interval. Node health is told when each ping
//! goes out and when its pong comes back (the round trip, `crate::health`).

use async_io::Timer;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use std::borrow::Cow;
use std::sync::atomic::Ordering;

use proto::message::{Message, Ping};
use proto::time::now_rfc3339;
use proto::{Decoder, encode};

use super::registry::Conn;
use super::{CLOSE_HEARTBEAT, Hub, MAX_MISSED_PONGS, text};

impl Hub {
    /// Runs until the connection must end (heartbeat timeout or revoked family).
    pub(super) async fn heartbeat(&self, conn: &Conn) {
        loop {
            Timer::after(self.settings.heartbeat).await;
            if !self.auth.family_active(&conn.agent_id, &conn.family) {
                conn.kick(CloseCode::Policy, "token revoked");
                return;
            }
            if conn.missed() >= u64::from(MAX_MISSED_PONGS) {
                self.metrics.heartbeat_timeouts.inc();
                log::warn!(
                    "agent {} missed {MAX_MISSED_PONGS} heartbeats: offline",
                    conn.agent_id
                );
                conn.kick(CloseCode::from(CLOSE_HEARTBEAT), "heartbeat timeout");
                return;
            }
            let n = conn.pinged.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("hb_{n}");
            conn.try_queue(text(encode(&Message::Ping(Ping {
                id: Cow::Borrowed(&id),
                timestamp: now_rfc3339().into(),
            }))));
            self.nodes.health.pinged(&conn.agent_id, n);
        }
    }

    /// A pong (the envelope said so): if it answers an outstanding ping, keeps its data and
    /// resets the missed count; a pong answering nothing is ignored.
    pub(super) fn on_pong(
        &self,
        conn: &Conn,
        decoder: &mut Decoder,
        bytes: &[u8],
        id: Option<String>,
    ) {
        match decoder.message(bytes) {
            Ok(Message::Pong(p)) => {
                let Some(n) = answered_ping(conn, id.as_deref()) else {
                    return;
                };
                let mut data = p.data.into_owned();
                data.conditions.truncate(proto::message::MAX_CONDITIONS);
                *conn.pong.lock() = Some(data);
                conn.answered.fetch_max(n, Ordering::Relaxed);
                self.nodes.health.ponged(&conn.agent_id, n);
            }
            // The skimmer and serde disagree about the frame's type: a bad frame, not a bug
            // worth a panic.
            Ok(other) => self.refuse(
                conn,
                id.as_deref(),
                proto::ErrorCode::InvalidMessage,
                format!("a `pong` envelope decoded as `{}`", other.kind().as_str()),
            ),
            Err(e) => self.refuse(conn, id.as_deref(), e.code(), e.to_string()),
        }
    }
}

/// The number of the outstanding ping that `id` (`hb_<n>`) answers, if any.
fn answered_ping(conn: &Conn, id: Option<&str>) -> Option<u64> {
    let n: u64 = id?.strip_prefix("hb_")?.parse().ok()?;
    let outstanding = conn.answered.load(Ordering::Relaxed)..=conn.pinged.load(Ordering::Relaxed);
    (n > *outstanding.start() && outstanding.contains(&n)).then_some(n)
}
