//! `notify_master` / `notify_backup` / `notify_fault`: run the program (no shell) with
//! keepalived's arguments appended (`INSTANCE <name> <state> <priority>`), in the background,
//! killed after a timeout. Never blocks the state machine.

use std::time::Duration;

/// How long a notify program may run.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `argv` + `INSTANCE name state priority` as a background task; its handle ends when
/// the program has (or has been killed at the timeout).
pub fn spawn(
    argv: &[String],
    instance: &str,
    state: &str,
    priority: u8,
) -> Option<tokio::task::JoinHandle<()>> {
    let (prog, args) = argv.split_first()?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .args(["INSTANCE", instance, state, &priority.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("{prog} ({instance} {state})");
    match cmd.spawn() {
        Ok(mut child) => Some(tokio::spawn(async move {
            match tokio::time::timeout(NOTIFY_TIMEOUT, child.wait()).await {
                Ok(Ok(st)) if st.success() => tracing::debug!("notify {what} done"),
                Ok(Ok(st)) => tracing::warn!("notify {what} exited with {st}"),
                Ok(Err(e)) => tracing::warn!("notify {what}: {e}"),
                Err(_) => {
                    tracing::warn!("notify {what} timed out after {NOTIFY_TIMEOUT:?}: killed");
                    let _ = child.kill().await;
                }
            }
        })),
        Err(e) => {
            tracing::warn!("notify {what}: cannot start: {e}");
            None
        }
    }
}
