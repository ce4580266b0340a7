//! The keepalived statement tree -> [`Config`], with keepalived's meaning: its defaults
//! (`delay_loop` 60 s, HTTP status 200-299), its ranges (a value keepalived refuses is not
//! imported; one xlb cannot hold is clamped), and its fix-ups (nopreempt with state MASTER is
//! cleared) — each difference a note at the keepalived `file:line`. What xlb's validation
//! would refuse (a VIP in two instances, one server listed on two ports, ...) is resolved here,
//! so that the output validates and every problem points into the keepalived files.

mod check;
mod lvs;
mod sync_daemon;
mod track;
mod vrrp;

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use serde_spanned::Spanned;

use crate::config::schema::{
    unspanned, Config, Global, Timeouts, VirtualServer, VrrpInstance, VrrpScript, VrrpSyncGroup,
    VrrpTrackFile, VrrpTrackProcess, XdpMode,
};

use super::script::{self, ScriptError};
use super::tree::Node;
use super::{Loc, Note, Origins};

/// What was translated, for the closing summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `virtual_server` blocks (a group counts once).
    pub virtual_servers_seen: usize,
    /// Of those, translated into at least one xlb virtual server.
    pub virtual_servers_imported: usize,
    pub vrrp_instances_seen: usize,
    pub vrrp_instances_imported: usize,
}

impl Summary {
    /// There were virtual servers and none could be translated.
    pub fn every_virtual_server_dropped(&self) -> bool {
        self.virtual_servers_seen > 0 && self.virtual_servers_imported == 0
    }
}

/// The translation and its notes.
pub struct Output {
    pub config: Config,
    pub notes: Vec<Note>,
    pub summary: Summary,
    pub origins: Origins,
}

/// Translates the statement tree; `notes` holds those of the earlier steps.
pub fn translate(tree: &[Node], notes: Vec<Note>) -> Output {
    let mut t = Translator {
        notes,
        ..Translator::default()
    };
    // Groups may be defined after the virtual servers that use them.
    for n in tree.iter().filter(|n| n.key() == "virtual_server_group") {
        t.vs_group(n);
    }
    // keepalived applies the VRRP defaults of global_defs wherever the block is.
    for n in tree.iter().filter(|n| n.key() == "global_defs") {
        for c in n.children() {
            t.vrrp_default(c);
        }
    }
    for n in tree {
        t.top(n);
    }
    t.finish()
}

#[derive(Default)]
struct Translator {
    notes: Vec<Note>,
    router_id: Option<String>,
    /// `lvs_sync_daemon` as a `[sync]` section speaking IPVS's protocol.
    lvs_sync: Option<crate::config::schema::Sync>,
    default_version: Option<u8>,
    timeouts: Timeouts,
    vrrp: Vec<(Loc, VrrpInstance)>,
    sync_groups: Vec<VrrpSyncGroup>,
    scripts: Vec<VrrpScript>,
    processes: Vec<VrrpTrackProcess>,
    files: Vec<VrrpTrackFile>,
    /// `global_defs` defaults of the instances and scripts.
    vrrp_defaults: track::VrrpDefaults,
    vs: Vec<(Loc, VirtualServer)>,
    /// (vip, port, protocol) of `vs`.
    vs_keys: std::collections::HashSet<(std::net::IpAddr, u16, crate::config::schema::Protocol)>,
    /// `virtual_server_group` name -> its members (vip, port) and where it is.
    vs_groups: HashMap<String, (Loc, Vec<lvs::Member>)>,
    summary: Summary,
}

fn u<T>(v: T) -> Spanned<T> {
    unspanned(v)
}

impl Translator {
    fn note(&mut self, n: &Node, msg: impl Into<String>) {
        self.notes.push(Note::at(&n.loc, msg));
    }

    fn unknown(&mut self, n: &Node, ctx: &str) {
        let what = if n.block.is_some() { " block" } else { "" };
        self.note(
            n,
            format!(
                "`{}`{what} in {ctx}: no xlb equivalent, not imported",
                n.words.join(" ")
            ),
        );
    }

