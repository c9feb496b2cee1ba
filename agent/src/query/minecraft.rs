//! Minecraft Java Edition Server List Ping (the "status" protocol).
//!
//! Handshake (`next state = 1`), status request, one status response carrying JSON with
//! `players.online`, `players.max` and, optionally, a sample of names. Packets are
//! `VarInt length, VarInt id, fields`; strings are `VarInt length + UTF-8`.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use proto::Players;
use serde::Deserialize;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::Duration;

/// Status JSON can be large (MOTDs, favicons), but not this large.
const MAX_PACKET: usize = 256 * 1024;
/// A protocol version that every modern server answers a status ping for.
const PROTOCOL_VERSION: i32 = 767;
/// Names returned in `players.list`, at most.
const MAX_NAMES: usize = 100;

/// Why a query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query of {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("query of {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("query of {addr}: malformed answer: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
}

#[derive(Deserialize)]
struct StatusJson {
    players: Option<PlayersJson>,
}

#[derive(Deserialize)]
struct PlayersJson {
    #[serde(default)]
    online: i64,
    #[serde(default)]
    max: i64,
    #[serde(default)]
    sample: Option<Vec<Sample>>,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    name: String,
}

/// Asks the server at `addr` for its players, within `deadline`.
pub async fn status(addr: SocketAddr, deadline: Duration) -> Result<Players, QueryError> {
    let query = async {
        let io = |source| QueryError::Io { addr, source };
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let mut out = Vec::with_capacity(64);
        handshake(&mut out, &addr.ip().to_string(), addr.port());
        packet(&mut out, 0x00, &[]); // status request
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let body = read_packet(&mut stream, addr).await?;
        parse_status(&body).map_err(|reason| QueryError::Protocol { addr, reason })
    };
    futures_lite::future::or(query, async {
        smol::Timer::after(deadline).await;
        Err(QueryError::Timeout { addr })
    })
    .await
}

fn handshake(out: &mut Vec<u8>, host: &str, port: u16) {
    let mut fields = Vec::with_capacity(host.len() + 16);
    write_varint(&mut fields, PROTOCOL_VERSION);
    write_string(&mut fields, host);
    fields.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut fields, 1); // next state: status
    packet(out, 0x00, &fields);
}

fn packet(out: &mut Vec<u8>, id: i32, fields: &[u8]) {
    let mut body = Vec::with_capacity(fields.len() + 5);
    write_varint(&mut body, id);
    body.extend_from_slice(fields);
    write_varint(out, body.len() as i32);
    out.extend_from_slice(&body);
}

pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    let mut v = value as u32;
    loop {
        if v & !0x7f == 0 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    write_varint(out, s.len() as i32);
    out.extend_from_slice(s.as_bytes());
}

/// Decodes a VarInt from the front of `buf`: `(value, bytes used)`, `None` if incomplete
/// or longer than 5 bytes.
pub(crate) fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let mut value: u32 = 0;
    for (i, &b) in buf.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value as i32, i + 1));
        }
    }
    None
}

async fn read_varint_from(stream: &mut TcpStream, addr: SocketAddr) -> Result<i32, QueryError> {
    let mut buf = [0u8; 5];
    for i in 0..5 {
        stream
            .read_exact(&mut buf[i..=i])
            .await
            .map_err(|source| QueryError::Io { addr, source })?;
        if buf[i] & 0x80 == 0 {
            return Ok(read_varint(&buf[..=i]).map_or(0, |(v, _)| v));
        }
    }
    Err(QueryError::Protocol {
        addr,
        reason: "VarInt longer than 5 bytes".into(),
    })
}

/// Reads one packet and returns its body after the packet id (which must be 0).
async fn read_packet(stream: &mut TcpStream, addr: SocketAddr) -> Result<Vec<u8>, QueryError> {
    let bad = |reason: &str| QueryError::Protocol {
        addr,
        reason: reason.to_owned(),
    };
    let len = read_varint_from(stream, addr).await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (1..=MAX_PACKET).contains(l))
        .ok_or_else(|| bad("packet length out of range"))?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|source| QueryError::Io { addr, source })?;
    let (id, used) = read_varint(&body).ok_or_else(|| bad("bad packet id"))?;
    if id != 0 {
        return Err(bad("expected a status response (packet 0)"));
    }
    Ok(body.split_off(used))
}

