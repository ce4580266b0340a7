//! The IO side of [`crate::realserver_kernel`]: module detection, the generic netlink socket
//! for FOU, the ipip links, and their removal.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::Command,
};

use futures::StreamExt as _;
use rtnetlink::packet_core::NetlinkPayload;

use crate::net::BlockingNet;
use crate::realserver::{write_sysctl, RealServerError};
use crate::realserver_kernel::{
    family_request, fou_request, ipip_link_request, link_name, module_present, modules_for,
    parse_reply, GenlReply, KernelTunnelState, FOU_CMD_ADD, FOU_CMD_DEL,
};

fn fail(what: String) -> RealServerError {
    RealServerError::Tunnel(what)
}

/// Loads what `gue`/ipip needs where it is missing: returns the modules modprobe loaded now and,
/// if some stay missing, why (the kernel may still load them itself on the first request, so
/// the caller tries anyway).
pub fn ensure_modules(gue: bool) -> (Vec<String>, Option<String>) {
    let sys = Path::new("/sys/module");
    let mut loaded = Vec::new();
    for m in modules_for(gue) {
        if module_present(sys, m) {
            continue;
        }
        let why = match Command::new("modprobe").arg(m).output() {
            Ok(o) if o.status.success() && module_present(sys, m) => {
                loaded.push(m.to_string());
                continue;
            }
            Ok(o) => format!(
                "modprobe {m}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("modprobe: {e}"),
        };
        return (loaded, Some(format!("/sys/module/{m} absent, {why}")));
    }
    (loaded, None)
}

/// Unloads the modules `up` loaded (best effort: another user may hold them).
pub fn unload(modules: &[String]) -> Vec<String> {
    modules
        .iter()
        .rev()
        .filter(|m| {
            Command::new("modprobe")
                .args(["-r", m])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|m| format!("unloaded module {m}"))
        .collect()
}

/// A generic netlink socket (one request, one reply at a time).
struct Genl(i32);

impl Genl {
    fn open() -> std::io::Result<Genl> {
        // SAFETY: plain socket(2); the fd is owned by Genl and closed on drop.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Genl(fd))
    }

    fn ask(&self, msg: &[u8]) -> std::io::Result<GenlReply> {
        // SAFETY: msg is a valid buffer of its length; the kernel is the default destination of
        // an unbound netlink socket.
        let sent = unsafe { libc::send(self.0, msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(parse_reply(&buf[..n as usize]))
    }
}

impl Drop for Genl {
    fn drop(&mut self) {
        // SAFETY: our fd, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The FOU family's id; `Err` with the reason when the kernel has none.
fn fou_family(g: &Genl) -> Result<u16, String> {
    match g.ask(&family_request("fou", 1)) {
        Ok(GenlReply::Family(id)) => Ok(id),
        Ok(GenlReply::Error(e)) => Err(format!(
            "generic netlink family fou: {}",
            std::io::Error::from_raw_os_error(e)
        )),
        Ok(GenlReply::Other) => Err("generic netlink family fou: unexpected answer".into()),
        Err(e) => Err(format!("generic netlink: {e}")),
    }
}

/// `ip fou add|del port PORT gue`.
fn fou(cmd: u8, port: u16) -> Result<(), String> {
    let g = Genl::open().map_err(|e| format!("generic netlink socket: {e}"))?;
    let family = fou_family(&g)?;
    match g.ask(&fou_request(family, cmd, port, 2)) {
        Ok(GenlReply::Error(0)) => Ok(()),
        Ok(GenlReply::Error(e)) => Err(format!(
            "fou port {port}: {}",
            std::io::Error::from_raw_os_error(e)
        )),
        Ok(_) => Err(format!("fou port {port}: unexpected answer")),
        Err(e) => Err(format!("fou port {port}: {e}")),
    }
}

/// Creates the ipip link `name` with `remote`; `Err(errno, text)` as the kernel refused it.
fn add_ipip(net: &BlockingNet, name: &str, remote: Ipv4Addr) -> Result<(), (i32, String)> {
    net.with_handle(|mut h| async move {
        let mut replies = h
            .request(ipip_link_request(name, remote, 0))
            .map_err(|e| (0, e.to_string()))?;
        while let Some(m) = replies.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                let code = e.raw_code().abs();
                if code != 0 {
                    return Err((code, e.to_string()));
                }
            }
        }
        Ok(())
    })
}

fn set_up(net: &BlockingNet, name: &str) -> Result<(), RealServerError> {
    let index = net
        .link(name)?
        .ok_or_else(|| fail(format!("link {name} vanished after creation")))?
        .index;
    net.with_handle(|h| async move {
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        h.link().set(msg).execute().await
    })
    .map_err(|e| fail(format!("setting {name} up: {e}")))
}

fn del_link(net: &BlockingNet, name: &str) -> Result<bool, RealServerError> {
    let Some(link) = net.link(name)? else {
        return Ok(false);
    };
    net.with_handle(|h| async move { h.link().del(link.index).execute().await })
        .map_err(|e| fail(format!("removing {name}: {e}")))?;
    Ok(true)
}

/// Why the kernel path is not available (to fall back to xlb's program), or the error.
pub enum KernelSetup {
    Done(KernelTunnelState, Vec<String>),
    Unavailable(String),
}

/// Sets up the kernel's tunnels for `directors` (IPv4 only), GUE on `gue_port` when given.
pub fn up(directors: &[IpAddr], gue_port: Option<u16>) -> Result<KernelSetup, RealServerError> {
    let v4: Vec<Ipv4Addr> = directors
        .iter()
        .filter_map(|d| match d {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    if v4.len() != directors.len() {
        return Ok(KernelSetup::Unavailable(
            "IPv6 directors need ip6_tunnel links, not built in this path".into(),
        ));
    }
    let (loaded, missing) = ensure_modules(gue_port.is_some());
    let unavailable = |why: String| {
        unload(&loaded);
        let both = match &missing {
            Some(m) => format!("{m}; {why}"),
            None => why,
        };
        Ok(KernelSetup::Unavailable(both))
    };
    // FOU first: nothing is created yet if the kernel has no fou.
    if gue_port.is_some() {
        let probe = Genl::open()
            .map_err(|e| format!("generic netlink socket: {e}"))
            .and_then(|g| fou_family(&g));
        if let Err(why) = probe {
            return unavailable(why);
        }
    }
    let net = BlockingNet::connect()?;
    let mut st = KernelTunnelState {
        loaded_modules: loaded.clone(),
        ..Default::default()
    };
    let mut changes: Vec<String> = loaded
        .iter()
        .map(|m| format!("loaded module {m}"))
        .collect();
    for (i, d) in v4.iter().enumerate() {
        let name = link_name(i);
        match add_ipip(&net, &name, *d) {
            Ok(()) => {}
            Err((code, text)) if code == libc::EOPNOTSUPP && st.links.is_empty() => {
                return unavailable(format!("rtnetlink refused the ipip link {name}: {text}"));
            }
            Err((_, text)) => {
                let _ = down(&st);
                return Err(fail(format!("creating {name}: {text}")));
            }
        }
        st.links.push(name.clone());
        set_up(&net, &name)?;
        write_sysctl("setting", &format!("net.ipv4.conf.{name}.rp_filter"), "2")?;
        changes.push(format!(
            "created {name} (ipip, remote {d}, up, rp_filter 2)"
        ));
    }
    if let Some(port) = gue_port {
        if let Err(why) = fou(FOU_CMD_ADD, port) {
            let _ = down(&st);
            return Err(fail(why));
        }
        st.fou_port = Some(port);
        changes.push(format!("added FOU receive port {port} (gue)"));
    }
    Ok(KernelSetup::Done(st, changes))
}

/// Removes what [`up`] created.
pub fn down(st: &KernelTunnelState) -> Result<Vec<String>, RealServerError> {
    let mut changes = Vec::new();
    if let Some(port) = st.fou_port {
        fou(FOU_CMD_DEL, port).map_err(fail)?;
        changes.push(format!("removed FOU port {port}"));
    }
    let net = BlockingNet::connect()?;
    for name in &st.links {
        if del_link(&net, name)? {
            changes.push(format!("removed {name}"));
        }
    }
    changes.extend(unload(&st.loaded_modules));
    Ok(changes)
}

/// Each created link present (the FOU port is not read back: no dump of it is built).
pub fn check(st: &KernelTunnelState) -> Result<Vec<(String, bool)>, RealServerError> {
    let net = BlockingNet::connect()?;
    let mut out = Vec::new();
    for name in &st.links {
        out.push((
            format!("kernel tunnel link {name}"),
            net.link(name)?.is_some(),
        ));
    }
    Ok(out)
}
