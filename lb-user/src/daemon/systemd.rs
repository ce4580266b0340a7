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
