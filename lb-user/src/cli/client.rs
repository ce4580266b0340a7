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

fn call(args: &SocketArgs, req: &Request) -> anyhow::Result<Response> {
    let resp = request(&socket_path(args), req, TIMEOUT)?;
    if let Response::Error { message } = &resp {
        bail!("daemon: {message}");
    }
    Ok(resp)
}

pub fn status(args: &SocketArgs, view: View, json: bool) -> anyhow::Result<ExitCode> {
    match call(args, &Request::Status)? {
        Response::Status(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render(&report, view));
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
