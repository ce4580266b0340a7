//! A namespaced network lab: hosts are network namespaces, segments are Linux bridges, ports are
//! veth pairs. Used by `cargo xtask demo`, the benchmarks and lb-user's integration tests.
//!
//! ```no_run
//! use xtask::lab::{Lab, PortOpts};
//! # fn main() -> anyhow::Result<()> {
//! let mut lab = Lab::new("example")?;
//! let lan = lab.segment("lan")?;
//! let c = lab.host("client")?;
//! let s = lab.host("server")?;
//! lab.attach(&c, &lan, PortOpts { addrs: &["198.18.0.10/24", "2001:db8::10/64"], ..Default::default() })?;
//! lab.attach(&s, &lan, PortOpts { addrs: &["198.18.0.11/24"], ..Default::default() })?;
//! lab.run_ok(&c, &["ping", "-c1", "-W1", "198.18.0.11"])?;
//! # Ok(()) }
//! // Dropping `lab` (also while unwinding from a panic) kills its processes and deletes its
//! // namespaces, which deletes their veths and bridges.
//! ```
//!
//! Layout and naming:
//! - Every lab has a unique id `xlb-<tag>-<pid>-<n>` (tag: up to 10 of `[a-z0-9]`). Namespaces are
//!   `<id>-<host>`; the bridges live in the lab's own `<id>-switch` namespace, never the root one.
//! - Links never exist in the root namespace: a veth pair is created in the switch namespace with
//!   its other end created directly inside the host namespace under its final `ifname`. So link
//!   names only need to be unique inside the lab (the 15-character limit applies to `ifname`,
//!   segment names are cut to fit `br-<name>`).
//! - Every host gets its own bpffs, mounted at [`Host::bpffs`] in the caller's mount namespace and
//!   bind-mounted onto `/sys/fs/bpf` for commands run through [`Lab::command`] (whose
//!   `ip netns exec` gives them a fresh `/sys`), so pins of different hosts never collide.
//! - Only 198.18.0.0/15 and 2001:db8::/32 addresses may be added ([`Lab::add_addr`] refuses
//!   others), so lab traffic can never leave for a real network.
//! - Leftovers of a killed run: `cargo xtask lab clean` ([`clean_all`]).
//!
//! Built on it: [`dr`] (the direct-routing topology of the demo, benches and tests),
//! [`streams`] (the long-lived TCP stream server and client every lab test uses) and
//! [`require`] (what a root-only test needs, checked before it starts).
pub mod dr;
mod netns;
pub mod require;
pub mod streams;
pub mod systemd;
pub mod tun;
pub mod xdp;

use std::{
    fs::{self, OpenOptions},
    net::{IpAddr, SocketAddr, TcpStream},
    os::{fd::OwnedFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, Once,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

pub use netns::enter as in_named_netns;

use crate::util::{cmd, output, output_ok};

/// Prefix of every namespace, link and directory the lab creates.
pub const PREFIX: &str = "xlb-";
/// Where per-lab state lives (bpffs mounts, process logs).
pub const RUN_DIR: &str = "/run/xlb-lab";
const NETNS_DIR: &str = "/run/netns";

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);
/// Ids of the labs alive in this process, torn down at exit if they were never dropped.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();
/// Serialises `ip netns add` within the process (its first use sets up `/run/netns`).
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// A host: one network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    name: String,
    netns: String,
    bpffs: Option<PathBuf>,
}

impl Host {
    /// The name given to [`Lab::host`].
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The network namespace name (`ip netns exec <this>`).
    pub fn netns(&self) -> &str {
        &self.netns
    }
    /// This host's private bpffs, as seen from the process that made the lab (for pinning from
    /// [`Lab::in_netns`] closures). Commands started with [`Lab::command`] see it at
    /// `/sys/fs/bpf`. `None` for the switch namespace.
    pub fn bpffs(&self) -> Option<&Path> {
        self.bpffs.as_deref()
    }
}

/// A segment: one Linux bridge in the lab's switch namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    name: String,
    bridge: String,
}