    /// Argument `i` of `n` as keepalived reads it: outside `keepalived` it is refused (not
    /// imported, as keepalived does); outside `xlb` it is clamped. Both with a note.
    fn bounded<T>(
        &mut self,
        n: &Node,
        i: usize,
        what: &str,
        keepalived: RangeInclusive<T>,
        xlb: RangeInclusive<T>,
    ) -> Option<T>
    where
        T: FromStr + PartialOrd + Copy + Display,
    {
        let v = self.val::<T>(n, i, what)?;
        if !keepalived.contains(&v) {
            self.note(
                n,
                format!(
                    "{what} {v}: keepalived refuses it (accepts {}..={}) and keeps its default; \
                     not imported",
                    keepalived.start(),
                    keepalived.end()
                ),
            );
            return None;
        }
        let clamped = if v < *xlb.start() {
            *xlb.start()
        } else if v > *xlb.end() {
            *xlb.end()
        } else {
            return Some(v);
        };
        self.note(
            n,
            format!(
                "{what} {v}: xlb accepts {}..={}; {clamped} written",
                xlb.start(),
                xlb.end()
            ),
        );
        Some(clamped)
    }

    /// Argument `i` parsed as `T`, or a note.
    fn val<T: FromStr>(&mut self, n: &Node, i: usize, what: &str) -> Option<T> {
        match n.arg(i).map(str::parse::<T>) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.note(
                    n,
                    format!("`{}`: invalid {what}, not imported", n.words.join(" ")),
                );
                None
            }
            None => {
                self.note(n, format!("`{}`: missing {what}, not imported", n.key()));
                None
            }
        }
    }

    /// A notify script as keepalived runs it (see [`script`]).
    fn command(&mut self, n: &Node, ctx: &str) -> Option<Spanned<Vec<String>>> {
        let s = match script::parse_line(&n.text, true) {
            Ok(s) => s,
            Err(e) => {
                self.script_error(n, ctx, &e);
                return None;
            }
        };
        if let Some(user) = &s.user {
            self.note(
                n,
                format!(
                    "{ctx}: keepalived runs it as user `{user}` (the word after the quoted \
                     command); xlb runs notify programs as its own user"
                ),
            );
        }
        if !s.ignored.is_empty() {
            self.note(
                n,
                format!(
                    "{ctx}: `{}` ignored, as keepalived does",
                    s.ignored.join(" ")
                ),
            );
        }
        match script::exec_form(&s.argv) {
            script::Exec::Direct(argv) => Some(u(argv)),
            script::Exec::Shell(text) => Some(u(vec!["/bin/sh".into(), "-c".into(), text])),
        }
    }

    fn script_error(&mut self, n: &Node, ctx: &str, e: &ScriptError) {
        self.note(
            n,
            format!(
                "{ctx} `{}`: {e}; keepalived refuses it too, not imported",
                n.args()
            ),
        );
    }

    fn top(&mut self, n: &Node) {
        match n.key() {
            "global_defs" => {
                for c in n.children() {
                    self.global(c);
                }
            }
            "vrrp_instance" => self.vrrp_instance(n),
            "vrrp_sync_group" => self.sync_group(n),
            "virtual_server" => self.virtual_server(n),
            "virtual_server_group" => {}
            "vrrp_script" => self.vrrp_script(n),
            "vrrp_track_process" => self.track_process_def(n),
            "track_file" | "vrrp_track_file" => self.track_file_def(n),
            _ => self.unknown(n, "the top level"),
        }
    }

    fn global(&mut self, n: &Node) {
        match n.key() {
            "router_id" | "lvs_id" => self.router_id = n.arg(1).map(String::from),
            "vrrp_version" => {
                self.default_version = self.bounded(n, 1, "vrrp_version", 2..=3, 2..=3)
            }
            "lvs_timeouts" => self.lvs_timeouts(n),
            "vrrp_garp_master_delay"
            | "vrrp_garp_master_repeat"
            | "vrrp_garp_master_refresh"
            | "vrrp_garp_master_refresh_repeat"
            | "vrrp_garp_interval"
            | "vrrp_gna_interval"
            | "script_user" => {} // read first, by `track::vrrp_default`
            "lvs_sync_daemon" => self.lvs_sync = sync_daemon::translate(n, &mut self.notes),
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_connect_timeout"
            | "smtp_alert" => self.note(
                n,
                format!(
                    "global_defs {}: xlb sends no mail; use notify_* programs",
                    n.key()
                ),
            ),
            _ => self.unknown(n, "global_defs"),
        }
    }

    /// `lvs_timeouts tcp N tcpfin N udp N` -> `[timeouts]`.
    fn lvs_timeouts(&mut self, n: &Node) {
        let mut k = 1;
        while k < n.words.len() {
            let key = n.words[k].clone();
            if !matches!(key.as_str(), "tcp" | "tcpfin" | "udp") {
                self.note(
                    n,
                    format!("lvs_timeouts option `{key}` unknown to keepalived: ignored"),
                );
                k += 1;
                continue;
            }
            let what = format!("lvs_timeouts {key}");
            match self.bounded::<u32>(n, k + 1, &what, 0..=2_678_400, 0..=2_592_000) {
                Some(0) => self.note(
                    n,
                    format!("{what} 0 leaves the kernel's value: xlb's default kept"),
                ),
                Some(v) => {
                    let slot = match key.as_str() {
                        "tcp" => &mut self.timeouts.tcp,
                        "tcpfin" => &mut self.timeouts.tcp_fin,
                        _ => &mut self.timeouts.udp,
                    };
                    *slot = u(v);
                }
                None => {}
            }
            k += 2;
        }
    }

    fn finish(mut self) -> Output {
        let mut ifaces: Vec<String> = Vec::new();
        for (_, v) in &self.vrrp {
            if !ifaces.contains(v.interface.get_ref()) {
                ifaces.push(v.interface.get_ref().clone());
            }
        }
        if ifaces.is_empty() {
            self.notes.push(Note::general(
                "global.interfaces: keepalived has no such setting and no vrrp_instance names \
                 an interface: `eth0` written, set the interfaces VIP traffic arrives on",
            ));
            ifaces.push("eth0".into());
        } else {
            self.notes.push(Note::general(format!(
                "global.interfaces: set to the vrrp_instance interfaces ({}); xlb attaches XDP \
                 there, check that VIP traffic arrives on them",
                ifaces.join(", ")
            )));
        }
        self.resolve_vrrp_conflicts();
        self.resolve_track_refs();
        let (vs_locs, virtual_servers): (Vec<Loc>, Vec<VirtualServer>) =
            std::mem::take(&mut self.vs).into_iter().unzip();
        let (vi_locs, vrrp_instances): (Vec<Loc>, Vec<VrrpInstance>) =
            std::mem::take(&mut self.vrrp).into_iter().unzip();
        let config = Config {
            global: Global {
                router_id: self.router_id.clone(),
                interfaces: u(ifaces.into_iter().map(u).collect()),
                xdp_mode: XdpMode::Auto,
                conn_table_size: u(1_048_576),
                persistence_table_size: u(lb_common::DEFAULT_PERSIST_TABLE_SIZE),
                flood_threshold: 125_000,
                maglev_capacity: u(0),
                control_socket: u(PathBuf::from("/run/xlb/xlb.sock")),
                bpffs_dir: u(PathBuf::from("/sys/fs/bpf/xlb")),
                state_dir: u(PathBuf::from("/var/lib/xlb")),
                metrics_listen: None,
                sweep_interval: u(2.0),
                previous_ring_hold: u(120.0),
                log_format: Default::default(),
            },
            timeouts: self.timeouts,
            virtual_servers,
            vrrp_instances,
            vrrp_sync_groups: self.sync_groups,
            vrrp_scripts: self.scripts,
            vrrp_track_processes: self.processes,
            vrrp_track_files: self.files,
            sync: self.lvs_sync.take(),
        };
        Output {
            config,
            notes: self.notes,
            summary: self.summary,
            origins: Origins {
                virtual_servers: vs_locs,
                vrrp_instances: vi_locs,
            },
        }
    }
}
