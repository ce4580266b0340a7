//! The CLI side of the control socket: status, conns, reload, stop.
use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;

use super::SocketArgs;
use crate::{
    control::{request, Request, Response},
    status::{render, render_conns, View},
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The socket: --socket, else the config's `global.control_socket`, else the default.
fn socket_path(args: &SocketArgs) -> PathBuf {
    if let Some(s) = &args.socket {
        return s.clone();
    }
    match crate::config::load(&args.config) {
        Ok(cfg) => cfg.global.control_socket.clone(),
        Err(_) => PathBuf::from("/run/xlb/xlb.sock"),
    }
}

pub fn call(args: &SocketArgs, req: &Request) -> anyhow::Result<Response> {
    let resp = request(&socket_path(args), req, TIMEOUT)?;
    if let Response::Error { message } = &resp {
        bail!("daemon: {message}");
    }
    Ok(resp)
}

/// What `xlb status` shows.
pub struct StatusOptions {
    pub view: View,
    pub json: bool,
    /// Only the services at VIP:PORT (of this protocol when given).
    pub only: Option<(std::net::SocketAddr, Option<crate::config::Protocol>)>,
    pub sort: bool,
    /// The timeouts in force instead of the table.
    pub timeouts: bool,
}

pub fn status(args: &SocketArgs, opts: &StatusOptions) -> anyhow::Result<ExitCode> {
    let Response::Status(mut report) = call(args, &Request::Status)? else {
        bail!("unexpected answer from the daemon");
    };
    if let Some((addr, protocol)) = opts.only {
        let p = protocol.map(crate::state::protocol);
        if !report.select(addr, p) {
            bail!("no virtual service {addr} (see `xlb status`)");
        }
    }
    if opts.sort {
        report.sort();
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if opts.timeouts {
        print!("{}", crate::status::render_timeouts(&report));
    } else {
        print!("{}", render(&report, opts.view));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn conns(
    args: &SocketArgs,
    service: Option<String>,
    real: Option<IpAddr>,
    client: Option<IpAddr>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match call(
        args,
        &Request::Conns {
            service,
            real,
            client,
            limit,
        },
    )? {
        Response::Conns { entries, total } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "total": total, "entries": entries })
                    )?
                );
            } else {
                print!("{}", render_conns(&entries, total));
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}

pub fn reload(args: &SocketArgs) -> anyhow::Result<ExitCode> {
    match call(args, &Request::Reload)? {
        Response::Reloaded { summary } => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Response::ReloadFailed { errors, partial } => {
            for e in errors {
                eprintln!("{e}");
            }
            if partial {
                // Exit 1: not the "file rejected" 2, so that systemd and scripts can tell.
                eprintln!(
                    "reload partly applied: the new configuration is in force except for the \
                     errors above (fix them and reload again)"
                );
                return Ok(ExitCode::from(1));
            }
            eprintln!("reload rejected; the running configuration stays in force");
            Ok(ExitCode::from(2))
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}

pub fn stop(args: &SocketArgs, detach: bool) -> anyhow::Result<ExitCode> {
    match call(args, &Request::Stop { detach })? {
        Response::Stopping => {
            println!(
                "{}",
                if detach {
                    "stopping; detaching the XDP program"
                } else {
                    "stopping; forwarding continues"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}