impl Segment {
    /// The name given to [`Lab::segment`].
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The bridge device name inside the switch namespace.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
}

/// How [`Lab::attach`] sets up a port.
#[derive(Clone, Debug)]
pub struct PortOpts<'a> {
    /// Interface name inside the host (at most 15 characters). Default `eth0`.
    pub ifname: &'a str,
    /// Addresses in CIDR form, IPv4 and/or IPv6 (DAD is disabled, so they are usable at once).
    pub addrs: &'a [&'a str],
    /// Attach an `XDP_PASS` program in native mode to the bridge-side peer veth. Needed when the
    /// host runs a native-XDP program on this port that uses `XDP_TX`/redirect: veth only
    /// delivers those frames when its peer has an XDP program.
    pub xdp_peer_pass: bool,
    /// `ethtool -K <ifname> tx off` inside the host. Needed for hosts whose TCP traffic passes
    /// through a native-XDP director (otherwise the receivers see partial checksums).
    pub tx_checksum_off: bool,
}

impl Default for PortOpts<'_> {
    fn default() -> Self {
        PortOpts {
            ifname: "eth0",
            addrs: &[],
            xdp_peer_pass: false,
            tx_checksum_off: false,
        }
    }
}

/// A port made by [`Lab::attach`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Host namespace name.
    pub netns: String,
    /// Interface name inside the host.
    pub ifname: String,
    /// The bridge-side veth, inside the switch namespace.
    pub peer: String,
    /// The bridge it is enslaved to.
    pub bridge: String,
}

/// A process started by [`Lab::spawn`]; killed (its whole process group) when the lab drops.
#[derive(Clone, Debug)]
pub struct Proc {
    idx: usize,
    /// Process id (also its process group id).
    pub pid: u32,
    /// File receiving its stdout and stderr.
    pub log: PathBuf,
}

