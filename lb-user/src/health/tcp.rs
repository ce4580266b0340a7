//! `tcp` check (keepalived `TCP_CHECK`): the server accepts a TCP connection.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{Outcome, Probe};

/// Connects to `addr`; the timeout is applied by the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpProbe {
    /// Address probed.
    pub addr: SocketAddr,
}

impl Probe for TcpProbe {
    async fn probe(&self) -> Outcome {
        match TcpStream::connect(self.addr).await {
            Ok(_) => Outcome::up("connected"),
            Err(e) => Outcome::down(connect_reason(&e)),
        }
    }
}

/// Short reason of a failed connect: "refused", "timeout", "unreachable", else the error.
pub fn connect_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable".into(),
        _ => format!("connect error: {e}"),
    }
}
