//! Mpps through a veth pair in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES):
//!
//! ```text
//! test_run(generator, ingress gen0) --XDP_TX--> gen0 ==veth==> dir0 [xlb | xlb_macswap, native]
//!     --XDP_TX--> dir0 ==veth==> gen0 [xlb_count, native: count + drop]
//! ```
//! The generator is `xlb_macswap` run over a frame addressed dir0 -> gen0 (so the frame reaching
//! dir0 is gen0 -> dir0). Every receiving veth has a native XDP program (a veth only takes
//! XDP_TX/redirected frames when its peer runs XDP). Rounds alternate the program on dir0.
use anyhow::{Context as _, Result};
use aya::programs::{Xdp, XdpMode};
use lb_common::stat;
use serde_json::{json, Value};
use xtask::lab::Lab;

use super::{
    dp::{tcp4, Dp, LoadSpec, PORT, VIP4},
    sys,
    timing::{median, min},
    Progress,
};

pub struct LiveResult {
    /// Per round, per program: (Mpps, delivered fraction).
    pub floor: Vec<(f64, f64)>,
    pub xlb: Vec<(f64, f64)>,
    pub xlb_path: Vec<u64>,
    pub frames: u32,
    pub batch: u32,
}

impl LiveResult {
    fn col(v: &[(f64, f64)], k: usize) -> Vec<f64> {
        v.iter().map(|x| if k == 0 { x.0 } else { x.1 }).collect()
    }
    pub fn floor_mpps(&self) -> Vec<f64> {
        Self::col(&self.floor, 0)
    }
    pub fn xlb_mpps(&self) -> Vec<f64> {
        Self::col(&self.xlb, 0)
    }
    pub fn ratios(&self) -> Vec<f64> {
        self.floor
            .iter()
            .zip(&self.xlb)
            .map(|(f, x)| x.0 / f.0)
            .collect()
    }
    pub fn json(&self) -> Value {
        let side = |v: &[(f64, f64)]| {
            let m = Self::col(v, 0);
            let d = Self::col(v, 1);
            json!({"mpps": {"median": median(&m), "min": min(&m), "runs": m},
                   "delivered_fraction": {"min": min(&d), "runs": d}})
        };
        json!({
            "frames_per_run": self.frames,
            "batch": self.batch,
            "floor_macswap": side(&self.floor),
            "xlb_established": side(&self.xlb),
            "ratio_to_floor": {"median": median(&self.ratios()), "min": min(&self.ratios()), "runs": self.ratios()},
            "xlb_conn_hit": self.xlb_path[stat::CONN_HIT as usize],
            "xlb_conn_miss": self.xlb_path[stat::CONN_MISS as usize],
            "xlb_action_tx": self.xlb_path[stat::ACTION_TX as usize],
        })
    }
}

pub fn run(
    rounds: usize,
    frames: u32,
    batch: u32,
    cpu: usize,
    progress: &Progress,
) -> Result<LiveResult> {
    let mut lab = Lab::new("bench")?;
    let h = lab.host("live")?;
    lab.run_ok(
        &h,
        &[
            "ip", "link", "add", "gen0", "type", "veth", "peer", "name", "dir0",
        ],
    )?;
    for i in ["gen0", "dir0"] {
        lab.run_ok(&h, &["ip", "link", "set", i, "up"])?;
    }
    let gen_mac = lab.mac(&h, "gen0")?;
    let dir_mac = lab.mac(&h, "dir0")?;
    let gen_idx = lab.ifindex(&h, "gen0")?;
    let dir_idx = lab.ifindex(&h, "dir0")?;
    let res = lab.in_netns(&h, move || -> Result<LiveResult> {
        sys::pin_to_cpu(cpu)?;
        let mut dp = Dp::load(&LoadSpec {
            conn_table_size: 65_536,
            maglev_capacity: super::dp::BENCH_RING_CAPACITY,
            conn_table_pin: None,
            lines: 1,
        })?;
        // xlb on dir0 sends every real server's frames back out of dir0 towards gen0.
        dp.apply_state(dir_idx, gen_mac, dir_mac)?;
        dp.set_iface_mac(dir_idx, dir_mac)?;
        let count: &mut Xdp = dp
            .ebpf
            .program_mut("xlb_count")
            .context("xlb_count")?
            .try_into()?;
        let _count_link = count.attach("gen0", XdpMode::Driver)?;
        // The generator's input: dst gen0, src dir0; after its MAC swap: gen0 -> dir0.
        let mut frame = tcp4([198, 18, 201, 1], 40_000, VIP4, PORT, false);
        frame[0..6].copy_from_slice(&gen_mac);
        frame[6..12].copy_from_slice(&dir_mac);
        let gen_fd = dp.prog_fd("xlb_macswap")?;
        let mut out = LiveResult {
            floor: Vec::new(),
            xlb: Vec::new(),
            xlb_path: vec![0; stat::COUNT as usize],
            frames,
            batch,
        };
        // The first frame makes the table entry: warm up once with xlb.
        for round in 0..=rounds {
            for name in ["xlb_macswap", "xlb"] {
                let prog: &mut Xdp = dp.ebpf.program_mut(name).context(name)?.try_into()?;
                let link = prog.attach("dir0", XdpMode::Driver)?;
                let c0 = dp.counters()?;
                let a0 = dp.aux_total()?;
                let r = sys::test_run_live(gen_fd, &frame, frames, batch, gen_idx)?;
                let a1 = dp.aux_total()?;
                let c1 = dp.counters()?;
                let prog: &mut Xdp = dp.ebpf.program_mut(name).context(name)?.try_into()?;
                prog.detach(link)?;
                let delivered = a1 - a0;
                let mpps = delivered as f64 / r.wall.as_secs_f64() / 1e6;
                let frac = delivered as f64 / f64::from(frames);
                if std::env::var_os("XLB_BENCH_DEBUG").is_some() {
                    eprintln!(
                        "live {name}: {delivered} in {:?} (kernel {} ns/frame)",
                        r.wall, r.ns_per_rep
                    );
                }
                if round == 0 {
                    continue;
                }
                if name == "xlb" {
                    for (acc, (a, b)) in out.xlb_path.iter_mut().zip(c1.iter().zip(&c0)) {
                        *acc += a - b;
                    }
                    out.xlb.push((mpps, frac));
                } else {
                    out.floor.push((mpps, frac));
                }
                progress.inc(&format!("live {name}"));
            }
        }
        Ok(out)
    })??;
    drop(lab);
    Ok(res)
}
