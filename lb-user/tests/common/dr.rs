//! A direct-routing lab with the real daemon: client, director running `xlb run`, real servers
//! (HTTP on :80 answering their name, a stream server on :9000), on xtask's DR topology
//! ([`xtask::lab::dr`]). Tests using it start with `xtask::require!(dr::NEEDS)`.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

// Re-exported for the suites; not every suite that includes `common` uses both.
#[allow(unused_imports)]
pub use xtask::lab::dr::{NEEDS, VIP};
use xtask::lab::{
    dr::{self, DrLab},
    streams::{self, Running, Streams},
    Proc,
};

/// The port of the stream service (see [`streams`]).
pub const STREAM_PORT: u16 = 9000;

pub struct Dr {
    pub d: DrLab,
    pub xlb: String,
    pub config: PathBuf,
    pub socket: String,
    pub daemon: Option<Proc>,
}

impl Dr {
    pub fn new(tag: &str, reals: usize) -> Self {
        let dr = Self::without_vip(tag, reals);
        // A standalone director holds the VIP (the configs below use announce = "always").
        dr.d.lab
            .add_addr(&dr.d.director, "eth0", &format!("{VIP}/32"))
            .unwrap();
        dr
    }

    /// The lab without the VIP on the director (VRRP puts it there).
    pub fn without_vip(tag: &str, reals: usize) -> Self {
        let mut d = dr::build(tag, reals).expect("lab");
        let dir = d.lab.dir().to_path_buf();
        start_stream_servers(&mut d, STREAM_PORT, 0.05);
        let socket = format!("/run/xlb/{}.sock", d.lab.id());
        let config = dir.join("xlb.toml");
        Self {
            d,
            xlb: env!("CARGO_BIN_EXE_xlb").to_string(),
            config,
            socket,
            daemon: None,
        }
    }

    /// A config for this lab: services on VIP:80 and VIP:9000 over the given real servers
    /// (indices from 1) with the given weights, plus `extra` TOML appended to [global].
    pub fn config_text(&self, reals: &[(usize, u32)], extra_global: &str) -> String {
        let mut t = format!(
            "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
             control_socket = \"{}\"\nsweep_interval = 0.5\n{extra_global}\n\
             [timeouts]\ntcp_fin = 5\nclose = 2\nsyn_recv = 5\n",
            self.socket
        );
        for port in [80, 9000] {
            t += &format!(
                "\n[[virtual_server]]\nname = \"vs{port}\"\nvip = \"{VIP}\"\nport = {port}\nannounce = \"always\"\n"
            );
            for (i, w) in reals {
                t += &format!(
                    "[[virtual_server.real_server]]\naddress = \"198.18.0.{}\"\nweight = {w}\n",
                    10 + i
                );
            }
        }
        t
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn xlb(&self, args: &[&str]) -> Output {
        let mut argv = vec![self.xlb.as_str()];
        argv.extend_from_slice(args);
        self.d.lab.run(&self.d.director, &argv).unwrap()
    }

    /// `xlb <cmd> --socket S ...`
    pub fn ctl(&self, cmd: &str, args: &[&str]) -> Output {
        let mut argv = vec![cmd, "--socket", self.socket.as_str()];
        argv.extend_from_slice(args);
        self.xlb(&argv)
    }

    pub fn start_daemon(&mut self) {
        let config = self.config.display().to_string();
        let p = self
            .d
            .lab
            .spawn(&self.d.director, &[&self.xlb, "run", "--config", &config])
            .unwrap();
        self.daemon = Some(p);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ctl("status", &[]).status.success() {
                return;
            }
            if let Some(p) = &self.daemon {
                if let Ok(Some(st)) = self.d.lab.exited(p) {
                    panic!("xlb run exited: {st:?}\n{}", self.d.lab.log(p));
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|p| self.d.lab.log(p))
            .unwrap_or_default()
    }

    pub fn kill9_daemon(&mut self) {
        if let Some(p) = self.daemon.take() {
            self.d.lab.signal(&p, libc::SIGKILL).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.d.lab.exited(&p).unwrap().is_none() {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.ctl("status", &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `n` HTTP requests to the VIP (new connection each): server name -> count ("FAIL" counted).
    pub fn curl(&self, n: usize) -> std::collections::BTreeMap<String, usize> {
        dr::curl_spread(&self.d.lab, &self.d.client, &format!("http://{VIP}/"), n).unwrap()
    }

    /// Starts the stream client on the client host: `n` connections to VIP:[`STREAM_PORT`] for
    /// `seconds`, a gap above 2 s counting as stalled.
    pub fn start_streams(&mut self, n: usize, seconds: f64) -> Running {
        self.start_streams_stall(n, seconds, 2.0)
    }

    /// Like `start_streams`, with the gap (seconds) above which a connection counts as stalled.
    pub fn start_streams_stall(&mut self, n: usize, seconds: f64, stall: f64) -> Running {
        let client = streams::Client {
            stall,
            ..streams::Client::new(VIP, STREAM_PORT, n, seconds)
        };
        let host = self.d.client.clone();
        client.start(&mut self.d.lab, &host).unwrap()
    }

    /// Waits for the stream client and returns one result per connection.
    pub fn stream_results(&mut self, p: &Running, timeout: Duration) -> Streams {
        p.results(&mut self.d.lab, timeout).unwrap()
    }
}

/// Starts a stream server (see [`streams`]) on `port` of every real server, each sending its
/// name every `interval` seconds, and waits until they listen.
pub fn start_stream_servers(d: &mut DrLab, port: u16, interval: f64) {
    for rs in d.real_servers.clone() {
        streams::start_server(&mut d.lab, &rs, rs.name(), port, interval).unwrap();
    }
    for (i, rs) in d.real_servers.iter().enumerate() {
        let addr = format!("{}:{port}", dr::real_v4(i + 1));
        d.lab.wait_tcp(rs, &addr, Duration::from_secs(10)).unwrap();
    }
}

/// Polls `f` every 50 ms until it holds; panics after `timeout`. Returns how long it took.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}
