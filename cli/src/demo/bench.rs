//! `gka demo --bench`: rekey latency per protocol and event over the daemon on loopback (and
//! over etcd, side by side, with `--etcd`), and the time from a switch's commit to the new key
//! beside a plain initial agreement.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gka_plugin_api::{GroupId, Protocol};
use serde::Serialize;

use gka_host::group::Timing;
use gka_host::identity::Scheme;
use gka_host::member::Catalogue;
use gka_host::runtime::Switching;

use super::*;

/// One row of the rekey-latency benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The protocol.
    pub protocol: String,
    /// Group size before the event.
    pub n: usize,
    /// The event.
    pub event: String,
    /// The slowest member's time from the view's delivery to the key.
    pub rekey_ms: f64,
}

/// Measures rekey latency over `layer` (the daemon on loopback, or etcd): initial agreement of
/// n, a join, a leave, a merge of two and a partition of half, for each n in `sizes`.
pub async fn bench(
    protocol: Arc<dyn Protocol>,
    sizes: &[usize],
    layer: &Layer,
) -> Result<Vec<BenchRow>> {
    let name = protocol.descriptor().name;
    let mut rows = Vec::new();
    for &n in sizes {
        let timing = Timing { batch_ms: 10, failure_timeout_ms: 10_000 };
        let names = (1..=n + 3).map(|i| format!("b{i:03}"));
        let tick = Duration::from_millis(2);
        let mut demo =
            Demo::start("bench", layer, timing, tick, names, protocol.clone(), None).await?;
        let mut row = |event: &str, latency: Duration| {
            rows.push(BenchRow {
                protocol: name.clone(),
                n,
                event: event.into(),
                rekey_ms: latency.as_secs_f64() * 1e3,
            })
        };
        for i in 1..=n {
            demo.spawn(&format!("b{i:03}")).await?;
        }
        row("initial", demo.agreed(&demo.names()).await?.3);
        demo.spawn(&format!("b{:03}", n + 1)).await?;
        row("join", demo.agreed(&demo.names()).await?.3);
        demo.leave(&format!("b{:03}", n + 1));
        row("leave", demo.agreed(&demo.names()).await?.3);
        demo.spawn(&format!("b{:03}", n + 2)).await?;
        demo.spawn(&format!("b{:03}", n + 3)).await?;
        row("merge-2", demo.agreed(&demo.names()).await?.3);
        let all = demo.names();
        let half: Vec<String> = all[all.len() / 2..].to_vec();
        for m in &half {
            demo.leave(m);
        }
        row("partition-half", demo.agreed(&demo.names()).await?.3);
        demo.stop();
    }
    Ok(rows)
}

/// One row of the switch benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchBenchRow {
    /// The protocol switched to.
    pub protocol: String,
    /// The protocol switched from.
    pub from: String,
    /// Group size.
    pub n: usize,
    /// The slowest member's time from the switch's commit to the new protocol's key.
    pub switch_ms: f64,
    /// A plain initial agreement of the new protocol among n members (the slowest member's
    /// time from the view to the key), for comparison.
    pub initial_ms: f64,
    /// A plain join rekey (n to n + 1) with the new protocol, after the switch.
    pub join_ms: f64,
}

/// Measures, over the daemon on loopback, the time from a switch's commit to the new key at
/// every member, for every protocol in `catalogue` and each n in `sizes`, beside a plain
/// initial agreement and a join rekey with the same protocol.
pub async fn switch_bench(
    catalogue: Arc<Catalogue>,
    sizes: &[usize],
) -> Result<Vec<SwitchBenchRow>> {
    let calibration = gka_host::policy::measure::calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 8);
    let mut rows = Vec::new();
    for to in catalogue.names() {
        let from = if to == "tgdh" { "str" } else { "tgdh" };
        let start = catalogue.get(from).with_context(|| format!("no plugin {from}"))?;
        let target = catalogue.get(&to).expect("listed").protocol.clone();
        for &n in sizes {
            let text = format!(
                "mode = \"fixed\"\nfixed = \"{to}\"\n[stability]\nmin_interval_s = 0\n\
                 min_view_age_s = 0.2\n"
            );
            let policy = gka_host::policy::Policy::parse(&text, &gka_host::policy::KNOWN_PROTOCOLS)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let switching = Switching {
                catalogue: catalogue.clone(),
                policy: Some(policy),
                policy_file: None,
                timing: gka_host::member::ControlTiming {
                    probe_every: Duration::from_millis(500),
                    report_every: Duration::from_secs(1),
                    evaluate_every: Duration::from_millis(100),
                    ..gka_host::member::ControlTiming::default()
                },
                calibration: Some(calibration),
            };
            let timing = Timing { batch_ms: 10, failure_timeout_ms: 10_000 };
            let names = (1..=n + 1).map(|i| format!("s{i:03}"));
            let tick = Duration::from_millis(2);
            let (group, start) = ("switch-bench", start.protocol.clone());
            let mut demo =
                Demo::start(group, &Layer::Daemon, timing, tick, names, start, Some(switching))
                    .await?;
            for i in 1..=n {
                demo.spawn(&format!("s{i:03}")).await?;
            }
            let line = demo.adapted(&format!("switch to {to}"), &to).await?;
            let switch_ms = line.switch_ms.with_context(|| format!("no switch to {to}"))?;
            demo.spawn(&format!("s{:03}", n + 1)).await?;
            let join = demo.agreed(&demo.names()).await?.3;
            demo.stop();
            let plain = bench(target.clone(), &[n], &Layer::Daemon).await?;
            let initial = plain.iter().find(|r| r.event == "initial").map_or(0.0, |r| r.rekey_ms);
            rows.push(SwitchBenchRow {
                protocol: to.clone(),
                from: from.to_owned(),
                n,
                switch_ms,
                initial_ms: initial,
                join_ms: join.as_secs_f64() * 1e3,
            });
        }
    }
    Ok(rows)
}
