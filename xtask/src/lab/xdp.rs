//! A tiny `XDP_PASS` program loaded with the raw `bpf(2)` syscall, no object file needed.
//!
//! Native XDP on veth: frames a program sends with `XDP_TX` (or redirects into a veth) only leave
//! through the peer when the *peer* veth has an XDP program of its own. The lab attaches this
//! program to the bridge-side peer of ports created with `xdp_peer_pass`.
use std::{
    io,
    mem::size_of,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

use anyhow::{Context as _, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: BPF_XDP.
pub const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: native (driver) mode.
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _pad: [u64; 4],
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<RawFd> {
    // SAFETY: `attr` is a properly initialised `#[repr(C)]` prefix of `union bpf_attr`; the
    // kernel reads at most `size_of::<T>()` bytes from it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as RawFd)
    }
}

/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;

/// Loads `r0 = XDP_PASS; exit` as an XDP program and returns its fd.
pub fn load_xdp_pass() -> Result<OwnedFd> {
    load_xdp_action(XDP_PASS)
}

/// Loads `r0 = action; exit` as an XDP program (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_TX` = 3)
/// and returns its fd.
pub fn load_xdp_action(action: u32) -> Result<OwnedFd> {
    let imm = action.to_le_bytes();
    // struct bpf_insn { code, dst:4|src:4, off: i16, imm: i32 }, little endian.
    let insns: [[u8; 8]; 2] = [
        [0xb7, 0x00, 0, 0, imm[0], imm[1], imm[2], imm[3]], // BPF_ALU64 | BPF_MOV | BPF_K: r0 = imm
        [0x95, 0x00, 0, 0, 0, 0, 0, 0],                     // BPF_JMP | BPF_EXIT
    ];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"xlb_lab_xdp");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)
        .with_context(|| format!("bpf(BPF_PROG_LOAD) of XDP returning {action}"))?;
    // SAFETY: the kernel just handed us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `prog` to `ifindex` (in the calling thread's network namespace) with a BPF link.
/// Closing the returned fd detaches the program.
pub fn attach_xdp_link(prog: &OwnedFd, ifindex: u32, flags: u32) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_LINK_CREATE, &mut attr)
        .with_context(|| format!("bpf(BPF_LINK_CREATE) XDP on ifindex {ifindex}"))?;
    // SAFETY: the kernel just handed us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
