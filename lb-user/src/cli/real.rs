//! `xlb real drain|weight|disable|enable|list|clear`: run-time changes of real servers, on top
//! of the configuration file and kept across reloads and restarts until cleared.
use std::process::ExitCode;

use anyhow::bail;

use super::{client, SocketArgs};
use crate::{
    config::Protocol,
    control::{Request, Response},
    overlay::RealOverride,
};

/// Which real server: the service by name or `VIP:PORT`, the real server by `IP[:PORT]`.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The virtual server: its name, or VIP:PORT ([V6]:PORT for IPv6).
    pub service: String,
    /// The real server: IP or IP:PORT.
    pub real: String,
    /// The service is UDP (when a TCP and a UDP service share VIP:PORT).
    #[arg(long)]
    pub udp: bool,
}

impl Target {
    fn protocol(&self) -> Option<Protocol> {
        self.udp.then_some(Protocol::Udp)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Weight 0: no new flows, established flows stay (ipvsadm -e ... -w 0).
    Drain {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Another weight than the configured one (health checks still take it out when down).
    Weight {
        #[command(flatten)]
        target: Target,
        /// The weight (0 drains).
        weight: u32,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Out of service as if its checks failed: its flows are dispatched to the others.
    Disable {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Back to the configuration: removes the override of this real server.
    Enable {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// The overrides in force.
    List {
        #[command(flatten)]
        socket: SocketArgs,
        #[arg(long)]
        json: bool,
    },
    /// Removes every override.
    Clear {
        #[command(flatten)]
        socket: SocketArgs,
    },
}

/// Sends a set (or clear) request and prints the daemon's summary.
pub fn set(
    socket: &SocketArgs,
    target: &Target,
    what: Option<RealOverride>,
) -> anyhow::Result<ExitCode> {
    let req = Request::Real {
        service: target.service.clone(),
        protocol: target.protocol(),
        real: target.real.clone(),
        set: what,
    };
    done(socket, &req)
}

pub fn done(socket: &SocketArgs, req: &Request) -> anyhow::Result<ExitCode> {
    match client::call(socket, req)? {
        Response::Done { summary } => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}

pub fn run(action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Drain { target, socket } => set(&socket, &target, Some(RealOverride::Drain)),
        Action::Weight {
            target,
            weight,
            socket,
        } => {
            let what = if weight == 0 {
                RealOverride::Drain
            } else {
                RealOverride::Weight(weight)
            };
            set(&socket, &target, Some(what))
        }
        Action::Disable { target, socket } => set(&socket, &target, Some(RealOverride::Disable)),
        Action::Enable { target, socket } => set(&socket, &target, None),
        Action::List { socket, json } => list(&socket, json),
        Action::Clear { socket } => done(&socket, &Request::ClearOverrides),
    }
}

fn list(socket: &SocketArgs, json: bool) -> anyhow::Result<ExitCode> {
    let Response::Overrides { entries } = client::call(socket, &Request::Overrides)? else {
        bail!("unexpected answer from the daemon");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no operator overrides");
    }
    for e in &entries {
        let gone = if e.configured {
            ""
        } else {
            "  (not in the configuration; applies again if it comes back)"
        };
        println!("{:<24} {:<28} {}{gone}", e.service, e.real, e.what);
    }
    Ok(ExitCode::SUCCESS)
}
