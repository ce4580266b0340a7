//! Health checks against real servers on 127.0.0.1: TCP listeners, a small HTTP/1.1 server
//! (plain and TLS with a self-signed certificate), scripts. Each test takes at most a few seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use xlb::config::Check;
use xlb::health::{
    http::md5_hex, scheduler::check_once, targets, AnyProbe, HealthChecker, HealthEvent, Outcome,
    Probe, RealHealth, RealTarget,
};
use xtask::lab::require::Need;

// ---------------------------------------------------------------------------------------------
// helpers

/// A check written as in a `[check]` table, resolved with a 1 s default interval (the probed
/// address is the target's).
fn check(toml_src: &str) -> Check {
    let written: xlb::config::schema::Check = toml::from_str(toml_src).unwrap();
    let interval = written.interval.as_ref().map_or(1.0, |i| *i.get_ref());
    Check::resolve(&written, interval, "127.0.0.1:0".parse().unwrap())
}

fn target(service: &str, addr: SocketAddr, check: Option<Check>) -> RealTarget {
    let interval = check.as_ref().map_or(1.0, |c| c.interval);
    RealTarget {
        service: service.into(),
        real: addr,
        check,
        probe: addr,
        interval: Duration::from_secs_f64(interval),
        config_weight: 10,
        alpha: false,
        notify_up: None,
        notify_down: None,
        virtual_server: None,
    }
}

/// One result of `check` against `addr` (timeout and retries of the check applied).
async fn probe(addr: SocketAddr, c: &str) -> Outcome {
    let t = target("t", addr, Some(check(c)));
    let p = AnyProbe::new(t.check.as_ref().unwrap(), &t);
    check_once(&p, &t.policy()).await
}

fn tmpdir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "xlb-health-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn next_event(rx: &mut UnboundedReceiver<HealthEvent>, within: Duration) -> RealHealth {
    let ev = tokio::time::timeout(within, rx.recv())
        .await
        .expect("no health event in time")
        .unwrap();
    let HealthEvent::Changed { health, .. } = ev;
    health
}

/// What the test HTTP server saw of a request.
#[derive(Clone, Debug, Default)]
struct Req {
    path: String,
    host: Option<String>,
    sni: Option<String>,
}

type Handler = Arc<dyn Fn(&Req) -> (u16, String) + Send + Sync>;

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, mut req: Req, h: &Handler) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.lines();
    let method = lines.next().unwrap_or_default().to_string();
    req.path = method.split(' ').nth(1).unwrap_or_default().to_string();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("host") {
                req.host = Some(v.trim().to_string());
            }
        }
    }
    let (code, body) = h(&req);
    let body = if method.starts_with("HEAD") {
        String::new()
    } else {
        body
    };
    let resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A plain HTTP server on 127.0.0.1.
async fn http_server(h: Handler) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let h = h.clone();
            tokio::spawn(async move { respond(s, Req::default(), &h).await });
        }
    });
    addr
}

/// An HTTPS server on 127.0.0.1 with a self-signed certificate for "localhost"; returns the
/// address and the certificate (PEM).
async fn https_server(h: Handler) -> (SocketAddr, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (h, acceptor) = (h.clone(), acceptor.clone());
            tokio::spawn(async move {
                // a client that rejects the certificate aborts the handshake: ignore
                if let Ok(tls) = acceptor.accept(s).await {
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    respond(
                        tls,
                        Req {
                            sni,
                            ..Req::default()
                        },
                        &h,
                    )
                    .await;
                }
            });
        }
    });
    (addr, pem)
}

const OK_BODY: &str = "<html><body>OK</body></html>\n";

fn site() -> Handler {
    Arc::new(|r: &Req| match r.path.as_str() {
        "/monitor.html" => (200, OK_BODY.to_string()),
        "/fail" => (503, "maintenance".to_string()),
        _ => (404, "not found".to_string()),
    })
}

