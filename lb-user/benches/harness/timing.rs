//! Interleaved timing rounds through BPF_PROG_TEST_RUN: every round runs the floor and each case
//! once, back to back, so ratios compare runs made under the same machine load.
use anyhow::{bail, Result};
use lb_common::{
    bench::mode,
    stat::{self, NAMES},
    FlowKey,
};
use serde_json::{json, Value};

use super::{
    dp::{flow_key_v4, flow_key_v6_fresh, Dp},
    sys, Progress,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// The program itself, no wrapper (only for programs whose output is their input again).
    Bare(&'static str),
    /// Through the wrapper of this BENCH_PROGS slot (`xlb_bench_w<slot>`).
    Wrapped(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Only the return value.
    Action(u32),
    /// Every repetition a connection-table hit forwarded with XDP_TX.
    Hit,
    /// A hit as [`Expect::Hit`], encapsulated every repetition (tunnel mode).
    Tunnelled,
    /// Every repetition a miss, inserted, forwarded with XDP_TX.
    Miss,
    /// Every repetition passed as not-a-service.
    NotService,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    V4,
    V6,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub prog: Prog,
    pub frame: Vec<u8>,
    pub mode: u32,
    pub n: u64,
    pub expect: Expect,
    /// New flow every repetition: which key space (the keys are deleted after the run when
    /// `cleanup`).
    pub fresh: Option<Fresh>,
    pub cleanup: bool,
}

impl Case {
    pub fn new(name: &str, prog: Prog, frame: Vec<u8>, expect: Expect) -> Case {
        Case {
            name: name.into(),
            prog,
            frame,
            mode: mode::FIXED,
            n: 1,
            expect,
            fresh: None,
            cleanup: false,
        }
    }
    pub fn spread(mut self, n: u64) -> Case {
        self.mode = mode::SPREAD;
        self.n = n;
        self
    }
    pub fn fresh(mut self, f: Fresh, cleanup: bool) -> Case {
        self.mode = mode::FRESH;
        self.fresh = Some(f);
        self.cleanup = cleanup;
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct Series {
    pub name: String,
    pub ns: Vec<f64>,
    /// Per round: this case's ns / the floor's ns in the same round.
    pub ratio: Vec<f64>,
    pub counters: Vec<u64>,
    pub path_errors: Vec<String>,
    pub reps: u64,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::min)
}

impl Series {
    pub fn median(&self) -> f64 {
        median(&self.ns)
    }
    pub fn min(&self) -> f64 {
        min(&self.ns)
    }
    pub fn ratio_median(&self) -> f64 {
        median(&self.ratio)
    }
    pub fn ok(&self) -> bool {
        self.path_errors.is_empty()
    }
    pub fn hit_fraction(&self) -> f64 {
        let total = self.reps.max(1) as f64;
        self.counters[stat::CONN_HIT as usize] as f64 / total
    }
    pub fn json(&self) -> Value {
        let counters: serde_json::Map<String, Value> = self
            .counters
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, v)| (NAMES[i].to_string(), json!(v)))
            .collect();
        json!({
            "name": self.name,
            "ns_per_packet": {"median": self.median(), "min": self.min(), "runs": self.ns},
            "ratio_to_floor": {"median": self.ratio_median(), "min": min(&self.ratio), "runs": self.ratio},
            "repetitions_per_run": self.reps / self.ns.len().max(1) as u64,
            "path_counters": counters,
            "path_ok": self.ok(),
            "path_errors": self.path_errors,
        })
    }
}

/// Hands out fresh-flow indices that never repeat within one loaded object.
#[derive(Default)]
pub struct FreshAlloc {
    pub next: u64,
}

pub fn fresh_keys(f: Fresh, from: u64, to: u64) -> Vec<FlowKey> {
    (from..to)
        .map(|i| match f {
            Fresh::V4 => flow_key_v4(super::dp::SPACE_FRESH, i),
            Fresh::V6 => flow_key_v6_fresh(i),
        })
        .collect()
}

/// Runs `rounds` rounds of every case; `cases[floor]` is the floor the ratios refer to.
#[allow(clippy::too_many_arguments)]
pub fn rounds(
    dp: &mut Dp,
    cases: &[Case],
    floor: usize,
    rounds: usize,
    reps: u32,
    stride: u32,
    fresh: &mut FreshAlloc,
    progress: &Progress,
) -> Result<Vec<Series>> {
    let mut out: Vec<Series> = cases
        .iter()
        .map(|c| Series {
            name: c.name.clone(),
            counters: vec![0; stat::COUNT as usize],
            ..Default::default()
        })
        .collect();
    for round in 0..rounds {
        let mut ns_round = vec![0f64; cases.len()];
        for (ci, c) in cases.iter().enumerate() {
            let fd = match c.prog {
                Prog::Bare(name) => dp.prog_fd(name)?,
                Prog::Wrapped(slot) => {
                    dp.set_cfg_stride(&c.frame, c.mode, c.n, stride)?;
                    dp.prog_fd(super::dp::wrapper(slot))?
                }
            };
            let start = match c.mode {
                mode::FRESH => {
                    let s = fresh.next;
                    fresh.next += u64::from(reps);
                    s
                }
                mode::SPREAD => round as u64 * u64::from(reps),
                _ => 0,
            };
            dp.set_seq(start)?;
            let before = dp.counters()?;
            let r = sys::test_run(fd, &c.frame, reps)?;
            let after = dp.counters()?;
            let delta: Vec<u64> = after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.wrapping_sub(*b))
                .collect();
            let s = &mut out[ci];
            for (acc, d) in s.counters.iter_mut().zip(&delta) {
                *acc += d;
            }
            s.reps += u64::from(reps);
            let n = u64::from(reps);
            let d = |i: u32| delta[i as usize];
            let err = match c.expect {
                Expect::Action(a) => (r.retval != a).then(|| format!("returned {}", r.retval)),
                Expect::Hit => (d(stat::CONN_HIT) != n || d(stat::ACTION_TX) != n).then(|| {
                    format!(
                        "conn_hit {} action_tx {} of {n}",
                        d(stat::CONN_HIT),
                        d(stat::ACTION_TX)
                    )
                }),
                Expect::Tunnelled => {
                    (d(stat::CONN_HIT) != n || d(stat::ACTION_TX) != n || d(stat::TUNNELLED) != n)
                        .then(|| {
                            format!(
                                "conn_hit {} action_tx {} tunnelled {} of {n}",
                                d(stat::CONN_HIT),
                                d(stat::ACTION_TX),
                                d(stat::TUNNELLED)
                            )
                        })
                }
                Expect::Miss => (d(stat::CONN_MISS) != n
                    || d(stat::ACTION_TX) != n
                    || d(stat::INSERT_FAILED) != 0)
                    .then(|| {
                        format!(
                            "conn_miss {} action_tx {} insert_failed {} of {n}",
                            d(stat::CONN_MISS),
                            d(stat::ACTION_TX),
                            d(stat::INSERT_FAILED)
                        )
                    }),
                Expect::NotService => (d(stat::NOT_SERVICE) != n || d(stat::ACTION_PASS) != n)
                    .then(|| format!("not_service {} of {n}", d(stat::NOT_SERVICE))),
            };
            if let Some(e) = err {
                s.path_errors.push(format!("round {round}: {e}"));
            }
            if r.ns_per_rep == 0 {
                bail!("{}: the kernel reported 0 ns", c.name);
            }
            ns_round[ci] = f64::from(r.ns_per_rep);
            if let (Some(f), true) = (c.fresh, c.cleanup) {
                let keys = fresh_keys(f, start, start + n);
                dp.delete(&keys);
            }
            progress.inc(&c.name);
        }
        for (ci, s) in out.iter_mut().enumerate() {
            s.ns.push(ns_round[ci]);
            s.ratio.push(ns_round[ci] / ns_round[floor]);
        }
    }
    Ok(out)
}

