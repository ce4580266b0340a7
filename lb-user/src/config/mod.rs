//! The TOML configuration of the daemon: schema, parsing with located errors, validation.
//!
//! ```text
//! load(path) = read + parse(src, path)
//! parse      = TOML syntax (all syntax errors; one for an unclosed array, one for a
//!              keepalived.conf) -> each section / array element deserialized on its own (all of
//!              their errors: every unknown key, bad types, bad values) -> if none, semantic
//!              validation (all of its errors, and the warnings)
//! ```
//! Every error carries `file:line:column` (1-based); see [`ConfigError`]. Only reading the file is
//! IO. The file format is [`schema`] (values with their source positions, serialized by the
//! keepalived importer as the operator would write them); what the rest of xlb uses is the plain
//! [`Config`] of [`model`], built once from a validated schema with every context-dependent
//! default resolved. Spans never leave this module.

mod error;
pub mod model;
pub mod schema;
mod syntax;
pub mod types;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use model::*;

use error::{unknown_key_message, Collector};

/// Configurations written for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// `[global]` on eth0 and the head of the virtual server "web" at 198.18.0.100:80; a test
    /// appends the service's keys and real servers.
    pub const WEB: &str = "[global]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"web\"\n\
                           vip = \"198.18.0.100\"\nport = 80\n";

    /// [`WEB`] followed by `rest`, parsed.
    pub fn web(rest: &str) -> super::Config {
        super::parse(&format!("{WEB}{rest}"), "t.toml").unwrap()
    }
}

/// Read, parse and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_schema(path).map(|s| Config::from_schema(&s))
}

/// [`load`], also returning the warnings: what is valid but most likely not meant, including
/// check and notify commands that are not on this host (looked up as `execvp` would).
pub fn load_checked(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigErrors> {
    let file = path.display().to_string();
    let src = read(path, &file)?;
    let (s, warnings) = parse_schema_checked(&src, &file, Some(&validate::command_problem))?;
    Ok((Config::from_schema(&s), warnings))
}

/// [`parse`], also returning the warnings that need no look at the host.
pub fn parse_checked(
    src: &str,
    file_name: &str,
) -> Result<(Config, Vec<ConfigWarning>), ConfigErrors> {
    let (s, warnings) = parse_schema_checked(src, file_name, None)?;
    Ok((Config::from_schema(&s), warnings))
}

fn read(path: &Path, file: &str) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the configuration: {e}"),
        }])
    })
}

/// Parse and validate a configuration held in memory; `file_name` is used in error locations.
pub fn parse(src: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    parse_schema(src, file_name).map(|s| Config::from_schema(&s))
}

/// [`load`], keeping the file's form (spans, defaults unresolved).
pub fn load_schema(path: &Path) -> Result<schema::Config, ConfigErrors> {
    let file = path.display().to_string();
    parse_schema(&read(path, &file)?, &file)
}

/// [`parse`], keeping the file's form (spans, defaults unresolved).
pub fn parse_schema(src: &str, file_name: &str) -> Result<schema::Config, ConfigErrors> {
    parse_schema_checked(src, file_name, None).map(|(s, _)| s)
}

/// What is wrong with running a command on this host (`None`: nothing); given a command line.
type CommandLookup<'a> = &'a dyn Fn(&[String], bool) -> Option<String>;

