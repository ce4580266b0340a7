//! A shared mapping of a `BPF_F_MMAPABLE` array: the map's own memory, read and written without
//! a syscall per element (the Maglev rings, the connection table's sets). Its owner decides how
//! the words are accessed (plain writes behind `&mut`, or atomics).
use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;

pub struct MappedArray {
    ptr: NonNull<u32>,
    bytes: usize,
    /// Keeps the map (and so the mapped memory's owner) alive as long as the mapping.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory owned by this value; the types that hold it reach
// it only through `&mut self` or atomics.
unsafe impl Send for MappedArray {}
// SAFETY: as above.
unsafe impl Sync for MappedArray {}

impl MappedArray {
    /// Maps the `words` u32 words of `map` (its entries times their words), rounded up to pages.
    pub fn new(map: MapData, words: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (words * 4).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of an mmapable BPF array, sized to the array.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u32>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Self {
            ptr,
            bytes,
            _map: map,
        })
    }

    /// The first word of the mapping.
    pub fn as_ptr(&self) -> *mut u32 {
        self.ptr.as_ptr()
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}
