//! Who holds each VIP: the VRRP instance listing it (xlb adds it on the instance's interface while
//! MASTER), xlb for BGP (on `lo` while the service is at quorum), or nobody in xlb for
//! `announce = "always"`: then the operator must bring its packets here (the VIP on an interface
//! of the director, or a route on the router). Shown by `xlb check-config` and `xlb doctor`.
use std::net::IpAddr;

use serde::Serialize;

use crate::config::{Announce, Config};

/// Who puts a VIP on the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Holder {
    /// `announce = "vrrp"`: the instance adds it on its interface while MASTER.
    Vrrp { instance: String, interface: String },
    /// `announce = "bgp"`: xlb puts it on `lo` while the service is at quorum.
    Bgp,
    /// `announce = "always"`: not managed by xlb.
    Unmanaged,
}

/// One VIP, the services on it and its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipHolder {
    pub vip: IpAddr,
    pub services: Vec<String>,
    pub holder: Holder,
}

impl std::fmt::Display for VipHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VIP {}: ", self.vip)?;
        match &self.holder {
            Holder::Vrrp {
                instance,
                interface,
            } => write!(
                f,
                "held by vrrp_instance {instance} (on {interface} while MASTER)"
            ),
            Holder::Bgp => write!(f, "held by xlb on lo while the service is at quorum (BGP)"),
            Holder::Unmanaged => write!(
                f,
                "announce = \"always\": not managed by xlb; put it on the director's interface \
                 (ip addr add {}/{} dev IFACE) or route it here",
                self.vip,
                if self.vip.is_ipv4() { 32 } else { 128 }
            ),
        }
    }
}

/// The VIPs of `cfg` in file order, each once (a VIP's first service decides its announce mode:
/// check-config rejects VIPs whose services disagree).
pub fn holders(cfg: &Config) -> Vec<VipHolder> {
    let mut out: Vec<VipHolder> = Vec::new();
    for vs in &cfg.virtual_servers {
        let vip = vs.vip;
        let name = vs.name.clone();
        if let Some(h) = out.iter_mut().find(|h| h.vip == vip) {
            h.services.push(name);
            continue;
        }
        let holder = match vs.announce {
            Announce::Vrrp => match cfg.vrrp_instance_for(vip) {
                Some(i) => Holder::Vrrp {
                    instance: i.name.clone(),
                    interface: i.interface.clone(),
                },
                None => Holder::Unmanaged,
            },
            Announce::Bgp => Holder::Bgp,
            Announce::Always => Holder::Unmanaged,
        };
        out.push(VipHolder {
            vip,
            services: vec![name],
            holder,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[global]
interfaces = ["eth0"]
[[virtual_server]]
vip = "198.18.0.100"
port = 80
[[virtual_server.real_server]]
address = "198.18.0.11"
[[virtual_server]]
vip = "198.18.0.100"
port = 443
[[virtual_server.real_server]]
address = "198.18.0.11"
[[virtual_server]]
vip = "198.18.0.101"
port = 80
announce = "bgp"
[[virtual_server.real_server]]
address = "198.18.0.11"
[[virtual_server]]
vip = "198.18.0.102"
port = 80
[[virtual_server.real_server]]
address = "198.18.0.11"
[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["198.18.0.102"]
"#;

    #[test]
    fn each_vip_once_with_its_holder() {
        let cfg = crate::config::parse(CFG, "t.toml").unwrap();
        let h = holders(&cfg);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].holder, Holder::Unmanaged);
        assert_eq!(h[0].services.len(), 2);
        assert_eq!(h[1].holder, Holder::Bgp);
        assert_eq!(
            h[2].holder,
            Holder::Vrrp {
                instance: "VI_1".into(),
                interface: "eth0".into()
            }
        );
        assert!(h[0].to_string().contains("not managed by xlb"), "{}", h[0]);
        assert!(
            h[0].to_string().contains("ip addr add 198.18.0.100/32"),
            "{}",
            h[0]
        );
    }
}
