//! Where the daemon's log goes, and at which priority.
//!
//! - Under systemd (`JOURNAL_STREAM` names our stderr): native journald records (the journal's
//!   own protocol on `/run/systemd/journal/socket`) with a real `PRIORITY` per line and the
//!   fields `SERVICE`, `REAL`, `INSTANCE`, `REASON`, `PEER`... as journal fields, so
//!   `journalctl -u xlb -p warning` and `journalctl -u xlb SERVICE=web` work. No timestamp of
//!   our own: the journal has one. When the socket cannot be opened, plain lines on stderr with
//!   the sd-daemon `<N>` priority prefix (journald reads it from the stream), still without a
//!   timestamp.
//! - On a terminal or a file: plain text lines with a UTC timestamp.
//! - `global.log_format = "json"`: one JSON object a line on stderr, everywhere.
//!
//! The level filter is `XLB_LOG`, else `RUST_LOG`, else `info` (EnvFilter syntax, e.g.
//! `XLB_LOG=info,xlb::vrrp=debug`).
//!
//! Messages are complete sentences on their own (the journal shows MESSAGE only): a health or
//! VRRP transition carries keepalived's phrase (`Entering MASTER STATE`, `Removing service ...
//! from VS ...`) plus xlb's reason, so alerting written for keepalived keeps matching.
use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
    EnvFilter,
};

use crate::config::LogFormat;

/// Where log records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// journald's native protocol (structured fields, PRIORITY).
    Journal,
    /// stderr is the journal's stream but its socket is unusable: `<N>`-prefixed lines.
    JournalStream,
    /// Plain text with timestamps.
    Text,
    /// JSON lines.
    Json,
}

/// journald / syslog priority of a tracing level: ERROR err(3), WARN warning(4), INFO info(6),
/// DEBUG and TRACE debug(7), as syslog users (keepalived) log them.
pub fn priority_of(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected stdout/stderr to; it names
/// ours only if stderr is that very stream (a child started from a unit inherits the variable
/// with another stderr).
pub fn is_journal_stream(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(var), Some((dev, ino))) = (journal_stream, stderr) else {
        return false;
    };
    let mut parts = var.trim().splitn(2, ':');
    let (Some(d), Some(i)) = (parts.next(), parts.next()) else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The sink for `format` given whether stderr is the journal's stream.
pub fn choose(format: LogFormat, under_journal: bool, journal_socket_ok: bool) -> Sink {
    match (format, under_journal, journal_socket_ok) {
        (LogFormat::Json, _, _) => Sink::Json,
        (LogFormat::Text, true, true) => Sink::Journal,
        (LogFormat::Text, true, false) => Sink::JournalStream,
        (LogFormat::Text, false, _) => Sink::Text,
    }
}

/// `XLB_LOG`, else `RUST_LOG`, else `info`.
pub fn filter_directives(xlb_log: Option<String>, rust_log: Option<String>) -> String {
    xlb_log
        .filter(|s| !s.trim().is_empty())
        .or(rust_log.filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "info".to_string())
}

fn stderr_id() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((m.dev(), m.ino()))
}

fn env_filter() -> EnvFilter {
    let d = filter_directives(
        std::env::var("XLB_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    EnvFilter::try_new(&d).unwrap_or_else(|e| {
        eprintln!("xlb: log filter {d:?}: {e}; using info");
        EnvFilter::new("info")
    })
}

fn journald_layer() -> Option<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    let p = |l: &Level| match priority_of(l) {
        3 => Priority::Error,
        4 => Priority::Warning,
        6 => Priority::Informational,
        _ => Priority::Debug,
    };
    let mappings = PriorityMappings {
        error: p(&Level::ERROR),
        warn: p(&Level::WARN),
        info: p(&Level::INFO),
        debug: p(&Level::DEBUG),
        trace: p(&Level::TRACE),
    };
    tracing_journald::Layer::new().ok().map(|l| {
        // No `F` prefix: the fields are SERVICE, REAL, INSTANCE... (none of ours is named like
        // a journal field such as PRIORITY or MESSAGE).
        l.with_field_prefix(None)
            .with_priority_mappings(mappings)
            .with_syslog_identifier("xlb".into())
    })
}

/// sd-daemon(3) priority prefix in front of the usual line (journald strips and applies it).
struct SdPrefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for SdPrefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority_of(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the global subscriber for `format` (once; later calls do nothing). Returns the sink.
pub fn init(format: LogFormat) -> Sink {
    use tracing_subscriber::{
        fmt as tfmt, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let under_journal =
        is_journal_stream(std::env::var("JOURNAL_STREAM").ok().as_deref(), stderr_id());
    let journal = if under_journal && format == LogFormat::Text {
        journald_layer()
    } else {
        None
    };
    let sink = choose(format, under_journal, journal.is_some());
    let registry = tracing_subscriber::registry().with(env_filter());
    let _ = match sink {
        Sink::Journal => registry.with(journal).try_init(),
        Sink::JournalStream => registry
            .with(
                tfmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .event_format(SdPrefixed(
                        tfmt::format()
                            .without_time()
                            .with_target(false)
                            .with_level(false),
                    )),
            )
            .try_init(),
        Sink::Text => registry
            .with(
                tfmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_target(false),
            )
            .try_init(),
        Sink::Json => registry
            .with(
                tfmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
    };
    sink
}

/// Lets through the first `burst` events of a kind, then one per `every`, and says how many
/// were held back (for log lines an attacker or a misconfigured peer can trigger per packet).
#[derive(Clone, Debug)]
pub struct RateLimit {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// At most one line per `every`.
    pub fn new(every: std::time::Duration) -> Self {
        RateLimit {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)`: log now, `n` events were suppressed since the last line; `None`: stay quiet.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority_of(&Level::ERROR), 3);
        assert_eq!(priority_of(&Level::WARN), 4);
        assert_eq!(priority_of(&Level::INFO), 6);
        assert_eq!(priority_of(&Level::DEBUG), 7);
        assert_eq!(priority_of(&Level::TRACE), 7);
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(is_journal_stream(Some("8:12345"), Some((8, 12345))));
        assert!(!is_journal_stream(Some("8:12345"), Some((8, 999))));
        assert!(!is_journal_stream(Some("garbage"), Some((8, 12345))));
        assert!(!is_journal_stream(None, Some((8, 12345))));
        assert_eq!(choose(LogFormat::Text, true, true), Sink::Journal);
        assert_eq!(choose(LogFormat::Text, true, false), Sink::JournalStream);
        assert_eq!(choose(LogFormat::Text, false, true), Sink::Text);
        assert_eq!(choose(LogFormat::Json, true, true), Sink::Json);
    }

    #[test]
    fn xlb_log_wins_over_rust_log() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(filter_directives(s("debug"), s("warn")), "debug");
        assert_eq!(filter_directives(None, s("warn")), "warn");
        assert_eq!(filter_directives(s(" "), s("warn")), "warn");
        assert_eq!(filter_directives(None, None), "info");
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(11)), Some(2));
    }
}
