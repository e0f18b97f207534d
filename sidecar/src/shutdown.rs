//! Turns SIGTERM and SIGINT into a `watch` channel that flips to `true` once, so every
//! task can notice the start of a graceful shutdown.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Installs the signal handlers (must be called inside a tokio runtime) and returns a
/// receiver that turns `true` at the first SIGTERM or SIGINT. Later signals are logged;
/// the sender lives as long as the runtime, so the receiver never reports it closed.
pub fn install() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let term = register(SignalKind::terminate(), "SIGTERM");
    let int = register(SignalKind::interrupt(), "SIGINT");
    tokio::spawn(async move {
        let (mut term, mut int) = (term, int);
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                Some(()) = recv(&mut term) => "SIGTERM",
                Some(()) = recv(&mut int) => "SIGINT",
                else => {
                    // No handler could be installed; keep the sender alive.
                    std::future::pending::<()>().await;
                    return;
                }
            };
            received += 1;
            if received == 1 {
                tracing::info!(signal = name, "shutdown requested; draining");
                tx.send_replace(true);
            } else {
                tracing::warn!(
                    signal = name,
                    count = received,
                    "shutdown already in progress; still draining"
                );
            }
        }
    });
    rx
}

fn register(kind: SignalKind, name: &'static str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(signal = name, error = %e, "cannot install signal handler");
            None
        }
    }
}

async fn recv(s: &mut Option<Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Sends SIGINT to this test process; the handler is installed synchronously by
    /// `install`, so the signal cannot kill the process.
    #[tokio::test]
    async fn sigint_flips_the_receiver() -> Result<(), Box<dyn std::error::Error>> {
        let mut rx = install();
        assert!(!*rx.borrow());
        let status = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status()?;
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), rx.changed()).await??;
        assert!(*rx.borrow());
        Ok(())
    }
}
