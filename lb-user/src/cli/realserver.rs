//! `xlb realserver up|down|status`: prepare a direct-routing real server (see
//! [`crate::realserver`]).
use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::realserver;

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Put the VIPs on `lo` and set arp_ignore=1/arp_announce=2 (idempotent; prints each change).
    /// With `--tunnel`: also decapsulate the directors' IPIP/GUE packets (tunnel mode).
    Up {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        tunnel: TunnelArgs,
        /// Also write /etc/sysctl.d/90-xlb-realserver.conf and enable xlb-realserver.service
        /// (oneshot) so the setup survives reboots. With `--tunnel` the unit repeats the tunnel
        /// flags and runs once the network is online and `--interface` exists.
        #[arg(long)]
        persist: bool,
    },
    /// Remove the VIPs `up` added and restore the sysctl values it recorded.
    Down {
        #[command(flatten)]
        common: Common,
        /// Also remove the files written by `up --persist`.
        #[arg(long)]
        persist: bool,
    },
    /// Show the VIPs on `lo` and the sysctls; exit 1 when the server is not ready.
    Status {
        #[command(flatten)]
        common: Common,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Tunnel mode (LVS-TUN) on the real server.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// Decapsulate the directors' packets: `ipip` (IPIP / ip6ip6) or `gue` (GUE on
    /// `--gue-port`, IPIP accepted too). This kernel kind has no ipip/fou modules, so xlb's own
    /// XDP program (xlb_decap) is attached to `--interface`; only packets from `--director`
    /// addresses to the VIPs are decapsulated, everything else passes untouched.
    #[arg(long, value_name = "KIND", value_parser = ["ipip", "gue"])]
    pub tunnel: Option<String>,
    /// A director's outer source address (its address towards this server); repeat or list.
    #[arg(long = "director", value_name = "ADDR", num_args = 1.., requires = "tunnel")]
    pub directors: Vec<IpAddr>,
    /// The interface the tunnel packets arrive on.
    #[arg(long, value_name = "IFACE", requires = "tunnel")]
    pub interface: Option<String>,
    /// GUE's UDP port (the director's `gue_port`).
    #[arg(long, value_name = "PORT", default_value_t = lb_common::DEFAULT_GUE_PORT)]
    pub gue_port: u16,
    /// Who decapsulates: `auto` (the kernel's ipip/fou tunnels when the kernel has the modules,
    /// else xlb's program; says which and why), `kernel`, or `xlb`.
    #[arg(long, value_name = "WHO", value_parser = ["auto", "kernel", "xlb"], default_value = "auto")]
    pub decap: String,
    /// Where xlb's decapsulation runs: `xdp` (xlb_decap), `tc` (xlb_decap_tc, TC ingress, for
    /// links where XDP cannot run; kernel 6.6+), or `auto` (XDP, else TC; says which and why).
    #[arg(long, value_name = "HOOK", value_parser = ["xdp", "tc", "auto"], default_value = "auto")]
    pub attach: String,
    /// The MSS the VIPs' SYN-ACKs advertise, so clients' segments fit the tunnel: `auto` (the
    /// `--interface` MTU less the outer header and 40 bytes, 60 for IPv6 VIPs), `off`, or a
    /// number. Set by a policy rule per VIP to a copy of the main table with `advmss`; the
    /// server's other traffic is unchanged.
    #[arg(long, value_name = "MSS", default_value = "auto", value_parser = parse_advmss)]
    pub advmss: crate::realserver_tunnel::AdvmssChoice,
    /// bpffs directory where the decapsulation program's link and maps are pinned.
    #[arg(long, value_name = "DIR", default_value = crate::realserver_tunnel::DEFAULT_PIN_DIR)]
    pub bpffs_dir: PathBuf,
}

impl TunnelArgs {
    fn request(&self) -> anyhow::Result<Option<crate::realserver_tunnel::TunnelRequest>> {
        use crate::dataplane::desired::TunnelKind;
        use crate::realserver_tunnel::AttachChoice;
        let Some(kind) = &self.tunnel else {
            return Ok(None);
        };
        let interface = self
            .interface
            .clone()
            .context("`--tunnel` needs --interface (where the tunnel packets arrive)")?;
        Ok(Some(crate::realserver_tunnel::TunnelRequest {
            kind: if kind == "gue" {
                TunnelKind::Gue
            } else {
                TunnelKind::Ipip
            },
            interface,
            directors: self.directors.clone(),
            gue_port: self.gue_port,
            pin_dir: self.bpffs_dir.clone(),
            advmss: self.advmss,
            decap: match self.decap.as_str() {
                "kernel" => crate::realserver_kernel::DecapChoice::Kernel,
                "xlb" => crate::realserver_kernel::DecapChoice::Xlb,
                _ => crate::realserver_kernel::DecapChoice::Auto,
            },
            attach: match self.attach.as_str() {
                "xdp" => AttachChoice::Xdp,
                "tc" => AttachChoice::Tc,
                _ => AttachChoice::Auto,
            },
        }))
    }
}

