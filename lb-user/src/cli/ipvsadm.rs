//! `xlb ipvsadm ...`: ipvsadm's own spelling for what has an unambiguous meaning on an xlb
//! director. The configuration file stays the source of truth: services and real servers are
//! added and removed there (`xlb reload`); at run time a real server's weight can change
//! (`-e -w`), it can be taken out (`-d`) and put back (`-a`), and counters can be zeroed (`-Z`).
use std::{net::SocketAddr, process::ExitCode};

use anyhow::{bail, Context as _};

use super::{client, real, SocketArgs};
use crate::{config::Protocol, control::Request, overlay::RealOverride, status::View};

/// The ipvsadm options xlb understands (short options combine: `-ln`, `-Ln`).
#[derive(Debug, Clone, clap::Args)]
#[command(disable_version_flag = true)]
pub struct Args {
    /// List the table (status).
    #[arg(short = 'L', visible_short_alias = 'l', long = "list")]
    pub list: bool,
    /// Numeric output (always).
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Zero the counters (of the -t/-u service, or of all).
    #[arg(short = 'Z', long = "zero")]
    pub zero: bool,
    /// Edit a real server (with -w: its weight; 0 drains it).
    #[arg(short = 'e', long = "edit-server")]
    pub edit_server: bool,
    /// Put a configured real server back in service (clears a -d or -e).
    #[arg(short = 'a', long = "add-server")]
    pub add_server: bool,
    /// Take a real server out of service (its flows go to the others).
    #[arg(short = 'd', long = "delete-server")]
    pub delete_server: bool,
    /// Not on xlb: services live in the configuration file.
    #[arg(short = 'A', long = "add-service")]
    pub add_service: bool,
    /// Not on xlb: services live in the configuration file.
    #[arg(short = 'E', long = "edit-service")]
    pub edit_service: bool,
    /// Not on xlb: services live in the configuration file.
    #[arg(short = 'D', long = "delete-service")]
    pub delete_service: bool,
    /// Not on xlb: the table is the configuration file's.
    #[arg(short = 'C', long = "clear")]
    pub clear: bool,
    /// TCP service VIP:PORT.
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    pub tcp_service: Option<String>,
    /// UDP service VIP:PORT.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    pub udp_service: Option<String>,
    /// Real server IP[:PORT].
    #[arg(short = 'r', long = "real-server", value_name = "IP[:PORT]")]
    pub real_server: Option<String>,
    /// Weight (with -e or -a).
    #[arg(short = 'w', long = "weight")]
    pub weight: Option<u32>,
    /// Forwarding method: accepted for habit; only -g (gatewaying, direct routing) exists.
    #[arg(short = 'g', long = "gatewaying")]
    pub gatewaying: bool,
    /// The connection table (with -L).
    #[arg(short = 'c', long = "connection")]
    pub connection: bool,
    #[arg(long)]
    pub stats: bool,
    #[arg(long)]
    pub rate: bool,
    #[arg(long)]
    pub timeout: bool,
    #[arg(long)]
    pub sort: bool,
    #[arg(long)]
    pub exact: bool,
    /// Configuration file (its `global.control_socket` is used; default /etc/xlb/xlb.toml).
    /// No short form: `-c` is ipvsadm's --connection.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Control socket path (overrides the one in the configuration).
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
}

impl Args {
    fn socket_args(&self) -> SocketArgs {
        SocketArgs {
            config: self.config.clone(),
            socket: self.socket.clone(),
        }
    }

    /// The service given with -t or -u, with its protocol.
    fn service(&self) -> Option<(String, Protocol)> {
        match (&self.tcp_service, &self.udp_service) {
            (Some(s), _) => Some((s.clone(), Protocol::Tcp)),
            (None, Some(s)) => Some((s.clone(), Protocol::Udp)),
            (None, None) => None,
        }
    }

    fn real_target(&self) -> anyhow::Result<real::Target> {
        let (service, protocol) = self
            .service()
            .context("give the virtual service with -t VIP:PORT (or -u)")?;
        let real = self
            .real_server
            .clone()
            .context("give the real server with -r IP[:PORT]")?;
        Ok(real::Target {
            service,
            real,
            udp: protocol == Protocol::Udp,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.add_service || args.edit_service || args.delete_service || args.clear {
        bail!(
            "virtual services are defined in the configuration file on xlb: edit it and run \
             `xlb reload` (a bad file is rejected and the running configuration stays)"
        );
    }
    if args.edit_server || args.add_server || args.delete_server {
        return edit_real(&args);
    }
    if args.zero {
        let (service, protocol) = args.service().unzip();
        return real::done(&args.socket_args(), &Request::Zero { service, protocol });
    }
    list(&args)
}

fn edit_real(args: &Args) -> anyhow::Result<ExitCode> {
    let target = args.real_target()?;
    let what = if args.delete_server {
        Some(RealOverride::Disable)
    } else {
        match args.weight {
            Some(0) => Some(RealOverride::Drain),
            Some(w) => Some(RealOverride::Weight(w)),
            None if args.add_server => None,
            None => bail!("-e needs a weight (-w N; 0 drains the real server)"),
        }
    };
    real::set(&args.socket_args(), &target, what)
}

fn list(args: &Args) -> anyhow::Result<ExitCode> {
    if args.connection {
        return client::conns(&args.socket_args(), None, None, None, 10_000, false);
    }
    let filter = match args.service() {
        Some((s, p)) => {
            let addr: SocketAddr = s
                .parse()
                .with_context(|| format!("`{s}` is not VIP:PORT"))?;
            Some((addr, Some(p)))
        }
        None => None,
    };
    let view = if args.stats {
        View::Stats { exact: args.exact }
    } else if args.rate {
        View::Rate
    } else {
        View::Connections
    };
    let opts = client::StatusOptions {
        view,
        json: false,
        only: filter,
        sort: args.sort,
        timeouts: args.timeout,
        peers: false,
    };
    client::status(&args.socket_args(), &opts)
}
