//! Configuration: shipped configs parse, every bad case reports the expected located error, a
//! config serializes back to TOML unchanged, and all errors are reported at once.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use xlb::config::{self, Announce, CheckType, Config, Scheduler, XdpMode};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn shipped_configs_parse() {
    let files = toml_files(&repo_root().join("configs"));
    assert!(files.len() >= 2, "configs/*.toml missing");
    for f in files {
        if let Err(e) = config::load(&f) {
            panic!("{} does not load:\n{e}", f.display());
        }
    }
}

#[test]
fn bad_corpus_reports_expected_errors() {
    let dir = repo_root().join("lb-user/tests/data/config/bad");
    let files = toml_files(&dir);
    assert!(files.len() >= 20, "only {} bad cases", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let first = src.lines().next().unwrap_or_default();
        let spec = first.strip_prefix("# expect: ").unwrap_or_else(|| {
            panic!(
                "{}: first line must be `# expect: LINE:COL: text`",
                f.display()
            )
        });
        let mut parts = spec.splitn(3, ':');
        let line: usize = parts.next().unwrap().trim().parse().unwrap();
        let col: usize = parts.next().unwrap().trim().parse().unwrap();
        let text = parts.next().unwrap().trim();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match config::parse(&src, &name) {
            Ok(_) => failures.push(format!("{name}: parsed without error, expected {spec}")),
            Err(errs) => {
                let hit = errs.iter().any(|e| {
                    e.line == line && e.column == col && e.message.contains(text) && e.file == name
                });
                if !hit {
                    failures.push(format!(
                        "{name}: expected {line}:{col}: {text}\n  got:\n    {}",
                        errs.to_string().replace('\n', "\n    ")
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn round_trip_through_toml() {
    for f in toml_files(&repo_root().join("configs")) {
        let cfg = config::load_schema(&f).unwrap();
        let text =
            toml::to_string(&cfg).unwrap_or_else(|e| panic!("{}: serialize: {e}", f.display()));
        let back = config::parse_schema(&text, "serialized")
            .unwrap_or_else(|e| panic!("{}: reparse:\n{e}\n{text}", f.display()));
        assert_eq!(
            cfg,
            back,
            "{}: round trip changed the config:\n{text}",
            f.display()
        );
    }
    // Every optional field set, IPv6, defaults exercised.
    let src = r#"
[global]
interfaces = ["eth0", "eth1"]
metrics_listen = "[::1]:9108"
maglev_capacity = 200000

[[virtual_server]]
vip = "2001:db8::100"
port = 0
protocol = "udp"
scheduler = "sh"
persistence_timeout = 360
sorry_server = "2001:db8::50"
sorry_server_mac = "02:00:00:00:00:50"
announce = "bgp"
  [virtual_server.check]
  type = "script"
  command = ["/bin/check", "x"]
  shell = true
  dynamic = true
  user = "nobody"
  [[virtual_server.real_server]]
  address = "2001:db8::11"
  port = 53
  weight = 0
  mac = "02:00:00:00:00:11"
  interface = "eth1"
  notify_up = ["/bin/true"]
  notify_down = ["/bin/false", "down"]
    [virtual_server.real_server.check]
    type = "https"
    connect_ip = "2001:db8::99"
    connect_port = 443
    method = "HEAD"
    path = "/h"
    host = "h.example"
    status_codes = [200, 204]
    tls_verify = true
    ca_file = "/etc/ssl/ca.pem"
    rise = 2
    fall = 3
    retry = 2
    delay_before_retry = 0.5

[[vrrp_instance]]
name = "VI_6"
state = "BACKUP"
interface = "eth0"
virtual_router_id = 7
version = 3
advert_int = 0.25
virtual_ipaddress = ["2001:db8::200/64"]
unicast_src_ip = "2001:db8::1"
unicast_peer = ["2001:db8::2"]
nopreempt = true
track_service = ["[2001:db8::100]:0/udp"]
track_service_weight = -50
notify_master = ["/bin/m"]

[[vrrp_sync_group]]
name = "G"
group = ["VI_6"]
"#;
    let cfg = config::parse_schema(src, "inline").unwrap_or_else(|e| panic!("{e}"));
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(
        cfg,
        config::parse_schema(&text, "serialized").unwrap_or_else(|e| panic!("{e}\n{text}"))
    );
    assert_eq!(
        config::parse(src, "inline").unwrap(),
        config::parse(&text, "serialized").unwrap(),
        "the runtime configuration is the same too"
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    // Structural errors in several sections and array elements.
    let src = r#"[global]
interfaces = ["eth0"]
xdp_mode = "fast"

[[virtual_server]]
vip = "198.18.0.100"
port = 80
protocl = "tcp"

  [[virtual_server.real_server]]
  address = "198.18.0.11"
  weight = "one"

  [[virtual_server.real_server]]
  address = "198.18.0.300"
"#;
    let errs = config::parse(src, "multi.toml").unwrap_err();
    let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(3, 12), (8, 1), (12, 12), (15, 13)], "{errs}");

    // Semantic errors everywhere, in file order.
    let src = r#"[global]
interfaces = ["eth0"]
conn_table_size = 10

[[virtual_server]]
vip = "198.18.0.100"
port = 80
maglev_table_size = 1000

  [[virtual_server.real_server]]
  address = "2001:db8::1"
  weight = 100000

[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
nopreempt = true
virtual_ipaddress = ["2001:db8::100"]
track_service = ["nope"]
"#;
    let errs = config::parse(src, "multi.toml").unwrap_err();
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 8, 11, 12, 19, 20, 21], "{errs}");
    let shown = errs.to_string();
    assert!(
        shown.starts_with("multi.toml:3:19: conn_table_size 10 is out of range"),
        "{shown}"
    );
}

#[test]
fn defaults_and_helpers() {
    let src = r#"
[global]
interfaces = ["eth0"]

[[virtual_server]]
vip = "198.18.0.100"
port = 80
  [virtual_server.check]
  type = "http"
  [[virtual_server.real_server]]
  address = "198.18.0.11"
  [[virtual_server.real_server]]
  address = "198.18.0.12"
    [virtual_server.real_server.check]
    type = "none"

[[virtual_server]]
vip = "198.18.0.101"
port = 443
scheduler = "wrr"
  [[virtual_server.real_server]]
  address = "198.18.0.11"

[[vrrp_instance]]
name = "VI_1"
state = "BACKUP"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["198.18.0.100/24"]
"#;
    let cfg: Config = config::parse(src, "t").unwrap_or_else(|e| panic!("{e}"));
    let g = &cfg.global;
    assert_eq!(g.xdp_mode, XdpMode::Auto);
    assert_eq!(g.conn_table_size, 1_048_576);
    assert_eq!(g.flood_threshold, 125_000);
    assert_eq!(g.control_socket, Path::new("/run/xlb/xlb.sock"));
    assert_eq!(g.bpffs_dir, Path::new("/sys/fs/bpf/xlb"));
    assert_eq!(g.metrics_listen, None);
    assert_eq!(cfg.timeouts.tcp, 900);
    assert_eq!(cfg.timeouts.udp, 300);

    let (a, b) = (&cfg.virtual_servers[0], &cfg.virtual_servers[1]);
    assert_eq!(a.name, "198.18.0.100:80/tcp");
    assert_eq!(
        cfg.virtual_server("198.18.0.101:443/tcp").map(|v| v.port),
        Some(443)
    );
    assert_eq!(a.scheduler, Scheduler::Maglev);
    assert_eq!(b.scheduler, Scheduler::WeightedRoundRobin);
    assert_eq!(a.maglev_table_size, 65_537);
    assert_eq!(a.announce, Announce::Vrrp);
    assert_eq!(b.announce, Announce::Always);

    let (r0, r1) = (&a.real_servers[0], &a.real_servers[1]);
    assert_eq!(r0.port, 80);
    assert_eq!(r0.weight, 1);
    let chk = r0.check.as_ref().expect("VS-level check applies");
    assert_eq!(chk.kind, CheckType::Http);
    assert_eq!(chk.interval, 6.0);
    assert_eq!(chk.retry, 1);
    assert_eq!(chk.delay_before_retry, 3.0);
    assert_eq!(chk.timeout, 5.0);
    assert_eq!(
        chk.target,
        SocketAddr::new("198.18.0.11".parse::<IpAddr>().unwrap(), 80)
    );
    assert!(r1.check.is_none(), "type none disables the default check");
    assert!(b.real_servers[0].check.is_none());

    let vi = &cfg.vrrp_instances[0];
    assert_eq!(vi.priority, 100);
    assert_eq!(vi.version, 2);
    assert_eq!(vi.advert_int, 1.0);
    assert_eq!(vi.garp_master_repeat, 5);
    assert_eq!(vi.virtual_ipaddress[0].prefix_len, 24);
}

#[test]
fn port_zero_service_may_overlap_specific_port() {
    let src = r#"
[global]
interfaces = ["eth0"]
[[virtual_server]]
vip = "198.18.0.100"
port = 0
  [[virtual_server.real_server]]
  address = "198.18.0.11"
[[virtual_server]]
vip = "198.18.0.100"
port = 80
  [[virtual_server.real_server]]
  address = "198.18.0.11"
"#;
    config::parse(src, "t").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unreadable_file_is_an_error_without_position() {
    let errs = config::load(Path::new("/nonexistent/xlb.toml")).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/xlb.toml: cannot read"),
        "{errs}"
    );
}

#[test]
fn every_unknown_key_of_a_table_is_reported_in_one_run() {
    let src = r#"[global]
interfaces = ["eth0"]
bogus1 = 1
bogus2 = 2

[[virtual_server]]
vip = "198.18.0.100"
port = 80
foo = 1
bar = 2
check = { type = "tcp", zap = 1, zip = 2 }

  [[virtual_server.real_server]]
  address = "198.18.0.11"
  x = 1
  y = 2
"#;
    let errs = config::parse(src, "keys.toml").unwrap_err();
    let keys: Vec<(usize, &str)> = errs
        .iter()
        .map(|e| {
            let key = e.message.split('`').nth(1).unwrap_or_default();
            (e.line, key)
        })
        .collect();
    assert_eq!(
        keys,
        [
            (3, "bogus1"),
            (4, "bogus2"),
            (9, "foo"),
            (10, "bar"),
            (11, "zap"),
            (11, "zip"),
            (15, "x"),
            (16, "y")
        ],
        "{errs}"
    );
    assert!(
        errs.iter().all(|e| e.message.starts_with("unknown key")),
        "{errs}"
    );
}

#[test]
fn one_error_for_an_unclosed_array_and_for_a_keepalived_conf() {
    let dir = repo_root().join("lb-user/tests/data/config/bad");
    for name in ["unclosed_array.toml", "keepalived_conf.toml"] {
        let errs = config::load(&dir.join(name)).unwrap_err();
        assert_eq!(errs.len(), 1, "{name}:\n{errs}");
    }
    // The errors before the open array are kept.
    let src = "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = nope\nlist = [1, 2\nconn_table_size = 1024\n";
    let errs = config::parse(src, "t.toml").unwrap_err();
    let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(3, 12), (4, 8)], "{errs}");
}

#[test]
fn warnings_tier() {
    let src = r#"[global]
interfaces = ["eth0"]

[[virtual_server]]
vip = "198.18.0.100"
port = 80

[[virtual_server]]
vip = "198.18.0.100"
port = 443

[[virtual_server]]
vip = "198.18.0.101"
port = 80
announce = "always"
  [[virtual_server.real_server]]
  address = "198.18.0.11"

[[virtual_server]]
vip = "198.18.0.102"
port = 80
  [[virtual_server.real_server]]
  address = "198.18.0.11"

[[vrrp_instance]]
name = "VI_1"
state = "BACKUP"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["198.18.0.102"]
"#;
    let (cfg, warnings) = config::parse_checked(src, "w.toml").unwrap();
    assert_eq!(cfg.virtual_servers.len(), 4);
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    let at: Vec<(usize, usize)> = warnings.iter().map(|w| (w.0.line, w.0.column)).collect();
    // Two services without real servers; VIP .100 held by nobody, said once; .101 chose
    // "always"; .102 is held by VI_1.
    assert_eq!(at, [(5, 7), (5, 7), (9, 7)], "{shown:#?}");
    assert!(
        shown.iter().any(|w| w.starts_with(
            "w.toml:5:7: warning: virtual server `198.18.0.100:80/tcp` has no real servers"
        )),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|w| w.contains("no vrrp_instance lists 198.18.0.100")),
        "{shown:#?}"
    );
    // Warnings never make `parse` fail.
    assert!(config::parse(src, "w.toml").is_ok());
}
