//! Tunnel mode with the kernel's own tunnels (real servers whose kernel has `ipip` / `fou`).
//!
//! Instead of the catch-all `tunl0` (which decapsulates IPIP from anyone), `up` creates one
//! point-to-point ipip link per director, `xlbtN` with `remote DIRECTOR`: the kernel hands such
//! a link only packets whose outer source is that director, so "never decapsulate anything from
//! anyone" holds as with xlb's program. GUE adds a FOU receive port (`ip fou add port P gue`,
//! generic netlink): the fou socket strips UDP (GUE variant 1 is direct IP) and passes the IPIP
//! payload to the same links. The inner packets then arrive on `xlbtN`, whose reverse path to
//! the client is not `xlbtN`: the link gets `rp_filter=2` (loose; the kernel uses the larger of
//! `all` and the link's value, so `all` stays as it is).
//!
//! Which method: `--decap auto` takes the kernel's tunnels when its modules are there (loaded,
//! built in, or loadable with `modprobe`), else xlb's program; the chosen one and why is
//! printed. A refusal of the link itself (EOPNOTSUPP, "Unknown device type") also falls back.
//!
//! The netlink messages are built here and tested byte for byte against iproute2's (`ip link
//! add xlbt0 type ipip remote 198.18.1.2 ttl 64` as captured with strace; `ip fou add port
//! 6080 gue` from iproute2's ipfou.c). FOU has no rtnetlink message and no crate of the
//! field for generic netlink is in the tree; its three messages (family lookup, add, del) are
//! small enough to write out.
use std::{net::IpAddr, net::Ipv4Addr, path::Path};

use netlink_packet_route::{
    link::{
        InfoData, InfoIpTunnel, InfoKind, LinkAttribute, LinkInfo, LinkMessage, TunnelEncapFlags,
        TunnelEncapType,
    },
    IpProtocol, RouteNetlinkMessage,
};
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use serde::{Deserialize, Serialize};

/// `--decap`: who strips the outer header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapChoice {
    /// The kernel's tunnels where it has the modules, else xlb's program.
    Auto,
    Kernel,
    Xlb,
}

/// What `up` created with the kernel's tunnels (for `down`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTunnelState {
    /// The ipip links created (one per director).
    pub links: Vec<String>,
    /// The FOU receive port added (GUE).
    pub fou_port: Option<u16>,
    /// Modules `up` loaded with modprobe (removed by `down`).
    pub loaded_modules: Vec<String>,
}

/// The modules a tunnel kind needs from the kernel.
pub fn modules_for(gue: bool) -> &'static [&'static str] {
    if gue {
        &["ipip", "fou"]
    } else {
        &["ipip"]
    }
}

/// Is `module` present (loaded or built in)? `/sys/module/NAME` exists for both.
pub fn module_present(sys_module: &Path, module: &str) -> bool {
    sys_module.join(module).exists()
}

/// Name of the ipip link for the `i`-th director.
pub fn link_name(i: usize) -> String {
    format!("xlbt{i}")
}

/// The RTM_NEWLINK request for `ip link add NAME type ipip remote REMOTE ttl 64`, attribute for
/// attribute as iproute2 sends it (it spells out the defaults: protocol 0, pmtudisc on, tos 0,
/// link 0, fwmark 0, no encapsulation).
pub fn ipip_link_request(
    name: &str,
    remote: Ipv4Addr,
    seq: u32,
) -> NetlinkMessage<RouteNetlinkMessage> {
    let data = vec![
        InfoIpTunnel::Protocol(IpProtocol::from(0u8)),
        InfoIpTunnel::Remote(IpAddr::V4(remote)),
        InfoIpTunnel::PMtuDisc(true),
        InfoIpTunnel::Tos(0),
        InfoIpTunnel::Ttl(64),
        InfoIpTunnel::Link(0),
        InfoIpTunnel::FwMark(0),
        InfoIpTunnel::EncapType(TunnelEncapType::None),
        InfoIpTunnel::EncapFlags(TunnelEncapFlags::empty()),
        InfoIpTunnel::EncapSPort(0),
        InfoIpTunnel::EncapDPort(0),
    ];
    let mut link = LinkMessage::default();
    link.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::IpIp),
            LinkInfo::Data(InfoData::IpTunnel(data)),
        ]),
    ];
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(link)),
    );
    msg.finalize();
    msg
}

// ---- generic netlink, by hand (see the module comment) ----

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const FOU_GENL_VERSION: u8 = 1;
pub const FOU_CMD_ADD: u8 = 1;
pub const FOU_CMD_DEL: u8 = 2;
const FOU_ATTR_PORT: u16 = 1;
const FOU_ATTR_AF: u16 = 2;
const FOU_ATTR_TYPE: u16 = 4;
const FOU_ENCAP_GUE: u8 = 2;

/// One netlink attribute, padded to 4 bytes.
fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// A generic netlink request: netlink header, genl header (command, version), attributes.
fn genl_request(family: u16, flags: u16, seq: u32, cmd: u8, version: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, version, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// CTRL_CMD_GETFAMILY for `name` (as iproute2's genl_resolve_family sends it).
pub fn family_request(name: &str, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut z = name.as_bytes().to_vec();
    z.push(0);
    push_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, &z);
    genl_request(
        GENL_ID_CTRL,
        NLM_F_REQUEST,
        seq,
        CTRL_CMD_GETFAMILY,
        0,
        &attrs,
    )
}

