//! Long-lived TCP streams through a lab: one stream server and one stream client
//! (`streams.py`, written into the lab's directory) shared by every lab test, and the parsed
//! per-connection results.
//!
//! A server sends its name every `interval` seconds on each connection; the client opens many
//! connections through the VIP(s) and reports for each the server that answered, whether the
//! stream survived (or was reset, stalled, refused, or switched to another server) and the longest
//! gap between two reads.
use std::{
    collections::BTreeMap,
    fmt,
    path::PathBuf,
    str::FromStr,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{Host, Lab, Proc};

/// The script: `server`, `client` and `probe` modes (see its docstring).
pub const SCRIPT: &str = include_str!("streams.py");

static NEXT_STOP: AtomicUsize = AtomicUsize::new(0);

/// Writes [`SCRIPT`] into the lab's directory (once) and returns its path.
fn script(lab: &Lab) -> Result<String> {
    let path = lab.dir().join("streams.py");
    if !path.exists() {
        std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
    }
    path.to_str()
        .map(str::to_string)
        .context("non-UTF-8 lab directory")
}

/// `python3 streams.py ARGS`, with the open-file limit raised to its hard limit (thousands of
/// sockets).
fn python_argv(script: &str, args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "sh",
        "-c",
        r#"ulimit -n "$(ulimit -Hn)"; exec "$@""#,
        "xlb-streams",
        "python3",
        script,
    ]
    .map(String::from)
    .into();
    argv.extend_from_slice(args);
    argv
}

