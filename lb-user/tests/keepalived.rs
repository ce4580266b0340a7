//! `xlb import-keepalived` over a corpus of keepalived configurations
//! (`tests/data/keepalived/*.conf`; expected output `NAME.toml`, or `NAME.err` for a file the
//! import must refuse; `XLB_UPDATE_EXPECT=1` rewrites the expectations). Every generated file
//! must validate. The corpus is imported with config id `lvs-primary`; the absolute path of the
//! corpus directory (from `${_PWD}`) is written `<DIR>` in the expectations.
use std::path::{Path, PathBuf};

use xlb::config;
use xlb::import::keepalived::{self, Options};

const DIR: &str = "tests/data/keepalived";

fn opts() -> Options {
    Options {
        config_id: "lvs-primary".into(),
        includes_within: None,
    }
}

fn try_import(name: &str) -> Result<keepalived::Imported, keepalived::ImportError> {
    keepalived::import_file(&Path::new(DIR).join(format!("{name}.conf")), &opts())
}

fn import(name: &str) -> (keepalived::Imported, String) {
    let imported = try_import(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = imported.to_toml().unwrap();
    (imported, text)
}

/// The one use of the xlb configuration parser here: the generated text validates.
fn validate(text: &str, name: &str) -> Result<config::schema::Config, String> {
    config::parse_schema(text, name).map_err(|e| e.to_string())
}

fn abs_dir() -> String {
    std::path::absolute(DIR).unwrap().display().to_string()
}

/// Compares `actual` with the file `expected_path` (or writes it with `XLB_UPDATE_EXPECT`).
fn expect(actual: &str, expected_path: &PathBuf, name: &str) {
    let actual = actual.replace(&abs_dir(), "<DIR>");
    if std::env::var_os("XLB_UPDATE_EXPECT").is_some() {
        std::fs::write(expected_path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(expected_path)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
    assert_eq!(
        actual,
        expected,
        "{name}: output differs from {}",
        expected_path.display()
    );
}

#[test]
fn corpus_matches_expectations_and_validates() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".conf").map(String::from)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let err_path = Path::new(DIR).join(format!("{name}.err"));
        if err_path.exists() {
            match try_import(&name) {
                Ok(_) => panic!(
                    "{name}: imported, expected the error in {}",
                    err_path.display()
                ),
                Err(e) => expect(&format!("{e}\n"), &err_path, &name),
            }
            continue;
        }
        let (_, text) = import(&name);
        if let Err(e) = validate(&text, &name) {
            panic!("{name}: the generated TOML does not validate:\n{e}\n{text}");
        }
        expect(&text, &Path::new(DIR).join(format!("{name}.toml")), &name);
    }
}

fn has_note(i: &keepalived::Imported, loc: &str, needle: &str) -> bool {
    i.notes.iter().any(|n| {
        let n = n.to_string();
        n.starts_with(loc) && n.contains(needle)
    })
}

#[test]
fn field_report_config() {
    let (i, text) = import("field_report");
    let cfg = validate(&text, "field_report").unwrap();
    assert_eq!(cfg.global.router_id.as_deref(), Some("lvs-primary"));
    assert_eq!(cfg.virtual_servers.len(), 2);
    let vs = &cfg.virtual_servers[0];
    assert_eq!(*vs.persistence_timeout.get_ref(), 50);
    assert_eq!(vs.real_servers.len(), 2);
    assert_eq!(*vs.real_servers[0].weight.get_ref(), 120);
    // The quoted misc_path with its argument becomes program + argument.
    let chk = vs.real_servers[1].check.as_ref().unwrap();
    assert_eq!(
        chk.command.as_ref().unwrap().get_ref(),
        &["/etc/keepalived/check_iis.sh", "192.168.2.221"]
    );
    let vi = &cfg.vrrp_instances[0];
    assert_eq!(*vi.virtual_router_id.get_ref(), 51);
    assert_eq!(vi.virtual_ipaddress.get_ref().len(), 2);
    assert!(has_note(
        &i,
        "tests/data/keepalived/field_report.conf:8:",
        "smtp_server"
    ));
}

