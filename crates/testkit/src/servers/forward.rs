//! A TCP forwarder: makes a loopback-only server (the OCI registry) reachable on another
//! address of this machine, such as the real node's bridge address its pods reach.

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Forwards every connection to `<ip>:<port>` to `127.0.0.1:<to>`. Stops when dropped.
#[derive(Debug)]
pub struct TcpForward {
    ip: String,
    port: u16,
    task: JoinHandle<()>,
}

impl TcpForward {
    /// Listens on a free port of `ip` and forwards to loopback port `to`.
    pub async fn start(ip: &str, to: u16) -> Result<TcpForward> {
        let listener = TcpListener::bind((ip, 0))
            .await
            .map_err(|e| Error::Internal(format!("cannot listen on {ip} to forward: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("no address for the forwarder: {e}")))?
            .port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(TcpForward {
            ip: ip.to_owned(),
            port,
            task,
        })
    }

    /// `<ip>:<port>`: where clients connect.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

impl Drop for TcpForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
