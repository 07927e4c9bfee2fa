//! What every sandbox shares: its one error type and the one way it is served (a background task on a local
//! port, stopped when the handle is dropped).

use std::net::SocketAddr;

use axum::Router;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("sandbox could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: {0}")]
    Io(#[from] std::io::Error),
    #[error("sandbox internal error: {0}")]
    Internal(String),
}

/// A sandbox (HubSpot's inside [`crate::hubspot::SandboxHandle`], or a partner's) served in a background task;
/// dropping the handle shuts the server down.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// `http://127.0.0.1:PORT`: the base URL to give a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves `app` in a background tokio task.
pub(crate) async fn serve(app: Router, addr: SocketAddr) -> Result<ServerHandle, SandboxError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| SandboxError::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "sandbox server stopped");
        }
    });
    Ok(ServerHandle { addr, shutdown: Some(tx), task: Some(task) })
}

/// `127.0.0.1:0`: any free local port.
pub(crate) fn local_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
