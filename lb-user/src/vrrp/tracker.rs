//! The IO shell of [`super::track`]: runs the `[[vrrp_script]]`s (through the health checker's
//! script runner, which kills a script and its children at the timeout), scans /proc for the
//! `[[vrrp_track_process]]`es and reads the `[[vrrp_track_file]]`s, publishing every status
//! change in one [`TrackStates`] watched by the instances.
//!
//! Differences from keepalived, both on the side of simplicity: processes are found by
//! scanning /proc every second (keepalived follows netlink process events), and files are read
//! every second (keepalived uses inotify); a change is seen within a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::track::{file_value, ProcessPattern, Quorum, ScriptCounter, Status, TrackStates};
use crate::config::{Config, VrrpScript, VrrpTrackFile, VrrpTrackProcess};
use crate::health::script::{self, ScriptSpec};

/// How often /proc is scanned and tracked files are read.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// The tracked objects' part of the configuration (a reload restarts the trackers when it
/// changes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackConfig {
    pub scripts: Vec<VrrpScript>,
    pub processes: Vec<VrrpTrackProcess>,
    pub files: Vec<VrrpTrackFile>,
}

impl TrackConfig {
    pub fn of(cfg: &Config) -> TrackConfig {
        TrackConfig {
            scripts: cfg.vrrp_scripts.clone(),
            processes: cfg.vrrp_track_processes.clone(),
            files: cfg.vrrp_track_files.clone(),
        }
    }
}

/// The running trackers.
pub struct Trackers {
    pub cfg: TrackConfig,
    tasks: Vec<JoinHandle<()>>,
}

impl Trackers {
    /// Sets the initial states (processes and files are looked at once, now, as keepalived
    /// does at startup; scripts start in INIT) and starts one task per script and one for the
    /// processes and files. `before`: the trackers replaced by a reload; a script defined as
    /// before carries on from its status (no INIT gap in which its weight would not count).
    pub fn start(
        cfg: TrackConfig,
        states: &Arc<watch::Sender<TrackStates>>,
        before: Option<&TrackConfig>,
    ) -> Trackers {
        let previous = states.borrow().scripts.clone();
        let now = Instant::now();
        let mut quorums: Vec<(VrrpTrackProcess, Quorum)> = cfg
            .processes
            .iter()
            .map(|p| (p.clone(), quorum_of(p)))
            .collect();
        let mut initial = TrackStates::default();
        let mut counters = Vec::new();
        for s in &cfg.scripts {
            let unchanged = before.is_some_and(|b| b.scripts.contains(s));
            let c = match previous.get(&s.name) {
                Some(st) if unchanged => ScriptCounter::resume(s.rise, s.fall, *st),
                _ => ScriptCounter::new(s.rise, s.fall, s.init_fail),
            };
            initial.scripts.insert(s.name.clone(), c.status());
            counters.push(c);
        }
        let counts = count_processes(&quorums);
        for ((p, q), n) in quorums.iter_mut().zip(counts) {
            q.observe(now, n);
            initial.processes.insert(p.name.clone(), q.status());
        }
        for f in &cfg.files {
            initial
                .files
                .insert(f.name.clone(), read_file(f).unwrap_or(0));
        }
        states.send_replace(initial);
        let mut tasks: Vec<JoinHandle<()>> = cfg
            .scripts
            .iter()
            .zip(counters)
            .map(|(s, c)| tokio::spawn(run_script(s.clone(), c, states.clone())))
            .collect();
        if !quorums.is_empty() || !cfg.files.is_empty() {
            tasks.push(tokio::spawn(poll(
                quorums,
                cfg.files.clone(),
                states.clone(),
            )));
        }
        Trackers { cfg, tasks }
    }

