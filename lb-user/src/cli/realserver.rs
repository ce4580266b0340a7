//! `xlb realserver up|down|status`: prepare a direct-routing real server (see
//! [`crate::realserver`]).
use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::realserver;

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Put the VIPs on `lo` and set arp_ignore=1/arp_announce=2 (idempotent; prints each change).
    Up {
        #[command(flatten)]
        common: Common,
        /// Also write /etc/sysctl.d/90-xlb-realserver.conf and enable xlb-realserver.service
        /// (oneshot) so the setup survives reboots.
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
        Action::Up { common, persist } => {
            anyhow::ensure!(!common.vips.is_empty(), "`up` needs at least one --vip");
            let mut lines = realserver::up(&common.vips, &common.state_file)?;
            if persist {
                let exe = std::env::current_exe().context("finding the xlb binary")?;
                lines.extend(realserver::persist(
                    &common.root,
                    &exe,
                    &common.vips,
                    &common.state_file,
                )?);
            }
            print_changes(&lines, "already up: nothing changed");
            Ok(ExitCode::SUCCESS)
        }
        Action::Down { common, persist } => {
            let mut lines = realserver::down(&common.vips, &common.state_file)?;
            if persist {
                lines.extend(realserver::unpersist(&common.root)?);
            }
            print_changes(&lines, "already down: nothing changed");
            Ok(ExitCode::SUCCESS)
        }
        Action::Status { common, json } => {
            let st = realserver::status(&common.vips)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
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
                println!("{}", if st.ready() { "ready" } else { "NOT ready" });
            }
            Ok(if st.ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn print_changes(lines: &[String], none: &str) {
    if lines.is_empty() {
        println!("{none}");
    }
    for l in lines {
        println!("{l}");
    }
}