/// FOU add/del of a GUE receive port for IPv4 (`ip fou add port PORT gue`).
pub fn fou_request(family: u16, cmd: u8, port: u16, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    push_attr(&mut attrs, FOU_ATTR_PORT, &port.to_be_bytes());
    push_attr(&mut attrs, FOU_ATTR_TYPE, &[FOU_ENCAP_GUE]);
    push_attr(&mut attrs, FOU_ATTR_AF, &[libc::AF_INET as u8]);
    genl_request(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        cmd,
        FOU_GENL_VERSION,
        &attrs,
    )
}

/// What the kernel answered to a generic netlink request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenlReply {
    /// NLMSG_ERROR with this (positive) errno; 0 is an ACK.
    Error(i32),
    /// A family's id (CTRL_CMD_GETFAMILY's answer).
    Family(u16),
    Other,
}

/// Reads the first message of a reply.
pub fn parse_reply(buf: &[u8]) -> GenlReply {
    let word = |at: usize| {
        buf.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let half = |at: usize| {
        buf.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let (Some(len), Some(kind)) = (word(0), half(4)) else {
        return GenlReply::Other;
    };
    let len = (len as usize).min(buf.len());
    if kind == NLMSG_ERROR {
        return word(16).map_or(GenlReply::Other, |e| GenlReply::Error(-(e as i32)));
    }
    let mut at = 20;
    while at + 4 <= len {
        let (Some(alen), Some(akind)) = (half(at), half(at + 2)) else {
            break;
        };
        let alen = alen as usize;
        if alen < 4 {
            break;
        }
        if akind & 0x3fff == CTRL_ATTR_FAMILY_ID {
            return half(at + 4).map_or(GenlReply::Other, GenlReply::Family);
        }
        at += (alen + 3) & !3;
    }
    GenlReply::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// `strace -e sendmsg -xx ip link add xlbt0 type ipip remote 198.18.1.2 ttl 64` (iproute2
    /// 6.x; the sequence number set to 0x6b0f3b65 as in the capture). The kernel here refused it
    /// ("Unknown device type": no ipip module), but the request is what iproute2 sends.
    const IPROUTE2_IPIP: &str = "94 00 00 00 10 00 05 06 65 3b 0f 6b 00 00 00 00 \
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
        0a 00 03 00 78 6c 62 74 30 00 00 00 \
        68 00 12 00 08 00 01 00 69 70 69 70 5c 00 02 00 \
        05 00 09 00 00 00 00 00 08 00 03 00 c6 12 01 02 05 00 0a 00 01 00 00 00 \
        05 00 05 00 00 00 00 00 05 00 04 00 40 00 00 00 08 00 01 00 00 00 00 00 \
        08 00 14 00 00 00 00 00 06 00 0f 00 00 00 00 00 06 00 10 00 00 00 00 00 \
        06 00 11 00 00 00 00 00 06 00 12 00 00 00 00 00";

    #[test]
    fn ipip_link_request_is_iproute2s() {
        let msg = ipip_link_request("xlbt0", "198.18.1.2".parse().unwrap(), 0x6b0f_3b65);
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        // One known difference: iproute2 sends IFLA_INFO_KIND as "ipip" without its NUL (length
        // 8), netlink-packet-route with it (length 9, padded to 12); the kernel reads both the
        // same (nla_strscpy). Apply exactly that to iproute2's bytes; everything else is equal.
        let mut want = hex(IPROUTE2_IPIP);
        want[0] += 4; // nlmsg_len 148 -> 152
        want[44] += 4; // IFLA_LINKINFO 104 -> 108
        want[48] = 9; // IFLA_INFO_KIND length
        want.splice(56..56, [0u8; 4]);
        assert_eq!(buf, want);
    }

    #[test]
    fn family_request_is_iproute2s() {
        // strace of `ip fou add port 6080 gue`: its first message, before ENOENT (no fou).
        let want = hex(
            "1c 00 00 00 10 00 01 00 65 3b 0f 6b 00 00 00 00 03 00 00 00 08 00 02 00 66 6f 75 00",
        );
        assert_eq!(family_request("fou", 0x6b0f_3b65), want);
    }

    #[test]
    fn fou_request_is_iproute2s() {
        // ipfou.c: FOU_REQUEST(cmd, version 1), then PORT (u16, network order), TYPE, AF.
        let want = hex(
            "2c 00 00 00 1d 00 05 00 07 00 00 00 00 00 00 00 01 01 00 00 \
             06 00 01 00 17 c0 00 00 05 00 04 00 02 00 00 00 05 00 02 00 02 00 00 00",
        );
        assert_eq!(fou_request(0x1d, FOU_CMD_ADD, 6080, 7), want);
        assert_eq!(fou_request(0x1d, FOU_CMD_DEL, 6080, 7)[16], FOU_CMD_DEL);
    }

    #[test]
    fn replies_are_read() {
        let mut err = hex("24 00 00 00 02 00 00 00 01 00 00 00 00 00 00 00");
        err.extend_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_reply(&err), GenlReply::Error(2));
        let mut fam = genl_request(GENL_ID_CTRL, 0, 1, 1, 2, &[]);
        let mut attrs = Vec::new();
        push_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"fou\0");
        push_attr(&mut attrs, CTRL_ATTR_FAMILY_ID, &0x1du16.to_ne_bytes());
        fam.extend_from_slice(&attrs);
        let len = fam.len() as u32;
        fam[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_reply(&fam), GenlReply::Family(0x1d));
        assert_eq!(parse_reply(&[1, 2]), GenlReply::Other);
    }

    #[test]
    fn modules_and_names() {
        assert_eq!(modules_for(false), ["ipip"]);
        assert_eq!(modules_for(true), ["ipip", "fou"]);
        assert_eq!(link_name(0), "xlbt0");
        let dir = std::env::temp_dir().join(format!("xlb-sysmod-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ipip")).unwrap();
        assert!(module_present(&dir, "ipip") && !module_present(&dir, "fou"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
