//! A direct-routing lab with the real daemon: client, director running `xlb run`, real servers
//! (HTTP on :80 answering their name, a streaming server on :9000), built on xtask's lab.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use xtask::{
    cmd::{dr_lab, DemoLab},
    lab::Proc,
};

pub const VIP: &str = "198.18.0.100";

/// Streams "<name>\n" every 50 ms on each accepted connection until the peer goes away.
pub const STREAM_SERVER: &str = r#"
import socket, sys, threading, time
name = sys.argv[1]
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", 9000))
srv.listen(512)
def serve(c):
    try:
        while True:
            c.sendall((name + "\n").encode())
            time.sleep(0.05)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Opens N connections to VIP:9000, reads for `seconds`, and prints one line per connection:
/// "<server> ok|reset|stalled|refused <max gap ms>".
const STREAM_CLIENT: &str = r#"
import selectors, socket, sys, time
vip, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stall = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
sel = selectors.DefaultSelector()
conns = []
for i in range(n):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((vip, 9000))
    except OSError as e:
        conns.append({"name": "-", "state": "refused", "gap": 0})
        continue
    s.setblocking(False)
    c = {"sock": s, "name": None, "last": time.time(), "gap": 0.0, "state": "ok", "buf": b""}
    conns.append(c)
    sel.register(s, selectors.EVENT_READ, c)
end = time.time() + seconds
while time.time() < end:
    for key, _ in sel.select(timeout=0.1):
        c = key.data
        try:
            data = c["sock"].recv(65536)
        except OSError:
            data = b""
        now = time.time()
        if not data:
            c["state"] = "reset"
            sel.unregister(c["sock"])
            continue
        c["gap"] = max(c["gap"], now - c["last"])
        c["last"] = now
        c["buf"] += data
        if c["name"] is None and b"\n" in c["buf"]:
            c["name"] = c["buf"].split(b"\n")[0].decode()
now = time.time()
for c in conns:
    if c["state"] == "ok":
        c["gap"] = max(c["gap"], now - c["last"])
        if c["gap"] > stall:
            c["state"] = "stalled"
    print(c.get("name") or "-", c["state"], int(c["gap"] * 1000))
"#;

pub struct Dr {
    pub d: DemoLab,
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
        let mut d = dr_lab(tag, reals).expect("lab");
        let dir = d.lab.dir().to_path_buf();
        std::fs::write(dir.join("stream_server.py"), STREAM_SERVER).unwrap();
        std::fs::write(dir.join("stream_client.py"), STREAM_CLIENT).unwrap();
        let server = dir.join("stream_server.py").display().to_string();
        for rs in d.real_servers.clone() {
            d.lab.spawn(&rs, &["python3", &server, rs.name()]).unwrap();
        }
        for (i, rs) in d.real_servers.iter().enumerate() {
            d.lab
                .wait_tcp(
                    rs,
                    &format!("198.18.0.{}:9000", 11 + i),
                    Duration::from_secs(10),
                )
                .unwrap();
        }
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
        xtask::cmd::curl_spread(&self.d.lab, &self.d.client, &format!("http://{VIP}/"), n).unwrap()
    }

    /// Starts the streaming client in the background: `n` connections for `seconds`.
    pub fn start_streams(&mut self, n: usize, seconds: f64) -> Proc {
        self.start_streams_stall(n, seconds, 2.0)
    }

    /// Like `start_streams`, with the gap (seconds) above which a connection counts as stalled.
    pub fn start_streams_stall(&mut self, n: usize, seconds: f64, stall: f64) -> Proc {
        let client = self
            .d
            .lab
            .dir()
            .join("stream_client.py")
            .display()
            .to_string();
        let (ns, s, st) = (n.to_string(), seconds.to_string(), stall.to_string());
        let c = self.d.client.clone();
        self.d
            .lab
            .spawn(&c, &["python3", &client, VIP, &ns, &s, &st])
            .unwrap()
    }

    /// Waits for the streaming client and returns (server, state, max gap ms) per connection.
    pub fn stream_results(&mut self, p: &Proc, timeout: Duration) -> Vec<(String, String, u64)> {
        let deadline = Instant::now() + timeout;
        while self.d.lab.exited(p).unwrap().is_none() {
            assert!(Instant::now() < deadline, "stream client did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.d
            .lab
            .log(p)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.parse().ok()?,
                ))
            })
            .collect()
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
