//! Why the daemon could not start, and why a reload did not (fully) take effect.
use std::path::PathBuf;

use crate::{
    config::ConfigErrors,
    control,
    dataplane::{loader, maps::MapsError, writer::WriteError},
    net,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {} error(s); not starting", .path.display(), .errors.len())]
    Config { path: PathBuf, errors: ConfigErrors },
    #[error("starting the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0} is not on a bpf filesystem; mount one (mount -t bpf bpf DIR)")]
    NoBpffs(PathBuf),
    #[error("mount -t bpf bpf /sys/fs/bpf: {0}")]
    MountBpffs(std::io::Error),
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("adopting the pinned maps: {0}")]
    Adopt(WriteError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Attach(#[from] loader::AttachError),
    #[error("detaching the XDP program from {0} to re-attach it in the configured mode: {1}")]
    Detach(String, std::io::Error),
    #[error("cannot attach to {0}: no XDP mode to try")]
    NoMode(String),
    #[error("starting VRRP: {0}")]
    Vrrp(crate::vrrp::VrrpError),
    #[error(transparent)]
    Control(#[from] control::ServerError),
    #[error("starting connection sync: {0}")]
    Sync(#[from] crate::sync::task::SyncError),
    #[error("installing a signal handler: {0}")]
    Signal(std::io::Error),
}

/// Why a reload did not (fully) take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file has errors: nothing of it was applied.
    #[error("{0}")]
    Rejected(ConfigErrors),
    /// The file is valid but part of it could not be applied.
    #[error("{0}")]
    Apply(String),
}

impl ReloadError {
    /// The file is in force, but not all of it could be applied.
    pub fn is_partial(&self) -> bool {
        matches!(self, ReloadError::Apply(_))
    }

    /// One line per error, as the control protocol carries them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Rejected(errors) => errors.iter().map(|e| e.to_string()).collect(),
            ReloadError::Apply(e) => vec![e.clone()],
        }
    }
}