/// Answers 200 only for `Host: www.example.com` (an IIS-like name-based virtual host).
fn vhost() -> Handler {
    Arc::new(|r: &Req| match r.host.as_deref() {
        Some("www.example.com") => (200, OK_BODY.to_string()),
        _ => (404, "unknown site".to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// tcp

#[tokio::test]
async fn tcp_refused_goes_down_then_rises_after_restart_with_notify() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dir = tmpdir("notify");
    let log = dir.join("notify.log");
    let notify = |state: &str| {
        Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            format!(
                "echo \"{state} $XLB_SERVICE $XLB_REAL $XLB_REASON\" >> {}",
                log.display()
            ),
        ])
    };
    let (interval, timeout, fall) = (0.2, 0.5, 2.0);
    let mut t = target(
        "web",
        addr,
        Some(check(
            "type = \"tcp\"\ninterval = 0.2\ntimeout = 0.5\nrise = 2\nfall = 2\nretry = 0",
        )),
    );
    t.notify_up = notify("UP");
    t.notify_down = notify("DOWN");
    let (tx, mut rx) = unbounded_channel();
    let hc = HealthChecker::start(vec![t], tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = hc.snapshot();
    let h = &snap[&("web".to_string(), addr)];
    assert!(h.up, "{h:?}");
    assert!(h.checks >= 1);

    drop(l);
    let t0 = Instant::now();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    let took = t0.elapsed().as_secs_f64();
    assert!(!h.up);
    assert_eq!(h.reason, "refused");
    assert!(
        took <= interval * fall + timeout,
        "down after {took:.2}s, bound {}",
        interval * fall + timeout
    );

    // restart the server on the same port: up again after `rise` = 2 passes
    let _l = std::net::TcpListener::bind(addr).unwrap();
    let t0 = Instant::now();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    assert!(h.up);
    assert_eq!(h.reason, "connected");
    assert_eq!(h.weight, 10);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "rise 2 needs two results"
    );
    // the notify programs ran
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            assert_eq!(
                text.lines().collect::<Vec<_>>(),
                [
                    format!("DOWN web {addr} refused"),
                    format!("UP web {addr} connected")
                ]
            );
            break;
        }
        assert!(Instant::now() < deadline, "notify log: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hc.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tcp_probe_up_and_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let c = "type = \"tcp\"\ntimeout = 1.0";
    assert_eq!(probe(addr, c).await, Outcome::up("connected"));
    drop(l);
    let c = "type = \"tcp\"\ntimeout = 1.0\nretry = 1\ndelay_before_retry = 0.05";
    assert_eq!(probe(addr, c).await, Outcome::down("refused"));
}

// ---------------------------------------------------------------------------------------------
// http

#[tokio::test]
async fn http_status_body_and_digest() {
    let addr = http_server(site()).await;
    let base = "type = \"http\"\ntimeout = 2.0\nretry = 0\n";
    let p = |extra: &str| format!("{base}{extra}");
    assert_eq!(
        probe(addr, &p("path = \"/monitor.html\"")).await,
        Outcome::up("status 200")
    );
    assert_eq!(
        probe(addr, &p("path = \"/fail\"")).await,
        Outcome::down("status 503")
    );
    assert_eq!(
        probe(addr, &p("path = \"/fail\"\nstatus_codes = [200, 503]")).await,
        Outcome::up("status 503")
    );
    assert_eq!(
        probe(addr, &p("path = \"/monitor.html\"\nmethod = \"HEAD\"")).await,
        Outcome::up("status 200")
    );
    // body regex (the field report's `grep "<body>OK</body>"`)
    assert!(
        probe(
            addr,
            &p("path = \"/monitor.html\"\nbody_regex = \"<body>OK</body>\"")
        )
        .await
        .up
    );
    assert_eq!(
        probe(
            addr,
            &p("path = \"/monitor.html\"\nbody_regex = \"<body>DOWN</body>\"")
        )
        .await,
        Outcome::down("body mismatch")
    );
    // digest (keepalived genhash style: md5 of the body)
    let good = md5_hex(OK_BODY.as_bytes());
    assert!(
        probe(
            addr,
            &p(&format!("path = \"/monitor.html\"\ndigest = \"{good}\""))
        )
        .await
        .up
    );
    let upper = good.to_uppercase();
    assert!(
        probe(
            addr,
            &p(&format!("path = \"/monitor.html\"\ndigest = \"{upper}\""))
        )
        .await
        .up
    );
    let o = probe(
        addr,
        &p("path = \"/monitor.html\"\ndigest = \"00000000000000000000000000000000\""),
    )
    .await;
    assert!(!o.up);
    assert_eq!(o.reason, format!("digest mismatch ({good})"));
}

#[tokio::test]
async fn http_virtual_host_needs_the_host_header() {
    // Field report problem 5: the servers route by host name; probing by IP gets 404.
    let addr = http_server(vhost()).await;
    let base = "type = \"http\"\ntimeout = 2.0\nretry = 0\npath = \"/monitor.html\"\n";
    assert_eq!(probe(addr, base).await, Outcome::down("status 404"));
    assert_eq!(
        probe(addr, &format!("{base}host = \"www.example.com\"")).await,
        Outcome::up("status 200")
    );
    assert_eq!(
        probe(addr, &format!("{base}host = \"other.example.com\"")).await,
        Outcome::down("status 404")
    );
    assert!(
        probe(
            addr,
            &format!("{base}host = \"www.example.com\"\nbody_regex = \"<body>OK</body>\"")
        )
        .await
        .up
    );
}

#[tokio::test]
async fn http_refused_and_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // accepts but never answers
    let o = probe(addr, "type = \"http\"\ntimeout = 0.3\nretry = 0").await;
    assert_eq!(o, Outcome::down("timeout"));
    drop(l);
    let o = probe(addr, "type = \"http\"\ntimeout = 0.3\nretry = 0").await;
    assert_eq!(o, Outcome::down("refused"));
}

