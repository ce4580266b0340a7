//! Writing results to stdout without panicking when the reader has gone (`xlb conns | head`):
//! `print!` panics on a broken pipe; here it becomes [`StdoutClosed`], which `main` turns into a
//! quiet exit, as `cat` and `ls` end when their reader stops reading.
use std::io::{ErrorKind, Write as _};

/// Stdout was closed by its reader (EPIPE): nothing more can be shown, and that is not an error.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed by its reader")]
pub struct StdoutClosed;

/// Writes `text` to stdout and flushes it.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// [`emit`] with a newline.
pub fn emit_line(text: &str) -> anyhow::Result<()> {
    emit(&format!("{text}\n"))
}

/// Whether `err` (from a subcommand) only says that stdout went away.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<StdoutClosed>())
}
