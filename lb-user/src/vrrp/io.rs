//! Raw-socket IO of VRRP adverts (IP protocol 112) on one interface, with tokio.
//!
//! IPv4: the kernel builds the IP header (TTL 255, multicast TTL 255, the bound source address);
//! received datagrams come with their IPv4 header, read for source, destination and TTL.
//! IPv6: hop limit and destination come from `IPV6_HOPLIMIT` / `IPV6_PKTINFO` ancillary data.
//! The socket is bound to the device (`SO_BINDTODEVICE`), joins 224.0.0.18 / ff02::12 there and
//! does not loop its own multicast back. Checksums are computed and verified here (never by the
//! kernel) so that bad ones can be counted.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{parse_ipv4, Advert, RxError, IPPROTO_VRRP, MCAST_V4, MCAST_V6, VRRP_TTL};

/// One received datagram (before VRRP validation).
#[derive(Debug, Clone)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL / hop limit it arrived with.
    pub ttl: u8,
    /// The VRRP message.
    pub payload: Vec<u8>,
}

impl Received {
    /// Decodes the advert, checking the TTL first (RFC: must be 255).
    pub fn advert(&self) -> Result<Advert, RxError> {
        if self.ttl != VRRP_TTL {
            return Err(RxError::Ttl);
        }
        Advert::decode(&self.payload, self.src, self.dst)
    }
}

/// A VRRP socket on one interface.
pub struct VrrpSocket {
    tx: AsyncFd<Socket>,
    rx: AsyncFd<Socket>,
    v6: bool,
    ifindex: u32,
    src: IpAddr,
    /// Where adverts go: the multicast group, or the unicast peers.
    dsts: Vec<IpAddr>,
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: valid fd, pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl VrrpSocket {
    /// Opens the sockets on `ifname` (index `ifindex`) sending from `src` (an address of that
    /// interface; for IPv6 its link-local address) to `unicast_peers`, or to the VRRP multicast
    /// group when there are none. Must be called in the network namespace of the interface.
    ///
    /// Two sockets: a raw socket bound to an address only receives datagrams *to* that
    /// address (so no multicast), and the v3 checksum needs a known source. So one socket is
    /// bound to `src` and only sends (a drop-all filter keeps its queue empty); the other is
    /// unbound and only receives.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        src: IpAddr,
        unicast_peers: &[IpAddr],
    ) -> io::Result<VrrpSocket> {
        let v6 = src.is_ipv6();
        let raw = || -> io::Result<Socket> {
            let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
            let s = Socket::new(
                domain,
                Type::RAW,
                Some(Protocol::from(i32::from(IPPROTO_VRRP))),
            )?;
            s.set_nonblocking(true)?;
            s.bind_device(Some(ifname.as_bytes()))?;
            if v6 {
                s.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
                s.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_loop_v6(false)?;
            } else {
                s.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
                s.set_ttl_v4(u32::from(VRRP_TTL))?;
                s.set_multicast_loop_v4(false)?;
                // Only the groups joined on this socket (not every group of the host).
                setsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, 0)?;
            }
            Ok(s)
        };
        let tx = raw()?;
        // `ret #0`: accept nothing.
        tx.attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
        let bind: SocketAddr = match src {
            IpAddr::V4(a) => {
                tx.set_multicast_if_v4(&a)?;
                SocketAddr::new(IpAddr::V4(a), 0)
            }
            IpAddr::V6(a) => {
                let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                    ifindex
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope))
            }
        };
        tx.bind(&bind.into())?;
        let rx = raw()?;
        if v6 {
            setsockopt_int(&rx, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            setsockopt_int(&rx, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            if unicast_peers.is_empty() {
                rx.join_multicast_v6(&MCAST_V6, ifindex)?;
            }
        } else if unicast_peers.is_empty() {
            rx.join_multicast_v4_n(&MCAST_V4, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
        }
        let dsts = if unicast_peers.is_empty() {
            vec![if v6 {
                IpAddr::V6(MCAST_V6)
            } else {
                IpAddr::V4(MCAST_V4)
            }]
        } else {
            unicast_peers.to_vec()
        };
        // SAFETY: `tx`/`rx` are owned sockets that stay open (inside their AsyncFd) until it
        // drops, and are not registered elsewhere.
        let (tx, rx) = unsafe {
            (
                AsyncFd::register(tx).map_err(io::Error::from)?,
                AsyncFd::register(rx).map_err(io::Error::from)?,
            )
        };
        Ok(VrrpSocket {
            tx,
            rx,
            v6,
            ifindex,
            src,
            dsts,
        })
    }

    /// Our source address.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    fn dst_sockaddr(&self, dst: IpAddr) -> SockAddr {
        match dst {
            IpAddr::V4(a) => SocketAddr::new(IpAddr::V4(a), 0).into(),
            IpAddr::V6(a) => {
                let link_scoped = a.segments()[0] & 0xffc0 == 0xfe80 || a.is_multicast();
                let scope = if link_scoped { self.ifindex } else { 0 };
                SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope)).into()
            }
        }
    }

    /// Sends `advert` to every destination.
    pub async fn send(&self, advert: &Advert) -> io::Result<()> {
        let mut last = Ok(());
        for &dst in &self.dsts {
            let bytes = advert.encode(self.src, dst);
            let to = self.dst_sockaddr(dst);
            let r = loop {
                let mut g = self.tx.writable().await?;
                match g.try_io(|s| s.get_ref().send_to(&bytes, &to)) {
                    Ok(r) => break r,
                    Err(_would_block) => continue,
                }
            };
            if let Err(e) = r {
                tracing::debug!(%dst, error = %e, "VRRP send failed");
                last = Err(e);
            }
        }
        last
    }

    /// Receives the next datagram.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let mut g = self.rx.readable().await?;
            match g.try_io(|s| self.recv_now(s.get_ref())) {
                Ok(Ok(Some(r))) => return Ok(r),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// One `recvmsg`; `Ok(None)` for datagrams to skip (not IPv4/6, truncated header).
    fn recv_now(&self, s: &Socket) -> io::Result<Option<Received>> {
        let mut buf = [0u8; 2048];
        let mut cbuf = [0u64; 32];
        let mut from = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; all pointers point to live buffers of the given sizes.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = from.as_mut_ptr().cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // usize on glibc, socklen_t on musl.
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: see above.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let data = &buf[..n as usize];
        if !self.v6 {
            return Ok(match parse_ipv4(data) {
                Ok((src, dst, ttl, _, payload)) => Some(Received {
                    src,
                    dst,
                    ttl,
                    payload: payload.to_vec(),
                }),
                // Give malformed headers to the caller as too-short VRRP so they are counted.
                Err(_) => Some(Received {
                    src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    ttl: 0,
                    payload: Vec::new(),
                }),
            });
        }
        // SAFETY: the kernel filled a sockaddr_in6 for an AF_INET6 socket.
        let sa = unsafe { &*(from.as_ptr() as *const libc::sockaddr_in6) };
        let src = IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr));
        let mut ttl = 0u8;
        let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let h = &*c;
                if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_HOPLIMIT {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                    ttl = v.clamp(0, 255) as u8;
                } else if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_PKTINFO {
                    let pi =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
                    dst = IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(Received {
            src,
            dst,
            ttl,
            payload: data.to_vec(),
        }))
    }
}
