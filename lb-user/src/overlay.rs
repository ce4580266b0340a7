//! Operator changes on top of the configuration file, made at run time (`xlb real drain`,
//! `xlb ipvsadm -e ... -w 0`): a real server drained, given another weight or disabled. They are
//! kept in a state file so they survive reloads and restarts, until cleared. Pure except for
//! [`Overlay::load`] and [`Overlay::save`].
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// File name of the overlay under `global.state_dir`.
pub const FILE_NAME: &str = "overlay.json";

/// What the operator set for one real server of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "weight")]
pub enum RealOverride {
    /// Weight 0: no new flows, established ones stay (ipvsadm `-w 0`).
    Drain,
    /// This weight instead of the configured one (health checks still take it out when down).
    Weight(u32),
    /// Out of service as if its checks failed: its flows are dispatched afresh.
    Disable,
}

impl fmt::Display for RealOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RealOverride::Drain => f.write_str("drained by operator"),
            RealOverride::Weight(w) => write!(f, "weight {w} set by operator"),
            RealOverride::Disable => f.write_str("disabled by operator"),
        }
    }
}

/// A real server of a service, as the overlay names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RealRef {
    /// The service's name (`name`, else `vip:port/proto`).
    pub service: String,
    pub real: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("no virtual server {0} in the configuration (see `xlb status`)")]
    UnknownService(String),
    #[error("virtual server {service} has no real server {real}")]
    UnknownReal { service: String, real: String },
    #[error("{} names several virtual servers ({}); give the protocol (tcp/udp) or the name", .given, .candidates.join(", "))]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error("state file {}: {reason}", .path.display())]
    File { path: PathBuf, reason: String },
}

/// Every override in force, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    #[serde(default)]
    entries: BTreeMap<String, BTreeMap<SocketAddr, RealOverride>>,
}

/// One listed override; `configured` is false when the configuration no longer has it (it
/// applies again if the real server comes back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideEntry {
    pub service: String,
    pub real: SocketAddr,
    #[serde(flatten)]
    pub what: RealOverride,
    pub configured: bool,
}

impl Overlay {
    pub fn get(&self, service: &str, real: SocketAddr) -> Option<RealOverride> {
        self.entries.get(service)?.get(&real).copied()
    }

    pub fn set(&mut self, r: &RealRef, what: RealOverride) {
        self.entries
            .entry(r.service.clone())
            .or_default()
            .insert(r.real, what);
    }

    /// Removes the override of `r`; whether there was one.
    pub fn clear(&mut self, r: &RealRef) -> bool {
        let Some(reals) = self.entries.get_mut(&r.service) else {
            return false;
        };
        let had = reals.remove(&r.real).is_some();
        if reals.is_empty() {
            self.entries.remove(&r.service);
        }
        had
    }

