//! Raw bpf(2) calls the harness needs beyond aya 0.14: BPF_PROG_TEST_RUN usable from several
//! threads at once (and in live-frames mode with an `xdp_md` context; table prefills use
//! `xlb::dataplane::batch::update`), BPF_MAP_CREATE + BPF_OBJ_PIN for the global-LRU variant, CPU
//! pinning and fdinfo.
use std::{
    ffi::CString,
    io,
    mem::size_of,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a fully initialised #[repr(C)] prefix of `union bpf_attr`; the kernel
    // reads and writes at most size_of::<T>() bytes of it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct RunOut {
    pub retval: u32,
    /// The kernel's figure: ns per repetition (integer, preemption excluded).
    pub ns_per_rep: u32,
    /// Wall-clock time of the whole syscall.
    pub wall: std::time::Duration,
}

/// BPF_PROG_TEST_RUN of an XDP program: `repeat` runs over `frame`.
pub fn test_run(prog_fd: RawFd, frame: &[u8], repeat: u32) -> io::Result<RunOut> {
    let mut attr = TestAttr {
        prog_fd: prog_fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(RunOut {
        retval: attr.retval,
        ns_per_rep: attr.duration,
        wall: t.elapsed(),
    })
}

/// `struct xdp_md` as test_run takes it.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`): `repeat` frames as if received on
/// `ifindex` (of the calling thread's network namespace); XDP_TX leaves through that interface.
pub fn test_run_live(
    prog_fd: RawFd,
    frame: &[u8],
    repeat: u32,
    batch: u32,
    ifindex: u32,
) -> io::Result<RunOut> {
    let md = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut attr = TestAttr {
        prog_fd: prog_fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: &md as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(RunOut {
        retval: attr.retval,
        ns_per_rep: attr.duration,
        wall: t.elapsed(),
    })
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// A hash-type map created directly (the global-LRU variant of CONN_TABLE).
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut map_name = [0u8; 16];
    let n = name.len().min(15);
    map_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name,
        ..Default::default()
    };
    let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

pub fn pin(fd: RawFd, path: &Path) -> io::Result<()> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjPinAttr {
        pathname: p.as_ptr() as u64,
        bpf_fd: fd as u32,
        ..Default::default()
    };
    sys_bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    pin_to_cpus(&[cpu])
}

/// Lets the calling thread (and the threads it starts afterwards) run on any of `cpus`.
pub fn pin_to_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; the calls only read/write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sched_getcpu() as usize }
}

/// A `key:\tvalue` field of /proc/self/fdinfo/<fd>.
pub fn fdinfo_field(fd: RawFd, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
    })
}
