//! `GET /events`: newline-delimited JSON, decoded one event at a time.

use super::http::Query;
use super::types::null_default;
use super::{DockerClient, DockerError, Filters, Missing};
use bytes::{Bytes, BytesMut};
use futures_lite::Stream;
use serde::Deserialize;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// One Docker event. `kind` is Docker's `Type` ("container", "image", "network", ...);
/// `action` is e.g. "start", "die", "oom", "health_status: healthy".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: Actor,
    /// Seconds since the epoch.
    #[serde(default)]
    pub time: i64,
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

/// The object the event is about: a container's id plus its labels and name (and, for
/// `die`, `exitCode`) in `attributes`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Attributes", default, deserialize_with = "null_default")]
    pub attributes: HashMap<String, String>,
}

impl Event {
    /// The exit code Docker attaches to `die` events.
    pub fn exit_code(&self) -> Option<i64> {
        self.actor.attributes.get("exitCode")?.parse().ok()
    }

    /// An attribute of the actor, e.g. a label (`ctrl.server`) or `name`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.actor.attributes.get(key).map(String::as_str)
    }
}

/// Splits a byte stream into lines whatever the chunking, refusing lines longer than a
/// limit so a broken peer cannot make us buffer forever.
#[derive(Debug)]
pub struct LineSplitter {
    buf: BytesMut,
    max_line: usize,
    /// How far `buf` has been searched for a newline, so each byte is scanned once.
    scanned: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_line,
            scanned: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line without its `\n` (and `\r`), or `None` until more input.
    pub fn next_line(&mut self) -> Option<Result<Bytes, DockerError>> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let mut line = self.buf.split_to(self.scanned + i + 1);
                self.scanned = 0;
                line.truncate(line.len() - 1);
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Some(Ok(line.freeze()))
            }
            None if self.buf.len() > self.max_line => {
                let len = self.buf.len();
                self.buf.clear();
                self.scanned = 0;
                Some(Err(DockerError::Protocol(format!(
                    "line longer than {} bytes ({len} so far)",
                    self.max_line
                ))))
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// What is left once the input ended: a final line without a newline, if any.
    pub fn take_rest(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        let rest = self.buf.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// Docker's event lines are a few hundred bytes; labels can make them longer, not this long.
const MAX_EVENT_LINE: usize = 1024 * 1024;

/// The live event feed. Ends when Docker closes the connection (e.g. a daemon restart);
/// callers reconnect with `since` set to the last event's time.
pub struct EventStream {
    source: super::mux::ChunkSource,
    lines: LineSplitter,
    done: bool,
}

impl EventStream {
    pub(crate) fn new(source: super::mux::ChunkSource) -> Self {
        Self {
            source,
            lines: LineSplitter::new(MAX_EVENT_LINE),
            done: false,
        }
    }
}

impl DockerClient {
    /// `GET /events` filtered by `filters` (e.g. `type=container`, `label=ctrl.agent=<id>`),
    /// from `since` (Unix seconds; replayed events first) or from now. The stream stays open
    /// until Docker closes it or it is dropped.
    pub async fn events(
        &self,
        filters: &Filters,
        since: Option<i64>,
    ) -> Result<EventStream, DockerError> {
        let mut query = Query::new().push_opt("since", since.map(|s| s.to_string()));
        if !filters.is_empty() {
            query = query.push("filters", filters.to_json());
        }
        let path = format!("/events{}", query.as_str());
        let body = self
            .open_stream(http::Method::GET, &path, Missing::Other)
            .await?;
        Ok(EventStream::new(Box::pin(body)))
    }
}

/// Decodes one event line.
pub fn decode_event(line: &[u8]) -> Result<Event, DockerError> {
    let mut owned = line.to_vec();
    simd_json::serde::from_slice(&mut owned).map_err(|e| DockerError::Decode {
        what: "an event".into(),
        message: e.to_string(),
    })
}

impl Stream for EventStream {
    type Item = Result<Event, DockerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.lines.next_line() {
                Some(Ok(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Some(Ok(line)) => return Poll::Ready(Some(decode_event(&line))),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {}
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.source.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => this.lines.push(&chunk),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.done = true;
                    if let Some(rest) = this.lines.take_rest() {
                        return Poll::Ready(Some(decode_event(&rest)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIE: &str = r#"{"status":"die","id":"abc","from":"img","Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"3","name":"ctrl-x","ctrl.server":"s1"}},"scope":"local","time":1700000000,"timeNano":1700000000123456789}"#;

    #[test]
    fn decodes_a_die_event() {
        let e = decode_event(DIE.as_bytes()).unwrap();
        assert_eq!(e.kind, "container");
        assert_eq!(e.action, "die");
        assert_eq!(e.actor.id, "abc");
        assert_eq!(e.exit_code(), Some(3));
        assert_eq!(e.attribute("ctrl.server"), Some("s1"));
        assert_eq!(e.time, 1_700_000_000);
        assert_eq!(e.time_nano, 1_700_000_000_123_456_789);
    }

    #[test]
    fn tolerates_null_and_missing_fields() {
        let e = decode_event(
            br#"{"Type":"network","Action":"connect","Actor":{"ID":"n","Attributes":null}}"#,
        )
        .unwrap();
        assert!(e.actor.attributes.is_empty());
        assert_eq!(e.exit_code(), None);
        assert!(decode_event(b"{not json").is_err());
    }

    #[test]
    fn lines_split_correctly_across_every_chunking() {
        let wire = format!("{DIE}\n\r\n{DIE}\r\n{DIE}\n");
        for size in 1..=wire.len() {
            let chunks: Vec<Result<Bytes, DockerError>> = wire
                .as_bytes()
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let stream = EventStream::new(Box::pin(futures_lite::stream::iter(chunks)));
            let events: Vec<_> = smol::block_on(futures_lite::StreamExt::collect::<Vec<_>>(stream));
            assert_eq!(events.len(), 3, "split size {size}");
            for e in events {
                assert_eq!(e.unwrap().exit_code(), Some(3));
            }
        }
    }

    #[test]
    fn final_line_without_newline_is_kept() {
        let chunks = vec![Ok(Bytes::from(DIE))];
        let stream = EventStream::new(Box::pin(futures_lite::stream::iter(chunks)));
        let events: Vec<_> = smol::block_on(futures_lite::StreamExt::collect::<Vec<_>>(stream));
        assert_eq!(events.len(), 1);
        assert!(events[0].is_ok());
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut s = LineSplitter::new(8);
        s.push(b"0123456789");
        assert!(matches!(s.next_line(), Some(Err(DockerError::Protocol(_)))));
        s.push(b"ok\n");
        assert_eq!(s.next_line().unwrap().unwrap(), Bytes::from_static(b"ok"));
        s.push(b"ab\ncd");
        assert_eq!(s.next_line().unwrap().unwrap(), Bytes::from_static(b"ab"));
        assert!(s.next_line().is_none());
        assert_eq!(s.take_rest(), Some(Bytes::from_static(b"cd")));
    }
}