/// [`parse_schema`] with the warnings; `commands` looks check and notify commands up on the host.
fn parse_schema_checked(
    src: &str,
    file_name: &str,
    commands: Option<CommandLookup<'_>>,
) -> Result<(schema::Config, Vec<ConfigWarning>), ConfigErrors> {
    let mut c = Collector::new(file_name, src);
    let (root, syntax_errors) = DeTable::parse_recoverable(src);
    if !syntax_errors.is_empty() {
        syntax::report(&mut c, &syntax_errors);
        return Err(c.finish().unwrap_err());
    }

    let mut global = None;
    let mut global_seen = false;
    let mut timeouts = None;
    let mut virtual_servers = Vec::new();
    let mut vrrp_instances = Vec::new();
    let mut vrrp_sync_groups = Vec::new();
    let mut trackers = Trackers::default();
    let mut sync = None;
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "global" => {
                global_seen = true;
                global = de(&mut c, value, "[global]");
            }
            "timeouts" => timeouts = de(&mut c, value, "[timeouts]"),
            "virtual_server" => {
                for item in elements(&mut c, value, "virtual_server") {
                    if let Some(vs) = de_virtual_server(&mut c, item) {
                        virtual_servers.push(vs);
                    }
                }
            }
            "vrrp_instance" => {
                for item in elements(&mut c, value, "vrrp_instance") {
                    vrrp_instances.extend(de(&mut c, item, "[[vrrp_instance]]"));
                }
            }
            "vrrp_sync_group" => {
                for item in elements(&mut c, value, "vrrp_sync_group") {
                    vrrp_sync_groups.extend(de(&mut c, item, "[[vrrp_sync_group]]"));
                }
            }
            "vrrp_script" => {
                for item in elements(&mut c, value, "vrrp_script") {
                    trackers.scripts.extend(de(&mut c, item, "[[vrrp_script]]"));
                }
            }
            "vrrp_track_process" => {
                for item in elements(&mut c, value, "vrrp_track_process") {
                    trackers
                        .processes
                        .extend(de(&mut c, item, "[[vrrp_track_process]]"));
                }
            }
            "vrrp_track_file" => {
                for item in elements(&mut c, value, "vrrp_track_file") {
                    trackers
                        .files
                        .extend(de(&mut c, item, "[[vrrp_track_file]]"));
                }
            }
            "sync" => sync = de(&mut c, value, "[sync]"),
            other => {
                let expected = TOP_LEVEL.map(String::from);
                c.at(
                    key.span(),
                    unknown_key_message(other, "the top level", &expected),
                );
            }
        }
    }
    if !global_seen {
        c.at(
            0..0,
            "missing [global] table: at least `interfaces = [\"eth0\"]` is required",
        );
    }
    let config = match global {
        Some(global) if !c.has_errors() => schema::Config {
            global,
            timeouts: timeouts.unwrap_or_default(),
            virtual_servers,
            vrrp_instances,
            vrrp_sync_groups,
            vrrp_scripts: trackers.scripts,
            vrrp_track_processes: trackers.processes,
            vrrp_track_files: trackers.files,
            sync,
        },
        // Semantic checks on a partial tree would report follow-on errors (a reference to a
        // virtual server that failed to parse, ...): report the structural errors first.
        _ => return Err(c.finish().unwrap_err()),
    };
    validate::validate(&config, &mut c);
    validate::warnings(&config, commands, &mut c);
    let warnings = c.take_warnings();
    c.finish().map(|()| (config, warnings))
}

const TOP_LEVEL: [&str; 9] = [
    "global",
    "timeouts",
    "virtual_server",
    "vrrp_instance",
    "vrrp_sync_group",
    "vrrp_script",
    "vrrp_track_process",
    "vrrp_track_file",
    "sync",
];

/// The tracked objects of the top level, as parsed.
#[derive(Default)]
struct Trackers {
    scripts: Vec<schema::VrrpScript>,
    processes: Vec<schema::VrrpTrackProcess>,
    files: Vec<schema::VrrpTrackFile>,
}

/// Deserialize one value, recording its error. serde stops at the first unknown key: each one
/// is recorded, taken out and the value deserialized again, so all of them are reported at once.
fn de<'i, T: Deserialize<'i>>(
    c: &mut Collector<'_>,
    mut value: Spanned<DeValue<'i>>,
    context: &str,
) -> Option<T> {
    loop {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => return Some(v),
            Err(e) => {
                c.toml(&e, context);
                let unknown_key = e.message().starts_with("unknown field `");
                let at = e.span().map(|s| s.start);
                if !(unknown_key && at.is_some_and(|at| remove_key_at(value.get_mut(), at))) {
                    return None;
                }
            }
        }
    }
}

/// Removes the key that starts at byte `at` from the table it is in, anywhere in `value`.
fn remove_key_at(value: &mut DeValue<'_>, at: usize) -> bool {
    match value {
        DeValue::Table(t) => {
            let hit = t.keys().find(|k| k.span().start == at).cloned();
            if let Some(key) = hit {
                return t.remove(&key).is_some();
            }
            t.iter_mut().any(|(_, v)| remove_key_at(v.get_mut(), at))
        }
        DeValue::Array(a) => a.iter_mut().any(|v| remove_key_at(v.get_mut(), at)),
        _ => false,
    }
}