/// The lab. See the module documentation.
pub struct Lab {
    id: String,
    dir: PathBuf,
    switch: Host,
    hosts: Vec<Host>,
    segments: Vec<Segment>,
    ports: usize,
    children: Vec<Option<Child>>,
    xdp_prog: Option<OwnedFd>,
    xdp_links: Vec<OwnedFd>,
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `ip` is inside 198.18.0.0/15 or 2001:db8::/32, the only ranges the lab uses.
pub fn lab_address_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 198 && (o[1] == 18 || o[1] == 19)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

/// Names of the namespaces in `/run/netns` starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// Kills every process in namespace `name` and deletes it (its links go with it).
fn delete_netns(name: &str) {
    if let Ok(out) = output(&mut cmd("ip", ["netns", "pids", name])) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = output(&mut cmd("ip", ["netns", "del", name]));
}

/// Lazily unmounts every mount at or below `dir`.
fn umount_below(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: valid path string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Removes the namespaces and mounts of the lab with id `id` (used at exit and for stale ids).
fn cleanup_id(id: &str) {
    let mut names = netns_with_prefix(&format!("{id}-"));
    // Hosts first, the switch last.
    names.sort_by_key(|n| n.ends_with("-switch"));
    for n in names {
        delete_netns(&n);
    }
    let dir = Path::new(RUN_DIR).join(id);
    umount_below(&dir);
    let _ = fs::remove_dir_all(dir);
}

extern "C" fn cleanup_at_exit() {
    let ids = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for id in ids {
        cleanup_id(&id);
    }
}

/// What [`clean_all`] removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub netns: Vec<String>,
    pub links: Vec<String>,
}

/// Removes everything any lab (of any process) left: namespaces named `xlb-*` (killing their
/// processes), links named `xlb-*` in the root namespace, and the mounts and files under
/// [`RUN_DIR`]. Breaks labs still in use.
pub fn clean_all() -> Result<Cleaned> {
    let mut cleaned = Cleaned::default();
    for n in netns_with_prefix(PREFIX) {
        delete_netns(&n);
        cleaned.netns.push(n);
    }
    let links = output_ok(&mut cmd("ip", ["-o", "link", "show"]))?;
    for line in links.lines() {
        // "12: xlb-foo@if11: <...> ..."
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(PREFIX) {
            let _ = output(&mut cmd("ip", ["link", "del", name]));
            cleaned.links.push(name.to_string());
        }
    }
    umount_below(Path::new(RUN_DIR));
    if Path::new(RUN_DIR).exists() {
        fs::remove_dir_all(RUN_DIR).with_context(|| format!("removing {RUN_DIR}"))?;
    }
    Ok(cleaned)
}

/// A `Command` running `argv` inside `netns` (through `ip netns exec`), with `bpffs` (if any)
/// bind-mounted at `/sys/fs/bpf`.
fn netns_command(netns: &str, bpffs: Option<&Path>, argv: &[&str]) -> Command {
    const WRAP: &str =
        r#"b=$1; shift; [ -n "$b" ] && mount --bind "$b" /sys/fs/bpf 2>/dev/null; exec "$@""#;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns, "sh", "-c", WRAP, "xlb-lab"])
        .arg(bpffs.map(|p| p.as_os_str()).unwrap_or_default())
        .args(argv);
    c
}

impl Lab {
    /// Makes an empty lab (only its switch namespace). `tag` names it in `ip netns list`.
    /// Needs root.
    pub fn new(tag: &str) -> Result<Lab> {
        // SAFETY: plain syscall.
        ensure!(
            unsafe { libc::geteuid() } == 0,
            "the lab needs root (it creates network namespaces)"
        );
        let mut tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .take(10)
            .collect();
        if tag.is_empty() {
            tag = "lab".into();
        }
        let id = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        // A namespace with our id can only be left over from a killed process with the same pid.
        cleanup_id(&id);
        ATEXIT.call_once(|| {
            // SAFETY: registering a plain extern "C" fn.
            unsafe { libc::atexit(cleanup_at_exit) };
        });
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        let dir = Path::new(RUN_DIR).join(&id);
        let switch = Host {
            name: "switch".into(),
            netns: format!("{id}-switch"),
            bpffs: None,
        };
        let mut lab = Lab {
            id,
            dir,
            switch: switch.clone(),
            hosts: Vec::new(),
            segments: Vec::new(),
            ports: 0,
            children: Vec::new(),
            xdp_prog: None,
            xdp_links: Vec::new(),
        };
        fs::create_dir_all(lab.dir.join("logs"))
            .with_context(|| format!("creating {}", lab.dir.display()))?;
        lab.add_netns(&switch)?;
        // The switch only bridges: keep it quiet (no router solicitations, MLD, ...).
        lab.sysctl(&switch, "net.ipv6.conf.all.disable_ipv6", "1")?;
        lab.sysctl(&switch, "net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(lab)
    }

    /// The lab id (`xlb-<tag>-<pid>-<n>`), the prefix of all its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The switch namespace holding the bridges and the bridge-side veths.
    pub fn switch(&self) -> &Host {
        &self.switch
    }

    /// A scratch directory (in [`RUN_DIR`]) removed when the lab drops; process logs go to its
    /// `logs/` (moved to `$TMPDIR/xlb-lab-logs/<id>/` when the lab drops during a panic).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hosts made so far.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    fn add_netns(&mut self, h: &Host) -> Result<()> {
        {
            let _g = NETNS_ADD.lock().unwrap_or_else(|e| e.into_inner());
            output_ok(&mut cmd("ip", ["netns", "add", &h.netns]))?;
        }
        output_ok(&mut cmd("ip", ["-n", &h.netns, "link", "set", "lo", "up"]))?;
        Ok(())
    }

