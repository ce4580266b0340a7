//! The CLI side of the control socket: status, conns, reload, stop.
use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{anyhow, bail};

use super::SocketArgs;
use crate::{
    control::{request, Request, Response},
    status::{render, render_conns, View},
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the daemon listens when no configuration says otherwise.
const DEFAULT_SOCKET: &str = "/run/xlb/xlb.sock";

/// The socket: --socket, else the config's `global.control_socket`. Only a missing default
/// config falls back to the default socket; a config with errors is an error (asking the
/// default socket instead would silently talk to another daemon, or to none).
fn socket_path(args: &SocketArgs) -> anyhow::Result<PathBuf> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    let file = args.config_file();
    if args.config.is_none() && !file.exists() {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    }
    match crate::config::load(&file) {
        Ok(cfg) => Ok(cfg.global.control_socket.clone()),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            bail!(
                "{}\ncannot find the control socket: {} has {} error(s) (fix it, or name the \
                 socket with --socket)",
                list.join("\n"),
                file.display(),
                errors.len()
            )
        }
    }
}

pub fn call(args: &SocketArgs, req: &Request) -> anyhow::Result<Response> {
    // The client error's message already names its cause (the OS error): no error chain, or
    // `xlb: {e:#}` prints the cause twice.
    let resp = request(&socket_path(args)?, req, TIMEOUT).map_err(|e| anyhow!("{e}"))?;
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
    /// The directors' health views side by side instead of the table.
    pub peers: bool,
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
    if opts.peers {
        let mut views = report.health_views.clone().unwrap_or_default();
        // -t/-u: the selected services' real servers only.
        views
            .reals
            .retain(|r| report.services.iter().any(|s| s.name == r.service));
        if opts.json {
            super::stdout::emit_line(&serde_json::to_string_pretty(&views)?)?;
        } else {
            let mut text = crate::health::views::render(&views);
            if let Some(sync) = &report.sync {
                text += &sync.render();
            }
            super::stdout::emit(&text)?;
        }
    } else if opts.json {
        super::stdout::emit_line(&serde_json::to_string_pretty(&report)?)?;
    } else if opts.timeouts {
        super::stdout::emit(&crate::status::render_timeouts(&report))?;
    } else {
        super::stdout::emit(&render(&report, opts.view))?;
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
                super::stdout::emit_line(&serde_json::to_string_pretty(
                    &serde_json::json!({ "total": total, "entries": entries }),
                )?)?;
            } else {
                super::stdout::emit(&render_conns(&entries, total))?;
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
