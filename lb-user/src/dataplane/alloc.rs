//! Allocators for kernel-map slots: ids (services, real servers) and ring regions.
use std::collections::BTreeMap;

/// Hands out the lowest free id below `capacity`.
#[derive(Debug, Clone)]
pub struct IdPool {
    free: std::collections::BTreeSet<u32>,
}

impl IdPool {
    pub fn new(capacity: u32) -> Self {
        Self {
            free: (0..capacity).collect(),
        }
    }

    pub fn alloc(&mut self) -> Option<u32> {
        self.free.pop_first()
    }

    /// Marks an id as used (adoption of existing kernel state).
    pub fn claim(&mut self, id: u32) {
        self.free.remove(&id);
    }

    pub fn free(&mut self, id: u32) {
        self.free.insert(id);
    }
}

/// A region of the ring array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub offset: u32,
    pub len: u32,
}

/// First-fit allocator over `0..capacity` slots of the ring array. Free regions are coalesced.
#[derive(Debug, Clone)]
pub struct RegionAlloc {
    /// offset -> len of free regions.
    free: BTreeMap<u32, u32>,
    capacity: u32,
}

impl RegionAlloc {
    pub fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Self { free, capacity }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn free_slots(&self) -> u64 {
        self.free.values().map(|&l| l as u64).sum()
    }

    pub fn alloc(&mut self, len: u32) -> Option<Region> {
        if len == 0 {
            return Some(Region { offset: 0, len: 0 });
        }
        let (&offset, &flen) = self.free.iter().find(|(_, &l)| l >= len)?;
        self.free.remove(&offset);
        if flen > len {
            self.free.insert(offset + len, flen - len);
        }
        Some(Region { offset, len })
    }

    /// Marks a region as used (adoption). Returns false if it overlaps nothing free (corrupt state).
    pub fn claim(&mut self, r: Region) -> bool {
        if r.len == 0 {
            return true;
        }
        let Some((&offset, &flen)) = self.free.range(..=r.offset).next_back() else {
            return false;
        };
        if offset + flen < r.offset + r.len {
            return false;
        }
        self.free.remove(&offset);
        if r.offset > offset {
            self.free.insert(offset, r.offset - offset);
        }
        let end = r.offset + r.len;
        if offset + flen > end {
            self.free.insert(end, offset + flen - end);
        }
        true
    }

    pub fn release(&mut self, r: Region) {
        if r.len == 0 {
            return;
        }
        let mut offset = r.offset;
        let mut len = r.len;
        if let Some((&po, &pl)) = self.free.range(..offset).next_back() {
            if po + pl == offset {
                self.free.remove(&po);
                offset = po;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(offset + len)) {
            self.free.remove(&(offset + len));
            len += nl;
        }
        self.free.insert(offset, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_coalesce_and_claim() {
        let mut a = RegionAlloc::new(100);
        let r1 = a.alloc(30).unwrap();
        let r2 = a.alloc(30).unwrap();
        let r3 = a.alloc(40).unwrap();
        assert!(a.alloc(1).is_none());
        a.release(r2);
        a.release(r1);
        assert_eq!(a.alloc(60), Some(Region { offset: 0, len: 60 }));
        a.release(r3);
        assert_eq!(a.free_slots(), 40);
        let mut b = RegionAlloc::new(100);
        assert!(b.claim(Region {
            offset: 10,
            len: 20
        }));
        assert!(!b.claim(Region { offset: 15, len: 2 }));
        assert_eq!(b.alloc(10), Some(Region { offset: 0, len: 10 }));
        assert_eq!(
            b.alloc(10),
            Some(Region {
                offset: 30,
                len: 10
            })
        );
    }

    #[test]
    fn ids_are_lowest_free() {
        let mut p = IdPool::new(3);
        assert_eq!(p.alloc(), Some(0));
        p.claim(1);
        assert_eq!(p.alloc(), Some(2));
        assert_eq!(p.alloc(), None);
        p.free(0);
        assert_eq!(p.alloc(), Some(0));
    }
}