#[tokio::test]
async fn https_self_signed_verify_off_on_and_ca_file() {
    let seen = Arc::new(Mutex::new(Vec::<Req>::new()));
    let seen2 = seen.clone();
    let h: Handler = Arc::new(move |r: &Req| {
        seen2.lock().unwrap().push(r.clone());
        (200, OK_BODY.to_string())
    });
    let (addr, pem) = https_server(h).await;
    let base = "type = \"https\"\ntimeout = 2.0\nretry = 0\npath = \"/monitor.html\"\n";

    // keepalived SSL_GET default: no verification
    assert_eq!(probe(addr, base).await, Outcome::up("status 200"));
    assert_eq!(
        probe(
            addr,
            &format!("{base}host = \"localhost\"\nbody_regex = \"OK\"")
        )
        .await,
        Outcome::up("status 200")
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].sni, None, "no SNI for an IP address");
        assert_eq!(seen[0].host.as_deref(), Some(addr.to_string().as_str()));
        assert_eq!(seen[1].sni.as_deref(), Some("localhost"));
        assert_eq!(seen[1].host.as_deref(), Some("localhost"));
    }

    // verification against the public roots: a self-signed certificate fails
    let o = probe(
        addr,
        &format!("{base}tls_verify = true\nhost = \"localhost\""),
    )
    .await;
    assert!(!o.up);
    assert!(o.reason.starts_with("TLS error"), "{}", o.reason);

    // verification against our own CA file: passes for the certificate's name only
    let dir = tmpdir("ca");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let with_ca = format!("{base}tls_verify = true\nca_file = \"{}\"\n", ca.display());
    assert_eq!(
        probe(addr, &format!("{with_ca}host = \"localhost\"")).await,
        Outcome::up("status 200")
    );
    let o = probe(addr, &format!("{with_ca}host = \"www.example.com\"")).await;
    assert!(o.reason.starts_with("TLS error"), "{}", o.reason);

    // plain http against the TLS port fails
    let o = probe(addr, "type = \"http\"\ntimeout = 1.0\nretry = 0").await;
    assert!(!o.up);
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// scripts

