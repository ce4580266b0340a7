//! systemd as PID 1 of a container inside a lab host: the Debian 11 root (`cargo xtask setup`)
//! seen through an overlay, booted in new PID, mount and UTS namespaces within the host's network
//! namespace, with a cgroup2 subtree of its own. This machine has no systemd as PID 1, so this
//! is where units run as they do on a director: `systemctl start|reload|restart|stop`, the
//! sandboxing directives, Type=notify, the watchdog, ExecStop=.
use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use super::Host;

/// Where the host has its cgroup2 tree: `unified` on a hybrid layout, else the cgroup root
/// itself. A fresh cgroup2 mount elsewhere shows the same tree.
fn cgroup2_root() -> Result<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists())
        .context("no cgroup2 hierarchy under /sys/fs/cgroup")
}

/// A booted container. Dropping it kills every process in it and removes its mounts, overlay
/// scratch and cgroup.
pub struct Container {
    scratch: PathBuf,
    root: PathBuf,
    cgroup: PathBuf,
    /// The container's PID 1 as the host sees it.
    pid1: u32,
    booter: Option<std::process::Child>,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs inside the new namespaces (as the PID 1-to-be): private mounts, the API filesystems the
/// container manager provides (systemd mounts /run, /tmp and the rest itself), then systemd.
const INNER: &str = r#"set -e
root=$1
mount --make-rprivate /
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t bpf bpf "$root/sys/fs/bpf"
mount --rbind /dev "$root/dev"
exec unshare --cgroup -- sh -c 'mount -t cgroup2 cgroup2 "$1/sys/fs/cgroup" && exec chroot "$1" env container=xlb-lab /lib/systemd/systemd --system' sh "$root"
"#;

impl Container {
    /// Boots the Debian 11 root of `lower` in `host`'s network namespace; waits until
    /// `systemctl is-system-running` says the boot is over.
    pub fn boot(lower: &Path, host: &Host, tag: &str) -> Result<Container> {
        ensure!(
            lower.join("lib/systemd/systemd").exists(),
            "no systemd in {} (cargo xtask setup makes the Debian 11 root)",
            lower.display()
        );
        let name = format!("xlb-sd-{tag}-{}", std::process::id());
        let scratch = std::env::temp_dir().join(&name);
        for d in ["upper", "work", "root"] {
            fs::create_dir_all(scratch.join(d))?;
        }
        let root = scratch.join("root");
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            scratch.join("upper").display(),
            scratch.join("work").display()
        );
        let o = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&root)
            .output()?;
        ensure!(o.status.success(), "overlay: {}", text(&o));
        let cgroup = cgroup2_root()?.join(&name);
        fs::create_dir_all(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        let mut me = Container {
            scratch,
            root,
            cgroup,
            pid1: 0,
            booter: None,
        };
        me.start(host)?;
        me.wait_booted()?;
        Ok(me)
    }

    fn start(&mut self, host: &Host) -> Result<()> {
        let log = fs::File::create(self.scratch.join("boot.log"))?;
        // The booter joins the container's cgroup first, then enters the network namespace
        // and unshares the rest; systemd finds the subtree as its root (cgroup namespace).
        let outer = format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {} unshare --pid --fork --mount --uts sh -c \"$1\" sh {}",
            self.cgroup.display(),
            host.netns(),
            self.root.display()
        );
        let child = Command::new("sh")
            .args(["-c", &outer, "sh", INNER])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        // `sh` execs `ip netns exec`, which execs `unshare`: the child's pid is unshare's, and
        // its only child is the container's PID 1 (which moves itself to a sub-cgroup at once).
        let booter = child.id();
        self.booter = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children = fs::read_to_string(format!("/proc/{booter}/task/{booter}/children"))
                .unwrap_or_default();
            if let Some(pid) = children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| {
                    fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
            {
                self.pid1 = pid;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("systemd did not start: {}", self.boot_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_booted(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = self.exec(&["systemctl", "is-system-running"])?;
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            // "degraded": some unit of the minimal root failed (not ours); still booted.
            if state == "running" || state == "degraded" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("boot did not finish ({state}): {}", self.boot_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's root directory as the host sees it (write files into it from here).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn boot_log(&self) -> String {
        fs::read_to_string(self.scratch.join("boot.log")).unwrap_or_default()
    }

    /// Runs `argv` inside the container (its namespaces and root), to completion.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let pid = self.pid1.to_string();
        let o = Command::new("nsenter")
            .args([
                "-t",
                &pid,
                "-a",
                "-r",
                "-w",
                "env",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .args(argv)
            .output()
            .with_context(|| format!("nsenter {argv:?}"))?;
        Ok(o)
    }

    /// Like [`Container::exec`], failing with the output on a non-zero exit; returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String> {
        let o = self.exec(argv)?;
        ensure!(
            o.status.success(),
            "{argv:?} in the container: {}",
            text(&o)
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `systemctl ARGS` inside the container.
    pub fn systemctl(&self, args: &[&str]) -> Result<Output> {
        let mut argv = vec!["systemctl", "--no-pager"];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// The journal of `unit` (for failure messages and log assertions).
    pub fn journal(&self, unit: &str) -> String {
        self.exec(&["journalctl", "--no-pager", "-o", "cat", "-u", unit])
            .map(|o| text(&o))
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing PID 1 of a PID namespace kills every process in it.
        if self.pid1 != 0 {
            // SAFETY: plain syscall.
            unsafe { libc::kill(self.pid1 as i32, libc::SIGKILL) };
        }
        if let Some(mut c) = self.booter.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{}", self.pid1)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        remove_cgroup_tree(&self.cgroup);
        // The container's own mounts died with its mount namespace; the overlay is ours.
        let _ = Command::new("umount").arg(&self.root).status();
        let still = fs::read_to_string("/proc/mounts")
            .map(|m| m.contains(&self.scratch.display().to_string()))
            .unwrap_or(true);
        if !still {
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}

/// cgroup directories go leaves first (rmdir; their files are not real files).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
