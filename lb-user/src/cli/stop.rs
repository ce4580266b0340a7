//! `xlb stop`: what the daemon undoes when it leaves, and — as a unit's `ExecStop=` — telling
//! `systemctl stop` from `systemctl restart`, which systemd does not pass to `ExecStop=` but shows
//! as the type of the unit's running job (`restart` during the stop half of a restart).
use std::{
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::ValueEnum;

use super::SocketArgs;
use crate::control::{Request, Response};

/// What `systemctl stop` does to forwarding (`--on-stop`; the unit takes it from `XLB_ON_STOP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnStop {
    /// Resign VRRP and take the XDP program off: a stopped service forwards nothing.
    #[default]
    Detach,
    /// Resign VRRP, keep forwarding from the last tables (health no longer followed; `xlb
    /// doctor` says so).
    KeepForwarding,
}

/// What the daemon is asked to undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRequest {
    pub detach: bool,
    pub keep_role: bool,
}

/// The type of the running job of a unit, from `systemctl list-jobs --no-legend --plain UNIT`
/// (`JOB UNIT TYPE STATE` lines).
pub fn job_type_of<'a>(list_jobs: &'a str, unit: &str) -> Option<&'a str> {
    list_jobs.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_id, name, kind) = (f.next()?, f.next()?, f.next()?);
        (name == unit).then_some(kind)
    })
}

/// What to ask for, as the `ExecStop=` of a unit whose running job is `job`: a restart keeps the
/// role and forwarding (the next daemon adopts them); anything else (stop, shutdown, a job we
/// cannot read) is a stop.
pub fn as_exec_stop(job: Option<&str>, on_stop: OnStop) -> StopRequest {
    let restarting = matches!(job, Some("restart" | "try-restart" | "reload-or-restart"));
    StopRequest {
        detach: !restarting && on_stop == OnStop::Detach,
        keep_role: restarting,
    }
}

fn running_job_type(unit: &str) -> Option<String> {
    let out = Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--plain", unit])
        .output()
        .ok()?;
    job_type_of(&String::from_utf8_lossy(&out.stdout), unit).map(str::to_owned)
}

/// Is process `pid` still running? A zombie has exited (its parent has yet to reap it: a test
/// harness, say); without /proc, signal 0 answers.
fn alive(pid: u32) -> bool {
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return !is_zombie(&stat);
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The state field of /proc/PID/stat (after the parenthesised name, which may hold spaces).
fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("Z")
}

/// Waits until the daemon has exited, so that an `ExecStop=` returns only when the resign (or
/// the detach) is done and systemd's SIGTERM finds nothing left to stop.
fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

pub struct StopArgs {
    pub detach: bool,
    pub keep_role: bool,
    pub systemd_unit: Option<String>,
    pub on_stop: OnStop,
    pub wait: Duration,
}

pub fn stop(socket: &SocketArgs, args: StopArgs) -> anyhow::Result<ExitCode> {
    let asked = match &args.systemd_unit {
        Some(unit) => {
            let job = running_job_type(unit);
            as_exec_stop(job.as_deref(), args.on_stop)
        }
        None => StopRequest {
            detach: args.detach,
            keep_role: args.keep_role,
        },
    };
    let request = Request::Stop {
        detach: asked.detach,
        keep_role: asked.keep_role,
    };
    let pid = match super::client::call(socket, &request)? {
        Response::Stopping { pid } => pid,
        other => bail!("unexpected answer: {other:?}"),
    };
    println!(
        "{}",
        match (asked.detach, asked.keep_role) {
            (true, _) => "stopping; resigning VRRP and detaching the XDP program",
            (false, true) =>
                "stopping for a restart; the VRRP role, the VIPs and forwarding are kept",
            (false, false) => "stopping; resigning VRRP, forwarding continues",
        }
    );
    if pid != 0 && !args.wait.is_zero() && !wait_for_exit(pid, args.wait) {
        eprintln!(
            "the daemon (pid {pid}) is still exiting after {:?}",
            args.wait
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_job_of_the_unit_is_found() {
        let jobs = "413 xlb.service restart running\n414 other.service start waiting\n";
        assert_eq!(job_type_of(jobs, "xlb.service"), Some("restart"));
        assert_eq!(job_type_of(jobs, "other.service"), Some("start"));
        assert_eq!(job_type_of(jobs, "x.service"), None);
        assert_eq!(job_type_of("", "xlb.service"), None);
    }

    #[test]
    fn a_zombie_has_exited() {
        assert!(is_zombie("123 (xlb run) Z 1 123 123 0 -1"));
        assert!(!is_zombie("123 (xlb) S 1 123 123 0 -1"));
        assert!(!is_zombie("123 (odd) Z name) S 1"));
        assert!(alive(std::process::id()));
    }

    #[test]
    fn a_restart_keeps_the_role_and_a_stop_resigns() {
        let restart = as_exec_stop(Some("restart"), OnStop::Detach);
        assert_eq!(
            restart,
            StopRequest {
                detach: false,
                keep_role: true
            }
        );
        let stop = as_exec_stop(Some("stop"), OnStop::Detach);
        assert_eq!(
            stop,
            StopRequest {
                detach: true,
                keep_role: false
            }
        );
        let keep = as_exec_stop(Some("stop"), OnStop::KeepForwarding);
        assert_eq!(
            keep,
            StopRequest {
                detach: false,
                keep_role: false
            }
        );
        // No job readable (systemctl missing, run by hand): a stop.
        assert_eq!(as_exec_stop(None, OnStop::Detach), stop);
    }
}
