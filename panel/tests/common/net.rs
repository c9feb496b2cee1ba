//! A tiny HTTPS/WSS client for the tests, with the same shape as the `loadtest::client`
//! contract (/work/notes/loadtest-client.md), so the tests read the same either way.
//!
//! Kept deliberately simple: one TLS connection per REST request (`Connection: close`),
//! `Content-Length` or chunked response bodies, and a WebSocket connect that reports a
//! refused upgrade as `ClientError::Rejected { status, body }`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use async_io::Async;
use async_tungstenite::tungstenite;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsConnector;
use rustls_pki_types::ServerName;

/// The WebSocket type every test uses.
pub type Ws =
    async_tungstenite::WebSocketStream<futures_rustls::client::TlsStream<Async<TcpStream>>>;

#[derive(Debug)]
pub enum ClientError {
    Io(std::io::Error),
    Tls(String),
    /// The server answered the WebSocket upgrade with a non-101 status.
    Rejected {
        status: u16,
        body: String,
    },
    Http(String),
    Json(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A rustls client config (ring provider) trusting exactly the given PEM certificate(s).
pub fn tls_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = pem;
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| ClientError::Tls(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls("no certificate in PEM".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub fn tls_config(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    tls_config_from_pem(&std::fs::read(ca_pem)?)
}

async fn connect_tls(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<futures_rustls::client::TlsStream<Async<TcpStream>>, ClientError> {
    let tcp = Async::<TcpStream>::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))
}

/// Splits `https://host:port` / `wss://host:port/path` into the socket address and the path.
fn split_url(url: &str) -> Result<(SocketAddr, String), ClientError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| ClientError::Http(format!("not an https/wss url: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let addr = host
        .parse()
        .map_err(|_| ClientError::Http(format!("url host must be ip:port: {url}")))?;
    Ok((addr, path))
}

/// HTTPS/1.1 client to one panel.
#[derive(Clone)]
pub struct Rest {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Rest {
    pub fn new(base_url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Rest, ClientError> {
        let (addr, _) = split_url(base_url)?;
        Ok(Rest { addr, tls })
    }

    /// Sends one request with extra headers and returns status, headers and body.
    pub async fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ClientError> {
        let mut s = connect_tls(self.addr, self.tls.clone()).await?;
        let mut head = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
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
        read_response(&mut s).await
    }

    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, _, body) = self.raw(method, path_and_query, &headers, body).await?;
        Ok((status, body))
    }

    pub async fn json(
        &self,
        method: &str,
        path_and_query: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialize"));
        let (status, body) = self
            .request(method, path_and_query, bearer, bytes.as_deref())
            .await?;
        let v = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Json(format!(
                "status {status}, body {:?}: {e}",
                String::from_utf8_lossy(&body)
            ))
        })?;
        Ok((status, v))
    }
}

async fn read_response<S: futures_lite::AsyncRead + Unpin>(
    s: &mut S,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), ClientError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(ClientError::Http(format!(
                "connection closed before response head ({} bytes)",
                buf.len()
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Http(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ClientError::Http("bad content-length".into()))?;
        while rest.len() < len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Http("body truncated".into()));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&rest, b"\r\n") {
                    break i;
                }
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(ClientError::Http("chunked body truncated".into()));
                }
                rest.extend_from_slice(&chunk[..n]);
            };
            let size_str = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| ClientError::Http(format!("bad chunk size {size_str:?}")))?;
            rest.drain(..line_end + 2);
            if size == 0 {
                break;
            }
            while rest.len() < size + 2 {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(ClientError::Http("chunk truncated".into()));
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            out.extend_from_slice(&rest[..size]);
            rest.drain(..size + 2);
        }
        out
    } else {
        // No length: read to EOF (we sent `Connection: close`).
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest
    };
    Ok((status, headers, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects `wss://ip:port/path` with extra headers. A non-101 answer is
/// `ClientError::Rejected { status, body }`.
pub async fn ws_connect(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
) -> Result<Ws, ClientError> {
    ws_connect_with_config(url, tls, headers, None).await
}

pub async fn ws_connect_with_config(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
    config: Option<tungstenite::protocol::WebSocketConfig>,
) -> Result<Ws, ClientError> {
    use tungstenite::client::IntoClientRequest;
    let (addr, _) = split_url(url)?;
    let stream = connect_tls(addr, tls).await?;
    let mut req = url
        .into_client_request()
        .map_err(|e| ClientError::Http(e.to_string()))?;
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let value = tungstenite::http::HeaderValue::from_str(v)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        req.headers_mut().insert(name, value);
    }
    match async_tungstenite::client_async_with_config(req, stream, config).await {
        Ok((ws, _resp)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(ClientError::Rejected {
            status: resp.status().as_u16(),
            body: resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(ClientError::Http(e.to_string())),
    }
}

/// `POST /api/agents/register` with a valid body.
pub async fn register(
    rest: &Rest,
    admin_token: &str,
    name: &str,
) -> Result<proto::rest::RegisteredAgent, ClientError> {
    let body = serde_json::json!({
        "name": name,
        "hostname": "127.0.0.1",
        "port": 8080,
        "capabilities": {
            "maxMemory": "16GB",
            "maxCpuCores": 8,
            "dockerVersion": "24.0.0",
            "supportedArchitectures": ["amd64", "arm64"]
        }
    });
    let (status, v) = rest
        .json(
            "POST",
            "/api/agents/register",
            Some(admin_token),
            Some(&body),
        )
        .await?;
    if status != 200 {
        return Err(ClientError::Http(format!("register: {status} {v}")));
    }
    let resp: proto::rest::RegisterResponse =
        serde_json::from_value(v).map_err(|e| ClientError::Json(e.to_string()))?;
    Ok(resp.agent)
}
