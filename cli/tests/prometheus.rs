//! A real Prometheus (Debian's `prometheus` package) scrapes `gka demo --metrics ... --linger`
//! every second; then every query of `deploy/grafana-dashboard.json` runs through Prometheus's
//! HTTP API and must return data (at least one series with a number, not NaN), every metric
//! the README documents must have series, and the p90 rekey latency must be a number for
//! every protocol that rekeyed during the demo.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gka_tests::process::Proc;
use serde_json::Value;

const GKA: &str = env!("CARGO_BIN_EXE_gka");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `prometheus` binary, or a failure that says how to install it.
fn prometheus_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|d| d.join("prometheus")).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no `prometheus` binary on PATH: install it with `apt-get install prometheus` (or run \
             `bash .ci/run` as root, which does)"
        )
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` from 127.0.0.1:`port`; the body, if the answer is 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // HTTP/1.0: the answer comes whole, not in chunks.
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// Runs an instant query; the result vector.
fn query(port: u16, expr: &str) -> Vec<Value> {
    let body = get(port, &format!("/api/v1/query?query={}", percent_encode(expr)))
        .unwrap_or_else(|| panic!("Prometheus refused the query {expr}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The series of a result whose value is a number (not NaN).
fn numbers(result: &[Value]) -> Vec<(Value, f64)> {
    result
        .iter()
        .filter_map(|r| {
            let v: f64 = r["value"][1].as_str()?.parse().ok()?;
            v.is_finite().then(|| (r["metric"].clone(), v))
        })
        .collect()
}

/// Every query of the Grafana dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap().to_owned();
            out.push((title, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The metrics the README's table documents.
fn documented_metrics() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("\n## Metrics\n").nth(1).expect("a Metrics section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `gka_")?.split('`').next().map(|m| format!("gka_{m}")))
        .collect()
}

#[test]
fn every_dashboard_query_returns_data_during_the_demo() {
    let prometheus = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, web_port) = (free_port(), free_port());
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - \
             job_name: gka-demo\n    static_configs:\n      - targets: [\"127.0.0.1:{metrics_port}\"]\n"
        ),
    )
    .unwrap();
    let _prometheus = Proc::start_with_stderr(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web_port}")),
        std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(web_port, "/-/ready").is_none() {
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "Prometheus did not become ready: {log}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let demo_log = dir.path().join("demo.log");
    let mut demo = Proc::start_with_stderr(
        Command::new(GKA)
            .args(["demo", "--members", "4", "--seconds", "1", "--linger", "120"])
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--plugins")
            .arg(gka_tests::artifacts::plugin_dir()),
        std::fs::File::create(&demo_log).unwrap(),
    );
    demo.wait_for("the adaptive demo's pass line", |l| l.starts_with("PASS adaptive"));
    // The last values, scraped at least twice after the end.
    std::thread::sleep(Duration::from_secs(3));
    let up = query(web_port, "up{job=\"gka-demo\"}");
    assert_eq!(numbers(&up).first().map(|(_, v)| *v), Some(1.0), "the demo was scraped: {up:?}");

    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        let result = query(web_port, &expr);
        if numbers(&result).is_empty() {
            empty.push(format!("{title}: {expr} -> {result:?}"));
        }
    }
    assert!(empty.is_empty(), "dashboard queries without data:\n{}", empty.join("\n"));

    let missing: Vec<String> = documented_metrics()
        .into_iter()
        .filter(|m| {
            let name = if m.ends_with("_seconds") && m.contains("duration") {
                format!("{m}_count")
            } else {
                m.clone()
            };
            numbers(&query(web_port, &format!("count({name})"))).is_empty()
        })
        .collect();
    assert!(missing.is_empty(), "documented metrics without series: {missing:?}");

    // The p90 by protocol is a number for every protocol that rekeyed (a series born at its
    // final count would leave it NaN).
    let rekeyed = query(web_port, "sum by (protocol) (increase(gka_rekeys_total[5m])) > 0");
    let p90 = query(
        web_port,
        "histogram_quantile(0.9, sum by (le, protocol) (rate(gka_rekey_duration_seconds_bucket[5m])))",
    );
    let with_p90: Vec<Value> =
        numbers(&p90).into_iter().map(|(m, _)| m["protocol"].clone()).collect();
    let protocols: Vec<Value> = rekeyed.iter().map(|r| r["metric"]["protocol"].clone()).collect();
    // bd's rekeys may all fall within the first second of its members' series, before
    // their first scrape: no scrape can tell them from the start.
    assert!(protocols.len() >= 3, "tgdh, str and ckd rekeyed at least: {protocols:?}");
    for p in &protocols {
        assert!(with_p90.contains(p), "no p90 for {p}: {p90:?}");
    }
}