/// The elements of an array of tables (`[[name]]`), or an error if it is something else.
fn elements<'i>(
    c: &mut Collector<'_>,
    value: Spanned<DeValue<'i>>,
    name: &str,
) -> Vec<Spanned<DeValue<'i>>> {
    let span = value.span();
    // Moved out, not cloned: a copy of every element was a deep copy of the whole tree (1,000
    // virtual servers with their real servers).
    match value.into_inner() {
        DeValue::Array(a) => a.into_iter().collect(),
        other => {
            c.at(
                span,
                format!(
                    "`{name}` must be an array of tables (write `[[{name}]]`), found a {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

/// A virtual server and each of its real servers are deserialized separately, so that an error
/// in one real server does not hide the errors of the others.
fn de_virtual_server(
    c: &mut Collector<'_>,
    item: Spanned<DeValue<'_>>,
) -> Option<schema::VirtualServer> {
    let span = item.span();
    let (vs_value, reals) = match item.into_inner() {
        DeValue::Table(mut t) => {
            let reals = t.remove("real_server");
            (Spanned::new(span, DeValue::Table(t)), reals)
        }
        other => (Spanned::new(span, other), None),
    };
    let vs: Option<schema::VirtualServer> = de(c, vs_value, "[[virtual_server]]");
    let mut real_servers = Vec::new();
    for r in reals
        .map(|r| elements(c, r, "virtual_server.real_server"))
        .unwrap_or_default()
    {
        real_servers.extend(de::<schema::RealServer>(
            c,
            r,
            "[[virtual_server.real_server]]",
        ));
    }
    vs.map(|vs| schema::VirtualServer { real_servers, ..vs })
}

impl schema::VirtualServer {
    /// The name used by `track_service`, the CLI and logs: `name`, else `"vip:port/proto"`.
    pub fn service_name(&self) -> String {
        match &self.name {
            Some(n) => n.get_ref().clone(),
            None => default_service_name(*self.vip.get_ref(), *self.port.get_ref(), self.protocol),
        }
    }

    /// The check that applies to `rs`: its own, else this virtual server's; `None` when there is
    /// none or it is `type = "none"` (the server is then always up).
    pub fn check_of<'a>(&'a self, rs: &'a schema::RealServer) -> Option<&'a schema::Check> {
        rs.check
            .as_ref()
            .or(self.check.as_ref())
            .filter(|c| *c.kind.get_ref() != CheckType::None)
    }
}

/// `"192.168.2.212:80/tcp"`, `"[2001:db8::1]:80/tcp"`.
pub fn default_service_name(vip: IpAddr, port: u16, protocol: Protocol) -> String {
    format!("{}/{protocol}", SocketAddr::new(vip, port))
}

impl schema::RealServer {
    /// `port`, else the virtual server's port.
    pub fn effective_port(&self, vs: &schema::VirtualServer) -> u16 {
        self.port
            .as_ref()
            .map_or(*vs.port.get_ref(), |p| *p.get_ref())
    }
}

impl schema::Check {
    /// Seconds between checks: `interval`, else the virtual server's `delay_loop`.
    pub fn effective_interval(&self, vs: &schema::VirtualServer) -> f64 {
        self.interval
            .as_ref()
            .map_or(*vs.delay_loop.get_ref(), |i| *i.get_ref())
    }

    /// `retry`, else 1 (0 for scripts).
    pub fn effective_retry(&self) -> u32 {
        self.retry
            .unwrap_or(if *self.kind.get_ref() == CheckType::Script {
                0
            } else {
                1
            })
    }

    /// `delay_before_retry`, else 1.0 (3.0 for http/https).
    pub fn effective_delay_before_retry(&self) -> f64 {
        match &self.delay_before_retry {
            Some(d) => *d.get_ref(),
            None if matches!(self.kind.get_ref(), CheckType::Http | CheckType::Https) => 3.0,
            None => 1.0,
        }
    }

    /// Address and port probed for `rs` of `vs`: `connect_ip`/`connect_port` override the real
    /// server's address and port. Validation guarantees a non-zero port for tcp/http/https.
    pub fn probe_addr(&self, vs: &schema::VirtualServer, rs: &schema::RealServer) -> SocketAddr {
        let ip = self
            .connect_ip
            .as_ref()
            .map_or(*rs.address.get_ref(), |a| *a.get_ref());
        let port = self
            .connect_port
            .as_ref()
            .map_or_else(|| rs.effective_port(vs), |p| *p.get_ref());
        SocketAddr::new(ip, port)
    }
}

impl schema::Config {
    /// The VRRP instance whose `virtual_ipaddress` lists `vip`.
    pub fn vrrp_instance_for(&self, vip: IpAddr) -> Option<&schema::VrrpInstance> {
        self.vrrp_instances.iter().find(|i| {
            i.virtual_ipaddress
                .get_ref()
                .iter()
                .any(|p| p.get_ref().addr == vip)
        })
    }

    /// How `vs`'s VIP is claimed: `announce`, else `vrrp` when a VRRP instance lists the VIP, else
    /// `always`.
    pub fn announce_of(&self, vs: &schema::VirtualServer) -> Announce {
        match &vs.announce {
            Some(a) => *a.get_ref(),
            None if self.vrrp_instance_for(*vs.vip.get_ref()).is_some() => Announce::Vrrp,
            None => Announce::Always,
        }
    }
}
