//! Minecraft Server List Ping (the "status" protocol, 1.7+), so the agent's `query` of type
//! `minecraft` can read players and version from the fake server.
//!
//! Wire format: every packet is `VarInt length ++ VarInt packet id ++ fields`. A client sends a
//! Handshake (id 0, next state 1), a Status Request (id 0, empty) and gets a Status Response
//! (id 0, one JSON string); then optionally a Ping (id 1, i64) answered by a Pong with the
//! same number. See <https://wiki.vg/Server_List_Ping>.

use std::io::{self, Read, Write};

/// Protocol version reported (1.20.4).
pub const PROTOCOL_VERSION: i32 = 765;
/// Version name reported.
pub const VERSION_NAME: &str = "fakegame 1.0";
/// Largest packet accepted from a client (status packets are tiny).
pub const MAX_PACKET: usize = 32 * 1024;

/// What the status JSON reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub max: u32,
    pub players: Vec<String>,
    pub motd: String,
}

/// Appends `v` as a VarInt (7 bits per byte, little-endian groups, high bit = more).
pub fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = v as u32;
    loop {
        let byte = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a VarInt from the front of `buf`: `(value, bytes used)`, `None` if incomplete or
/// longer than 5 bytes.
pub fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let mut v: u32 = 0;
    for (i, &b) in buf.iter().enumerate().take(5) {
        v |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v as i32, i + 1));
        }
    }
    None
}

/// Reads one VarInt from a stream.
pub fn read_varint_from(r: &mut impl Read) -> io::Result<i32> {
    let mut buf = [0u8; 5];
    for i in 0..5 {
        r.read_exact(&mut buf[i..=i])?;
        if buf[i] & 0x80 == 0 {
            return Ok(read_varint(&buf[..=i]).expect("terminated varint").0);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "VarInt longer than 5 bytes",
    ))
}

/// Appends a protocol string (VarInt byte length ++ UTF-8).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    write_varint(out, s.len() as i32);
    out.extend_from_slice(s.as_bytes());
}

/// Frames a packet: length prefix, id, body.
pub fn packet(id: i32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(body.len() + 5);
    write_varint(&mut inner, id);
    inner.extend_from_slice(body);
    let mut out = Vec::with_capacity(inner.len() + 5);
    write_varint(&mut out, inner.len() as i32);
    out.extend_from_slice(&inner);
    out
}

/// Reads one framed packet: `(id, body)`.
pub fn read_packet(r: &mut impl Read) -> io::Result<(i32, Vec<u8>)> {
    let len = read_varint_from(r)?;
    if len <= 0 || len as usize > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad packet length {len}"),
        ));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    let (id, n) = read_varint(&data)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad packet id"))?;
    Ok((id, data[n..].to_vec()))
}

/// Escapes `s` as a JSON string literal (quotes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A stable, offline-style UUID for a player name (the same name always gets the same id).
pub fn player_uuid(name: &str) -> String {
    // FNV-1a 64, twice with different seeds, formatted as a UUID.
    let h = |seed: u64| {
        name.bytes()
            .fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    };
    let a = h(0xcbf2_9ce4_8422_2325);
    let b = h(0x8422_2325_cbf2_9ce4);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        (a & 0x0fff) | 0x3000,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The Status Response JSON.
pub fn status_json(st: &Status) -> String {
    let sample: Vec<String> = st
        .players
        .iter()
        .map(|p| {
            format!(
                "{{\"name\":{},\"id\":{}}}",
                json_string(p),
                json_string(&player_uuid(p))
            )
        })
        .collect();
    format!(
        "{{\"version\":{{\"name\":{},\"protocol\":{}}},\"players\":{{\"max\":{},\"online\":{},\"sample\":[{}]}},\"description\":{{\"text\":{}}}}}",
        json_string(VERSION_NAME),
        PROTOCOL_VERSION,
        st.max,
        st.players.len(),
        sample.join(","),
        json_string(&st.motd)
    )
}

/// Serves one client connection: handshake, status, ping. Returns when the client is done.
/// `status` is called when the client asks, so the answer reflects the current players.
pub fn serve_conn<S: Read + Write>(stream: &mut S, status: impl Fn() -> Status) -> io::Result<()> {
    // Handshake: protocol, address, port, next state.
    let (id, body) = read_packet(stream)?;
    if id != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected handshake, got packet {id:#x}"),
        ));
    }
    let next_state = handshake_next_state(&body)?;
    if next_state != 1 {
        // Login (2) and transfer (3) are not supported by a fake server: just close.
        return Ok(());
    }
    loop {
        let (id, body) = match read_packet(stream) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match id {
            0 => {
                let mut out = Vec::new();
                write_string(&mut out, &status_json(&status()));
                stream.write_all(&packet(0, &out))?;
            }
            1 => {
                if body.len() != 8 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "ping payload must be 8 bytes",
                    ));
                }
                stream.write_all(&packet(1, &body))?;
                return Ok(());
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected status packet {other:#x}"),
                ));
            }
        }
    }
}

/// Parses a Handshake body and returns its "next state".
pub fn handshake_next_state(body: &[u8]) -> io::Result<i32> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad handshake: {m}"));
    let (_proto, mut at) = read_varint(body).ok_or_else(|| bad("protocol"))?;
    let (len, n) = read_varint(&body[at..]).ok_or_else(|| bad("address length"))?;
    at += n;
    if len < 0 || at + len as usize + 2 > body.len() {
        return Err(bad("address"));
    }
    at += len as usize + 2; // address, then u16 port
    let (next, _) = read_varint(&body[at..]).ok_or_else(|| bad("next state"))?;
    Ok(next)
}

