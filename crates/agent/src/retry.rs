//! Retrying W&B calls: transient failures back off and retry, authorization failures make
//! the agent unready (one log line) and retry slowly, everything else is returned.

use std::future::Future;
use std::time::Duration;

use rlaunch_wandb_api::Error as WandbError;

use crate::context::Context;
use crate::health::Readiness;
use crate::shutdown::Shutdown;

/// True for 401/403: the key is wrong or lacks access; retrying fast cannot help.
pub(crate) fn is_auth(error: &WandbError) -> bool {
    matches!(
        error,
        WandbError::Unauthorized { .. } | WandbError::Forbidden { .. }
    )
}

/// Exponential backoff with jitter: `base * 2^attempt`, capped, times a factor in [0.5, 1).
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let capped = exp.min(cap);
    let jitter = 0.5 + rand::random::<f64>() * 0.5;
    capped.mul_f64(jitter)
}

/// Calls `call` until it succeeds, retrying transient and authorization failures, until
/// `shutdown` (then `Ok(None)`). Other errors are returned.
pub(crate) async fn until_ok<T, F, Fut>(
    ctx: &Context,
    operation: &'static str,
    shutdown: &mut Shutdown,
    mut call: F,
) -> Result<Option<T>, WandbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WandbError>>,
{
    let mut attempt = 0;
    let mut unauthorized_logged = false;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) => error,
        };
        ctx.metrics.api_error(operation, error.kind());
        let wait = if is_auth(&error) {
            if !unauthorized_logged {
                tracing::error!(operation, error = %error, "W&B refuses the API key; not polling until it is accepted (readyz fails)");
                unauthorized_logged = true;
            }
            ctx.health.set(Readiness::Unauthorized {
                reason: error.to_string(),
            });
            Duration::from_secs(30)
        } else if error.is_transient() {
            tracing::warn!(operation, error = %error, "W&B call failed; retrying");
            backoff(attempt, Duration::from_secs(1), Duration::from_secs(60))
        } else {
            return Err(error);
        };
        attempt += 1;
        tokio::select! {
            _ = shutdown.wait() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Calls `call` up to `attempts` times while it fails transiently (used for reports,
/// which must not be lost but must not block shutdown forever either).
pub(crate) async fn a_few_times<T, F, Fut>(
    ctx: &Context,
    operation: &'static str,
    attempts: u32,
    mut call: F,
) -> Result<T, WandbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WandbError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                ctx.metrics.api_error(operation, error.kind());
                attempt += 1;
                if !error.is_transient() || attempt >= attempts {
                    return Err(error);
                }
                tokio::time::sleep(backoff(
                    attempt,
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                ))
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        for attempt in 0..30 {
            let wait = backoff(attempt, Duration::from_secs(1), cap);
            assert!(wait <= cap);
            let floor = Duration::from_secs(1)
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(cap)
                / 2;
            assert!(wait >= floor, "{attempt}: {wait:?}");
        }
    }
}
