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
        Ok(cfg) => Ok(cfg.global.control_socket.get_ref().clone()),
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

fn call(args: &SocketArgs, req: &Request) -> anyhow::Result<Response> {
    // The client error's message already names its cause (the OS error): no error chain, or
    // `xlb: {e:#}` prints the cause twice.
    let resp = request(&socket_path(args)?, req, TIMEOUT).map_err(|e| anyhow!("{e}"))?;
    if let Response::Error { message } = &resp {
        bail!("daemon: {message}");
    }
    Ok(resp)
}

pub fn status(args: &SocketArgs, view: View, json: bool) -> anyhow::Result<ExitCode> {
    match call(args, &Request::Status)? {
        Response::Status(report) => {
            if json {
                super::stdout::emit_line(&serde_json::to_string_pretty(&report)?)?;
            } else {
                super::stdout::emit(&render(&report, view))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
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
        Response::ReloadFailed { errors } => {
            for e in errors {
                eprintln!("{e}");
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
