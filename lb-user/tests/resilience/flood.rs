//! A SYN flooder: raw Ethernet frames (AF_PACKET, qdisc bypass) with spoofed sources from
//! 198.19.0.0/16, correct IPv4 and TCP checksums (so the real servers' kernels process them).
use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use crate::common::Rng;

/// An AF_PACKET socket bound to `ifname` in the calling thread's network namespace.
pub fn open(ifname: &str) -> (OwnedFd, i32) {
    // SAFETY: plain syscalls with valid arguments; the fd is owned right away.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of_val(&one) as u32,
        );
        let name = std::ffi::CString::new(ifname).unwrap();
        let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(ifindex > 0, "no {ifname}");
        (fd, ifindex)
    }
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One SYN frame from a random 198.19.x.y:port to `dst`:`dport`.
pub fn syn_frame(
    rng: &mut Rng,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    dst: [u8; 4],
    dport: u16,
) -> Vec<u8> {
    let r = rng.next();
    let src = [198, 19, (r >> 8) as u8, r as u8];
    let sport = 1024 + ((r >> 16) as u16 % 60000);
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[4..6].copy_from_slice(&((r >> 32) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = csum_fold(csum_add(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&((r >> 24) as u32).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&dst);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let c = csum_fold(csum_add(csum_add(0, &pseudo), &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f.resize(60, 0);
    f
}

/// Sends SYNs as fast as one thread can for `dur`; returns the frames sent.
#[allow(clippy::too_many_arguments)]
pub fn flood(
    fd: &OwnedFd,
    ifindex: i32,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    dst: [u8; 4],
    dport: u16,
    dur: Duration,
    seed: u64,
) -> u64 {
    let mut rng = Rng(seed | 1);
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst_mac);
    let end = Instant::now() + dur;
    let (mut sent, mut tries) = (0u64, 0u64);
    loop {
        let f = syn_frame(&mut rng, dst_mac, src_mac, dst, dport);
        // SAFETY: valid buffer and address.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr() as *const libc::c_void,
                f.len(),
                0,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc > 0 {
            sent += 1;
        }
        tries += 1;
        if tries % 1024 == 0 && Instant::now() >= end {
            break;
        }
    }
    sent
}
