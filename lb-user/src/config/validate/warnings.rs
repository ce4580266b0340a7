//! Warnings: a configuration that is valid but most likely not what was meant. `xlb
//! check-config` prints them (and fails on them with `--strict`), the daemon logs them; they
//! never stop a load.
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::super::error::Collector;
use super::super::schema::*;
use super::super::CommandLookup;

pub(crate) fn warnings(cfg: &Config, commands: Option<CommandLookup<'_>>, c: &mut Collector<'_>) {
    let mut implicit_always_warned = HashSet::new();
    for vs in &cfg.virtual_servers {
        if vs.real_servers.is_empty() {
            let fallback = if vs.sorry_server.is_some() {
                "only the sorry server answers"
            } else {
                "its traffic is dropped"
            };
            c.warn(
                vs.vip.span(),
                format!(
                    "virtual server `{}` has no real servers: {fallback}; add \
                     [[virtual_server.real_server]] tables",
                    vs.service_name()
                ),
            );
        }
        let vip = *vs.vip.get_ref();
        if vs.announce.is_none()
            && cfg.vrrp_instance_for(vip).is_none()
            && implicit_always_warned.insert(vip)
        {
            c.warn(
                vs.vip.span(),
                format!(
                    "no vrrp_instance lists {vip} in virtual_ipaddress and `announce` is not set: \
                     the service is active on every director that loads this file, as with \
                     announce = \"always\"; add the VIP to a vrrp_instance, or write \
                     announce = \"always\" (or \"bgp\") if that is meant"
                ),
            );
        }
    }
    if let Some(lookup) = commands {
        commands_on_host(cfg, lookup, c);
    }
}

/// Check and notify commands that this host cannot run.
fn commands_on_host(cfg: &Config, lookup: CommandLookup<'_>, c: &mut Collector<'_>) {
    let mut warn = |cmd: &Spanned<Vec<String>>, shell: bool, consequence: &str| {
        if let Some(problem) = lookup(cmd.get_ref(), shell) {
            c.warn(cmd.span(), format!("{problem}: {consequence}"));
        }
    };
    for vs in &cfg.virtual_servers {
        let vs_check = vs.check.iter();
        let rs_checks = vs.real_servers.iter().filter_map(|rs| rs.check.as_ref());
        for chk in vs_check.chain(rs_checks) {
            if *chk.kind.get_ref() != CheckType::Script {
                continue;
            }
            if let Some(cmd) = &chk.command {
                warn(
                    cmd,
                    chk.shell,
                    "this script check always fails (its real servers stay down)",
                );
            }
        }
        for rs in &vs.real_servers {
            for cmd in [&rs.notify_up, &rs.notify_down].into_iter().flatten() {
                warn(cmd, false, "this notify command never runs");
            }
        }
    }
    for vi in &cfg.vrrp_instances {
        let notify = [
            &vi.notify_master,
            &vi.notify_backup,
            &vi.notify_fault,
            &vi.notify_stop,
            &vi.notify,
        ];
        for cmd in notify.into_iter().flatten() {
            warn(cmd, false, "this notify command never runs");
        }
    }
    for script in &cfg.vrrp_scripts {
        // keepalived marks such a script failed at once; the tracking instances then lose its
        // weight, or go to FAULT for weight 0, on every director that loads this file.
        warn(
            &script.script,
            false,
            "this vrrp_script always fails (the instances tracking it count it as failed)",
        );
    }
}

/// What stops `command` from running on this host, found as `execvp` finds a program: a name
/// with a `/` is a path, any other name is searched in `$PATH` (glibc's default `/bin:/usr/bin`
/// without one). With `shell`, the program is the first word of the shell command line, when it
/// is a plain word (not a builtin, a variable or an assignment). `None`: nothing known to stop it.
pub(crate) fn command_problem(command: &[String], shell: bool) -> Option<String> {
    let first = command.first()?;
    let program = if shell {
        let word = first.split_whitespace().next()?;
        if !is_plain_program_word(word) {
            return None;
        }
        word
    } else {
        first.as_str()
    };
    if program.is_empty() {
        return None;
    }
    let path_env = std::env::var_os("PATH");
    let found = resolve_like_execvp(program, path_env.as_deref())?;
    match found {
        Resolved::Executable => None,
        Resolved::NotExecutable(p) => Some(format!(
            "command `{}` is not an executable file",
            p.display()
        )),
        Resolved::Missing if program.contains('/') => {
            Some(format!("command `{program}` does not exist"))
        }
        Resolved::Missing => Some(format!(
            "command `{program}` is not found in PATH ({})",
            path_env
                .as_deref()
                .unwrap_or(OsStr::new(DEFAULT_PATH))
                .to_string_lossy()
        )),
    }
}

/// glibc's search path for `execvp` when `PATH` is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Shell words that are not programs looked up in PATH.
const SHELL_WORDS: [&str; 24] = [
    "!", ":", ".", "[", "[[", "alias", "break", "case", "cd", "command", "echo", "eval", "exec",
    "exit", "export", "false", "for", "if", "printf", "read", "set", "test", "true", "while",
];

fn is_plain_program_word(word: &str) -> bool {
    let special = |ch: char| "$`=(){}<>|&;'\"\\*?~".contains(ch);
    !SHELL_WORDS.contains(&word) && !word.chars().any(special)
}

enum Resolved {
    Executable,
    NotExecutable(PathBuf),
    Missing,
}

fn resolve_like_execvp(program: &str, path_env: Option<&OsStr>) -> Option<Resolved> {
    if program.contains('/') {
        return Some(classify(Path::new(program)));
    }
    let dirs = path_env.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut not_executable = None;
    for dir in std::env::split_paths(dirs) {
        // An empty PATH element is the current directory, as for execvp.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        match classify(&dir.join(program)) {
            Resolved::Executable => return Some(Resolved::Executable),
            Resolved::NotExecutable(p) => not_executable = not_executable.or(Some(p)),
            Resolved::Missing => {}
        }
    }
    Some(not_executable.map_or(Resolved::Missing, Resolved::NotExecutable))
}

fn classify(path: &Path) -> Resolved {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Resolved::Executable,
        Ok(_) => Resolved::NotExecutable(path.to_path_buf()),
        Err(_) => Resolved::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        assert_eq!(command_problem(&cmd("/bin/sh"), false), None);
        assert_eq!(command_problem(&cmd("sh"), false), None);
        let missing = command_problem(&cmd("/nonexistent/xlb-check"), false).unwrap();
        assert!(missing.contains("does not exist"), "{missing}");
        let missing = command_problem(&cmd("xlb-no-such-program"), false).unwrap();
        assert!(missing.contains("not found in PATH"), "{missing}");
        let not_exec = command_problem(&cmd("/etc/passwd"), false).unwrap();
        assert!(not_exec.contains("not an executable file"), "{not_exec}");
        assert!(command_problem(&cmd("/tmp"), false).is_some());
    }

    #[test]
    fn shell_commands_are_checked_by_their_first_plain_word() {
        assert!(command_problem(&cmd("xlb-no-such-program -x | grep y"), true).is_some());
        assert_eq!(command_problem(&cmd("sh -c 'exit 0'"), true), None);
        for unknowable in ["$CHECK --now", "X=1 prog", "test -f /x", "[ -f /x ]"] {
            assert_eq!(
                command_problem(&cmd(unknowable), true),
                None,
                "{unknowable}"
            );
        }
    }
}
