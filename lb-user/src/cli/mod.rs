//! The command line: one file per subcommand. `dispatch` is all `main` calls.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser, Subcommand};

pub mod bgp_config;
pub mod check_config;
pub mod client;
pub mod doctor;
pub mod import_keepalived;
pub mod ipvsadm;
pub mod man;
pub mod real;
pub mod realserver;
pub mod stdout;
pub mod stop;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/xlb/xlb.toml";

/// xlb: an XDP direct-routing load balancer (the LVS-DR + keepalived replacement).
#[derive(Debug, Parser)]
#[command(name = "xlb", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How the CLI finds the daemon's control socket.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Configuration file whose `global.control_socket` is used [default: /etc/xlb/xlb.toml;
    /// /run/xlb/xlb.sock when that file does not exist].
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket path (overrides the one in the configuration).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl SocketArgs {
    /// `--config`, else the default file.
    pub fn config_file(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach (or adopt) the XDP program and keep it in step with the config.
    ///
    /// Logs: native journal records (with priorities and SERVICE/REAL/INSTANCE fields) under
    /// systemd, plain lines on stderr elsewhere, JSON lines with `global.log_format = "json"`.
    /// Level: XLB_LOG, else RUST_LOG (EnvFilter syntax, e.g. `info,xlb::vrrp=debug`), default
    /// info.
    Run {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Detach the XDP program and remove the pinned maps on exit (default: leave them
        /// forwarding, like LVS's --dont-release-ipvs, and adopt them at the next start).
        #[arg(long)]
        release_on_exit: bool,
    },
    /// Apply the configuration file again (like SIGHUP); a bad file is rejected and the running
    /// configuration stays in force.
    Reload {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Stop the daemon: it resigns VRRP (priority 0: the BACKUP takes over at once) and
    /// forwarding continues from the pinned tables unless --detach. Waits until it has exited.
    Stop {
        #[command(flatten)]
        socket: SocketArgs,
        /// Also detach the XDP program and remove every pinned map.
        #[arg(long, conflicts_with = "keep_role")]
        detach: bool,
        /// For a restart: keep the VRRP role (no resign), the VIPs and forwarding; the next
        /// daemon adopts them and goes on advertising, so a BACKUP does not take over unless
        /// the restart outlasts its Master_Down_Interval (3 x advert_int + skew).
        #[arg(long)]
        keep_role: bool,
        /// As the ExecStop= of systemd unit UNIT (the shipped unit passes %n): during
        /// `systemctl restart` keep the role (--keep-role), during `systemctl stop` or a
        /// shutdown resign and do what --on-stop says.
        #[arg(long, value_name = "UNIT", conflicts_with_all = ["detach", "keep_role"])]
        systemd_unit: Option<String>,
        /// With --systemd-unit: what `systemctl stop` does to forwarding.
        #[arg(long, value_enum, default_value_t = stop::OnStop::Detach, requires = "systemd_unit")]
        on_stop: stop::OnStop,
        /// Seconds to wait for the daemon to exit (0: do not wait).
        #[arg(long, default_value_t = 8.0, value_name = "SECONDS")]
        wait: f64,
    },
    /// Virtual servers and real servers in the `ipvsadm -ln` layout, with health and VRRP state.
    #[command(visible_alias = "list")]
    Status {
        #[command(flatten)]
        socket: SocketArgs,
        /// Numeric output (accepted for ipvsadm habits; output is always numeric).
        #[arg(short = 'n', long)]
        numeric: bool,
        /// List (accepted for ipvsadm habits: `xlb list -ln`).
        #[arg(short = 'l', visible_short_alias = 'L')]
        list: bool,
        /// Only this TCP service (VIP:PORT), like ipvsadm -t.
        #[arg(
            short = 't',
            long = "tcp-service",
            value_name = "VIP:PORT",
            conflicts_with = "udp_service"
        )]
        tcp_service: Option<std::net::SocketAddr>,
        /// Only this UDP service (VIP:PORT), like ipvsadm -u.
        #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
        udp_service: Option<std::net::SocketAddr>,
        /// Services sorted by protocol, address and port (ipvsadm --sort).
        #[arg(long)]
        sort: bool,
        /// Show the idle timeouts in force (ipvsadm --timeout).
        #[arg(long, conflicts_with_all = ["stats", "rate"])]
        timeout: bool,
        /// Conns, InPkts, InBytes per service and real server (like ipvsadm --stats).
        #[arg(long, conflicts_with = "rate")]
        stats: bool,
        /// CPS, InPPS, InBPS (like ipvsadm --rate).
        #[arg(long)]
        rate: bool,
        /// Exact numbers instead of K/M/G.
        #[arg(long)]
        exact: bool,
        /// Each director's health view of each real server side by side: this director's checks
        /// and verdict (healthy, suspect, failed) and the views its `[sync]` peers sent (with
        /// --json: the `health_views` object alone).
        #[arg(long, conflicts_with_all = ["stats", "rate", "timeout"])]
        peers: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Flows in the connection table and persistence templates (like ipvsadm -lnc).
    Conns {
        #[command(flatten)]
        socket: SocketArgs,
        /// Only this virtual server (its name).
        #[arg(long)]
        service: Option<String>,
        /// Only flows to this real server address.
        #[arg(long)]
        real: Option<std::net::IpAddr>,
        /// Only flows from this client address.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run-time changes of a real server (drain, weight, disable, enable), kept across reloads
    /// and restarts until cleared; `xlb real list` shows them.
    Real {
        #[command(subcommand)]
        action: real::Action,
    },
    /// ipvsadm's spelling: -L/-l -n [-t VIP:PORT] [--stats|--rate|--timeout|--sort], -c,
    /// -e -t VIP:PORT -r RS[:PORT] -w N, -d (take out), -a (put back), -Z.
    Ipvsadm(ipvsadm::Args),
    /// Validate a configuration file; every error and warning is reported as file:line:column.
    /// Exit 2 on errors; warnings (a service without real servers, a VIP no VRRP instance holds,
    /// a check or notify command that is not on this host) exit 0, or 1 with `--strict`.
    CheckConfig {
        /// The file to check.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Prepare a direct-routing real server: VIPs on `lo`, ARP sysctls (`up`, `down`, `status`).
    Realserver {
        #[command(subcommand)]
        action: realserver::Action,
    },
    /// Check a director (and with `--realserver` a real server); explain each finding and its fix.
    /// Exit 1 on errors (and with `--strict` on warnings), else 0.
    Doctor {
        /// Configuration of the director (default: /etc/xlb/xlb.toml when it exists).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also check this host as a DR real server for the `--vip`s.
        #[arg(long)]
        realserver: bool,
        /// VIPs a real server must hold on `lo` (with `--realserver`).
        #[arg(long = "vip", value_name = "VIP", num_args = 1..)]
        vips: Vec<std::net::IpAddr>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Warnings make the exit status 1 too.
        #[arg(long)]
        strict: bool,
    },
    /// Translate a keepalived.conf (VRRP and LVS parts) into xlb TOML; everything without an
    /// equivalent is reported with its file:line.
    ImportKeepalived {
        /// The keepalived configuration (its `include`s are followed).
        file: PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// keepalived's config id (`keepalived -i`): selects the `@ID` lines. Default: this
        /// host's name up to its first dot, as keepalived.
        #[arg(short = 'i', long, value_name = "ID")]
        config_id: Option<String>,
    },
    /// Print the BGP daemon configuration (BIRD 2) announcing this director's `announce = "bgp"`
    /// VIPs to the router(s); with `--router` also the router side (ECMP over the directors).
    BgpConfig(bgp_config::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print a man page (roff) to stdout, or with --dir write them all: xlb(1), one xlb-CMD(1)
    /// per subcommand, xlb.toml(5).
    Man(man::Args),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            release_on_exit,
        } => Ok(crate::daemon::run(crate::daemon::RunOptions {
            config,
            release_on_exit,
        })),
        Command::Reload { socket } => client::reload(&socket),
        Command::Stop {
            socket,
            detach,
            keep_role,
            systemd_unit,
            on_stop,
            wait,
        } => stop::stop(
            &socket,
            stop::StopArgs {
                detach,
                keep_role,
                systemd_unit,
                on_stop,
                wait: Duration::from_secs_f64(wait.clamp(0.0, 3600.0)),
            },
        ),
        Command::Status {
            socket,
            numeric: _,
            list: _,
            tcp_service,
            udp_service,
            sort,
            timeout,
            stats,
            rate,
            exact,
            peers,
            json,
        } => {
            let view = if stats {
                crate::status::View::Stats { exact }
            } else if rate {
                crate::status::View::Rate
            } else {
                crate::status::View::Connections
            };
            let only = tcp_service
                .map(|a| (a, Some(crate::config::Protocol::Tcp)))
                .or(udp_service.map(|a| (a, Some(crate::config::Protocol::Udp))));
            let opts = client::StatusOptions {
                view,
                json,
                only,
                sort,
                timeouts: timeout,
                peers,
            };
            client::status(&socket, &opts)
        }
        Command::Real { action } => real::run(action),
        Command::Ipvsadm(args) => ipvsadm::run(args),
        Command::Conns {
            socket,
            service,
            real,
            client: c,
            limit,
            json,
        } => client::conns(&socket, service, real, c, limit, json),
        Command::CheckConfig { file, strict } => check_config::run(&file, strict),
        Command::Realserver { action } => realserver::run(action),
        Command::Doctor {
            config,
            realserver,
            vips,
            json,
            strict,
        } => doctor::run(config, realserver, vips, json, strict),
        Command::ImportKeepalived {
            file,
            output,
            config_id,
        } => import_keepalived::run(&file, output.as_deref(), config_id),
        Command::BgpConfig(args) => bgp_config::run(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "xlb", &mut script);
            stdout::emit(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => man::run(&args),
    }
}
