//! systemd's sd_notify protocol (Type=notify): one datagram to `$NOTIFY_SOCKET`. Small enough
//! not to need a crate.
use std::path::PathBuf;

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, ...) when running under systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(state.as_bytes(), PathBuf::from(path));
    }
}

/// How often to send `WATCHDOG=1` when the unit has `WatchdogSec=` (half the timeout, as
/// sd_watchdog_enabled(3) advises); `None` without a watchdog or when it is meant for another
/// process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}
