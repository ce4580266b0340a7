//! Why a check cannot run at all (its real server is then reported down with this reason).
use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("TLS server name `{name}`: {reason}")]
    ServerName { name: String, reason: String },
    #[error("body_regex: {0}")]
    BodyRegex(#[from] regex::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("ca_file {}: {reason}", .path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("script check without command")]
    NoCommand,
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("bad user name `{0}`")]
    BadUserName(String),
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    #[error("no check")]
    NoCheck,
}