    /// Adds a segment: a bridge (STP and multicast snooping off) in the switch namespace.
    /// Call it again for more segments. `name`: up to 12 of `[A-Za-z0-9_-]`.
    pub fn segment(&mut self, name: &str) -> Result<Segment> {
        ensure!(
            valid_name(name, 12),
            "bad segment name {name:?} (1-12 of [A-Za-z0-9_-])"
        );
        ensure!(
            !self.segments.iter().any(|s| s.name == name),
            "segment {name} exists"
        );
        let seg = Segment {
            name: name.into(),
            bridge: format!("br-{name}"),
        };
        let sw = self.switch.netns.clone();
        output_ok(&mut cmd(
            "ip",
            [
                "-n",
                &sw,
                "link",
                "add",
                &seg.bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        ))?;
        output_ok(&mut cmd(
            "ip",
            [
                "-n",
                &sw,
                "link",
                "set",
                &seg.bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        ))?;
        output_ok(&mut cmd(
            "ip",
            ["-n", &sw, "link", "set", &seg.bridge, "up"],
        ))?;
        self.segments.push(seg.clone());
        Ok(seg)
    }

    /// Adds a host: a network namespace `<id>-<name>` with `lo` up, IPv6 DAD off and its own
    /// bpffs. `name`: up to 16 of `[A-Za-z0-9_-]`, not `switch`.
    pub fn host(&mut self, name: &str) -> Result<Host> {
        ensure!(
            valid_name(name, 16),
            "bad host name {name:?} (1-16 of [A-Za-z0-9_-])"
        );
        ensure!(name != "switch", "host name `switch` is reserved");
        ensure!(
            !self.hosts.iter().any(|h| h.name == name),
            "host {name} exists"
        );
        let bpffs = self.dir.join("bpffs").join(name);
        let h = Host {
            name: name.into(),
            netns: format!("{}-{name}", self.id),
            bpffs: Some(bpffs.clone()),
        };
        self.add_netns(&h)?;
        self.hosts.push(h.clone());
        for k in ["all", "default"] {
            self.sysctl(&h, &format!("net.ipv6.conf.{k}.accept_dad"), "0")?;
        }
        fs::create_dir_all(&bpffs).with_context(|| format!("creating {}", bpffs.display()))?;
        let p = std::ffi::CString::new(bpffs.as_os_str().as_encoded_bytes())?;
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                p.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        ensure!(
            rc == 0,
            "mounting bpffs at {}: {}",
            bpffs.display(),
            std::io::Error::last_os_error()
        );
        Ok(h)
    }

    /// Connects `host` to `seg` with a veth pair: `opts.ifname` inside the host (up, with
    /// `opts.addrs`), the peer enslaved to the segment's bridge.
    pub fn attach(&mut self, host: &Host, seg: &Segment, opts: PortOpts<'_>) -> Result<Port> {
        ensure!(
            valid_name(opts.ifname, 15),
            "bad interface name {:?}",
            opts.ifname
        );
        let n = self.ports;
        self.ports += 1;
        let mut peer = format!("p{n}-{}", host.name);
        peer.truncate(15);
        let sw = self.switch.netns.clone();
        output_ok(&mut cmd(
            "ip",
            [
                "-n",
                &sw,
                "link",
                "add",
                &peer,
                "type",
                "veth",
                "peer",
                "name",
                opts.ifname,
                "netns",
                &host.netns,
            ],
        ))?;
        output_ok(&mut cmd(
            "ip",
            ["-n", &sw, "link", "set", &peer, "master", &seg.bridge, "up"],
        ))?;
        output_ok(&mut cmd(
            "ip",
            ["-n", &host.netns, "link", "set", opts.ifname, "up"],
        ))?;
        for a in opts.addrs {
            self.add_addr(host, opts.ifname, a)?;
        }
        if opts.tx_checksum_off {
            self.run_ok(host, &["ethtool", "-K", opts.ifname, "tx", "off"])?;
        }
        if opts.xdp_peer_pass {
            if self.xdp_prog.is_none() {
                self.xdp_prog = Some(xdp::load_xdp_pass()?);
            }
            let prog = self.xdp_prog.as_ref().expect("just loaded");
            let link = netns::enter(&sw, || -> Result<OwnedFd> {
                let idx = netns::ifindex_here(&peer)?;
                xdp::attach_xdp_link(prog, idx, xdp::XDP_FLAGS_DRV_MODE)
            })??;
            self.xdp_links.push(link);
        }
        Ok(Port {
            netns: host.netns.clone(),
            ifname: opts.ifname.into(),
            peer,
            bridge: seg.bridge.clone(),
        })
    }

    /// Sets a sysctl inside `host`, e.g. `("net.ipv4.conf.all.arp_ignore", "1")`. Use `/` as the
    /// separator when a component contains a dot (`net/ipv4/conf/eth0.100/arp_ignore`).
    pub fn sysctl(&self, host: &Host, key: &str, value: &str) -> Result<()> {
        let rel = if key.contains('/') {
            key.to_string()
        } else {
            key.replace('.', "/")
        };
        let path = Path::new("/proc/sys").join(rel.trim_start_matches('/'));
        let v = value.to_string();
        netns::enter(&host.netns, move || {
            fs::write(&path, v).with_context(|| format!("writing {}", path.display()))
        })?
        .with_context(|| format!("sysctl {key}={value} in {}", host.netns))
    }

    /// Adds an address (CIDR) to `ifname` in `host`. IPv6 addresses get `nodad`. Refuses
    /// anything outside 198.18.0.0/15 and 2001:db8::/32.
    pub fn add_addr(&self, host: &Host, ifname: &str, cidr: &str) -> Result<()> {
        let ip: IpAddr = cidr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("bad address {cidr:?}"))?;
        ensure!(
            lab_address_allowed(ip),
            "{cidr}: the lab only uses 198.18.0.0/15 and 2001:db8::/32"
        );
        let mut c = cmd(
            "ip",
            ["-n", &host.netns, "addr", "add", cidr, "dev", ifname],
        );
        if ip.is_ipv6() {
            c.arg("nodad");
        }
        output_ok(&mut c)?;
        Ok(())
    }

    /// A `Command` that runs `argv` inside `host` (`ip netns exec`, so `/sys` is the host's), with
    /// the host's bpffs at `/sys/fs/bpf`. Customise it (env, cwd, stdio) and run it, or hand it
    /// to [`Lab::spawn_command`].
    pub fn command(&self, host: &Host, argv: &[&str]) -> Command {
        netns_command(&host.netns, host.bpffs(), argv)
    }

    /// Runs `argv` inside `host` to completion and returns its output (exit status not checked).
    pub fn run(&self, host: &Host, argv: &[&str]) -> Result<Output> {
        output(&mut self.command(host, argv))
    }

    /// Like [`Lab::run`] but fails (with stderr) on a non-zero exit; returns stdout.
    pub fn run_ok(&self, host: &Host, argv: &[&str]) -> Result<String> {
        output_ok(&mut self.command(host, argv)).with_context(|| format!("in host {}", host.name))
    }

    /// Starts `argv` inside `host` in the background, stdout and stderr going to [`Proc::log`].
    pub fn spawn(&mut self, host: &Host, argv: &[&str]) -> Result<Proc> {
        let c = self.command(host, argv);
        self.spawn_command(host, c)
    }

    /// Starts a command made with [`Lab::command`] in the background, in its own process group,
    /// stdin null, stdout and stderr to a log file; the lab kills it when dropped.
    pub fn spawn_command(&mut self, host: &Host, mut c: Command) -> Result<Proc> {
        let idx = self.children.len();
        let log = self
            .dir
            .join("logs")
            .join(format!("{}-{idx}.log", host.name));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        c.stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .process_group(0);
        let child = c.spawn().with_context(|| format!("spawning {c:?}"))?;
        let pid = child.id();
        self.children.push(Some(child));
        Ok(Proc { idx, pid, log })
    }

    /// `Some(status)` once `p` has exited.
    pub fn exited(&mut self, p: &Proc) -> Result<Option<ExitStatus>> {
        match self.children.get_mut(p.idx) {
            Some(Some(c)) => Ok(c.try_wait()?),
            _ => bail!("process {} is not tracked (killed already?)", p.pid),
        }
    }

    /// Kills `p`'s process group (SIGKILL) and reaps it.
    pub fn kill(&mut self, p: &Proc) -> Result<()> {
        if let Some(slot) = self.children.get_mut(p.idx) {
            if let Some(mut c) = slot.take() {
                kill_child(&mut c);
            }
        }
        Ok(())
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to `p`'s process group.
    pub fn signal(&self, p: &Proc, signal: i32) -> Result<()> {
        // SAFETY: plain syscall.
        ensure!(
            unsafe { libc::kill(-(p.pid as i32), signal) } == 0,
            "kill -{signal} -{}: {}",
            p.pid,
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// What `p` has written so far.
    pub fn log(&self, p: &Proc) -> String {
        fs::read(&p.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The namespace name of `host`.
    pub fn netns_name<'h>(&self, host: &'h Host) -> &'h str {
        &host.netns
    }

    /// The MAC address of `ifname` in `host`.
    pub fn mac(&self, host: &Host, ifname: &str) -> Result<[u8; 6]> {
        let out = output_ok(&mut cmd(
            "ip",
            ["-n", &host.netns, "-o", "link", "show", "dev", ifname],
        ))?;
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "link/ether")
            .and(words.next())
            .and_then(parse_mac)
            .with_context(|| format!("no MAC for {ifname} in {}: {out}", host.netns))
    }

    /// The interface index of `ifname` in `host`.
    pub fn ifindex(&self, host: &Host, ifname: &str) -> Result<u32> {
        netns::enter(&host.netns, || netns::ifindex_here(ifname))?
    }

    /// Runs `f` on a thread inside `host`'s network namespace (e.g. to load and attach an XDP
    /// program there with aya). See [`in_named_netns`].
    pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(&self, host: &Host, f: F) -> Result<T> {
        netns::enter(&host.netns, f)
    }

    /// Waits until a TCP connect from inside `host` to `addr` (e.g. `198.18.0.11:80`) succeeds.
    pub fn wait_tcp(&self, host: &Host, addr: &str, timeout: Duration) -> Result<()> {
        let sa: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad socket address {addr:?}"))?;
        let deadline = Instant::now() + timeout;
        netns::enter(&host.netns, || loop {
            let err = match TcpStream::connect_timeout(&sa, Duration::from_millis(300)) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "{addr} not reachable from {} within {timeout:?}: {err}",
                    host.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        })?
    }

    fn teardown(&mut self) {
        for mut c in self.children.drain(..).flatten() {
            kill_child(&mut c);
        }
        self.xdp_links.clear();
        self.xdp_prog = None;
        for h in self.hosts.iter().rev() {
            delete_netns(&h.netns);
        }
        delete_netns(&self.switch.netns);
        // Anything made behind our back with our id (e.g. a half-made host).
        for n in netns_with_prefix(&format!("{}-", self.id)) {
            delete_netns(&n);
        }
        umount_below(&self.dir);
        // When dropped by a panic, keep what the processes wrote (outside RUN_DIR) for debugging.
        let logs = self.dir.join("logs");
        let wrote = fs::read_dir(&logs)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .any(|m| m.len() > 0)
            })
            .unwrap_or(false);
        if std::thread::panicking() && wrote {
            let kept = std::env::temp_dir().join("xlb-lab-logs").join(&self.id);
            let _ = fs::create_dir_all(kept.parent().unwrap_or(Path::new("/tmp")));
            if fs::rename(&logs, &kept).is_ok() {
                eprintln!("lab {}: process logs kept in {}", self.id, kept.display());
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|i| *i != self.id);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn kill_child(c: &mut Child) {
    // SAFETY: plain syscall; the child leads its own process group.
    unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
    let _ = c.kill();
    let _ = c.wait();
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn address_guard() {
        for ok in [
            "198.18.0.1",
            "198.19.255.255",
            "2001:db8::1",
            "2001:db8:ffff::1",
        ] {
            assert!(lab_address_allowed(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "198.20.0.1",
            "10.0.0.1",
            "8.8.8.8",
            "2001:db9::1",
            "fe80::1",
            "::1",
        ] {
            assert!(!lab_address_allowed(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("rs1", 16));
        assert!(!valid_name("", 16));
        assert!(!valid_name("a b", 16));
        assert!(!valid_name("abcdefghijklmnopq", 16));
    }
}