    /// Stops every task (a script still running is killed with its process group).
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn quorum_of(p: &VrrpTrackProcess) -> Quorum {
    Quorum::new(
        p.quorum,
        p.quorum_max,
        Duration::from_secs_f64(p.fork_delay.max(0.0)),
        Duration::from_secs_f64(p.terminate_delay.max(0.0)),
    )
}

fn pattern_of(p: &VrrpTrackProcess) -> ProcessPattern {
    ProcessPattern {
        process: p.process.clone(),
        args: p.args.clone(),
        param_match: p.param_match,
        full_command: p.full_command,
    }
}

async fn run_script(
    s: VrrpScript,
    mut counter: ScriptCounter,
    states: Arc<watch::Sender<TrackStates>>,
) {
    let spec = ScriptSpec {
        command: s.script.clone(),
        shell: false,
        dynamic: false,
        user: s.user.clone(),
        env: vec![],
    };
    let timeout = Duration::from_secs_f64(s.timeout.max(0.001));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(s.interval.max(0.001)));
    // A run longer than the interval delays the next one (keepalived does not start a script
    // that is still running).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reason = String::new();
    loop {
        tick.tick().await;
        let outcome = script::run(&spec, timeout).await;
        if outcome.reason != last_reason {
            tracing::debug!(script = %s.name, "vrrp_script {} now: {}", s.name, outcome.reason);
            last_reason = outcome.reason.clone();
        }
        if let Some(status) = counter.record(outcome.up) {
            tracing::info!(
                script = %s.name, %status,
                "VRRP_Script({}) {} ({})",
                s.name,
                if status == Status::Up { "succeeded" } else { "failed" },
                outcome.reason
            );
            states.send_modify(|st| {
                st.scripts.insert(s.name.clone(), status);
            });
        }
    }
}

/// Scans /proc and reads the files every [`POLL_EVERY`] (sooner when a process delay ends).
async fn poll(
    mut quorums: Vec<(VrrpTrackProcess, Quorum)>,
    files: Vec<VrrpTrackFile>,
    states: Arc<watch::Sender<TrackStates>>,
) {
    loop {
        let next = quorums
            .iter()
            .filter_map(|(_, q)| q.deadline())
            .fold(Instant::now() + POLL_EVERY, Instant::min);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let now = Instant::now();
        if !quorums.is_empty() {
            let counts = count_processes(&quorums);
            for ((p, q), n) in quorums.iter_mut().zip(counts) {
                if let Some(status) = q.observe(now, n) {
                    tracing::info!(
                        process = %p.name,
                        "vrrp_track_process {}: quorum {} ({n} process(es))",
                        p.name,
                        if status == Status::Up { "gained" } else { "lost" }
                    );
                    states.send_modify(|st| {
                        st.processes.insert(p.name.clone(), status);
                    });
                }
            }
        }
        for f in &files {
            let Some(v) = read_file(f) else { continue };
            let changed = states.borrow().files.get(&f.name) != Some(&v);
            if changed {
                tracing::info!(file = %f.name, "vrrp_track_file {}: value {v}", f.name);
                states.send_modify(|st| {
                    st.files.insert(f.name.clone(), v);
                });
            }
        }
    }
}

/// The file's value; a missing or unreadable file is 0 (keepalived), an out-of-range number
/// `None` (ignored).
fn read_file(f: &VrrpTrackFile) -> Option<i64> {
    match std::fs::read(&f.file) {
        Ok(bytes) => {
            let n = bytes.len().min(127);
            let v = file_value(&String::from_utf8_lossy(&bytes[..n]));
            if v.is_none() {
                tracing::warn!(file = %f.name, "{}: invalid number, ignored", f.file.display());
            }
            v
        }
        Err(_) => Some(0),
    }
}