/// Two (or ncpu) threads, each pinned to its CPU, running the same case at the same time: the
/// insert path under concurrency. Returns per-round mean ns/packet over the threads.
pub fn concurrent_fresh(
    dp: &mut Dp,
    case: &Case,
    cpus: &[usize],
    rounds: usize,
    reps: u32,
    fresh: &mut FreshAlloc,
    progress: &Progress,
) -> Result<Series> {
    let Prog::Wrapped(slot) = case.prog else {
        bail!("concurrent runs go through the wrapper");
    };
    let wrapper = dp.prog_fd(super::dp::wrapper(slot))?;
    dp.set_cfg(&case.frame, case.mode, case.n)?;
    let mut s = Series {
        name: case.name.clone(),
        counters: vec![0; stat::COUNT as usize],
        ..Default::default()
    };
    for round in 0..rounds {
        // Every CPU's counter starts in its own 2^31/ncpu range: no two threads make the same flow.
        let span = (1u64 << 31) / cpus.len().max(2) as u64;
        // Past every flow made so far (earlier runs left theirs in the table).
        let base = fresh.next;
        fresh.next += u64::from(reps);
        let values: Vec<u64> = (0..dp_ncpus()).map(|c| c as u64 * span + base).collect();
        dp.set_seq_values(values)?;
        let before = dp.counters()?;
        let frame = &case.frame;
        let results: Vec<Result<sys::RunOut>> = std::thread::scope(|sc| {
            let hs: Vec<_> = cpus
                .iter()
                .map(|&cpu| {
                    sc.spawn(move || -> Result<sys::RunOut> {
                        sys::pin_to_cpu(cpu)?;
                        Ok(sys::test_run(wrapper, frame, reps)?)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("thread panicked")))
                .collect()
        });
        let after = dp.counters()?;
        let mut sum = 0f64;
        for r in results {
            sum += f64::from(r?.ns_per_rep);
        }
        for (acc, (a, b)) in s.counters.iter_mut().zip(after.iter().zip(&before)) {
            *acc += a.wrapping_sub(*b);
        }
        let n = u64::from(reps) * cpus.len() as u64;
        s.reps += n;
        let miss = after[stat::CONN_MISS as usize] - before[stat::CONN_MISS as usize];
        if miss != n {
            s.path_errors
                .push(format!("round {round}: conn_miss {miss} of {n}"));
        }
        s.ns.push(sum / cpus.len() as f64);
        progress.inc(&case.name);
    }
    Ok(s)
}

fn dp_ncpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1)
}
