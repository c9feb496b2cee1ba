//! The panel's own metric set and its `/metrics` rendering (Prometheus text format, written
//! by hand with the primitives of [`crate::metrics`]).
//!
//! Everything is a lock-free atomic bumped on the hot path; rendering reads them all once.

use proto::ActionName;

use crate::metrics::{
    Counter, Gauge, Histogram, LATENCY_BUCKETS, write_counter, write_gauge, write_header,
    write_histogram, write_sample,
};

/// How a command ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent answered `success: true`.
    Ok,
    /// The agent answered with an error (passed through as 502).
    AgentError,
    Timeout,
    Offline,
    /// The agent answered with something that is not a response to it.
    BadResponse,
    /// The encoded command was over the frame limit and was not sent.
    TooLarge,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::AgentError,
        Outcome::Timeout,
        Outcome::Offline,
        Outcome::BadResponse,
        Outcome::TooLarge,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::AgentError => "agent_error",
            Outcome::Timeout => "timeout",
            Outcome::Offline => "offline",
            Outcome::BadResponse => "bad_response",
            Outcome::TooLarge => "too_large",
        }
    }
}

const N_ACTIONS: usize = ActionName::ALL.len();
const N_OUTCOMES: usize = Outcome::ALL.len();

/// Every metric the panel exports.
pub struct PanelMetrics {
    pub agents_online: Gauge,
    pub agents_replaced: Counter,
    pub heartbeat_timeouts: Counter,
    commands: [[Counter; N_OUTCOMES]; N_ACTIONS],
    pub command_latency: Histogram,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub frames_invalid: Counter,
    pub frames_oversize: Counter,
    /// Events or responses naming a server the sending agent does not own.
    pub frames_foreign: Counter,
    /// Responses whose command already timed out or never existed.
    pub responses_unmatched: Counter,
    pub events_forwarded: Counter,
    pub events_dropped: Counter,
    pub event_subscribers: Gauge,
    /// Subscribers closed for sending frames over their budget.
    pub subscribers_flooding: Counter,
    /// Subscribers closed for not reading (a write stalled past the limit).
    pub subscribers_stalled: Counter,
    pub rate_limited_agent: Counter,
    pub rate_limited_api: Counter,
}

impl Default for PanelMetrics {
    fn default() -> Self {
        PanelMetrics {
            agents_online: Gauge::new(),
            agents_replaced: Counter::new(),
            heartbeat_timeouts: Counter::new(),
            commands: std::array::from_fn(|_| std::array::from_fn(|_| Counter::new())),
            command_latency: Histogram::new(LATENCY_BUCKETS),
            frames_in: Counter::new(),
            frames_out: Counter::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            frames_invalid: Counter::new(),
            frames_oversize: Counter::new(),
            frames_foreign: Counter::new(),
            responses_unmatched: Counter::new(),
            events_forwarded: Counter::new(),
            events_dropped: Counter::new(),
            event_subscribers: Gauge::new(),
            subscribers_flooding: Counter::new(),
            subscribers_stalled: Counter::new(),
            rate_limited_agent: Counter::new(),
            rate_limited_api: Counter::new(),
        }
    }
}

impl PanelMetrics {
    /// Counts one finished command (unknown actions are not sent, so never counted).
    pub fn command_done(&self, action: ActionName, outcome: Outcome, secs: f64) {
        let a = ActionName::ALL.iter().position(|x| *x == action);
        let o = Outcome::ALL.iter().position(|x| *x == outcome);
        if let (Some(a), Some(o)) = (a, o) {
            self.commands[a][o].inc();
        }
        self.command_latency.observe(secs);
    }

    pub fn commands(&self, action: ActionName, outcome: Outcome) -> u64 {
        let a = ActionName::ALL
            .iter()
            .position(|x| *x == action)
            .unwrap_or(0);
        let o = Outcome::ALL.iter().position(|x| *x == outcome).unwrap_or(0);
        self.commands[a][o].get()
    }