/// Matching processes per tracked process, in one pass over /proc. Zombies do not count.
fn count_processes(quorums: &[(VrrpTrackProcess, Quorum)]) -> Vec<u32> {
    let patterns: Vec<ProcessPattern> = quorums.iter().map(|(p, _)| pattern_of(p)).collect();
    let need_cmdline = patterns.iter().any(|p| p.full_command);
    let mut counts = vec![0u32; patterns.len()];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(comm) = live_comm(pid) else { continue };
        let cmdline = if need_cmdline {
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
        } else {
            Vec::new()
        };
        for (i, p) in patterns.iter().enumerate() {
            if p.matches(&comm, &cmdline) {
                counts[i] += 1;
            }
        }
    }
    counts
}

/// The process name from /proc/PID/stat, `None` for a zombie or a process gone.
fn live_comm(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let state = stat.get(close + 1..)?.split_whitespace().next()?;
    (state != "Z" && state != "X").then_some(comm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, program: &str) -> VrrpScript {
        VrrpScript {
            name: name.into(),
            script: vec![program.into()],
            interval: 1.0,
            timeout: 1.0,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            user: None,
            init_fail: false,
        }
    }

    async fn wait_until(
        rx: &mut watch::Receiver<TrackStates>,
        what: &str,
        f: impl Fn(&TrackStates) -> bool,
    ) {
        let ok = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| f(s)))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(ok, "{what}: {:?}", *rx.borrow());
    }

    /// The real IO (no root needed): scripts run, /proc scanned, a file read.
    #[tokio::test]
    async fn scripts_processes_and_files_are_watched() {
        let dir = std::env::temp_dir().join(format!("xlb-tracker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prio");
        std::fs::write(&file, "-5\n").unwrap();
        // A process only this test runs: `sleep` with an argument of its own.
        let arg = format!(
            "{}.{}",
            1000 + std::process::id() % 1000,
            std::process::id()
        );
        let mut child = std::process::Command::new("sleep")
            .arg(&arg)
            .spawn()
            .unwrap();
        let cfg = TrackConfig {
            scripts: vec![script("ok", "/bin/true"), script("ko", "/bin/false")],
            processes: vec![VrrpTrackProcess {
                name: "sleeper".into(),
                process: "sleep".into(),
                args: Some(vec![arg.clone()]),
                param_match: Some(crate::config::ParamMatch::Exact),
                full_command: true,
                quorum: 1,
                quorum_max: u32::MAX,
                terminate_delay: 0.0,
                fork_delay: 0.0,
                weight: 0,
                weight_reverse: false,
            }],
            files: vec![VrrpTrackFile {
                name: "prio".into(),
                file: file.clone(),
                weight: 1,
                weight_reverse: false,
            }],
        };
        let tx = Arc::new(watch::channel(TrackStates::default()).0);
        let mut rx = tx.subscribe();
        let trackers = Trackers::start(cfg.clone(), &tx, None);
        {
            // Processes and files are looked at before `start` returns; scripts are INIT.
            let s = rx.borrow_and_update();
            assert_eq!(s.processes["sleeper"], Status::Up);
            assert_eq!(s.files["prio"], -5);
            assert_eq!(s.scripts["ok"], Status::Init);
        }
        wait_until(&mut rx, "scripts ran", |s| {
            s.scripts["ok"] == Status::Up && s.scripts["ko"] == Status::Down
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        wait_until(&mut rx, "process gone", |s| {
            s.processes["sleeper"] == Status::Down
        })
        .await;
        std::fs::write(&file, "0x10").unwrap();
        wait_until(&mut rx, "file rewritten", |s| s.files["prio"] == 16).await;
        std::fs::remove_file(&file).unwrap();
        wait_until(&mut rx, "file removed", |s| s.files["prio"] == 0).await;
        trackers.stop();
        // A reload with the same scripts carries their status on; a changed one starts over.
        let mut changed = cfg.clone();
        changed.scripts[1].rise = 2;
        let trackers = Trackers::start(changed, &tx, Some(&cfg));
        {
            let s = rx.borrow_and_update();
            assert_eq!(s.scripts["ok"], Status::Up);
            assert_eq!(s.scripts["ko"], Status::Init);
        }
        trackers.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
