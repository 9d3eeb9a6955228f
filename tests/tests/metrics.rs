//! Scrapes `/metrics` over HTTP after the demo's scenario, parses the Prometheus exposition
//! format and checks the documented metrics and their values. (Its own test binary: the
//! recorder is global to a process.)

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use gka_host::demo::{run, DemoOptions};
use gka_host::loader::Registry;
use gka_tests::artifacts::plugin_dir;

/// `name{labels}` → value, for every sample line.
fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics listener");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str, must_contain: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && must_contain.iter().all(|c| k.contains(c)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_after_the_demo() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let registry = Registry::scan(&[plugin_dir().to_path_buf()]);
    let protocol = registry.get("tgdh").expect("tgdh").protocol.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let lines = rt.block_on(async {
        gka_host::metrics::install(addr.parse().unwrap()).expect("exporter");
        run(protocol, &DemoOptions { members: 4, seconds: 0 }).await.expect("demo")
    });
    let body = scrape(&addr);
    let samples = parse(&body);

    for help in [
        "gka_active_protocol",
        "gka_group_size",
        "gka_view_changes_total",
        "gka_rekeys_total",
        "gka_rekey_duration_seconds",
        "gka_exponentiations_total",
    ] {
        assert!(body.contains(&format!("# HELP {help} ")), "no HELP for {help}");
    }
    assert_eq!(samples.get("gka_active_protocol{group=\"demo\",protocol=\"tgdh\"}"), Some(&1.0));
    assert!(sum(&samples, "gka_view_changes_total", &["group=\"demo\""]) >= lines.len() as f64);
    assert!(samples.contains_key("gka_group_size{group=\"demo\"}"));
    // Every member counts its rekeys, labelled by the view that led to each key as it saw it.
    // The 4 first members' first keys come from the initial view; a joiner's first key is
    // "initial" too unless a cascade gave it a second view first. 12 members ever run.
    let initial = sum(&samples, "gka_rekeys_total", &["event=\"initial\"", "protocol=\"tgdh\""]);
    assert!((4.0..=12.0).contains(&initial), "initial rekeys {initial}: {body}");
    let rekeys = sum(&samples, "gka_rekeys_total", &["group=\"demo\""]);
    assert!(rekeys >= lines.len() as f64 * 3.0, "rekeys {rekeys}");
    // A histogram, not a summary: buckets, and a count equal to the rekeys.
    assert!(body.contains("gka_rekey_duration_seconds_bucket{"), "{body}");
    assert_eq!(sum(&samples, "gka_rekey_duration_seconds_count", &["group=\"demo\""]), rekeys);
    assert!(sum(&samples, "gka_exponentiations_total", &["protocol=\"tgdh\""]) > 0.0);
}
