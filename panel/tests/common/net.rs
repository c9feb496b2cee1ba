//! The network side of the harness: the shared client stack of `ctrl-io` (HTTPS keep-alive
//! REST, `wss://` connect, registration) plus one thing it deliberately lacks — a one-shot
//! request with arbitrary headers, for the authentication tests that send malformed ones.

use ctrl_io::http::{HttpConn, ReadOptions};
use futures_lite::AsyncWriteExt;

pub use ctrl_io::{
    ClientError, Rest, Scheme, Url, Ws, connect_tls, register, tls_config, ws_connect,
};

/// Sends one request on a fresh connection with exactly these extra headers and returns
/// status, (lower-cased) headers and body.
pub async fn raw(
    base_url: &str,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ClientError> {
    let target = Url::parse_as(base_url, Scheme::Https)?;
    let mut s = connect_tls(&target, tls).await?;
    let mut head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        target.authority()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if let Some(b) = body {
        s.write_all(b).await?;
    }
    s.flush().await?;
    let mut conn = HttpConn::new(s);
    let opts = ReadOptions {
        head_request: method == "HEAD",
        max_body: 64 << 20,
        keep_head: true,
    };
    let answer = conn.read_response(opts).await?;
    let headers = ctrl_io::http::head::headers(&answer.head)
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Ok((answer.status, headers, answer.body))
}
