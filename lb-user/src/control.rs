//! The control socket: one JSON request per line, one JSON response per line. Root only (the
//! socket is 0600 and the peer's uid is checked). The client side is [`request`]; the daemon side
//! is [`bind`] and [`serve`], which hand each request to the daemon's task as a [`Call`].
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{
        AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader as AsyncBufReader,
    },
    net::UnixListener,
    sync::{mpsc, oneshot},
};

use crate::status::{ConnEntry, StatusReport};

/// Longest request line accepted (anything longer is garbage).
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Conns {
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        real: Option<IpAddr>,
        #[serde(default)]
        client: Option<IpAddr>,
        #[serde(default = "default_limit")]
        limit: usize,
    },
    Reload,
    /// Set (or with `set: None` clear) the operator's override of one real server.
    Real {
        service: String,
        #[serde(default)]
        protocol: Option<crate::config::Protocol>,
        real: String,
        #[serde(default)]
        set: Option<crate::overlay::RealOverride>,
    },
    /// List the operator's overrides.
    Overrides,
    /// Clear every override.
    ClearOverrides,
    /// Zero the traffic counters of one service (and its real servers), or of all.
    Zero {
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        protocol: Option<crate::config::Protocol>,
    },
    Stop {
        #[serde(default)]
        detach: bool,
        /// A restart follows: keep the VRRP role (no priority-0 resign), the VIPs and the
        /// pinned forwarding state for the next daemon to adopt.
        #[serde(default)]
        keep_role: bool,
    },
}

fn default_limit() -> usize {
    10_000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Box<StatusReport>),
    Conns {
        entries: Vec<ConnEntry>,
        total: u64,
    },
    Reloaded {
        summary: String,
    },
    /// A run-time change was made.
    Done {
        summary: String,
    },
    Overrides {
        entries: Vec<crate::overlay::OverrideEntry>,
    },
    ReloadFailed {
        errors: Vec<String>,
        /// The file was valid and is in force, except for what `errors` says could not be
        /// applied (false: the file was rejected and the running configuration stays).
        #[serde(default)]
        partial: bool,
    },
    /// The daemon is exiting; `pid` lets the client wait for the exit.
    Stopping {
        #[serde(default)]
        pid: u32,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {path}: {source} (is `xlb run` running? are you root?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad answer from the daemon: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request and waits for the answer.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    // The daemon may answer and close without reading the request (it refuses a non-root peer
    // that way): its answer is still readable and says more than the broken pipe.
    let written = stream.write_all(line.as_bytes());
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let read = reader.read_line(&mut answer);
    if answer.is_empty() {
        written?;
        read?;
    }
    Ok(serde_json::from_str(&answer)?)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another xlb daemon answers on {0}")]
    InUse(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// A request on its way to the daemon's task, with the way back.
pub type Call = (Request, oneshot::Sender<Response>);

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the control socket at `path` (0600), replacing a socket a killed daemon left.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let io = |what, source| ServerError::Io {
        what,
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("binding", e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("setting the mode of", e))?;
    Ok(listener)
}

/// Accepts clients forever; each connection is served on its own task.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(stream, calls.clone()));
    }
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// Reads one request, has the daemon answer it, writes the answer.
async fn answer(stream: tokio::net::UnixStream, calls: mpsc::Sender<Call>) {
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let (read, mut write) = stream.into_split();
    let resp = if uid != 0 {
        error("the control socket is for root only")
    } else {
        let mut reader = AsyncBufReader::new(read.take(MAX_REQUEST as u64 + 1));
        let mut line = String::new();
        match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
            Ok(Ok(_)) => match parse_request(&line) {
                Ok(req) => call(&calls, req).await,
                Err(e) => error(e.to_string()),
            },
            Ok(Err(e)) => error(format!("bad request: {e}")),
            Err(_) => error("request timed out"),
        }
    };
    if let Ok(mut s) = serde_json::to_string(&resp) {
        s.push('\n');
        let _ = write.write_all(s.as_bytes()).await;
    }
}

/// Hands `req` to the daemon's task and waits for its answer.
pub async fn call(calls: &mpsc::Sender<Call>, req: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    if calls.send((req, tx)).await.is_err() {
        return error("daemon is stopping");
    }
    rx.await.unwrap_or_else(|_| error("daemon is stopping"))
}

/// Why a request line was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("bad request: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Parses a request line; garbage gets a clear error, never a panic.
pub fn parse_request(line: &str) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    Ok(serde_json::from_str(line.trim())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_rejected() {
        let r = Request::Conns {
            service: None,
            real: None,
            client: None,
            limit: 5,
        };
        assert_eq!(
            parse_request(&serde_json::to_string(&r).unwrap()).unwrap(),
            r
        );
        assert_eq!(
            parse_request(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
        assert!(parse_request("\x00\x01garbage").is_err());
        assert!(parse_request(r#"{"cmd":"format_disk"}"#).is_err());
        assert!(parse_request(&"x".repeat(MAX_REQUEST + 1)).is_err());
    }
}
