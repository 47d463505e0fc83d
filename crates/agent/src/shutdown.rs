//! The stop signal every long-running part of the agent watches.

use tokio::sync::watch;

/// Why the agent stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT (or the embedding tool asked).
    Signal,
    /// A user pressed stop in the W&B UI (`stopPolling`).
    StopPolling,
}

/// Sends the stop signal; keep it alive as long as the agent should run.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<Option<StopReason>>);

/// Receives the stop signal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<Option<StopReason>>);

/// A trigger and its first receiver.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(None);
    (ShutdownTrigger(sender), Shutdown(receiver))
}

impl ShutdownTrigger {
    /// Ask everything to stop (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Another receiver.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// The reason, once stopping.
    pub fn reason(&self) -> Option<StopReason> {
        *self.0.borrow()
    }

    /// Resolves when the stop signal is given (at once if it already was). If the trigger
    /// is dropped without a signal, this never resolves.
    pub async fn wait(&mut self) -> StopReason {
        loop {
            if let Some(reason) = *self.0.borrow_and_update() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Gives the stop signal on the first SIGTERM or SIGINT.
pub fn stop_on_signals(trigger: ShutdownTrigger) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received: stopping"),
                        _ = int.recv() => tracing::info!("SIGINT received: stopping"),
                    }
                }
                _ => {
                    tracing::warn!("cannot install signal handlers; only ctrl-c stops the agent");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        trigger.stop(StopReason::Signal);
        // Keep the sender alive so receivers see the reason.
        std::future::pending::<()>().await;
    })
}
