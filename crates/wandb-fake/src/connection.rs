//! Connection drops, the fault a client can least tell apart from success: the fake's
//! listener wraps every accepted TCP stream so the request handler can close its own
//! connection without answering ([`crate::DropPoint`]), before or after running the
//! operation.
//!
//! A dropped stream reads as closed and refuses every write, so hyper cannot send the
//! answer the handler still returns and closes the connection: the client sees the
//! connection end mid-request (no status, no body), exactly as when a load balancer or the
//! server's process dies.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The fake's listener: a TCP listener whose streams can be dropped by their handler.
pub(crate) struct DroppableListener(pub TcpListener);

impl Listener for DroppableListener {
    type Io = DroppableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        let stream = DroppableStream {
            inner: stream,
            dropped: Arc::default(),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One accepted connection; reads end and writes fail once it is dropped.
pub(crate) struct DroppableStream {
    inner: TcpStream,
    dropped: Arc<AtomicBool>,
}

impl DroppableStream {
    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn dropped_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "connection dropped by an injected fault",
    )
}

impl AsyncRead for DroppableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_dropped() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DroppableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dropped() {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The handler's side of its connection (axum connect info): [`Connection::drop_now`]
/// closes it without an answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connection {
    dropped: Arc<AtomicBool>,
}

impl Connection {
    /// From now on the connection answers nothing and is closed.
    pub(crate) fn drop_now(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, DroppableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, DroppableListener>) -> Self {
        Self {
            dropped: stream.io().dropped.clone(),
        }
    }
}