#[test]
fn checkers_and_notes() {
    let (i, text) = import("checkers");
    let cfg = validate(&text, "checkers").unwrap();
    let f = "tests/data/keepalived/checkers.conf";
    let web = &cfg.virtual_servers[0];
    assert_eq!(
        *web.persistence_timeout.get_ref(),
        360,
        "bare keyword = 360"
    );
    assert_eq!(web.quorum, 2);
    assert!(web.alpha && web.inhibit_on_failure);
    let ssl = web.real_servers[0].check.as_ref().unwrap();
    assert_eq!(ssl.path.as_ref().unwrap().get_ref(), "/health");
    assert_eq!(ssl.host.as_ref().unwrap().get_ref(), "www.example.com");
    assert_eq!(ssl.retry, Some(2));
    let http = web.real_servers[1].check.as_ref().unwrap();
    assert_eq!(
        http.status_codes.as_ref().unwrap().get_ref(),
        &[200, 201, 202, 203, 204]
    );
    assert_eq!(http.host.as_ref().unwrap().get_ref(), "status.example.com");
    let dns = &cfg.virtual_servers[1];
    let misc = dns.real_servers[0].check.as_ref().unwrap();
    // keepalived execs misc_path without a shell: the pipe is an argument.
    assert!(!misc.shell && misc.dynamic);
    assert_eq!(
        misc.command.as_ref().unwrap().get_ref(),
        &[
            "/usr/bin/dig",
            "@10.1.0.31",
            "example.com",
            "|",
            "grep",
            "-q",
            "NOERROR"
        ]
    );
    assert_eq!(*misc.timeout.get_ref(), 3.0);
    assert!(has_note(&i, &format!("{f}:35:"), "lb_algo wlc"));
    assert!(has_note(&i, &format!("{f}:56:"), "second url"));
    assert!(has_note(&i, &format!("{f}:75:"), "second checker"));
    assert!(has_note(&i, &format!("{f}:106:"), "SMTP_CHECK"));
    let vi = &cfg.vrrp_instances[0];
    assert!(*vi.nopreempt.get_ref());
    assert_eq!(
        vi.notify_master.as_ref().unwrap().get_ref(),
        &["/usr/local/bin/notify.sh", "master", "VI WEB"]
    );
}

#[test]
fn includes_sync_groups_unicast_nat() {
    let (i, text) = import("sync_unicast");
    let cfg = validate(&text, "sync_unicast").unwrap();
    // Both included files (glob, relative to the including file), not the README.
    assert_eq!(cfg.virtual_servers.len(), 2);
    assert_eq!(cfg.vrrp_sync_groups[0].group.get_ref().len(), 2);
    let v4 = &cfg.vrrp_instances[0];
    assert_eq!(v4.unicast_peer.len(), 2);
    assert_eq!(
        v4.authentication
            .as_ref()
            .unwrap()
            .get_ref()
            .auth_pass
            .get_ref(),
        "averylon"
    );
    assert_eq!(*cfg.vrrp_instances[1].version.get_ref(), 3);
    let d = "tests/data/keepalived/conf.d";
    assert!(has_note(&i, &format!("{d}/10-web.conf:4:"), "lb_kind NAT"));
    assert!(has_note(&i, &format!("{d}/10-web.conf:6:"), "port 8080"));
    // lb_kind TUN is translated (tunnel mode), without a note.
    assert!(!has_note(&i, &format!("{d}/20-v6.conf:3:"), "lb_kind TUN"));
    let v6 = cfg
        .virtual_servers
        .iter()
        .find(|v| v.vip.get_ref().is_ipv6())
        .unwrap();
    assert_eq!(v6.forward, xlb::config::schema::Forward::Tunnel);
    assert!(has_note(&i, &format!("{d}/20-v6.conf:12:"), "frobnicate"));
    assert!(text.starts_with("# Generated by `xlb import-keepalived"));
}

