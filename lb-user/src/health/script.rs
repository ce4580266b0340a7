//! `script` check (keepalived `MISC_CHECK`) and the notify programs: a program run without a
//! shell (or through `/bin/sh -c` with `shell = true`), in its own process group, killed as a
//! whole (SIGKILL to the group) when it overruns its timeout or its check is stopped.
//!
//! Exit 0 = up (at the configured weight), 1 = down; with `dynamic` (keepalived `misc_dynamic`)
//! 2..=255 = up with weight `code - 2`; without it any other code is down. Killed by a signal =
//! down. Output is discarded.

use super::ProbeError;
use std::ffi::CString;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::{Outcome, Probe, RealTarget};
use crate::config::Check;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptSpec {
    /// Program and arguments; with `shell`, `command[0]` is the shell command and the rest
    /// its `$1`...
    pub command: Vec<String>,
    /// Run `command[0]` through `/bin/sh -c`.
    pub shell: bool,
    /// keepalived `misc_dynamic`.
    pub dynamic: bool,
    /// Run as this user (and its primary group).
    pub user: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// A prepared script check.
pub struct ScriptProbe {
    /// What runs.
    pub spec: ScriptSpec,
}

impl ScriptProbe {
    /// The script check `check` of target `t`. The program gets `XLB_SERVICE`, `XLB_REAL`,
    /// `XLB_REAL_IP`, `XLB_REAL_PORT` and `XLB_PROBE` (probed `ip:port`) in its environment.
    pub fn new(check: &Check, t: &RealTarget) -> Result<Self, ProbeError> {
        let command = check
            .command
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(ProbeError::NoCommand)?;
        Ok(ScriptProbe {
            spec: ScriptSpec {
                command,
                shell: check.shell,
                dynamic: check.dynamic,
                user: check.user.clone(),
                env: vec![
                    ("XLB_SERVICE".into(), t.service.clone()),
                    ("XLB_REAL".into(), t.real.to_string()),
                    ("XLB_REAL_IP".into(), t.real.ip().to_string()),
                    ("XLB_REAL_PORT".into(), t.real.port().to_string()),
                    ("XLB_PROBE".into(), t.probe.to_string()),
                ],
            },
        })
    }
}

impl Probe for ScriptProbe {
    async fn probe(&self) -> Outcome {
        probe(&self.spec).await
    }
}

/// Run once under `timeout`: past it the process group is killed and the result is down with
/// reason "timeout".
pub async fn run(spec: &ScriptSpec, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, probe(spec)).await {
        Ok(o) => o,
        Err(_) => Outcome::down("timeout"),
    }
}

/// Run once with no time limit; dropping the future kills the process group.
pub async fn probe(spec: &ScriptSpec) -> Outcome {
    let (mut child, guard) = match spawn(spec) {
        Ok(x) => x,
        Err(e) => return Outcome::down(e.to_string()),
    };
    let status = child.wait().await;
    guard.disarm();
    match status {
        Ok(s) => judge(s, spec.dynamic),
        Err(e) => Outcome::down(format!("wait failed: {e}")),
    }
}

/// Up/down from an exit status (keepalived MISC_CHECK rules).
pub fn judge(status: ExitStatus, dynamic: bool) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::up("exit code 0"),
        (Some(c @ 2..=255), _) if dynamic => {
            let w = (c - 2) as u32;
            Outcome::up_weight(w, format!("exit code {c} (weight {w})"))
        }
        (Some(c), _) => Outcome::down(format!("exit code {c}")),
        (None, Some(sig)) => Outcome::down(format!("killed by signal {sig}")),
        (None, None) => Outcome::down("unknown exit status"),
    }
}

/// Kills the process group (SIGKILL to `-pgid`) when dropped armed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: plain syscall; the group exists as long as one of its members lives (and
            // its leader, our child, is not reaped before this guard is disarmed or dropped).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

fn spawn(spec: &ScriptSpec) -> Result<(tokio::process::Child, GroupGuard), ProbeError> {
    let (program, args): (&str, Vec<&str>) = if spec.shell {
        let mut a = vec!["-c", spec.command[0].as_str(), "xlb-check"];
        a.extend(spec.command[1..].iter().map(String::as_str));
        ("/bin/sh", a)
    } else {
        let (p, rest) = spec.command.split_first().ok_or(ProbeError::NoCommand)?;
        (p.as_str(), rest.iter().map(String::as_str).collect())
    };
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = &spec.user {
        let (uid, gid) = lookup_user(user)?;
        // std drops the supplementary groups (setgroups(0)) before setuid when run as root.
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(|e| ProbeError::Spawn {
        program: program.to_string(),
        reason: e.to_string(),
    })?;
    let pgid = child.id().map(|p| p as i32);
    Ok((child, GroupGuard(pgid)))
}

/// uid and primary gid of `user`.
fn lookup_user(user: &str) -> Result<(u32, u32), ProbeError> {
    let name = CString::new(user).map_err(|_| ProbeError::BadUserName(user.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getpwnam_r with a buffer we own; `pwd` is only read when `result` is non-null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return Err(ProbeError::UnknownUser(user.to_string()));
        }
        Ok((pwd.pw_uid, pwd.pw_gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes() {
        let st = |c: i32| ExitStatus::from_raw(c << 8);
        assert!(judge(st(0), false).up);
        assert_eq!(judge(st(1), false), Outcome::down("exit code 1"));
        assert_eq!(judge(st(1), true), Outcome::down("exit code 1"));
        assert_eq!(judge(st(7), false), Outcome::down("exit code 7"));
        assert_eq!(judge(st(7), true).weight, Some(5));
        assert_eq!(judge(st(2), true).weight, Some(0));
        assert_eq!(judge(st(255), true).weight, Some(253));
        assert_eq!(
            judge(ExitStatus::from_raw(9), false),
            Outcome::down("killed by signal 9")
        );
        assert!(lookup_user("root").is_ok_and(|(u, _)| u == 0));
        assert!(lookup_user("no-such-user-xlb").is_err());
    }
}