/// Parses the status response body (a length-prefixed JSON string).
fn parse_status(body: &[u8]) -> Result<Players, String> {
    let (len, used) = read_varint(body).ok_or("bad string length")?;
    let len = usize::try_from(len).map_err(|_| "negative string length")?;
    let json = body
        .get(used..used + len)
        .ok_or("string longer than the packet")?;
    let status: StatusJson =
        serde_json::from_slice(json).map_err(|e| format!("status JSON: {e}"))?;
    let players = status.players.ok_or("status JSON has no `players`")?;
    let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    let list = players
        .sample
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| !n.is_empty())
        .take(MAX_NAMES)
        .collect();
    Ok(Players {
        online: clamp(players.online),
        max: clamp(players.max),
        list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::net::TcpListener;

    #[test]
    fn varints_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            25565,
            2_097_151,
            i32::MAX,
            -1,
            i32::MIN,
        ] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            assert!(buf.len() <= 5);
            assert_eq!(read_varint(&buf), Some((v, buf.len())), "{v}");
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None);
        assert_eq!(read_varint(&[0xff; 6]), None);
    }

    #[test]
    fn parses_players_and_never_invents_them() {
        let json = r#"{"version":{"name":"1.20.4","protocol":765},"players":{"max":20,"online":2,"sample":[{"name":"alice","id":"x"},{"name":"bob","id":"y"}]},"description":{"text":"hi"}}"#;
        let mut body = Vec::new();
        write_string(&mut body, json);
        let p = parse_status(&body).unwrap();
        assert_eq!((p.online, p.max), (2, 20));
        assert_eq!(p.list, vec!["alice", "bob"]);

        let mut body = Vec::new();
        write_string(&mut body, r#"{"description":"no players field"}"#);
        assert!(parse_status(&body).is_err());
        let mut body = Vec::new();
        write_string(&mut body, "not json");
        assert!(parse_status(&body).is_err());
        assert!(parse_status(&[0x05, b'{']).is_err());
    }

    /// A minimal SLP server: checks the handshake and answers one status.
    async fn fake_server(listener: TcpListener, json: &'static str) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 512];
        let mut got = Vec::new();
        // Handshake + request arrive in one write; read until both packets are complete.
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let (hl, u1) = read_varint(&got).unwrap();
            let end = u1 + hl as usize;
            if got.len() >= end + 2 {
                assert_eq!(got[u1], 0x00, "handshake id");
                assert_eq!(&got[end..end + 2], &[0x01, 0x00], "status request");
                assert_eq!(got[end - 1], 0x01, "next state = status");
                break;
            }
        }
        let mut fields = Vec::new();
        write_string(&mut fields, json);
        let mut out = Vec::new();
        packet(&mut out, 0x00, &fields);
        s.write_all(&out).await.unwrap();
    }

    #[test]
    fn queries_a_live_server() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = smol::spawn(fake_server(
                listener,
                r#"{"players":{"max":10,"online":1,"sample":[{"name":"steve"}]}}"#,
            ));
            let p = status(addr, Duration::from_secs(10)).await.unwrap();
            assert_eq!(
                (p.online, p.max, p.list),
                (1, 10, vec!["steve".to_string()])
            );
            server.await;
        });
    }

    #[test]
    fn silent_or_absent_servers_fail_instead_of_hanging() {
        smol::block_on(async {
            // Accepts but never answers.
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _keep = smol::spawn(async move {
                let conn = listener.accept().await;
                smol::Timer::after(Duration::from_secs(30)).await;
                drop(conn);
            });
            let e = status(addr, Duration::from_millis(300)).await.unwrap_err();
            assert!(matches!(e, QueryError::Timeout { .. }), "{e}");

            // Nothing listening.
            let closed = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            assert!(status(closed, Duration::from_secs(5)).await.is_err());
        });
    }
}
