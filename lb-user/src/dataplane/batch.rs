//! BPF_MAP_LOOKUP_BATCH / BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH on the connection table.
//! aya 0.14 has no batch API, and walking 16M entries with get_next_key + lookup costs two syscalls per entry; a batch
//! moves thousands of entries per syscall.
use std::{io, mem::size_of, os::fd::RawFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Calls `f` with every (key, value) of a hash map, `chunk` entries per syscall.
/// K and V must be the map's exact key and value types (plain `#[repr(C)]` data).
pub fn for_each<K: Copy + Default, V: Copy + Default>(
    map_fd: RawFd,
    chunk: u32,
    mut f: impl FnMut(&K, &V),
) -> io::Result<u64> {
    let mut chunk = chunk.max(1);
    let mut keys = vec![K::default(); chunk as usize];
    let mut values = vec![V::default(); chunk as usize];
    // Opaque batch tokens: at least the key size (a bucket index for hash maps).
    let mut token_in = [0u8; 64];
    let mut token_out = [0u8; 64];
    let mut first = true;
    let mut total = 0u64;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                token_in.as_mut_ptr() as u64
            },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: map_fd as u32,
            ..Default::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = attr.count as usize;
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                for i in 0..n {
                    f(&keys[i], &values[i]);
                }
                return Ok(total + n as u64);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // One bucket holds more entries than the chunk: retry bigger.
                chunk *= 2;
                keys.resize(chunk as usize, K::default());
                values.resize(chunk as usize, V::default());
                continue;
            }
            Err(e) => return Err(e),
        }
        for i in 0..n {
            f(&keys[i], &values[i]);
        }
        total += n as u64;
        token_in = token_out;
        first = false;
    }
}

/// Writes `keys[i] -> values[i]` in one syscall (K, V: the map's exact key and value types).
/// Used to prefill tables (benchmarks) and to refresh persistence templates (the sweep).
pub fn update<K: Copy, V: Copy>(map_fd: RawFd, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    update_values(map_fd, keys, values)
}

/// Writes `values` at `keys` in one syscall, `values.len() / keys.len()` values per key (a
/// per-CPU map takes one value per possible CPU, each key's values in a row). Nothing to write
/// makes no syscall.
pub fn update_values<K: Copy, V: Copy>(map_fd: RawFd, keys: &[K], values: &[V]) -> io::Result<()> {
    if keys.is_empty() {
        assert!(values.is_empty(), "values without keys");
        return Ok(());
    }
    assert!(
        values.len().is_multiple_of(keys.len()),
        "whole values per key"
    );
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: map_fd as u32,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr)
}

/// Deletes `keys`; keys already gone (the LRU evicted them, or a packet path removed them) are
/// skipped one by one. Returns how many were deleted.
pub fn delete<K: Copy>(map_fd: RawFd, keys: &[K], mut delete_one: impl FnMut(&K) -> bool) -> u64 {
    let mut deleted = 0u64;
    for chunk in keys.chunks(4096) {
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map_fd as u32,
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(()) => deleted += chunk.len() as u64,
            Err(_) => {
                // The batch stops at the first missing key: the first `count` were deleted.
                let done = attr.count as usize;
                deleted += done as u64;
                for k in &chunk[done..] {
                    if delete_one(k) {
                        deleted += 1;
                    }
                }
            }
        }
    }
    deleted
}