impl TunnelArgs {
    /// The flags again, as `up --persist` writes them into the unit: each one that differs from
    /// its default, so the unit reads as the operator would have typed it.
    fn command_line(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut flag = |name: &str, value: String| {
            out.push(format!("--{name}"));
            out.push(value);
        };
        if let Some(kind) = &self.tunnel {
            flag("tunnel", kind.clone());
        }
        for d in &self.directors {
            flag("director", d.to_string());
        }
        if let Some(iface) = &self.interface {
            flag("interface", iface.clone());
        }
        if self.gue_port != lb_common::DEFAULT_GUE_PORT {
            flag("gue-port", self.gue_port.to_string());
        }
        if self.decap != "auto" {
            flag("decap", self.decap.clone());
        }
        if self.attach != "auto" {
            flag("attach", self.attach.clone());
        }
        match self.advmss {
            crate::realserver_tunnel::AdvmssChoice::Auto => {}
            crate::realserver_tunnel::AdvmssChoice::Off => flag("advmss", "off".into()),
            crate::realserver_tunnel::AdvmssChoice::Fixed(m) => flag("advmss", m.to_string()),
        }
        if self.bpffs_dir != std::path::Path::new(crate::realserver_tunnel::DEFAULT_PIN_DIR) {
            flag("bpffs-dir", self.bpffs_dir.display().to_string());
        }
        out
    }
}

fn parse_advmss(s: &str) -> Result<crate::realserver_tunnel::AdvmssChoice, String> {
    use crate::realserver_tunnel::AdvmssChoice;
    match s {
        "auto" => Ok(AdvmssChoice::Auto),
        "off" => Ok(AdvmssChoice::Off),
        n => match n.parse::<u32>() {
            Ok(m) if (536..=65495).contains(&m) => Ok(AdvmssChoice::Fixed(m)),
            _ => Err(format!("`{n}`: want auto, off or an MSS of 536..65495")),
        },
    }
}

#[derive(Debug, Args)]
pub struct Common {
    /// A virtual IP (IPv4 or IPv6); repeat or list several (`--vip A B`).
    #[arg(long = "vip", value_name = "VIP", num_args = 1..)]
    pub vips: Vec<IpAddr>,
    /// Where `up` records what it changed, for `down`.
    #[arg(long, value_name = "FILE", default_value = realserver::DEFAULT_STATE_FILE)]
    pub state_file: PathBuf,
    /// Root directory for the files of `--persist` (tests, images).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

pub fn run(action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Up {
            common,
            tunnel,
            persist,
        } => {
            anyhow::ensure!(!common.vips.is_empty(), "`up` needs at least one --vip");
            let request = tunnel.request()?;
            let mut lines = realserver::up(&common.vips, &common.state_file)?;
            if let Some(req) = &request {
                lines.extend(crate::realserver_tunnel::up_recorded(
                    req,
                    &common.vips,
                    &common.state_file,
                )?);
            }
            if persist {
                let exe = std::env::current_exe().context("finding the xlb binary")?;
                let persisted = request.as_ref().map(|req| realserver::PersistedTunnel {
                    args: tunnel.command_line(),
                    interface: req.interface.clone(),
                });
                lines.extend(realserver::persist(
                    &common.root,
                    &exe,
                    &common.vips,
                    &common.state_file,
                    persisted.as_ref(),
                )?);
            }
            print_changes(&lines, "already up: nothing changed");
            Ok(ExitCode::SUCCESS)
        }
        Action::Down { common, persist } => {
            let mut lines = crate::realserver_tunnel::down_recorded(&common.state_file)?;
            lines.extend(realserver::down(&common.vips, &common.state_file)?);
            if persist {
                lines.extend(realserver::unpersist(&common.root)?);
            }
            print_changes(&lines, "already down: nothing changed");
            Ok(ExitCode::SUCCESS)
        }
        Action::Status { common, json } => status(&common, json),
    }
}

/// What `status` found beyond the direct-routing part.
struct TunnelFindings {
    /// xlb's program: its state, attached?, counters.
    program: Option<(
        crate::realserver_tunnel::TunnelState,
        bool,
        Option<Vec<u64>>,
    )>,
    kernel: Vec<(String, bool)>,
    advmss: Vec<crate::realserver_advmss_io::AdvmssCheck>,
}

impl TunnelFindings {
    fn read(recorded: Option<realserver::State>) -> anyhow::Result<TunnelFindings> {
        let advmss = match recorded.as_ref().and_then(|s| s.advmss.as_ref()) {
            Some(a) => {
                let net = crate::net::BlockingNet::connect()?;
                crate::realserver_advmss_io::check(&net, a)?
            }
            None => Vec::new(),
        };
        let kernel = match recorded.as_ref().and_then(|s| s.kernel.as_ref()) {
            Some(k) => crate::realserver_kernel_io::check(k)?,
            None => Vec::new(),
        };
        let program = recorded.and_then(|s| s.tunnel).map(|t| {
            let (attached, counters) =
                crate::realserver_tunnel::status(&t.pin_dir, &t.interface, t.hook);
            (t, attached, counters)
        });
        Ok(TunnelFindings {
            program,
            kernel,
            advmss,
        })
    }

