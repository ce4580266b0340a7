//! Running code inside a named network namespace (`/run/netns/NAME`).
use std::{ffi::CString, fs::File, io, os::fd::AsRawFd as _};

use anyhow::{bail, Context as _, Result};

/// Runs `f` on a fresh thread that has `setns(CLONE_NEWNET)`'d into the namespace `name`, and
/// returns its result. Only the network namespace changes: the filesystem (and so `/sys`) is the
/// caller's. File descriptors (sockets, BPF links) created inside stay bound to that namespace and
/// remain valid after the thread ends. A panic in `f` is propagated.
pub fn enter<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        let handle = s.spawn(move || -> Result<T> {
            // SAFETY: plain syscall on a valid fd; it affects only this (short-lived) thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns into {path}: {}", io::Error::last_os_error());
            }
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `if_nametoindex` in the calling thread's namespace.
pub fn ifindex_here(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname)?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {ifname}: {}", io::Error::last_os_error());
    }
    Ok(idx)
}
