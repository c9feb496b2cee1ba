//! A response head: the status line and the headers that decide framing and keep-alive.

use crate::ClientError;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD request, 204, 304).
    Empty,
    /// `Content-Length` bytes, already checked against the body limit.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// What a client needs from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The connection may carry another request after this answer.
    pub keep_alive: bool,
}

impl Head {
    /// 1xx: an interim answer, the real one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

fn bad(why: impl Into<String>) -> ClientError {
    ClientError::Http(why.into())
}

/// Parses a head (`raw` ends before or at the blank line). `head_request`: the request was
/// `HEAD`, so no body follows whatever the headers say. `max_body` bounds `Content-Length`.
///
/// Refused: anything but `HTTP/1.0`/`HTTP/1.1`, a status that is not three digits, a header
/// line without `:`, a `Content-Length` that is not plain digits or disagrees with another
/// one, a transfer coding other than exactly `chunked`, and `Content-Length` together with
/// `Transfer-Encoding` (ambiguous framing is how responses get split).
pub fn parse_head(raw: &[u8], head_request: bool, max_body: usize) -> Result<Head, ClientError> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let http10 = match parts.next() {
        Some("HTTP/1.1") => false,
        Some("HTTP/1.0") => true,
        _ => return Err(bad(format!("bad status line {status_line:?}"))),
    };
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s >= 100)
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n =
                parse_length(value).ok_or_else(|| bad(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("unsupported Transfer-Encoding {value:?}")));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    if chunked && length.is_some() {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }
    let no_body = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let framing = match (no_body, chunked, length) {
        (true, _, _) => Framing::Empty,
        (false, true, _) => Framing::Chunked,
        (false, false, Some(n)) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= max_body)
                .ok_or_else(|| bad(format!("body of {n} bytes is over the limit")))?;
            Framing::Length(n)
        }
        (false, false, None) => Framing::UntilClose,
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Head {
        status,
        framing,
        keep_alive,
    })
}

/// `1*DIGIT`, no sign, no spaces; `None` also when it does not fit in a `u64`.
fn parse_length(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The header lines of a raw head (after the status line), as `(name, value)` with the
/// value trimmed; lines without `:` are skipped ([`parse_head`] refuses them anyway).
pub fn headers(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let text = std::str::from_utf8(raw).unwrap_or("");
    text.split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim_matches([' ', '\t'])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, ClientError> {
        parse_head(raw.as_bytes(), false, 1 << 20)
    }

    #[test]
    fn parses_a_plain_head() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\n").unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                framing: Framing::Length(12),
                keep_alive: true
            }
        );
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
    }

    #[test]
    fn connection_close_and_http10() {
        let h = head("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0").unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0").unwrap();
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive, "a close-delimited body ends the connection");
    }

    #[test]
    fn bodiless_answers() {
        for raw in [
            "HTTP/1.1 204 No Content\r\nContent-Length: 5",
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked",
            "HTTP/1.1 100 Continue",
        ] {
            assert_eq!(head(raw).unwrap().framing, Framing::Empty, "{raw}");
        }
        assert!(head("HTTP/1.1 100 Continue").unwrap().is_interim());
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99", true, 1).unwrap();
        assert_eq!(h.framing, Framing::Empty, "HEAD: no body");
    }

    #[test]
    fn refuses_malformed_and_ambiguous_heads() {
        for bad in [
            "SSH-2.0",
            "HTTP/2 200 OK",
            "HTTP/1.1 abc OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 099 Low",
            "HTTP/1.1 +20 OK",
            "HTTP/1.1 200 OK\r\nContent-Length: x",
            "HTTP/1.1 200 OK\r\nContent-Length: +5",
            "HTTP/1.1 200 OK\r\nContent-Length: -1",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5",
            "HTTP/1.1 200 OK\r\nContent-Length: ",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999",
            "HTTP/1.1 200 OK\r\nContent-Length: 2000000",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
            "HTTP/1.1 200 OK\r\nno colon",
        ] {
            assert!(
                matches!(head(bad), Err(ClientError::Http(_))),
                "{bad:?} should be refused"
            );
        }
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nX: \xff", false, 1).is_err());
    }

    #[test]
    fn repeated_equal_lengths_are_one_length() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3").unwrap();
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn header_lines_are_listed() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A:  b \r\n";
        let all: Vec<_> = headers(raw).collect();
        assert_eq!(
            all,
            [("Content-Type", "text/plain"), ("X-A", "b"), ("", "")][..2]
        );
    }
}
