//! The process-wide log subscriber: process wiring, not HTTP.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber; `RUST_LOG` overrides the configured level.
/// `ansi`: colour codes, only for a terminal (a file or a log collector
/// would store them as junk).
pub fn init_logging<W>(settings: &LogSettings, writer: W, ansi: bool)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && settings.format == LogFormat::Text);
    let _ = if settings.format == LogFormat::Json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Logs go to stderr, always: stdout carries only what a command prints
/// (a token, the configuration, the local demo's banner).
pub fn init_stderr_logging(settings: &LogSettings) {
    use std::io::IsTerminal;
    init_logging(settings, std::io::stderr, std::io::stderr().is_terminal());
}
