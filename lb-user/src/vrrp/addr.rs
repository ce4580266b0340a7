//! The VIPs on the interface: add/remove through rtnetlink, announce them with gratuitous ARP
//! (IPv4) and unsolicited neighbour advertisements (IPv6) sent through `AF_PACKET` from the
//! interface's own MAC (no virtual MAC).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result};
use futures::TryStreamExt as _;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};

use crate::config::IpPrefix;

/// What the instance needs to know about its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub mac: [u8; 6],
    /// Administratively up and carrier present.
    pub up: bool,
}

/// An rtnetlink handle bound to the network namespace it was made in.
#[derive(Clone)]
pub struct Net {
    handle: rtnetlink::Handle,
}

fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Net {
    /// Opens a netlink connection; its driver runs as a task on the current runtime.
    pub fn new() -> Result<Net> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening rtnetlink")?;
        tokio::spawn(conn);
        Ok(Net { handle })
    }

    /// The interface `name` in the calling thread's network namespace, `None` when it does not
    /// exist. Three cheap ioctls, polled every 0.5 s for `track_interface`.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>> {
        link_state(name).with_context(|| format!("reading link {name}"))
    }

    /// Addresses on interface `index`.
    pub async fn addrs(&self, index: u32) -> Result<Vec<AddressMessage>> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .context("listing addresses")
    }

    fn msg_addr(m: &AddressMessage) -> Option<IpAddr> {
        // IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
        let mut addr = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(ip) => return Some(*ip),
                AddressAttribute::Address(ip) => addr = Some(*ip),
                _ => {}
            }
        }
        addr
    }

    /// The source address for adverts: IPv4: the first address of the interface that is not a
    /// VIP; IPv6: its link-local address.
    pub async fn primary_addr(&self, index: u32, v6: bool, vips: &[IpAddr]) -> Result<IpAddr> {
        for m in self.addrs(index).await? {
            let Some(ip) = Self::msg_addr(&m) else {
                continue;
            };
            match ip {
                IpAddr::V4(_) if !v6 && !vips.contains(&ip) => return Ok(ip),
                IpAddr::V6(a) if v6 && a.segments()[0] & 0xffc0 == 0xfe80 => return Ok(ip),
                _ => {}
            }
        }
        anyhow::bail!(
            "interface #{index} has no {} address to send VRRP adverts from",
            if v6 { "IPv6 link-local" } else { "IPv4" }
        )
    }

    /// Adds `vip` to interface `index` (no error if present). IPv6 VIPs skip DAD.
    pub async fn add(&self, index: u32, vip: &IpPrefix) -> Result<()> {
        let mut req = self.handle.address().add(index, vip.addr, vip.prefix_len);
        if vip.addr.is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if nl_errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("adding {vip} to interface #{index}")),
        }
    }

    /// Removes `vip` from interface `index` (no error if absent).
    pub async fn del(&self, index: u32, vip: IpAddr) -> Result<()> {
        for m in self.addrs(index).await? {
            if Self::msg_addr(&m) == Some(vip) {
                match self.handle.address().del(m).execute().await {
                    Ok(()) => {}
                    Err(e) if nl_errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("removing {vip} from interface #{index}"))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Index, MAC and up/running state of `name` (`SIOCGIFINDEX`, `SIOCGIFHWADDR`, `SIOCGIFFLAGS`).
pub fn link_state(name: &str) -> io::Result<Option<LinkState>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Ok(None);
    }
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // The SIOC* constants are c_ulong, ioctl's request is c_ulong on glibc and c_int on musl.
    #[allow(clippy::unnecessary_cast)]
    let ioctl = |req: &mut libc::ifreq, op: libc::c_ulong| -> io::Result<()> {
        // SAFETY: valid fd and a live ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), op as libc::Ioctl, req as *mut libc::ifreq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    match ioctl(&mut req, libc::SIOCGIFINDEX) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        r => r?,
    }
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    ioctl(&mut req, libc::SIOCGIFHWADDR)?;
    let mut mac = [0u8; 6];
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    for (d, s) in mac.iter_mut().zip(hw.iter()) {
        *d = *s as u8;
    }
    ioctl(&mut req, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    Ok(Some(LinkState {
        index,
        mac,
        up: flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0,
    }))
}

/// A gratuitous ARP (request, sender = target = `vip`) from `mac`, broadcast.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement (override flag, target link-layer address option)
/// for `vip` from `mac`, to ff02::1 with hop limit 255.
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let c = super::packet::checksum(&icmp, Some((IpAddr::V6(vip), IpAddr::V6(dst))), 58);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// Sends one GARP / unsolicited NA per VIP, `repeat` times, on interface `ifindex`.
pub fn announce(ifindex: u32, mac: [u8; 6], vips: &[IpAddr], repeat: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for _ in 0..repeat {
        for vip in vips {
            let (frame, proto) = match vip {
                IpAddr::V4(a) => (garp_frame(mac, *a), 0x0806u16),
                IpAddr::V6(a) => (unsolicited_na_frame(mac, *a), 0x86dd),
            };
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto.to_be();
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&frame[..6]);
            // SAFETY: frame and sll are live for the call.
            let r = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let f = garp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 101));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &[198, 18, 0, 101]);
        assert_eq!(&f[38..42], &[198, 18, 0, 101]);
    }

    #[test]
    fn na_checksum_verifies() {
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na_frame([2, 0, 0, 0, 0, 1], vip);
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override flag only");
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(
            super::super::packet::checksum(icmp, Some((vip.into(), dst.into())), 58),
            0
        );
        assert_eq!(f[21], 255, "hop limit");
    }
}