    /// The whole exposition.
    pub fn render(&self, out: &mut String) {
        write_gauge(
            out,
            "panel_agents_online",
            "Agents with a live WebSocket connection.",
            &[],
            self.agents_online.get(),
        );
        write_counter(
            out,
            "panel_agent_connections_replaced_total",
            "Agent connections closed because the same agent connected again.",
            &[],
            self.agents_replaced.get(),
        );
        write_counter(
            out,
            "panel_agent_heartbeat_timeouts_total",
            "Agents marked offline after 3 missed pongs.",
            &[],
            self.heartbeat_timeouts.get(),
        );
        write_header(
            out,
            "panel_commands_total",
            "Commands sent to agents, by action and outcome.",
            "counter",
        );
        for (a, action) in ActionName::ALL.iter().enumerate() {
            for (o, outcome) in Outcome::ALL.iter().enumerate() {
                write_sample(
                    out,
                    "panel_commands_total",
                    &[("action", action.as_str()), ("outcome", outcome.as_str())],
                    self.commands[a][o].get(),
                );
            }
        }
        write_histogram(
            out,
            "panel_command_duration_seconds",
            "Time from sending a command to its response, timeout or failure.",
            &[],
            &self.command_latency,
        );
        write_header(
            out,
            "panel_agent_frames_total",
            "WebSocket frames exchanged with agents.",
            "counter",
        );
        write_sample(
            out,
            "panel_agent_frames_total",
            &[("direction", "in")],
            self.frames_in.get(),
        );
        write_sample(
            out,
            "panel_agent_frames_total",
            &[("direction", "out")],
            self.frames_out.get(),
        );
        write_header(
            out,
            "panel_agent_bytes_total",
            "WebSocket payload bytes exchanged with agents.",
            "counter",
        );
        write_sample(
            out,
            "panel_agent_bytes_total",
            &[("direction", "in")],
            self.bytes_in.get(),
        );
        write_sample(
            out,
            "panel_agent_bytes_total",
            &[("direction", "out")],
            self.bytes_out.get(),
        );
        write_header(
            out,
            "panel_agent_frames_rejected_total",
            "Agent frames dropped, by reason.",
            "counter",
        );
        for (reason, c) in [
            ("invalid", &self.frames_invalid),
            ("oversize", &self.frames_oversize),
            ("foreign_server", &self.frames_foreign),
            ("unmatched_response", &self.responses_unmatched),
            ("rate_limited", &self.rate_limited_agent),
        ] {
            write_sample(
                out,
                "panel_agent_frames_rejected_total",
                &[("reason", reason)],
                c.get(),
            );
        }
        write_counter(
            out,
            "panel_events_forwarded_total",
            "Event frames queued to subscribers (one per subscriber).",
            &[],
            self.events_forwarded.get(),
        );
        write_counter(
            out,
            "panel_events_dropped_total",
            "Event frames dropped because a subscriber's queue was full (oldest first).",
            &[],
            self.events_dropped.get(),
        );
        write_gauge(
            out,
            "panel_event_subscribers",
            "Connected /api/events subscribers.",
            &[],
            self.event_subscribers.get(),
        );
        write_header(
            out,
            "panel_event_subscribers_closed_total",
            "Events subscribers the panel closed, by reason.",
            "counter",
        );
        for (reason, c) in [
            ("flooding", &self.subscribers_flooding),
            ("not_reading", &self.subscribers_stalled),
        ] {
            write_sample(
                out,
                "panel_event_subscribers_closed_total",
                &[("reason", reason)],
                c.get(),
            );
        }
        write_header(
            out,
            "panel_rate_limited_total",
            "Requests or frames refused by a rate limit, by limiter.",
            "counter",
        );
        write_sample(
            out,
            "panel_rate_limited_total",
            &[("limiter", "agent")],
            self.rate_limited_agent.get(),
        );
        write_sample(
            out,
            "panel_rate_limited_total",
            &[("limiter", "api")],
            self.rate_limited_api.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_commands_by_action_and_outcome() {
        let m = PanelMetrics::default();
        m.command_done(ActionName::StartServer, Outcome::Ok, 0.01);
        m.command_done(ActionName::StartServer, Outcome::Ok, 0.02);
        m.command_done(ActionName::GetStatus, Outcome::Timeout, 30.0);
        m.events_dropped.add(3);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("panel_commands_total{action=\"start_server\",outcome=\"ok\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("panel_commands_total{action=\"get_status\",outcome=\"timeout\"} 1\n")
        );
        assert!(out.contains("panel_command_duration_seconds_count 3\n"));
        assert!(out.contains("panel_events_dropped_total 3\n"));
        assert_eq!(m.commands(ActionName::StartServer, Outcome::Ok), 2);
    }
}
