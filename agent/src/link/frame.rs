//! What to do with one frame from the panel.
//!
//! Commands are decoded fully; a frame that cannot be decoded is still answered when its id
//! can be found (with `INVALID_MESSAGE`, or `PAYLOAD_TOO_LARGE` above the decoder's limit),
//! so the panel's waiter fails fast instead of timing out.

use proto::codec::{DecodeError, Decoder};
use proto::{Command, ErrorCode, Message, MessageType, Response};
use std::borrow::Cow;

/// Frames above this are not even skimmed for an id (the WebSocket layer caps them too).
const MAX_SKIM: usize = 64 << 20;

/// The verdict on one incoming frame.
#[derive(Debug)]
pub enum Incoming {
    /// A command to execute.
    Command(Box<Command<'static>>),
    /// A heartbeat: answer with a pong echoing this id.
    Ping(String),
    /// An answer to send at once (the frame was a command we could not decode).
    /// Boxed: a `Response` is ten times the size of the other variants.
    Reply(Box<Response<'static>>),
    /// Nothing to do (a frame kind the agent does not expect, or an undecodable frame
    /// without an id); the reason is for the log.
    Ignore(String),
}

/// Classifies a frame. `decoder` is the connection's reusable decoder.
pub fn classify(decoder: &mut Decoder, frame: &[u8]) -> Incoming {
    match decoder.message(frame) {
        Ok(Message::Command(cmd)) => Incoming::Command(Box::new(cmd.into_owned())),
        Ok(Message::Ping(p)) => Incoming::Ping(p.id.into_owned()),
        Ok(other) => Incoming::Ignore(format!(
            "unexpected {} frame from the panel",
            other.kind().as_str()
        )),
        Err(err) => answer_undecodable(frame, &err),
    }
}

fn answer_undecodable(frame: &[u8], err: &DecodeError) -> Incoming {
    if frame.len() > MAX_SKIM {
        return Incoming::Ignore(format!("{err}; frame too large to find its id"));
    }
    let mut skim = Decoder::new(MAX_SKIM);
    let id = match skim.envelope(frame) {
        Ok(env) if matches!(env.kind, MessageType::Command | MessageType::Ping) => {
            env.id.map(Cow::into_owned)
        }
        Ok(env) => {
            return Incoming::Ignore(format!("undecodable {} frame: {err}", env.kind.as_str()));
        }
        Err(_) => None,
    };
    match id {
        Some(id) => Incoming::Reply(Box::new(Response::err(
            Cow::Owned(id),
            Cow::Owned(proto::time::now_rfc3339()),
            err.code(),
            err.to_string(),
        ))),
        None => Incoming::Ignore(format!("undecodable frame without an id: {err}")),
    }
}

/// Encodes a response, or — when it would exceed `max_frame` — an error response for the
/// same command saying so (`PAYLOAD_TOO_LARGE`): the panel refuses larger frames by closing
/// the connection, which would fail every command in flight. `None` when not even that
/// fits (a command id of absurd length): the command goes unanswered rather than cost the
/// connection.
pub fn response_bytes(resp: Response<'static>, max_frame: usize) -> Option<Vec<u8>> {
    let (id, timestamp) = (resp.id.clone(), resp.timestamp.clone());
    let (agent_id, server_id) = (resp.agent_id.clone(), resp.server_id.clone());
    let bytes = proto::encode(&Message::Response(resp));
    if bytes.len() <= max_frame {
        return Some(bytes);
    }
    let mut small = Response::err(
        id,
        timestamp,
        ErrorCode::PayloadTooLarge,
        format!(
            "the answer would take {} bytes, over the {max_frame}-byte frame limit",
            bytes.len()
        ),
    );
    small.agent_id = agent_id;
    small.server_id = server_id;
    let bytes = proto::encode(&Message::Response(small));
    if bytes.len() <= max_frame {
        Some(bytes)
    } else {
        log::warn!(
            "a response of {} bytes cannot be sent: its id alone is too long",
            bytes.len()
        );
        None
    }
}

/// The answer to an action this agent does not know.
pub fn unknown_action(id: Cow<'static, str>, action: &str) -> Response<'static> {
    Response::err(
        id,
        Cow::Owned(proto::time::now_rfc3339()),
        ErrorCode::UnknownAction,
        format!(
            "unknown action `{}`",
            action.chars().take(64).collect::<String>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(i: &Incoming) -> Option<&str> {
        match i {
            Incoming::Reply(r) => r.error.as_ref().map(|e| &*e.code),
            _ => None,
        }
    }

    #[test]
    fn commands_and_pings_are_recognised() {
        let mut d = Decoder::default();
        let f = br#"{"id":"msg_002","type":"command","timestamp":"2025-01-23T10:01:00Z","agentId":"a","serverId":"s","action":"start_server"}"#;
        assert!(matches!(classify(&mut d, f), Incoming::Command(c) if c.id == "msg_002"));
        let f = br#"{"id":"heartbeat_001","type":"ping","timestamp":"2025-01-23T10:09:00Z"}"#;
        assert!(matches!(classify(&mut d, f), Incoming::Ping(id) if id == "heartbeat_001"));
        let f = br#"{"id":"x","type":"pong","timestamp":"t","data":{"agentStatus":"healthy","activeServers":0,"systemLoad":{"cpu":0,"memory":0,"disk":0}}}"#;
        assert!(matches!(classify(&mut d, f), Incoming::Ignore(_)));
    }

    #[test]
    fn malformed_commands_with_an_id_get_invalid_message() {
        let mut d = Decoder::default();
        // list_files requires a payload.
        let f =
            br#"{"id":"m1","type":"command","timestamp":"t","serverId":"s","action":"list_files"}"#;
        let i = classify(&mut d, f);
        assert_eq!(code(&i), Some("INVALID_MESSAGE"));
        assert!(matches!(&i, Incoming::Reply(r) if r.id == "m1"));
        // Wrong payload type.
        let f = br#"{"id":"m2","type":"command","timestamp":"t","action":"create_server","payload":{"serverId":5}}"#;
        assert_eq!(code(&classify(&mut d, f)), Some("INVALID_MESSAGE"));
    }

    #[test]
    fn oversized_commands_get_payload_too_large() {
        let mut d = Decoder::new(1024);
        let big = "x".repeat(4096);
        let f = format!(
            r#"{{"id":"big","type":"command","timestamp":"t","serverId":"s","action":"write_file","payload":{{"path":"/server/a","content":"{big}"}}}}"#
        );
        let i = classify(&mut d, f.as_bytes());
        assert_eq!(code(&i), Some("PAYLOAD_TOO_LARGE"));
        assert!(matches!(&i, Incoming::Reply(r) if r.id == "big"));
    }

    #[test]
    fn an_answer_over_the_frame_limit_becomes_payload_too_large() {
        let data = serde_json::json!({"content": "\u{1}".repeat(10_000)});
        let resp = Response::ok(Cow::Borrowed("big"), Cow::Borrowed("t"), Some(data));
        let fits = response_bytes(resp.clone(), 1 << 20).unwrap();
        assert!(fits.len() > 60_000);
        let bytes = response_bytes(resp, 4096).unwrap();
        assert!(bytes.len() <= 4096, "{}", bytes.len());
        let Message::Response(r) = proto::decode(&bytes).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.id, "big");
        assert_eq!(r.error.unwrap().code, "PAYLOAD_TOO_LARGE");
        let absurd = Response::ok(Cow::Owned("i".repeat(8000)), Cow::Borrowed("t"), None);
        assert!(response_bytes(absurd, 4096).is_none());
    }

    #[test]
    fn garbage_without_an_id_is_ignored_not_fatal() {
        let mut d = Decoder::default();
        assert!(matches!(classify(&mut d, b"not json"), Incoming::Ignore(_)));
        assert!(matches!(
            classify(&mut d, b"{\"type\":\"command\"}"),
            Incoming::Ignore(_)
        ));
        assert!(matches!(classify(&mut d, b""), Incoming::Ignore(_)));
    }

    #[test]
    fn unknown_actions_decode_and_are_answered_by_name() {
        let mut d = Decoder::default();
        let f = br#"{"id":"u1","type":"command","timestamp":"t","action":"format_disk","payload":{"x":1}}"#;
        let Incoming::Command(c) = classify(&mut d, f) else {
            panic!("unknown actions still decode");
        };
        let r = unknown_action(c.id.clone(), c.action.name());
        assert_eq!(r.error.unwrap().code, "UNKNOWN_ACTION");
    }
}