fn write_script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn script_check(cmd: &[&str], extra: &str) -> String {
    let cmd: Vec<String> = cmd.iter().map(|c| format!("{c:?}")).collect();
    format!("type = \"script\"\ncommand = [{}]\n{extra}", cmd.join(", "))
}

/// Live (non-zombie) processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[tokio::test]
async fn script_exit_codes() {
    let dir = tmpdir("script");
    let any: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let ok = write_script(&dir, "ok.sh", "exit 0");
    let bad = write_script(&dir, "bad.sh", "exit 1");
    let args = write_script(&dir, "args.sh", "[ \"$1\" = \"$XLB_REAL_IP\" ] || exit 1");
    assert_eq!(
        probe(any, &script_check(&[&ok], "")).await,
        Outcome::up("exit code 0")
    );
    assert_eq!(
        probe(any, &script_check(&[&bad], "")).await,
        Outcome::down("exit code 1")
    );
    assert!(
        probe(any, &script_check(&[&args, "127.0.0.1"], ""))
            .await
            .up
    );
    assert!(!probe(any, &script_check(&[&args, "10.0.0.1"], "")).await.up);
    // a shell command line (the field report's curl | grep pipeline shape)
    assert!(
        probe(
            any,
            &script_check(
                &["echo '<body>OK</body>' | grep -q '<body>OK</body>'"],
                "shell = true"
            )
        )
        .await
        .up
    );
    // without dynamic, 5 is a failure; with it, weight 3
    assert_eq!(
        probe(any, &script_check(&["exit 5"], "shell = true")).await,
        Outcome::down("exit code 5")
    );
    assert_eq!(
        probe(
            any,
            &script_check(&["exit 5"], "shell = true\ndynamic = true")
        )
        .await,
        Outcome::up_weight(3, "exit code 5 (weight 3)")
    );
    let o = probe(any, &script_check(&["/nonexistent/check"], "")).await;
    assert!(!o.up);
    assert!(
        o.reason.starts_with("cannot run /nonexistent/check"),
        "{}",
        o.reason
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `user = "nobody"`: the script runs as that user, with only its own group (switching users
/// needs root).
#[tokio::test]
async fn script_runs_as_the_configured_user() {
    xtask::require!([Need::Root]);
    let any: SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert!(
        probe(
            any,
            &script_check(
                &["[ \"$(id -u)\" != 0 ] && [ \"$(id -G)\" = \"$(id -g)\" ]"],
                "shell = true\nuser = \"nobody\""
            )
        )
        .await
        .up
    );
}

#[tokio::test]
async fn hung_script_is_killed_with_its_process_group() {
    let dir = tmpdir("hung");
    // unique durations so that the test finds exactly its own processes
    let marker = format!("100.{}{}", std::process::id(), line!());
    let hung = write_script(
        &dir,
        "hung.sh",
        &format!("sleep {marker} &\nsleep {marker}\nexit 0"),
    );
    let any: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let t0 = Instant::now();
    let o = probe(any, &script_check(&[&hung], "timeout = 0.5")).await;
    let took = t0.elapsed();
    assert_eq!(o, Outcome::down("timeout"));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // the script, its foreground and its background sleep: all gone
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = processes_with(&marker);
        let left_sh = processes_with(&hung);
        if left.is_empty() && left_sh.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftover processes: {left:?} {left_sh:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dynamic_script_changes_the_weight() {
    let dir = tmpdir("dynamic");
    let code = dir.join("code");
    std::fs::write(&code, "0").unwrap();
    let c = check(&script_check(
        &[&format!("exit $(cat {})", code.display())],
        "shell = true\ndynamic = true\ninterval = 0.1\ntimeout = 2.0",
    ));
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let hc = HealthChecker::start(vec![target("dyn", addr, Some(c))], tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hc.snapshot()[&("dyn".to_string(), addr)].weight, 10);

    std::fs::write(&code, "5").unwrap();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    assert!(h.up);
    assert_eq!(h.weight, 3);
    std::fs::write(&code, "2").unwrap();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((h.up, h.weight), (true, 0));
    std::fs::write(&code, "1").unwrap();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    assert!(!h.up);
    assert_eq!(h.reason, "exit code 1");
    std::fs::write(&code, "0").unwrap();
    let h = next_event(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((h.up, h.weight), (true, 10));
    hc.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// targets, alpha, reload

#[tokio::test]
async fn targets_from_config_alpha_and_reload() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let src = format!(
        r#"
[global]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
vip = "192.0.2.1"
port = 80
delay_loop = 0.1
alpha = true
  [virtual_server.check]
  type = "tcp"
  connect_port = {port}
  timeout = 1.0
  [[virtual_server.real_server]]
  address = "127.0.0.1"
  weight = 5
  notify_up = ["/bin/true"]
  [[virtual_server.real_server]]
  address = "127.0.0.2"
    [virtual_server.real_server.check]
    type = "none"
"#
    );
    let cfg = xlb::config::parse(&src, "test.toml").unwrap();
    let ts = targets(&cfg);
    assert_eq!(ts.len(), 2);
    let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let b: SocketAddr = "127.0.0.2:80".parse().unwrap();
    assert_eq!(ts[0].service, "web");
    assert_eq!(ts[0].real, a);
    assert_eq!(ts[0].probe, SocketAddr::new(a.ip(), port));
    assert_eq!(ts[0].interval, Duration::from_millis(100));
    assert_eq!(ts[0].config_weight, 5);
    assert!(ts[0].alpha);
    assert_eq!(ts[0].notify_up, Some(vec!["/bin/true".to_string()]));
    assert!(ts[1].check.is_none());

    let (tx, mut rx) = unbounded_channel();
    let mut hc = HealthChecker::start(ts.clone(), tx);
    let snap = hc.snapshot();
    assert!(!snap[&("web".to_string(), a)].up, "alpha: starts down");
    assert!(snap[&("web".to_string(), b)].up, "no check: always up");
    let inputs = hc.state_inputs();
    assert!(!inputs[&("web".to_string(), a)].up);
    assert_eq!(inputs[&("web".to_string(), b)].weight, 1);
    let h = next_event(&mut rx, Duration::from_secs(2)).await;
    assert!(h.up && h.weight == 5);

    // unchanged: keeps state and task (the check counter goes on)
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = hc.snapshot()[&("web".to_string(), a)].checks;
    assert!(before >= 2);
    hc.reload(ts.clone());
    assert!(hc.snapshot()[&("web".to_string(), a)].checks >= before);

    // changed weight: restarted, still up (no flap), one event for the new weight
    let mut changed = ts.clone();
    changed[0].config_weight = 7;
    changed.remove(1);
    hc.reload(changed);
    let h = next_event(&mut rx, Duration::from_secs(1)).await;
    assert_eq!((h.up, h.weight), (true, 7));
    let snap = hc.snapshot();
    assert_eq!(snap.len(), 1, "removed target stopped");
    assert!(snap[&("web".to_string(), a)].up);
    // no flap after the restart
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err());

    // the server goes down; then its check is removed: up at once, with an event
    drop(l);
    let h = next_event(&mut rx, Duration::from_secs(2)).await;
    assert!(!h.up);
    let mut unchecked = ts.clone();
    unchecked.truncate(1);
    unchecked[0].check = None;
    hc.reload(unchecked);
    let h = next_event(&mut rx, Duration::from_secs(1)).await;
    assert!(h.up);
    assert_eq!(h.reason, "no check");
    hc.shutdown();
}

/// A probe is usable on its own through the trait.
#[tokio::test]
async fn probe_trait_direct() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = target("x", l.local_addr().unwrap(), Some(check("type = \"tcp\"")));
    let p = AnyProbe::new(t.check.as_ref().unwrap(), &t);
    assert!(p.probe().await.up);
}