    fn ok(&self) -> bool {
        self.program.as_ref().is_none_or(|t| t.1)
            && self.advmss.iter().all(|c| c.ok)
            && self.kernel.iter().all(|k| k.1)
    }

    fn json(&self, v: &mut serde_json::Value) -> anyhow::Result<()> {
        if let Some((t, attached, counters)) = &self.program {
            v["tunnel"] = serde_json::json!({
                "kind": t.kind.name(),
                "interface": t.interface,
                "hook": t.hook.name(),
                "directors": t.directors,
                "gue_port": t.gue_port,
                "attached": attached,
                "counters": counters.as_ref().map(|c| {
                    lb_common::decap_stat::NAMES
                        .iter()
                        .zip(c)
                        .map(|(n, v)| (n.to_string(), *v))
                        .collect::<std::collections::BTreeMap<_, _>>()
                }),
            });
        }
        if !self.kernel.is_empty() {
            v["kernel_tunnel"] = serde_json::json!(self.kernel);
        }
        if !self.advmss.is_empty() {
            v["advmss"] = serde_json::to_value(&self.advmss)?;
        }
        Ok(())
    }

    fn print(&self) {
        if let Some((t, attached, counters)) = &self.program {
            let what = if *attached {
                "attached"
            } else {
                "NOT attached"
            };
            println!(
                "tunnel {}: {} ({}) on {}: {what}",
                t.kind.name(),
                t.hook.program(),
                t.hook.name(),
                t.interface
            );
            if let Some(c) = counters {
                let pairs: Vec<String> = lb_common::decap_stat::NAMES
                    .iter()
                    .zip(c)
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect();
                println!("decap counters: {}", pairs.join(", "));
            }
        }
        for (what, ok) in &self.kernel {
            println!("{what}: {}", if *ok { "present" } else { "MISSING" });
        }
        for c in &self.advmss {
            println!("advmss {}: {}", c.what, if c.ok { "ok" } else { "WRONG" });
        }
    }
}

fn status(common: &Common, json: bool) -> anyhow::Result<ExitCode> {
    let st = realserver::status(&common.vips)?;
    let found = TunnelFindings::read(realserver::State::load(&common.state_file)?)?;
    let ready = st.ready() && found.ok();
    if json {
        let mut v = serde_json::to_value(&st)?;
        found.json(&mut v)?;
        v["ready"] = serde_json::json!(ready);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (ip, present) in &st.vips {
            let what = if *present { "present" } else { "MISSING" };
            println!("vip {ip} on lo: {what}");
        }
        for s in &st.sysctls {
            let v = s.value.as_deref().unwrap_or("(absent)");
            let mark = if s.ok { "ok" } else { "WRONG" };
            println!("{} = {v} (want {}): {mark}", s.key, s.wanted);
        }
        found.print();
        println!("{}", if ready { "ready" } else { "NOT ready" });
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_changes(lines: &[String], none: &str) {
    if lines.is_empty() {
        println!("{none}");
    }
    for l in lines {
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn up_tunnel(args: &[&str]) -> TunnelArgs {
        let argv = ["xlb", "realserver", "up", "--vip", "198.18.0.100"];
        let cli = Cli::try_parse_from(argv.iter().chain(args)).expect("parses");
        match cli.command {
            Command::Realserver {
                action: Action::Up { tunnel, .. },
            } => tunnel,
            other => panic!("not realserver up: {other:?}"),
        }
    }

    /// The unit's ExecStart must ask for the same tunnel set-up as the command that wrote it.
    #[test]
    fn persisted_tunnel_flags_parse_back_to_the_same_request() {
        for given in [
            &[
                "--tunnel",
                "ipip",
                "--director",
                "198.18.0.2",
                "--interface",
                "eth0",
            ][..],
            &[
                "--tunnel",
                "gue",
                "--director",
                "198.18.0.2",
                "198.18.0.3",
                "--interface",
                "eth1.100",
                "--gue-port",
                "7000",
                "--decap",
                "xlb",
                "--attach",
                "tc",
                "--advmss",
                "1400",
                "--bpffs-dir",
                "/sys/fs/bpf/other",
            ][..],
            &["--tunnel", "gue", "--interface", "eth0", "--advmss", "off"][..],
        ] {
            let first = up_tunnel(given);
            let line = first.command_line();
            let words: Vec<&str> = line.iter().map(String::as_str).collect();
            let again = up_tunnel(&words);
            assert_eq!(
                format!("{:?}", first.request().unwrap()),
                format!("{:?}", again.request().unwrap()),
                "{given:?} -> {line:?}"
            );
        }
        let defaults = up_tunnel(&["--tunnel", "ipip", "--interface", "eth0"]).command_line();
        assert_eq!(defaults, ["--tunnel", "ipip", "--interface", "eth0"]);
    }
}
