//! Small value types written as strings in the TOML file.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet MAC address, written `"02:00:00:00:00:01"` (or with `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || {
            format!("invalid MAC address `{s}`: expected six hex bytes like \"02:00:00:00:00:01\"")
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for b in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An address with a prefix length, written `"192.168.2.212/24"` or `"2001:db8::1"` (keepalived
/// `virtual_ipaddress` syntax without `dev`/`label`). Without a prefix: /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address itself (host bits kept: this is an interface address, not a network).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix_len: u8,
}

impl FromStr for IpPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| {
            format!(
                "invalid address `{s}`: expected an IPv4 or IPv6 address with an optional /prefix"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "invalid prefix length in `{s}`: expected 0..={max}"
                    ))
                }
            },
        };
        Ok(IpPrefix { addr, prefix_len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Which clients share a persistence template (`persistence_granularity`): the leading bits of
/// the client address that count, written as a prefix length (`24`; `64` for IPv6) or, as
/// keepalived and `ipvsadm -M` write it for IPv4, a netmask (`"255.255.255.0"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Granularity {
    /// 0..=128 as written; validation bounds it by the VIP's family.
    pub prefix_len: u8,
    /// Written as an IPv4 netmask (only valid for an IPv4 VIP).
    pub from_netmask: bool,
}

impl Granularity {
    /// The prefix length of a contiguous IPv4 netmask (`255.255.255.0` -> 24).
    pub fn from_ipv4_netmask(s: &str) -> Result<Self, String> {
        let mask: std::net::Ipv4Addr = s.trim().parse().map_err(|_| {
            format!("invalid netmask `{s}`: expected a prefix length like 24 or a netmask like \"255.255.255.0\"")
        })?;
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(format!(
                "netmask `{s}` is not contiguous: expected ones then zeros, like \"255.255.255.0\""
            ));
        }
        Ok(Granularity {
            prefix_len: bits.leading_ones() as u8,
            from_netmask: true,
        })
    }
}

impl Serialize for Granularity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Granularity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Granularity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a prefix length like 24 or an IPv4 netmask like \"255.255.255.0\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Granularity, E> {
                match u8::try_from(v) {
                    Ok(prefix_len) if prefix_len <= 128 => Ok(Granularity {
                        prefix_len,
                        from_netmask: false,
                    }),
                    _ => Err(E::custom(format!(
                        "prefix length {v} is out of range: expected 0..=32 (IPv4) or 0..=128 (IPv6)"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Granularity, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Granularity, E> {
                Granularity::from_ipv4_netmask(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

macro_rules! string_serde {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_serde!(MacAddr, "a MAC address string like \"02:00:00:00:00:01\"");
string_serde!(IpPrefix, "an address string like \"192.168.2.212/24\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_netmask_and_prefix() {
        let g = Granularity::from_ipv4_netmask("255.255.255.0").unwrap();
        assert_eq!((g.prefix_len, g.from_netmask), (24, true));
        assert_eq!(
            Granularity::from_ipv4_netmask("0.0.0.0")
                .unwrap()
                .prefix_len,
            0
        );
        assert_eq!(
            Granularity::from_ipv4_netmask("255.255.255.255")
                .unwrap()
                .prefix_len,
            32
        );
        assert!(Granularity::from_ipv4_netmask("255.0.255.0").is_err());
        assert!(Granularity::from_ipv4_netmask("24").is_err());
        #[derive(serde::Deserialize)]
        struct T {
            g: Granularity,
        }
        let t: T = toml::from_str("g = 64").unwrap();
        assert_eq!((t.g.prefix_len, t.g.from_netmask), (64, false));
        let t: T = toml::from_str("g = \"255.255.0.0\"").unwrap();
        assert_eq!(t.g.prefix_len, 16);
        assert!(toml::from_str::<T>("g = 129").is_err());
        assert!(toml::from_str::<T>("g = -1").is_err());
    }

    #[test]
    fn mac() {
        let m: MacAddr = "02:00:00:00:00:0A".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 0, 10]);
        assert_eq!(m.to_string(), "02:00:00:00:00:0a");
        assert!("02-00-00-00-00-0a".parse::<MacAddr>().is_ok());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix() {
        let p: IpPrefix = "192.168.2.212/24".parse().unwrap();
        assert_eq!(p.prefix_len, 24);
        assert_eq!("2001:db8::1".parse::<IpPrefix>().unwrap().prefix_len, 128);
        assert_eq!(
            "10.0.0.1".parse::<IpPrefix>().unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert!("10.0.0.1/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0/24".parse::<IpPrefix>().is_err());
    }
}
