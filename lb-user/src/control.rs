//! The control socket: one JSON request per line, one JSON response per line. Root only (the
//! socket is 0600 and the peer's uid is checked).
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

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
    Stop {
        #[serde(default)]
        detach: bool,
    },
}

fn default_limit() -> usize {
    10_000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Box<StatusReport>),
    Conns { entries: Vec<ConnEntry>, total: u64 },
    Reloaded { summary: String },
    ReloadFailed { errors: Vec<String> },
    Stopping,
    Error { message: String },
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

/// Parses a request line; garbage gets a clear error, never a panic.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))
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
