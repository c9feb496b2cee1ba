//! Hijacked attach: the container's stdin, stdout and stderr over one raw connection.
//!
//! `POST /containers/{id}/attach` with `Connection: Upgrade` / `Upgrade: tcp` makes Docker
//! answer `101` and turn the socket into a raw bidirectional stream. hyper parses the
//! request and the answer (including error bodies, e.g. 404), and once the connection task
//! hands over the upgraded IO we downcast it back to our own `UnixStream`, plus any bytes
//! hyper had already read past the head. Owning the plain socket is the point: smol's
//! `UnixStream` clones share one fd, so the reader and the writer are independent halves
//! usable from two tasks without a lock, which hyper's `Upgraded` could not give us.

use super::http::{Exchange, Query, SmolIo, encode, send, with_timeout};
use super::mux::{ChunkSource, OutputStream};
use super::{DockerClient, DockerError, Missing};
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, Stream};
use smol::net::unix::UnixStream;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What to attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replay the container's past output before the live stream.
    pub logs: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            stdin: true,
            stdout: true,
            stderr: true,
            logs: false,
        }
    }
}

/// Both halves of an attach. Dropping both closes the connection.
pub struct Attach {
    /// The container's output, demultiplexed unless it has a TTY; ends when it exits.
    pub reader: OutputStream,
    /// The container's stdin.
    pub writer: AttachWriter,
}

/// Writes to the container's stdin. `close()` half-closes the socket, which Docker passes
/// on as end-of-input.
pub struct AttachWriter {
    stream: UnixStream,
}

impl AsyncWrite for AttachWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Only our direction: the reader half keeps receiving output.
        Poll::Ready(self.stream.shutdown(Shutdown::Write))
    }
}

/// Most bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

std::thread_local! {
    /// The read buffer of every console reading on this thread. A console spends nearly all
    /// its life waiting for output; a buffer of its own, allocated before each wait, kept
    /// 16 KiB resident per running server (800 KiB for 50). The bytes that arrived are
    /// copied out of this one instead: a copy of what was read is cheap next to the read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The socket's bytes as chunks, starting with what hyper had already buffered.
fn socket_chunks(stream: UnixStream, already_read: Bytes) -> ChunkSource {
    Box::pin(SocketChunks {
        first: (!already_read.is_empty()).then_some(already_read),
        stream: Some(stream),
    })
}

/// See [`socket_chunks`]: holds no buffer while it waits.
struct SocketChunks {
    first: Option<Bytes>,
    /// `None` once the stream ended or failed.
    stream: Option<UnixStream>,
}

impl Stream for SocketChunks {
    type Item = Result<Bytes, DockerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let read = SCRATCH.with_borrow_mut(|buf| {
            if buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            }
            Pin::new(stream)
                .poll_read(cx, buf)
                .map_ok(|n| Bytes::copy_from_slice(&buf[..n]))
        });
        match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(chunk)) if chunk.is_empty() => {
                self.stream = None;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Err(e)) => {
                self.stream = None;
                Poll::Ready(Some(Err(DockerError::Io(e))))
            }
        }
    }
}

impl DockerClient {
    /// Attaches to a container (created or running). Attach before `container_start` to
    /// see its very first output.
    pub async fn attach(&self, id: &str, opts: &AttachOptions) -> Result<Attach, DockerError> {
        let tty = self.container_inspect(id).await?.config.tty;
        let flag = |b: bool| if b { "1" } else { "0" };
        let query = Query::new()
            .push("stream", "1")
            .push("stdin", flag(opts.stdin))
            .push("stdout", flag(opts.stdout))
            .push("stderr", flag(opts.stderr))
            .push("logs", flag(opts.logs));
        let path = format!("/containers/{}/attach{}", encode(id), query.as_str());
        let mut request = self.request(http::Method::POST, &path, None)?;
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("tcp"));

        let handshake = async {
            let ex: Exchange = send(&self.socket, request, true).await?;
            if ex.status() != http::StatusCode::SWITCHING_PROTOCOLS.as_u16() {
                if ex.is_success() {
                    return Err(DockerError::Protocol(format!(
                        "Docker answered the attach with HTTP {} instead of upgrading",
                        ex.status()
                    )));
                }
                return Err(ex.into_error(Missing::Container).await);
            }
            // The connection task must keep running until it hands the socket over.
            let Exchange { response, conn } = ex;
            let upgraded = hyper::upgrade::on(response).await?;
            drop(conn);
            upgraded
                .downcast::<SmolIo<UnixStream>>()
                .map_err(|_| DockerError::Protocol("attach: unexpected upgraded IO type".into()))
        };
        let parts = with_timeout(self.timeout, || format!("POST {path}"), handshake).await?;
        let stream = parts.io.0;
        Ok(Attach {
            reader: OutputStream::new(socket_chunks(stream.clone(), parts.read_buf), tty),
            writer: AttachWriter { stream },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};

    #[test]
    fn socket_chunks_yields_buffered_bytes_first_then_the_socket() {
        smol::block_on(async {
            let (a, mut b) = UnixStream::pair().unwrap();
            b.write_all(b" world").await.unwrap();
            drop(b);
            let chunks: Vec<_> = socket_chunks(a, Bytes::from_static(b"hello"))
                .collect::<Vec<_>>()
                .await;
            let joined: Vec<u8> = chunks
                .into_iter()
                .flat_map(|c| c.unwrap().to_vec())
                .collect();
            assert_eq!(joined, b"hello world");
        });
    }

    #[test]
    fn writer_half_close_ends_the_peers_input_only() {
        smol::block_on(async {
            let (a, mut b) = UnixStream::pair().unwrap();
            let mut w = AttachWriter { stream: a.clone() };
            w.write_all(b"line\n").await.unwrap();
            w.close().await.unwrap();
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"line\n");
            // The other direction still works.
            b.write_all(b"out").await.unwrap();
            drop(b);
            let mut back = Vec::new();
            let mut r = a;
            r.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"out");
        });
    }
}
