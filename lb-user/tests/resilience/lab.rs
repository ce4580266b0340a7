//! Lab helpers of the resilience scenarios, on top of `common::dr::Dr`: a config generator with
//! the knobs the scenarios turn, the shared stream server and client (`xtask::lab::streams`,
//! which scale to thousands of connections) on their own port, nginx real servers, wrk, and
//! status figures.
use std::time::Duration;

pub use xtask::lab::streams::{Running, State, Streams};
use xtask::lab::{streams, Host, Proc};

use crate::common::dr::{start_stream_servers as start_servers, Dr, VIP};

/// The stream service port of the resilience configs.
pub const STREAM_PORT: u16 = 9100;
/// The nginx service port.
pub const NGINX_PORT: u16 = 8080;

/// How the director sends packets to the real servers (issue 19: every stream scenario runs in
/// tunnel mode too, on the same topology and with the same goals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Direct routing: MAC rewrite on the shared segment.
    Dr,
    /// Tunnel mode with `tunnel = "ipip" | "gue"`; the real servers decapsulate with `xlb
    /// realserver up --tunnel` (this kernel kind has no ipip/fou modules: xlb's decap program).
    Tunnel(&'static str),
}

impl Forward {
    /// The service keys of this method (none for DR, the default).
    fn service_keys(self) -> String {
        match self {
            Forward::Dr => String::new(),
            Forward::Tunnel(kind) => format!("forward = \"tunnel\"\ntunnel = \"{kind}\"\n"),
        }
    }

    /// The scenario's name in the report with this method (DR keeps the historical names).
    pub fn scenario(self, base: &str) -> String {
        match self {
            Forward::Dr => base.to_string(),
            Forward::Tunnel(kind) => format!("{base}, tunnel mode ({kind})"),
        }
    }
}

/// Prepares the real servers for `fwd` (nothing for DR: the lab's real servers are DR-ready):
/// `xlb realserver up --tunnel` allowing the director's address.
pub fn prepare_real_servers(dr: &Dr, fwd: Forward) {
    if let Forward::Tunnel(kind) = fwd {
        for rs in &dr.d.real_servers {
            xtask::lab::tun::realserver_up(&dr.d.lab, rs, &dr.xlb, kind, &[DIRECTOR]).unwrap();
        }
    }
}

/// The director's address on the lab segment (the tunnels' outer source).
const DIRECTOR: &str = "198.18.0.2";

/// Lab knobs written into [global] / [timeouts], and the forwarding method of the services.
#[derive(Clone, Debug)]
pub struct Knobs {
    pub forward: Forward,
    pub conn_table_size: u32,
    pub flood_threshold: u32,
    pub syn_recv: u32,
    pub tcp_fin: u32,
    pub close: u32,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            forward: Forward::Dr,
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
            "\n[[virtual_server]]\nname = \"vs{port}\"\nvip = \"{VIP}\"\nport = {port}\nannounce = \"always\"\n{}",
            k.forward.service_keys()
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
    start_servers(&mut dr.d, STREAM_PORT, interval);
}

/// Starts the stream client on `host`: `n` connections read for `seconds` after connecting.
pub fn start_streams(dr: &mut Dr, host: &Host, n: usize, seconds: f64, stall: f64) -> Running {
    let client = streams::Client {
        stall,
        ..streams::Client::new(VIP, STREAM_PORT, n, seconds)
    };
    client.start(&mut dr.d.lab, host).unwrap()
}

/// Waits until the stream client has connected; returns how many connections succeeded.
pub fn wait_connected(dr: &mut Dr, p: &Running, timeout: Duration) -> usize {
    p.wait_connected(&mut dr.d.lab, timeout).unwrap()
}

/// Reports (and checks) that no stream was reset, stalled beyond `stall_s` or moved to another
/// server.
pub fn report_unbroken(r: &Streams, scenario: &str, stall_s: u64) -> bool {
    let mut ok = super::report::eq(scenario, "streams reset", 0, r.count(State::Reset));
    ok &= super::report::eq(
        scenario,
        &format!("streams stalled (> {stall_s} s gap)"),
        0,
        r.count(State::Stalled),
    );
    ok &= super::report::eq(
        scenario,
        "streams moved to another server",
        0,
        r.count(State::Switched),
    );
    ok
}

pub fn stream_results(dr: &mut Dr, p: &Running, timeout: Duration) -> Streams {
    p.results(&mut dr.d.lab, timeout).unwrap()
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
    xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{VIP}:{port}/"), n)
        .unwrap()
}
