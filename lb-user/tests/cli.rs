//! The CLI surface: the shipped systemd unit calls real subcommands, completions and man pages
//! are generated from the clap definitions, check-config answers with exit codes 0 and 2.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::FromRawFd as _, unix::net::UnixListener},
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use clap::Parser as _;
use xlb::cli::Cli;

fn unit_commands() -> Vec<Vec<String>> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb.service"
    ))
    .unwrap();
    unit.lines()
        .filter_map(|l| {
            l.strip_prefix("ExecStart=")
                .or_else(|| l.strip_prefix("ExecStartPre="))
                .or_else(|| l.strip_prefix("ExecReload="))
        })
        .map(|l| {
            l.replace("${XLB_CONFIG}", "/etc/xlb/xlb.toml")
                .split_whitespace()
                .map(|w| w.rsplit('/').next().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn systemd_unit_uses_real_subcommands() {
    let cmds = unit_commands();
    assert_eq!(cmds.len(), 3);
    for argv in cmds {
        assert_eq!(argv[0], "xlb");
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"));
    // A rejected reload must fail `systemctl reload` (xlb reload exits 2), a rejected file must
    // not restart in a loop, and a hung daemon is restarted by the watchdog.
    assert!(unit.contains("ExecReload=/usr/local/bin/xlb reload --config ${XLB_CONFIG}"));
    assert!(unit.contains("RestartPreventExitStatus=2"));
    assert!(unit.contains("WatchdogSec="));
    for hardening in [
        "ProtectSystem=strict",
        "ReadWritePaths=/sys/fs/bpf /run/xlb /var/lib/xlb",
        "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}

/// `systemd-analyze verify` accepts the unit (with ExecStart pointing at the built binary), and
/// `systemd-analyze security` rates it better than the 7.7 EXPOSED of the unhardened unit.
#[test]
fn systemd_unit_verifies() {
    let Ok(analyze) = which("systemd-analyze") else {
        if std::env::var_os("XLB_TEST_FULL").is_some() || std::env::var_os("CI").is_some() {
            panic!("systemd-analyze is missing (cargo xtask setup installs systemd)");
        }
        eprintln!("systemd_unit_verifies: SKIPPED, no systemd-analyze");
        return;
    };
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb.service"
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!("xlb-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xlb.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/xlb", env!("CARGO_BIN_EXE_xlb")),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .args(["verify", "--man=no", "--generators=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let real_problems: Vec<&str> = said.lines().filter(|l| l.contains("xlb.service")).collect();
    assert!(out.status.success() && real_problems.is_empty(), "{said}");
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("exposure level for")
                .nth(1)?
                .split(": ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    println!("systemd-analyze security: {score}");
    assert!(score < 6.0, "exposure {score}: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn completions_and_man_pages() {
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let out = Command::new(xlb)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("check-config") && text.contains("realserver"),
        "bash completion lists subcommands"
    );
    let dir = std::env::temp_dir().join(format!("xlb-man-{}", std::process::id()));
    let out = Command::new(xlb)
        .args(["man", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.join("xlb.1")).unwrap();
    assert!(page.contains(".TH xlb"), "{page}");
    assert!(dir.join("xlb-status.1").exists());
    assert!(dir.join("xlb.toml.5").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_config_exit_codes() {
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for f in ["configs/xlb.toml", "configs/demo.toml"] {
        let out = Command::new(xlb)
            .args(["check-config", &format!("{root}/{f}")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = std::env::temp_dir().join(format!("xlb-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "[global]\ninterfaces = [\"eth0\"]\nconn_table_size = \"big\"\n",
    )
    .unwrap();
    let out = Command::new(xlb)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:19:"), "{err}");
    std::fs::remove_file(bad).unwrap();
}

fn xlb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory for one test (removed by the caller).
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xlb-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid config whose control socket is `socket`, with one `announce = "always"` VIP.
fn config_with_socket(dir: &std::path::Path, socket: &std::path::Path) -> PathBuf {
    let file = dir.join("xlb.toml");
    std::fs::write(
        &file,
        format!(
            "[global]\ninterfaces = [\"lo\"]\ncontrol_socket = \"{}\"\n\
             [[virtual_server]]\nvip = \"198.18.0.100\"\nport = 80\nannounce = \"always\"\n\
             [[virtual_server.real_server]]\naddress = \"198.18.0.11\"\n\
             [[virtual_server]]\nvip = \"198.18.0.101\"\nport = 80\n\
             [[virtual_server.real_server]]\naddress = \"198.18.0.11\"\n\
             [[vrrp_instance]]\nname = \"VI_1\"\nstate = \"BACKUP\"\ninterface = \"lo\"\n\
             virtual_router_id = 51\nvirtual_ipaddress = [\"198.18.0.101\"]\n",
            socket.display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn unreachable_daemon_names_the_os_error_once() {
    let out = xlb(&["status", "--socket", "/nonexistent/xlb-test.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the daemon at /nonexistent/xlb-test.sock"),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn a_config_with_errors_is_not_replaced_by_the_default_socket() {
    let dir = scratch("badcfg");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[global]\ninterfaces = \"eth0\"\n").unwrap();
    for cmd in ["status", "conns", "reload", "stop"] {
        let out = xlb(&[cmd, "-c", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr(&out);
        assert!(
            err.contains("bad.toml:2:"),
            "{cmd}: the file's error with its position: {err}"
        );
        assert!(
            err.contains("cannot find the control socket"),
            "{cmd}: {err}"
        );
        assert!(
            !err.contains("/run/xlb/xlb.sock"),
            "{cmd}: fell back to the default: {err}"
        );
    }
    // A missing explicit file is an error too, not the default socket.
    let out = xlb(&["status", "-c", dir.join("missing.toml").to_str().unwrap()]);
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("/run/xlb/xlb.sock"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs xlb with stdout a pipe whose read end is already closed: the first write gets EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two fds we own from here on.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is ours and closed once; fds[1] moves into the OwnedFd.
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[1]) };
    Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(args)
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [&["completions", "zsh"][..], &["man"], &["man", "xlb.toml"]] {
        let out = with_closed_stdout(args);
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
}

/// A stand-in daemon answering one request with a big connection table.
fn serve_conns(listener: UnixListener, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        assert!(line.contains("conns"), "{line}");
        let entries: Vec<xlb::status::ConnEntry> = (0..n)
            .map(|i| xlb::status::ConnEntry {
                protocol: "TCP".into(),
                expire_secs: 900,
                state: "ESTABLISHED".into(),
                client: format!("198.18.1.{}:{}", i % 250 + 1, 1024 + i % 60000)
                    .parse()
                    .unwrap(),
                virtual_addr: "198.18.0.100:80".parse().unwrap(),
                real: Some("198.18.0.11:80".parse().unwrap()),
                synced_from: None,
            })
            .collect();
        let resp = xlb::control::Response::Conns {
            entries,
            total: n as u64,
        };
        let mut text = serde_json::to_string(&resp).unwrap();
        text.push('\n');
        let _ = stream.write_all(text.as_bytes());
    })
}

#[test]
fn conns_into_a_closed_pipe_ends_quietly() {
    let dir = scratch("conns");
    let socket = dir.join("ctl.sock");
    let server = serve_conns(UnixListener::bind(&socket).unwrap(), 20_000);
    let out = with_closed_stdout(&["conns", "--socket", socket.to_str().unwrap()]);
    server.join().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn doctor_takes_dash_c_and_says_skip_for_what_it_did_not_check() {
    let dir = scratch("doctor");
    let cfg = config_with_socket(&dir, &dir.join("no-daemon.sock"));
    let out = xlb(&["doctor", "-c", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} is valid", cfg.display())),
        "{text}"
    );
    let peers: Vec<&str> = text.lines().filter(|l| l.contains("vrrp-peers")).collect();
    assert_eq!(peers.len(), 1, "{text}");
    assert!(peers[0].starts_with("[skip]"), "{text}");
    assert!(
        text.contains("[ ok ] kernel: Linux") || text.contains("[FAIL] kernel"),
        "{text}"
    );
    // The announce = "always" VIP is not on this host: doctor says nobody in xlb holds it.
    assert!(
        text.contains("VIP 198.18.0.100 (announce = \"always\") is on no interface"),
        "{text}"
    );
    assert!(
        text.contains("VIP 198.18.0.101: held by vrrp_instance VI_1"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_config_says_who_holds_each_vip() {
    let dir = scratch("holders");
    let cfg = config_with_socket(&dir, &dir.join("x.sock"));
    let out = xlb(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VIP 198.18.0.100: announce = \"always\": not managed by xlb"),
        "{text}"
    );
    assert!(
        text.contains("VIP 198.18.0.101: held by vrrp_instance VI_1 (on lo while MASTER)"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn man_prints_by_default_and_writes_files_only_with_dir() {
    let dir = scratch("man");
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .arg("man")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH xlb 1"));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "xlb man wrote files into the cwd"
    );
    let page = xlb(&["man", "status"]);
    assert!(String::from_utf8_lossy(&page.stdout).contains(".TH xlb-status 1"));
    let page = xlb(&["man", "xlb.toml"]);
    assert!(String::from_utf8_lossy(&page.stdout).starts_with(".TH XLB.TOML 5"));
    let none = xlb(&["man", "nosuch"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("xlb-status.1"), "{}", stderr(&none));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The configs/ file without its leading comment block (the command that generated it).
fn without_header(text: &str) -> &str {
    text.split_once("\n\n").map_or(text, |(_, rest)| rest)
}

#[test]
fn scale_out_example_validates_and_generates_the_shipped_bird_configs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
    let cfg = format!("{root}/xlb-scaleout.toml");
    let check = xlb(&["check-config", &cfg]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(text.matches("held by xlb on lo").count(), 2, "{text}");
    let args = [
        "bgp-config",
        "--daemon",
        "bird",
        "--config",
        &cfg,
        "--router-ip",
        "198.18.1.1",
        "2001:db8:1::1",
        "--router-id",
        "198.18.1.2",
        "--router-as",
        "65000",
        "--local-as",
        "65001",
        "--router",
        "--director",
        "198.18.1.2",
        "198.18.1.3",
        "198.18.1.4",
        "2001:db8:1::2",
        "2001:db8:1::3",
        "2001:db8:1::4",
    ];
    let out = xlb(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = String::from_utf8(out.stdout).unwrap();
    let (director, router) = xlb::cli::bgp_config::split_router(&generated).unwrap();
    for (name, want) in [
        ("bird-director.conf", director),
        ("bird-router.conf", router),
    ] {
        let shipped = std::fs::read_to_string(format!("{root}/{name}")).unwrap();
        assert_eq!(
            without_header(&shipped).trim(),
            want.trim(),
            "configs/{name} is not what xlb bgp-config makes from configs/xlb-scaleout.toml"
        );
    }
}

#[test]
fn shipped_realserver_sysctl_snippet_sets_what_realserver_up_sets() {
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb-realserver-sysctl.conf"
    ))
    .unwrap();
    let v6: std::net::IpAddr = "2001:db8::100".parse().unwrap();
    for w in xlb::realserver::wanted_sysctls(&[v6]) {
        let line = format!("{} = {}", w.key, w.value);
        assert!(snippet.lines().any(|l| l == line), "missing `{line}`");
    }
}

#[test]
fn check_config_warnings_exit_0_and_1_with_strict() {
    let dir = scratch("warnings");
    let cfg = dir.join("w.toml");
    let missing = dir.join("no-such-check.sh");
    let not_executable = dir.join("check.sh");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[global]\ninterfaces = [\"eth0\"]\n\n[[virtual_server]]\nvip = \"198.18.0.100\"\n\
             port = 80\nannounce = \"always\"\ncheck = {{ type = \"script\", command = [\"{}\"] }}\n\
             \n  [[virtual_server.real_server]]\n  address = \"198.18.0.11\"\n\
             \n  [[virtual_server.real_server]]\n  address = \"198.18.0.12\"\n  \
             check = {{ type = \"script\", command = [\"{}\", \"-x\"] }}\n",
            missing.display(),
            not_executable.display()
        ),
    )
    .unwrap();
    let path = cfg.to_str().unwrap();
    let out = xlb(&["check-config", path]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "w.toml:8:38: warning: command `{}` does not exist",
            missing.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            ":15:40: warning: command `{}` is not an executable file",
            not_executable.display()
        )),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 warning(s)"));
    let strict = xlb(&["check-config", "--strict", path]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    std::fs::remove_dir_all(dir).unwrap();
}

/// VRRP's own commands (a tracked script, the generic `notify`) are looked up as the checks'
/// are: a missing one is a warning at its line, naming what it breaks.
#[test]
fn check_config_warns_about_missing_vrrp_commands() {
    let dir = scratch("vrrp-warnings");
    let cfg = dir.join("v.toml");
    std::fs::write(
        &cfg,
        "[global]\ninterfaces = [\"eth0\"]\n\n[[vrrp_instance]]\nname = \"VI_1\"\n\
         state = \"BACKUP\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
         virtual_ipaddress = [\"198.18.0.100\"]\ntrack_script = [{ name = \"chk\" }]\n\
         notify = [\"/nonexistent/xlb-notify\"]\n\n[[vrrp_script]]\nname = \"chk\"\n\
         script = [\"/nonexistent/xlb-chk\", \"nginx\"]\n",
    )
    .unwrap();
    let out = xlb(&["check-config", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "v.toml:11:10: warning: command `/nonexistent/xlb-notify` does not exist: \
                      this notify command never runs"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "v.toml:15:10: warning: command `/nonexistent/xlb-chk` does not exist: \
                      this vrrp_script always fails"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