fn spawn(lab: &mut Lab, host: &Host, args: &[String]) -> Result<Proc> {
    let argv = python_argv(&script(lab)?, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.spawn(host, &argv)
}

/// Starts a stream server on `host`: every connection to `port` (IPv4 or IPv6) gets
/// "`name`\n" every `interval` seconds.
pub fn start_server(
    lab: &mut Lab,
    host: &Host,
    name: &str,
    port: u16,
    interval: f64,
) -> Result<Proc> {
    let args = [
        "server".into(),
        name.into(),
        port.to_string(),
        interval.to_string(),
    ];
    spawn(lab, host, &args)
}

/// `n` short connections from `host` to `target:port` (a new source port each), each reading
/// the first line: server name -> count (failures under `"FAIL"`).
pub fn probe(
    lab: &Lab,
    host: &Host,
    target: &str,
    port: u16,
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let argv = python_argv(
        &script(lab)?,
        &[
            "probe".into(),
            port.to_string(),
            n.to_string(),
            target.into(),
        ],
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = lab.run_ok(host, &argv)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// How long the client keeps its streams open once connected.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Until {
    /// This many seconds.
    Seconds(f64),
    /// Until [`Running::results`] tells it to stop.
    Stopped,
}

/// A stream client run: `conns` connections to `port` on `targets` (round robin).
#[derive(Clone, Debug)]
pub struct Client {
    /// Addresses (IPv4 and/or IPv6) the connections go to, round robin.
    pub targets: Vec<String>,
    pub port: u16,
    pub conns: usize,
    pub run: Until,
    /// A gap between two reads longer than this (seconds) makes a stream `stalled`.
    pub stall: f64,
    /// Send one byte every this many seconds on each stream (so the client's packets keep
    /// crossing the directors); `None`: only read.
    pub ping: Option<f64>,
}

impl Client {
    /// `conns` connections to `target:port` for `seconds`, stalled above 2 s, no pings.
    pub fn new(target: &str, port: u16, conns: usize, seconds: f64) -> Client {
        Client {
            targets: vec![target.to_string()],
            port,
            conns,
            run: Until::Seconds(seconds),
            stall: 2.0,
            ping: None,
        }
    }

    /// Starts the client on `host` in the background.
    pub fn start(&self, lab: &mut Lab, host: &Host) -> Result<Running> {
        let mut args = vec!["client".to_string()];
        let stop = match self.run {
            Until::Seconds(s) => {
                args.extend(["--seconds".into(), s.to_string()]);
                None
            }
            Until::Stopped => {
                let n = NEXT_STOP.fetch_add(1, Ordering::Relaxed);
                let stop = lab.dir().join(format!("streams-stop-{n}"));
                args.extend(["--stop-file".into(), stop.display().to_string()]);
                Some(stop)
            }
        };
        args.extend(["--stall".into(), self.stall.to_string()]);
        if let Some(p) = self.ping {
            args.extend(["--ping".into(), p.to_string()]);
        }
        args.extend([self.port.to_string(), self.conns.to_string()]);
        args.extend(self.targets.iter().cloned());
        let proc = spawn(lab, host, &args)?;
        Ok(Running { proc, stop })
    }
}

/// A started stream client.
#[derive(Debug)]
pub struct Running {
    pub proc: Proc,
    stop: Option<PathBuf>,
}

impl Running {
    /// Waits until every connect has finished; returns how many succeeded.
    pub fn wait_connected(&self, lab: &mut Lab, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = lab.log(&self.proc);
            if let Some(l) = log.lines().find_map(|l| l.strip_prefix("connected ")) {
                return l.trim().parse().context("bad `connected` line");
            }
            if lab.exited(&self.proc)?.is_some() || Instant::now() >= deadline {
                bail!("the stream client did not connect within {timeout:?}: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the client (if it runs until stopped), waits for it to finish and returns one
    /// [`Stream`] per connection.
    pub fn results(&self, lab: &mut Lab, timeout: Duration) -> Result<Streams> {
        if let Some(stop) = &self.stop {
            std::fs::write(stop, "").with_context(|| format!("writing {}", stop.display()))?;
        }
        let deadline = Instant::now() + timeout;
        while lab.exited(&self.proc)?.is_none() {
            if Instant::now() >= deadline {
                bail!("the stream client did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Streams::parse(&lab.log(&self.proc))
    }
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Ran to the end with no gap above the stall limit.
    Ok,
    /// Closed or reset by the other side.
    Reset,
    /// A gap between two reads above the stall limit.
    Stalled,
    /// The connection could not be made.
    Refused,
    /// A line from another server arrived: the flow was mis-forwarded.
    Switched,
}

impl State {
    const NAMES: [(State, &'static str); 5] = [
        (State::Ok, "ok"),
        (State::Reset, "reset"),
        (State::Stalled, "stalled"),
        (State::Refused, "refused"),
        (State::Switched, "switched"),
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = State::NAMES
            .iter()
            .find(|(s, _)| s == self)
            .map(|(_, n)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

impl FromStr for State {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<State> {
        State::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(st, _)| *st)
            .with_context(|| format!("unknown stream state {s:?}"))
    }
}

/// One connection's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The address it was opened to.
    pub target: String,
    /// The server that answered first (`-`: none).
    pub server: String,
    pub state: State,
    /// The longest gap between two reads (and from the last read to the end), ms.
    pub max_gap_ms: u64,
}

/// Every connection's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streams(pub Vec<Stream>);

impl Streams {
    /// Parses the client's `conn TARGET SERVER STATE GAP_MS` lines.
    pub fn parse(log: &str) -> Result<Streams> {
        let mut v = Vec::new();
        for line in log.lines().filter(|l| l.starts_with("conn ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, target, server, state, gap] = f[..] else {
                bail!("bad stream line {line:?}");
            };
            v.push(Stream {
                target: target.into(),
                server: server.into(),
                state: state.parse()?,
                max_gap_ms: gap
                    .parse()
                    .with_context(|| format!("bad gap in {line:?}"))?,
            });
        }
        Ok(Streams(v))
    }

    /// Streams that ended in `state`.
    pub fn count(&self, state: State) -> u64 {
        self.0.iter().filter(|s| s.state == state).count() as u64
    }

    /// Streams answered by `server`.
    pub fn on(&self, server: &str) -> u64 {
        self.0.iter().filter(|s| s.server == server).count() as u64
    }

    /// The longest gap of a stream that stayed fine, ms.
    pub fn max_gap_ms(&self) -> u64 {
        self.ok().map(|s| s.max_gap_ms).max().unwrap_or(0)
    }

    /// Streams that stayed fine.
    pub fn ok(&self) -> impl Iterator<Item = &Stream> {
        self.0.iter().filter(|s| s.state == State::Ok)
    }

    /// Streams that did not stay fine: reset, stalled, refused or switched.
    pub fn broken(&self) -> Vec<&Stream> {
        self.0.iter().filter(|s| s.state != State::Ok).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_lines_parse() {
        let log = "connected 3\nconn 198.18.0.100 rs1 ok 120\nconn 2001:db8::100 rs2 switched 80\n\
                   conn 198.18.0.100 - refused 0\n";
        let s = Streams::parse(log).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.0[1].target, "2001:db8::100");
        assert_eq!(s.count(State::Switched), 1);
        assert_eq!(s.on("rs1"), 1);
        assert_eq!(s.max_gap_ms(), 120);
        assert_eq!(s.broken().len(), 2);
        assert!(Streams::parse("conn a b lost 1\n").is_err());
        assert!(Streams::parse("conn a b ok\n").is_err());
    }

    #[test]
    fn states_round_trip() {
        for (st, name) in State::NAMES {
            assert_eq!(st.to_string(), name);
            assert_eq!(name.parse::<State>().unwrap(), st);
        }
    }

    #[test]
    fn the_script_is_valid_python() {
        // Parses it without running it.
        crate::require!([crate::lab::require::Need::Binary("python3")]);
        let py = crate::util::which("python3").expect("checked");
        let out = std::process::Command::new(py)
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin
                    .take()
                    .expect("piped")
                    .write_all(SCRIPT.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "streams.py does not parse");
    }
}