    /// Removes every override; how many there were.
    pub fn clear_all(&mut self) -> usize {
        let n = self.entries.values().map(BTreeMap::len).sum();
        self.entries.clear();
        n
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn list(&self, cfg: &Config) -> Vec<OverrideEntry> {
        let configured = |service: &str, real: SocketAddr| {
            cfg.virtual_server(service)
                .is_some_and(|vs| vs.real_servers.iter().any(|r| r.socket_addr() == real))
        };
        self.entries
            .iter()
            .flat_map(|(service, reals)| {
                reals.iter().map(move |(real, what)| OverrideEntry {
                    service: service.clone(),
                    real: *real,
                    what: *what,
                    configured: configured(service, *real),
                })
            })
            .collect()
    }

    /// The overlay in `dir`; none when the file does not exist.
    pub fn load(dir: &Path) -> Result<Overlay, OverlayError> {
        let path = dir.join(FILE_NAME);
        let file_error = |reason: String| OverlayError::File {
            path: path.clone(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| file_error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overlay::default()),
            Err(e) => Err(file_error(e.to_string())),
        }
    }

    /// Writes the overlay to `dir` atomically (a crash leaves the old or the new file).
    pub fn save(&self, dir: &Path) -> Result<(), OverlayError> {
        let path = dir.join(FILE_NAME);
        let file_error = |e: std::io::Error| OverlayError::File {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(file_error)?;
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| OverlayError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text + "\n").map_err(file_error)?;
        std::fs::rename(&tmp, &path).map_err(file_error)
    }
}

/// Finds the real server an operator named: the service by name or by `VIP:PORT` (with an
/// optional protocol, as ipvsadm's `-t`/`-u`), the real server by `IP` or `IP:PORT` (the port
/// defaults to the service's real-server port when the service has one real server at that IP).
pub fn resolve(
    cfg: &Config,
    service: &str,
    protocol: Option<crate::config::Protocol>,
    real: &str,
) -> Result<RealRef, OverlayError> {
    let vs = find_service(cfg, service, protocol)?;
    let unknown = || OverlayError::UnknownReal {
        service: vs.name.clone(),
        real: real.to_string(),
    };
    let found = if let Ok(sock) = real.parse::<SocketAddr>() {
        vs.real_servers.iter().find(|r| r.socket_addr() == sock)
    } else {
        let ip: std::net::IpAddr = real.parse().map_err(|_| unknown())?;
        let mut at_ip = vs.real_servers.iter().filter(|r| r.address == ip);
        match (at_ip.next(), at_ip.next()) {
            (Some(r), None) => Some(r),
            (Some(_), Some(_)) => {
                return Err(OverlayError::Ambiguous {
                    given: real.to_string(),
                    candidates: vs
                        .real_servers
                        .iter()
                        .filter(|r| r.address == ip)
                        .map(|r| r.socket_addr().to_string())
                        .collect(),
                })
            }
            _ => None,
        }
    };
    let r = found.ok_or_else(unknown)?;
    Ok(RealRef {
        service: vs.name.clone(),
        real: r.socket_addr(),
    })
}

pub fn find_service<'a>(
    cfg: &'a Config,
    given: &str,
    protocol: Option<crate::config::Protocol>,
) -> Result<&'a crate::config::VirtualServer, OverlayError> {
    if let Some(vs) = cfg.virtual_server(given) {
        return Ok(vs);
    }
    let addr: SocketAddr = given
        .parse()
        .map_err(|_| OverlayError::UnknownService(given.to_string()))?;
    let matching: Vec<_> = cfg
        .virtual_servers
        .iter()
        .filter(|vs| vs.vip == addr.ip() && vs.port == addr.port())
        .filter(|vs| protocol.is_none_or(|p| vs.protocol == p))
        .collect();
    match matching.as_slice() {
        [vs] => Ok(vs),
        [] => Err(OverlayError::UnknownService(given.to_string())),
        many => Err(OverlayError::Ambiguous {
            given: given.to_string(),
            candidates: many.iter().map(|vs| vs.name.clone()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Protocol};

    /// "web" with two real servers, and a UDP service on the same VIP:port.
    fn cfg() -> Config {
        config::testing::web(
            r#"
[[virtual_server.real_server]]
address = "198.18.0.11"
[[virtual_server.real_server]]
address = "198.18.0.12"
[[virtual_server]]
vip = "198.18.0.100"
port = 80
protocol = "udp"
[[virtual_server.real_server]]
address = "198.18.0.11"
"#,
        )
    }

    #[test]
    fn names_resolve_like_ipvsadm_and_mistakes_are_refused() {
        let c = cfg();
        let r = resolve(&c, "web", None, "198.18.0.11").unwrap();
        assert_eq!(r.real, "198.18.0.11:80".parse().unwrap());
        let r = resolve(&c, "198.18.0.100:80", Some(Protocol::Tcp), "198.18.0.12:80").unwrap();
        assert_eq!(r.service, "web");
        let udp = resolve(&c, "198.18.0.100:80", Some(Protocol::Udp), "198.18.0.11").unwrap();
        assert_eq!(udp.service, "198.18.0.100:80/udp");
        let e = resolve(&c, "198.18.0.100:80", None, "198.18.0.11").unwrap_err();
        assert!(matches!(e, OverlayError::Ambiguous { .. }), "{e}");
        let e = resolve(&c, "web", None, "198.18.0.12:81").unwrap_err();
        assert!(matches!(e, OverlayError::UnknownReal { .. }), "{e}");
        let e = resolve(&c, "198.18.0.200:80", None, "198.18.0.11").unwrap_err();
        assert!(matches!(e, OverlayError::UnknownService(_)), "{e}");
        let e = resolve(&c, "web", None, "198.18.0.99").unwrap_err();
        assert!(matches!(e, OverlayError::UnknownReal { .. }), "{e}");
    }

    #[test]
    fn set_clear_list_and_persist() {
        let c = cfg();
        let mut o = Overlay::default();
        let r = resolve(&c, "web", None, "198.18.0.11").unwrap();
        o.set(&r, RealOverride::Drain);
        o.set(&r, RealOverride::Weight(3));
        assert_eq!(o.get("web", r.real), Some(RealOverride::Weight(3)));
        let gone = RealRef {
            service: "old".into(),
            real: "198.18.0.50:80".parse().unwrap(),
        };
        o.set(&gone, RealOverride::Disable);
        let listed = o.list(&c);
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|e| e.service == "old" && !e.configured));
        assert!(listed.iter().any(|e| e.service == "web" && e.configured));

        let dir = std::env::temp_dir().join(format!("xlb-overlay-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            Overlay::load(&dir).unwrap(),
            Overlay::default(),
            "no file yet"
        );
        o.save(&dir).unwrap();
        assert_eq!(Overlay::load(&dir).unwrap(), o);
        assert!(o.clear(&gone));
        assert!(!o.clear(&gone));
        assert_eq!(o.clear_all(), 1);
        assert!(o.is_empty());
        std::fs::write(dir.join(FILE_NAME), "{not json").unwrap();
        assert!(matches!(
            Overlay::load(&dir),
            Err(OverlayError::File { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
