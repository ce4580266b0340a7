//! Lab helpers of the resilience scenarios, on top of `common::dr::Dr`: a config generator with
//! the knobs the scenarios turn, a single-threaded stream server/client that scales to thousands
//! of connections, nginx real servers, wrk, and status figures.
use std::time::{Duration, Instant};

use xtask::lab::{Host, Proc};

use crate::common::dr::{Dr, VIP};

/// The stream service port (the single-threaded server below).
pub const STREAM_PORT: u16 = 9100;
/// The nginx service port.
pub const NGINX_PORT: u16 = 8080;

/// One selector loop: every accepted connection gets "<name>\n" every `interval` seconds.
const STREAM_SERVER: &str = r#"
import selectors, socket, sys, time
name, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", port))
srv.listen(4096)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
conns = set()
line = (name + "\n").encode()
next_send = time.time()
while True:
    for key, _ in sel.select(timeout=max(0.0, next_send - time.time())):
        if key.fileobj is srv:
            try:
                while True:
                    c, _ = srv.accept()
                    c.setblocking(False)
                    conns.add(c)
                    sel.register(c, selectors.EVENT_READ)
            except BlockingIOError:
                pass
        else:
            c = key.fileobj
            try:
                data = c.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(c)
                conns.discard(c)
                c.close()
    if time.time() >= next_send:
        next_send = time.time() + interval
        for c in list(conns):
            try:
                c.send(line)
            except BlockingIOError:
                pass
            except OSError:
                sel.unregister(c)
                conns.discard(c)
                c.close()
"#;

/// Opens N connections to VIP:port (in batches, non-blocking), reads for `seconds` and prints one
/// line per connection: "<first server> ok|reset|stalled|refused|switched <max gap ms>".
/// "switched": a line from another server arrived on the connection (a mis-forwarded flow).
const STREAM_CLIENT: &str = r#"
import selectors, socket, sys, time, errno
vip, port, n, seconds, stall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sel = selectors.DefaultSelector()
conns = []
pending = []
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((vip, port))
    c = {"sock": s, "name": None, "last": None, "gap": 0.0, "state": "connecting", "buf": b""}
    conns.append(c)
    sel.register(s, selectors.EVENT_WRITE, c)
    if i % 100 == 99:
        time.sleep(0.05)
deadline = time.time() + 10
connecting = n
while connecting and time.time() < deadline:
    for key, _ in sel.select(timeout=0.2):
        c = key.data
        if c["state"] != "connecting":
            continue
        err = c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        connecting -= 1
        if err:
            c["state"] = "refused"
            sel.unregister(c["sock"])
        else:
            c["state"] = "ok"
            c["last"] = time.time()
            sel.modify(c["sock"], selectors.EVENT_READ, c)
for c in conns:
    if c["state"] == "connecting":
        c["state"] = "refused"
        sel.unregister(c["sock"])
print("connected", sum(1 for c in conns if c["state"] == "ok"), flush=True)
end = time.time() + seconds
while time.time() < end:
    for key, _ in sel.select(timeout=0.1):
        c = key.data
        try:
            data = c["sock"].recv(65536)
        except BlockingIOError:
            continue
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
        *lines, c["buf"] = c["buf"].split(b"\n")
        for l in lines:
            l = l.decode(errors="replace")
            if c["name"] is None:
                c["name"] = l
            elif l != c["name"] and c["state"] == "ok":
                c["state"] = "switched"
now = time.time()
for c in conns:
    if c["state"] == "ok":
        c["gap"] = max(c["gap"], now - c["last"])
        if c["gap"] > stall:
            c["state"] = "stalled"
    print("conn", c.get("name") or "-", c["state"], int(c["gap"] * 1000))
"#;