/// Client side, for tests: a Handshake body for `host:port` asking for status.
#[cfg(test)]
pub fn handshake_body(host: &str, port: u16) -> Vec<u8> {
    let mut b = Vec::new();
    write_varint(&mut b, PROTOCOL_VERSION);
    write_string(&mut b, host);
    b.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut b, 1);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn varints_match_the_reference_table() {
        // From the protocol documentation's VarInt examples.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (2, &[0x02]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (255, &[0xff, 0x01]),
            (25565, &[0xdd, 0xc7, 0x01]),
            (2097151, &[0xff, 0xff, 0x7f]),
            (2147483647, &[0xff, 0xff, 0xff, 0xff, 0x07]),
            (-1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (-2147483648, &[0x80, 0x80, 0x80, 0x80, 0x08]),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, bytes, "encoding {v}");
            assert_eq!(read_varint(bytes), Some((v, bytes.len())), "decoding {v}");
            assert_eq!(read_varint_from(&mut Cursor::new(bytes)).unwrap(), v);
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None, "incomplete");
        assert_eq!(read_varint(&[0x80; 6]), None, "too long");
        assert!(read_varint_from(&mut Cursor::new(&[0x80u8; 6][..])).is_err());
    }

    #[test]
    fn packets_are_length_prefixed_with_their_id() {
        assert_eq!(packet(0, &[]), vec![0x01, 0x00]);
        let p = packet(1, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p, vec![9, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        let (id, body) = read_packet(&mut Cursor::new(&p)).unwrap();
        assert_eq!((id, body), (1, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(
            read_packet(&mut Cursor::new(vec![0x00])).is_err(),
            "zero length"
        );
        assert!(
            read_packet(&mut Cursor::new(vec![0xff, 0xff, 0x7f])).is_err(),
            "too large"
        );
    }

    #[test]
    fn handshake_round_trips() {
        let body = handshake_body("localhost", 25565);
        // protocol 765 = 0xfd 0x05, "localhost", port 0x63dd, next 1.
        assert_eq!(&body[..3], &[0xfd, 0x05, 9]);
        assert_eq!(&body[3..12], b"localhost");
        assert_eq!(&body[12..], &[0x63, 0xdd, 0x01]);
        assert_eq!(handshake_next_state(&body).unwrap(), 1);
        assert!(handshake_next_state(&body[..5]).is_err());
    }

    #[test]
    fn status_json_has_players_version_and_escapes() {
        let st = Status {
            max: 20,
            players: vec!["alice".into(), "bo\"b".into()],
            motd: "fake\nserver".into(),
        };
        let j = status_json(&st);
        assert!(j.starts_with(
            "{\"version\":{\"name\":\"fakegame 1.0\",\"protocol\":765},\"players\":{\"max\":20,\"online\":2,\"sample\":[{\"name\":\"alice\",\"id\":\""
        ), "{j}");
        assert!(j.contains("{\"name\":\"bo\\\"b\",\"id\":\""), "{j}");
        assert!(
            j.ends_with("\"description\":{\"text\":\"fake\\nserver\"}}"),
            "{j}"
        );
        assert_eq!(json_string("\u{1}\t\\"), "\"\\u0001\\t\\\\\"");
        let u = player_uuid("alice");
        assert_eq!(u.len(), 36);
        assert_eq!(u, player_uuid("alice"));
        assert_ne!(u, player_uuid("bob"));
    }

    /// A duplex in-memory stream: reads from `input`, records writes.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn full_status_exchange_answers_status_then_pong() {
        let mut input = packet(0, &handshake_body("127.0.0.1", 25565));
        input.extend(packet(0, &[]));
        input.extend(packet(1, &0x0123_4567_89ab_cdefi64.to_be_bytes()));
        let mut s = Duplex {
            input: Cursor::new(input),
            output: Vec::new(),
        };
        let st = Status {
            max: 5,
            players: vec!["steve".into()],
            motd: "m".into(),
        };
        serve_conn(&mut s, || st.clone()).unwrap();
        let mut out = Cursor::new(s.output);
        let (id, body) = read_packet(&mut out).unwrap();
        assert_eq!(id, 0);
        let (len, n) = read_varint(&body).unwrap();
        let json = std::str::from_utf8(&body[n..]).unwrap();
        assert_eq!(len as usize, json.len());
        assert_eq!(json, status_json(&st));
        let (id, body) = read_packet(&mut out).unwrap();
        assert_eq!(
            (id, body),
            (1, 0x0123_4567_89ab_cdefi64.to_be_bytes().to_vec())
        );
        assert_eq!(
            out.position() as usize,
            out.get_ref().len(),
            "nothing else sent"
        );
    }

    #[test]
    fn login_state_and_garbage_are_not_answered() {
        let mut hs = handshake_body("h", 1);
        *hs.last_mut().unwrap() = 2;
        let mut s = Duplex {
            input: Cursor::new(packet(0, &hs)),
            output: Vec::new(),
        };
        serve_conn(&mut s, || unreachable!()).unwrap();
        assert!(s.output.is_empty());
        let mut s = Duplex {
            input: Cursor::new(packet(5, &[1, 2])),
            output: Vec::new(),
        };
        assert!(serve_conn(&mut s, || unreachable!()).is_err());
        assert!(s.output.is_empty());
    }
}
