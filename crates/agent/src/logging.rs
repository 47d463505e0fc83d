//! Logging with tracing-subscriber: human lines by default, JSON with `--log-format json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `verbosity` (0 info, 1 debug for
/// the agent's crates, 2+ trace). Calling it twice is harmless.
pub fn init_logging(format: LogFormat, verbosity: u8) {
    let default = match verbosity {
        0 => "info",
        1 => "info,rlaunch_agent=debug,rlaunch_k8s_runner=debug,rlaunch_wandb_api=debug",
        _ => "debug,rlaunch_agent=trace,rlaunch_k8s_runner=trace,rlaunch_wandb_api=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
