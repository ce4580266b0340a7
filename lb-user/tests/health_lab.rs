//! Health checks driving the data path in a lab with real servers: a stopped listener is taken
//! out within interval x fall + timeout and comes back; misc_dynamic weights change the Maglev
//! spread. Needs root.
mod common;

use std::time::Duration;

use common::dr::{wait_until, Dr, NEEDS};
use xtask::lab::require::Need;

fn real_status(dr: &Dr, addr: &str) -> serde_json::Value {
    let st = dr.status_json();
    st["services"][0]["reals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == addr)
        .unwrap()
        .clone()
}

#[test]
fn stopped_listener_is_taken_out_and_comes_back() {
    xtask::require!(NEEDS, [Need::Binary("nft")]);
    let mut dr = Dr::new("h-listen", 2);
    let mut cfg = dr.config_text(&[(1, 1), (2, 1)], "");
    cfg = cfg.replace(
        "[[virtual_server.real_server]]\naddress = \"198.18.0.11\"\nweight = 1\n[[virtual_server.real_server]]\naddress = \"198.18.0.12\"\nweight = 1\n\n[[virtual_server]]\nname = \"vs9000\"",
        "[virtual_server.check]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.5\nfall = 1\nrise = 2\n[[virtual_server.real_server]]\naddress = \"198.18.0.11\"\nweight = 1\n[[virtual_server.real_server]]\naddress = \"198.18.0.12\"\nweight = 1\n\n[[virtual_server]]\nname = \"vs9000\"",
    );
    assert!(cfg.contains("type = \"tcp\""), "{cfg}");
    dr.write_config(&cfg);
    dr.start_daemon();
    assert_eq!(dr.curl(20).get("FAIL"), None);
    let rs2 = dr.d.real_servers[1].clone();
    let nft = |rule: &str| dr.d.lab.run_ok(&rs2, &["nft", rule]).unwrap();
    // The listener "stops": connections to port 80 are refused.
    nft("add table inet xlbtest; add chain inet xlbtest input { type filter hook input priority 0; }; add rule inet xlbtest input tcp dport 80 reject with tcp reset");
    let took = wait_until("rs2 marked down", Duration::from_secs(5), || {
        real_status(&dr, "198.18.0.12:80")["forwarding"] == false
    });
    println!(
        "stopped listener taken out after {:.2} s (interval 0.5 x fall 1 + timeout 0.5)",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs_f64(0.5 * 1.0 + 0.5 + 1.0),
        "detection took {took:?}"
    );
    let health = real_status(&dr, "198.18.0.12:80")["health"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(health.contains("refused"), "{health}");
    let spread = dr.curl(40);
    assert_eq!(
        spread.get("FAIL"),
        None,
        "requests failed after the detection window: {spread:?}"
    );
    assert_eq!(spread.get("rs1"), Some(&40));
    // It comes back (rise = 2).
    nft("delete table inet xlbtest");
    wait_until("rs2 back", Duration::from_secs(5), || {
        real_status(&dr, "198.18.0.12:80")["forwarding"] == true
    });
    let spread = dr.curl(40);
    assert_eq!(spread.get("FAIL"), None);
    assert!(spread.get("rs2").copied().unwrap_or(0) > 0, "{spread:?}");
}

#[test]
fn misc_dynamic_weights_change_the_spread() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("h-dyn", 2);
    let wfile = dr.d.lab.dir().join("rs1-exit-code");
    std::fs::write(&wfile, "5").unwrap(); // weight = 5 - 2 = 3
    let script = format!("exit $(cat {})", wfile.display());
    let mut cfg = dr.config_text(&[(1, 1), (2, 1)], "");
    cfg = cfg.replacen(
        "[[virtual_server.real_server]]\naddress = \"198.18.0.11\"\nweight = 1\n",
        &format!(
            "[[virtual_server.real_server]]\naddress = \"198.18.0.11\"\nweight = 1\n\
             [virtual_server.real_server.check]\ntype = \"script\"\ncommand = [\"/bin/sh\", \"-c\", \"{script}\"]\n\
             dynamic = true\ninterval = 0.3\ntimeout = 1.0\n"
        ),
        1,
    );
    dr.write_config(&cfg);
    dr.start_daemon();
    wait_until("dynamic weight 3", Duration::from_secs(5), || {
        real_status(&dr, "198.18.0.11:80")["effective_weight"] == 3
    });
    let spread = dr.curl(200);
    assert_eq!(spread.get("FAIL"), None);
    let rs1 = spread.get("rs1").copied().unwrap_or(0);
    println!("weights 3:1 -> rs1 got {rs1} of 200");
    assert!(rs1 > 125 && rs1 < 175, "{spread:?}");
    std::fs::write(&wfile, "3").unwrap(); // weight 1
    wait_until("dynamic weight 1", Duration::from_secs(5), || {
        real_status(&dr, "198.18.0.11:80")["effective_weight"] == 1
    });
    let spread = dr.curl(200);
    let rs1 = spread.get("rs1").copied().unwrap_or(0);
    println!("weights 1:1 -> rs1 got {rs1} of 200");
    assert!(rs1 > 70 && rs1 < 130, "{spread:?}");
    // Exit 1: down.
    std::fs::write(&wfile, "1").unwrap();
    wait_until("script says down", Duration::from_secs(5), || {
        real_status(&dr, "198.18.0.11:80")["forwarding"] == false
    });
    let health = real_status(&dr, "198.18.0.11:80")["health"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(health.contains("exit code 1"), "{health}");
}
