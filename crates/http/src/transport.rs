//! `hubrelay serve`'s listener: the router over hyper's HTTP/1.1 with the limits a port open to the
//! internet needs — a header read timeout (idle, slow and half-sent connections are closed), a request
//! timeout, a cap on open connections — and hyper's own refusals (a malformed request line or header,
//! headers too large, a URI too long) answered in our JSON error shape instead of an empty body — and a
//! lingering close, so an answer sent before the request's body was read (a 413) reaches its sender.
//! In AWS, API Gateway does this job in front of the Lambdas.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// What one `serve` process lets its clients do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From a connection's first byte (or the end of its last answer) to the end of the request's headers.
    pub header_read_timeout: Duration,
    /// From the headers to the answer. Longer than a request can take when all is well (a 5 s wait for a
    /// duplicate in flight, a rate-limit slot, HubSpot's timeout).
    pub request_timeout: Duration,
    /// Open connections at most; the next ones hear 503 and are closed.
    pub max_connections: usize,
    /// Request line and headers at most: hyper answers 431 once a request's head is still incomplete past it.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: hubrelay_core::config::DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then finish the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let request_timeout = limits.request_timeout;
    let app = app.layer(axum::middleware::from_fn(move |req: Request, next: Next| async move {
        match tokio::time::timeout(request_timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => {
                ApiError::unavailable("request_timeout", "the request took too long to answer; retry").into_response()
            }
        }
    }));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        // One buffer per write, so a refusal's head arrives whole at `JsonRefusals`.
        .writev(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let lingering_refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream, lingering_refusals.clone()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(JsonRefusals::new(LingeringClose::new(stream)));
        let connection = http.serve_connection(io, TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Refused connections that may linger at once (see [`LingeringClose`]); past it a refusal closes at once, so a
/// flood of connections over the cap cannot pile up open sockets.
const MAX_LINGERING_REFUSALS: usize = 64;

/// Over the connection cap: a JSON 503 and close, without reading the request.
async fn refuse_busy(stream: TcpStream, lingering: Arc<Semaphore>) {
    tracing::warn!("connection refused: too many open connections");
    let error = ApiError::unavailable("too_many_connections", "the relay has too many open connections; retry shortly");
    let response = raw_response(503, "Service Unavailable", &error.body().to_string(), Some(1));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        match lingering.try_acquire() {
            Ok(_lingering) => answer_and_close(LingeringClose::new(stream), &response).await,
            Err(_) => answer_and_close(stream, &response).await,
        }
    })
    .await;
}

async fn answer_and_close(mut stream: impl AsyncWrite + Unpin, response: &[u8]) -> io::Result<()> {
    stream.write_all(response).await?;
    stream.shutdown().await
}

fn raw_response(status: u16, reason: &str, body: &str, retry_after: Option<u64>) -> Vec<u8> {
    let retry = retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The JSON answer for one of hyper's automatic refusals (status line `head` with an empty body), if it is one.
/// Our own routes never answer 400, 414 or 431 without a body, so only hyper's refusals match.
fn json_refusal(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    if !rest.to_ascii_lowercase().contains("content-length: 0\r\n") {
        return None;
    }
    let (status, reason, code, message) = match status_line {
        "HTTP/1.1 400 Bad Request" => {
            (400, "Bad Request", "malformed_request", "the request line or a header is not valid HTTP/1.1")
        }
        "HTTP/1.1 431 Request Header Fields Too Large" => (
            431,
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request line and headers are larger than this server reads",
        ),
        "HTTP/1.1 414 URI Too Long" => (414, "URI Too Long", "uri_too_long", "the request URI is too long"),
        _ => return None,
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(raw_response(status, reason, &body, None))
}

/// A connection whose writes pass through, except hyper's automatic refusals, which are rewritten with a
/// JSON body (hyper writes them itself, before any handler runs, and closes the connection after).
struct JsonRefusals<S> {
    inner: S,
    /// A rewritten refusal not yet fully written.
    pending: Vec<u8>,
    sent: usize,
}

impl<S> JsonRefusals<S> {
    fn new(inner: S) -> Self {
        JsonRefusals { inner, pending: Vec::new(), sent: 0 }
    }
}

impl<S: AsyncWrite + Unpin> JsonRefusals<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRefusals<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if let Some(replacement) = json_refusal(buf) {
            self.pending = replacement;
            // Taken whole; what the socket does not take now goes out on flush or shutdown.
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a closing connection keeps reading what its sender still sends, in all and between two reads,
/// and how much of it at most (RFC 9112 §9.6; nginx's lingering close does the same).
const LINGER_TOTAL: Duration = Duration::from_secs(2);
const LINGER_IDLE: Duration = Duration::from_millis(250);
const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// A connection closed in two steps: on shutdown it sends its FIN, then reads and discards what the peer
/// still sends until the peer closes, falls quiet or sends too much. Closing a socket with unread bytes in it
/// makes the kernel send a reset, which can reach the client before it has read our answer — an answer
/// given before the body was read (413 over the size limit, 503 over the connection cap) would be lost as
/// "connection reset" or an incomplete message.
struct LingeringClose<S> {
    inner: S,
    linger: Option<Linger>,
}

struct Linger {
    write_closed: bool,
    discarded: usize,
    total: Pin<Box<tokio::time::Sleep>>,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<S> LingeringClose<S> {
    fn new(inner: S) -> Self {
        LingeringClose { inner, linger: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let linger = this.linger.get_or_insert_with(|| Linger {
            write_closed: false,
            discarded: 0,
            total: Box::pin(tokio::time::sleep(LINGER_TOTAL)),
            idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
        });
        if !linger.write_closed {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            linger.write_closed = true;
        }
        let mut scratch = [0u8; 8192];
        loop {
            if linger.total.as_mut().poll(cx).is_ready() || linger.idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                // The peer closed (or reset): nothing left to protect.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    linger.discarded += buf.filled().len();
                    if linger.discarded > LINGER_MAX_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                    linger.idle.as_mut().reset(tokio::time::Instant::now() + LINGER_IDLE);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_hypers_empty_refusals() {
        let refusal = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let rewritten = String::from_utf8(json_refusal(refusal).unwrap()).unwrap();
        assert!(rewritten.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"));
        assert!(rewritten.ends_with(
            r#"{"error":{"code":"malformed_request","message":"the request line or a header is not valid HTTP/1.1"}}"#
        ));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n";
        assert!(json_refusal(ours).is_none(), "our own 400s carry a body and pass through");
        assert!(json_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
