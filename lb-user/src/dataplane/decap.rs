//! The real servers' decapsulation program (`xlb_decap`, tunnel mode without kernel tunnel
//! modules): its maps, written by `xlb realserver up --tunnel` and read by `status`, and the
//! loading of its two entries (`xlb_decap` for XDP, `xlb_decap_tc` for TC ingress).
use std::net::IpAddr;

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    Ebpf,
};
use lb_common::{decap_stat, map_names, DecapConfig, DecapKey};
use thiserror::Error;

use super::desired::addr_words;

#[derive(Debug, Error)]
pub enum DecapError {
    #[error("map {0} is missing from the XDP object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("loading {name}: {reason}")]
    Program { name: &'static str, reason: String },
}

/// Where the decapsulation runs on the real server's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecapHook {
    /// `xlb_decap`, an XDP program (before the kernel allocates an skb).
    Xdp,
    /// `xlb_decap_tc`, a TC ingress classifier (links where XDP cannot run).
    Tc,
}

impl DecapHook {
    pub fn name(self) -> &'static str {
        match self {
            DecapHook::Xdp => "xdp",
            DecapHook::Tc => "tc",
        }
    }

    /// The program's name in the object.
    pub fn program(self) -> &'static str {
        match self {
            DecapHook::Xdp => lb_common::DECAP_PROGRAM,
            DecapHook::Tc => lb_common::DECAP_TC_PROGRAM,
        }
    }
}

/// Loads the entry for `hook` into the kernel (the verifier's verdict; not attached).
pub fn load_entry(ebpf: &mut Ebpf, hook: DecapHook) -> Result<(), DecapError> {
    let name = hook.program();
    let fail = |reason: String| DecapError::Program { name, reason };
    match hook {
        DecapHook::Xdp => super::loader::load_program(ebpf, name).map_err(|e| fail(e.to_string())),
        DecapHook::Tc => {
            let prog: &mut aya::programs::SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| fail("missing from the object".into()))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| fail(e.to_string()))?;
            prog.load().map_err(|e| fail(e.to_string()))
        }
    }
}

/// The decapsulation program's maps.
pub struct DecapMaps {
    directors: HashMap<MapData, DecapKey, u32>,
    vips: HashMap<MapData, DecapKey, u32>,
    config: Array<MapData, DecapConfig>,
    stats: PerCpuArray<MapData, u64>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DecapError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(DecapError::Missing(name))?;
    T::try_from(map).map_err(|source| DecapError::Map { name, source })
}

/// The map key of an address.
pub fn key(ip: IpAddr) -> DecapKey {
    let (addr, family) = addr_words(ip);
    DecapKey {
        addr,
        family,
        _pad: [0; 3],
    }
}

impl DecapMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DecapError> {
        Ok(Self {
            directors: take(ebpf, map_names::DECAP_DIRECTORS)?,
            vips: take(ebpf, map_names::DECAP_VIPS)?,
            config: take(ebpf, map_names::DECAP_CONFIG)?,
            stats: take(ebpf, map_names::DECAP_STATS)?,
        })
    }

    /// Decapsulates packets from `directors` to `vips`; GUE on `gue_port` (None = IPIP only).
    pub fn configure(
        &mut self,
        directors: &[IpAddr],
        vips: &[IpAddr],
        gue_port: Option<u16>,
    ) -> Result<(), DecapError> {
        let err = |name| move |source| DecapError::Map { name, source };
        for d in directors {
            self.directors
                .insert(key(*d), 1, 0)
                .map_err(err(map_names::DECAP_DIRECTORS))?;
        }
        for v in vips {
            self.vips
                .insert(key(*v), 1, 0)
                .map_err(err(map_names::DECAP_VIPS))?;
        }
        let cfg = DecapConfig {
            gue_port: gue_port.unwrap_or(0).to_be(),
            _pad: [0; 2],
        };
        self.config
            .set(0, cfg, 0)
            .map_err(err(map_names::DECAP_CONFIG))
    }

    /// Counters summed over CPUs, in `decap_stat` order.
    pub fn counters(&self) -> Result<Vec<u64>, DecapError> {
        (0..decap_stat::COUNT)
            .map(|i| {
                self.stats
                    .get(&i, 0)
                    .map(|v| v.iter().sum())
                    .map_err(|source| DecapError::Map {
                        name: map_names::DECAP_STATS,
                        source,
                    })
            })
            .collect()
    }
}