/// Lab knobs written into [global] / [timeouts].
#[derive(Clone, Debug)]
pub struct Knobs {
    pub conn_table_size: u32,
    pub flood_threshold: u32,
    pub syn_recv: u32,
    pub tcp_fin: u32,
    pub close: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            conn_table_size: 65536,
            flood_threshold: 0,
            syn_recv: 5,
            tcp_fin: 5,
            close: 2,
        }
    }
}

/// A config: VIP:80 (python http.server), VIP:STREAM_PORT and VIP:NGINX_PORT, each over the real
/// servers `(index from 1, weight)`; `comment` lets a reload change the file without changing
/// anything else.
pub fn config(dr: &Dr, reals: &[(usize, u32)], k: &Knobs, comment: &str) -> String {
    let mut t = format!(
        "# {comment}\n[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\n\
         conn_table_size = {}\nflood_threshold = {}\ncontrol_socket = \"{}\"\nsweep_interval = 0.5\n\n\
         [timeouts]\ntcp_fin = {}\nclose = {}\nsyn_recv = {}\n",
        k.conn_table_size, k.flood_threshold, dr.socket, k.tcp_fin, k.close, k.syn_recv
    );
    for port in [80, STREAM_PORT, NGINX_PORT] {
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

/// `sh -c "ulimit -n $(ulimit -Hn); exec ARGV"` (thousands of sockets).
fn with_nofile(argv: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    vec![
        "sh".into(),
        "-c".into(),
        format!("ulimit -n $(ulimit -Hn); exec {}", quoted.join(" ")),
    ]
}

fn spawn(dr: &mut Dr, host: &Host, argv: &[&str]) -> Proc {
    let argv = with_nofile(argv);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    dr.d.lab.spawn(host, &argv).unwrap()
}

/// Starts the stream server on every real server (`interval` seconds between lines).
pub fn start_stream_servers(dr: &mut Dr, interval: f64) {
    let path = dr.d.lab.dir().join("stream_server_sel.py");
    std::fs::write(&path, STREAM_SERVER).unwrap();
    let path = path.display().to_string();
    let interval = interval.to_string();
    let port = STREAM_PORT.to_string();
    for rs in dr.d.real_servers.clone() {
        spawn(dr, &rs, &["python3", &path, rs.name(), &port, &interval]);
    }
    for (i, rs) in dr.d.real_servers.iter().enumerate() {
        dr.d.lab
            .wait_tcp(
                rs,
                &format!("198.18.0.{}:{STREAM_PORT}", 11 + i),
                Duration::from_secs(10),
            )
            .unwrap();
    }
}

/// Starts the stream client on `host`: `n` connections read for `seconds` after connecting.
pub fn start_streams(dr: &mut Dr, host: &Host, n: usize, seconds: f64, stall: f64) -> Proc {
    let path = dr.d.lab.dir().join("stream_client_sel.py");
    std::fs::write(&path, STREAM_CLIENT).unwrap();
    let path = path.display().to_string();
    let (n, s, st, port) = (
        n.to_string(),
        seconds.to_string(),
        stall.to_string(),
        STREAM_PORT.to_string(),
    );
    spawn(dr, host, &["python3", &path, VIP, &port, &n, &s, &st])
}

/// Waits until the stream client has printed "connected N"; returns N.
pub fn wait_connected(dr: &mut Dr, p: &Proc, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let log = dr.d.lab.log(p);
        if let Some(l) = log.lines().find(|l| l.starts_with("connected ")) {
            return l[10..].trim().parse().unwrap();
        }
        assert!(
            Instant::now() < deadline && dr.d.lab.exited(p).unwrap().is_none(),
            "stream client did not connect: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per-connection results of the stream client.
#[derive(Debug, Default)]
pub struct Streams {
    pub conns: Vec<(String, String, u64)>,
}

impl Streams {
    /// Reports (and checks) that no stream was reset, stalled beyond `stall_s` or moved to
    /// another server.
    pub fn report_unbroken(&self, scenario: &str, stall_s: u64) -> bool {
        let mut ok = super::report::eq(scenario, "streams reset", 0, self.count("reset"));
        ok &= super::report::eq(
            scenario,
            &format!("streams stalled (> {stall_s} s gap)"),
            0,
            self.count("stalled"),
        );
        ok &= super::report::eq(
            scenario,
            "streams moved to another server",
            0,
            self.count("switched"),
        );
        ok
    }

    pub fn count(&self, state: &str) -> u64 {
        self.conns.iter().filter(|c| c.1 == state).count() as u64
    }
    pub fn on(&self, server: &str) -> u64 {
        self.conns.iter().filter(|c| c.0 == server).count() as u64
    }
    pub fn max_gap_ms(&self) -> u64 {
        self.conns
            .iter()
            .filter(|c| c.1 == "ok")
            .map(|c| c.2)
            .max()
            .unwrap_or(0)
    }
    /// Connections that did not stay fine: reset, stalled, switched or refused.
    pub fn broken(&self) -> Vec<&(String, String, u64)> {
        self.conns.iter().filter(|c| c.1 != "ok").collect()
    }
}

pub fn stream_results(dr: &mut Dr, p: &Proc, timeout: Duration) -> Streams {
    let deadline = Instant::now() + timeout;
    while dr.d.lab.exited(p).unwrap().is_none() {
        assert!(Instant::now() < deadline, "stream client did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let conns =
        dr.d.lab
            .log(p)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next()? == "conn").then_some(())?;
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.parse().ok()?,
                ))
            })
            .collect();
    Streams { conns }
}

/// Starts nginx on every real server (port NGINX_PORT, answering its name), files in the lab dir.
pub fn start_nginx(dr: &mut Dr) {
    for rs in dr.d.real_servers.clone() {
        let dir = dr.d.lab.dir().join(format!("nginx-{}", rs.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             worker_rlimit_nofile 65536;\nevents {{ worker_connections 16384; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
               server {{\n    listen {NGINX_PORT} backlog=8192;\n    location / {{ return 200 \"{}\\n\"; }}\n  }}\n}}\n",
            rs.name()
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let path = path.display().to_string();
        let prefix = dir.display().to_string();
        dr.d.lab.sysctl(&rs, "net.core.somaxconn", "8192").unwrap();
        dr.d.lab
            .sysctl(&rs, "net.ipv4.tcp_max_syn_backlog", "8192")
            .unwrap();
        spawn(dr, &rs, &["nginx", "-p", &prefix, "-c", &path]);
    }
    for (i, rs) in dr.d.real_servers.iter().enumerate() {
        dr.d.lab
            .wait_tcp(
                rs,
                &format!("198.18.0.{}:{NGINX_PORT}", 11 + i),
                Duration::from_secs(10),
            )
            .unwrap();
    }
}

/// `(active, inactive)` summed over the real servers of service `name`.
pub fn conns_of(status: &serde_json::Value, name: &str) -> (u64, u64) {
    let svc = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {status}"));
    svc["reals"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(a, i), r| {
            (
                a + r["active_conns"].as_u64().unwrap(),
                i + r["inactive_conns"].as_u64().unwrap(),
            )
        })
}

pub fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

/// The configuration-derived part of a status (services, real servers, weights): what a
/// rejected reload must leave as it was.
pub fn config_view(status: &serde_json::Value) -> Vec<String> {
    let mut v = Vec::new();
    for s in status["services"].as_array().unwrap() {
        v.push(format!(
            "{} {} {} {}",
            s["name"], s["addr"], s["scheduler"], s["active"]
        ));
        for r in s["reals"].as_array().unwrap() {
            v.push(format!(
                "  {} w{} fwd {}",
                r["addr"], r["weight"], r["forwarding"]
            ));
        }
    }
    v
}

/// Sends `n` HTTP requests (a new connection each) to VIP:port; server name -> count.
pub fn curl_port(dr: &Dr, port: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    xtask::cmd::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{VIP}:{port}/"), n).unwrap()
}