#[test]
fn cli_writes_a_valid_file() {
    let out = std::env::temp_dir().join(format!("xlb-import-{}.toml", std::process::id()));
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args([
            "import-keepalived",
            "tests/data/keepalived/field_report.conf",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(String::from_utf8_lossy(&st.stderr).contains("note: "));
    validate(&std::fs::read_to_string(&out).unwrap(), "out").unwrap();
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn keepalived_meaning_kept() {
    let d = "tests/data/keepalived";
    // Definitions and conditionals.
    let (_, text) = import("variables");
    let cfg = validate(&text, "variables").unwrap();
    assert_eq!(cfg.vrrp_instances[0].interface.get_ref(), "bond0");
    assert_eq!(cfg.virtual_servers[0].real_servers[0].weight.get_ref(), &2);
    let (_, text) = import("conditionals");
    let vi = &validate(&text, "conditionals").unwrap().vrrp_instances[0];
    assert_eq!(*vi.priority.get_ref(), 150);
    assert_eq!(vi.unicast_peer.len(), 1);
    // A real-server port other than the service's is probed, as keepalived does.
    let (i, text) = import("port_translated");
    let vs = &validate(&text, "port_translated").unwrap().virtual_servers[0];
    let chk = vs.real_servers[0].check.as_ref().unwrap();
    assert_eq!(chk.connect_port.as_ref().map(|p| *p.get_ref()), Some(8080));
    assert_eq!(
        vs.real_servers.len(),
        3,
        "one address on two ports is one server"
    );
    assert!(has_note(
        &i,
        &format!("{d}/port_translated.conf:7:"),
        "connect_port"
    ));
    // MISC_CHECK: argv, no shell, as keepalived execs it.
    let (_, text) = import("misc_shell");
    let vs = &validate(&text, "misc_shell").unwrap().virtual_servers[0];
    let misc = vs.real_servers[0].check.as_ref().unwrap();
    assert!(!misc.shell);
    assert_eq!(misc.command.as_ref().unwrap().get_ref()[3], "&>");
    // Defaults: 60 s delay loop, 200-299.
    let (_, text) = import("defaults");
    let vs = &validate(&text, "defaults").unwrap().virtual_servers[0];
    assert_eq!(*vs.delay_loop.get_ref(), 60.0);
    let codes = vs.real_servers[0]
        .check
        .as_ref()
        .unwrap()
        .status_codes
        .as_ref()
        .unwrap();
    assert_eq!(codes.get_ref(), &(200..=299).collect::<Vec<u16>>());
    // Groups: one service per member; port-less = port 0.
    let (_, text) = import("groups");
    let cfg = validate(&text, "groups").unwrap();
    // 2001:db8::60 has only IPv4 real servers: not imported, with a note.
    assert_eq!(cfg.virtual_servers.len(), 4);
    assert_eq!(*cfg.virtual_servers[3].port.get_ref(), 0);
    // GBK decoded.
    let (i, text) = import("gbk");
    let cfg = validate(&text, "gbk").unwrap();
    assert_eq!(cfg.global.router_id.as_deref(), Some("主调度器"));
    assert!(has_note(&i, &format!("{d}/gbk.conf:1:"), "GB18030"));
}

#[test]
fn hostile_input_is_a_located_error() {
    for (name, needle) in [
        ("nesting_bomb", "nesting_bomb.conf:33: blocks nested"),
        ("include_loop", "include_loop.d/a.conf:3: include loop"),
        (
            "unterminated_quote",
            "unterminated_quote.conf:5: unterminated quote",
        ),
        ("endless_definition", "endless_definition.conf:4:"),
    ] {
        let e = try_import(name)
            .err()
            .unwrap_or_else(|| panic!("{name} imported"));
        assert!(e.to_string().contains(needle), "{name}: {e}");
    }
}

#[test]
fn cli_fails_when_every_virtual_server_is_dropped() {
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args([
            "import-keepalived",
            "tests/data/keepalived/fwmark_only.conf",
            "-i",
            "x",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(1), "{err}");
    assert!(err.contains("imported 0 of 2 virtual_server(s)"), "{err}");
    assert!(
        err.contains("no virtual_server could be translated"),
        "{err}"
    );
}
