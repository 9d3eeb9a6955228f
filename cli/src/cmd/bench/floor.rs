//! `gka bench floor`: how close each protocol's simulated events come to the floor this
//! machine allows.
//!
//! The floor of an event is the plugin's own cost model (its serial exponentiations,
//! signatures and verifications, its rounds and bytes) priced at the best primitive costs
//! measured here in the same run: for each primitive the cheaper of OpenSSL's (`openssl
//! speed ffdh2048 ed25519`) and gka's own (`calibrate`), plus the rounds times the network's
//! one-way latency and the bytes at its bandwidth. Beside it: the same model at gka's own
//! prices, and the simulated latency (scale mode, counted at gka's prices). The ratio is
//! simulated ÷ floor.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use gka_host::member::Catalogue;
use gka_sim::sweep::{self, BenchEvent, Row, Sweep};
use gka_sim::{CostMode, OpCosts, Topology};

/// Target: simulated latency at most this many times the floor.
const TARGET_RATIO: f64 = 1.5;

/// Primitive costs measured by `openssl speed`.
#[derive(Debug, Clone, Copy)]
struct OpensslCosts {
    ffdh2048_ms: f64,
    ed25519_sign_ms: f64,
    ed25519_verify_ms: f64,
}

/// Runs `openssl speed -mr ffdh2048 ed25519` for `seconds` each and reads its
/// machine-readable lines: `+F8:…:2048:<ops/s>:…` and `+F6:…:Ed25519:<sign/s>:<verify/s>`.
fn openssl_speed(seconds: u32) -> Result<OpensslCosts> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "-mr", "ffdh2048", "ed25519"])
        .output()
        .context("cannot run `openssl speed` (install it with `apt-get install openssl`)")?;
    if !output.status.success() {
        bail!("`openssl speed` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    parse_openssl_speed(&String::from_utf8_lossy(&output.stdout))
}

fn parse_openssl_speed(text: &str) -> Result<OpensslCosts> {
    let mut ffdh = None;
    let mut ed = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.trim().split(':').collect();
        match fields.as_slice() {
            ["+F8", _, "2048", ops, ..] => ffdh = ops.parse::<f64>().ok(),
            ["+F6", _, _, "Ed25519", sign, verify, ..] => {
                ed = sign.parse::<f64>().ok().zip(verify.parse::<f64>().ok());
            }
            _ => {}
        }
    }
    let ffdh = ffdh.filter(|v| *v > 0.0).context("no ffdh2048 line in `openssl speed -mr`")?;
    let (sign, verify) = ed
        .filter(|(s, v)| *s > 0.0 && *v > 0.0)
        .context("no Ed25519 line in `openssl speed -mr`")?;
    Ok(OpensslCosts {
        ffdh2048_ms: 1e3 / ffdh,
        ed25519_sign_ms: 1e3 / sign,
        ed25519_verify_ms: 1e3 / verify,
    })
}

/// `gka bench floor`: the sweep (whose counted costs are gka's own) in scale mode, each row beside
/// its floor.
pub(super) fn floor(
    catalogue: &Catalogue,
    mut sweep: Sweep,
    openssl_seconds: u32,
    out: &Path,
) -> Result<()> {
    let openssl = openssl_speed(openssl_seconds)?;
    let gka = sweep.cost.costs();
    let best = OpCosts {
        exp_ms: openssl.ffdh2048_ms.min(gka.exp_ms),
        sign_ms: openssl.ed25519_sign_ms.min(gka.sign_ms),
        verify_ms: openssl.ed25519_verify_ms.min(gka.verify_ms),
    };
    sweep.dh_group = gka_plugin_api::GroupId::TestOnly64;
    let started = std::time::Instant::now();
    let rows = sweep::run(catalogue, &sweep, |done| eprintln!("simulated {done}"))?;
    let mut md = String::new();
    writeln!(
        md,
        "Primitive costs, ms (measured in this run): one exponentiation at ffdhe2048 — OpenSSL \
         {:.4}, gka {:.4} ({}); Ed25519 sign — OpenSSL {:.4}, gka {:.4}; verify — OpenSSL {:.4}, \
         gka {:.4}. The floor prices each at the cheaper of the two.\n",
        openssl.ffdh2048_ms,
        gka.exp_ms,
        gka_plugin_api::GroupId::Ffdhe2048.params().arithmetic(),
        openssl.ed25519_sign_ms,
        gka.sign_ms,
        openssl.ed25519_verify_ms,
        gka.verify_ms
    )?;
    writeln!(
        md,
        "| protocol | network | event | n | floor, best primitives (ms) | model at gka's costs \
         (ms) | simulated (ms) | simulated ÷ floor |"
    )?;
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|")?;
    let mut over = 0;
    for r in &rows {
        let floor_ms = floor_of(catalogue, &sweep, r, best)?;
        let ratio = r.measured_ms / floor_ms;
        if ratio > TARGET_RATIO {
            over += 1;
        }
        writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2}{} |",
            r.protocol,
            r.network,
            r.event.name(),
            r.n,
            floor_ms,
            r.predicted_ms,
            r.measured_ms,
            ratio,
            if ratio > TARGET_RATIO { " ✗" } else { "" }
        )?;
    }
    writeln!(
        md,
        "\n{} of {} rows within {TARGET_RATIO}× of the floor ({:.1} s).",
        rows.len() - over,
        rows.len(),
        started.elapsed().as_secs_f64()
    )?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = out.join("floor.md");
    std::fs::write(&file, &md).with_context(|| format!("cannot write {}", file.display()))?;
    println!("{md}");
    println!("written to {}", file.display());
    Ok(())
}

/// The row's floor: its protocol's cost model at the best primitive costs.
fn floor_of(catalogue: &Catalogue, sweep: &Sweep, row: &Row, best: OpCosts) -> Result<f64> {
    let entry = catalogue.get(&row.protocol).context("protocol left the catalogue")?;
    let topology: &Topology =
        sweep.networks.iter().find(|t| t.name == row.network).context("network left the sweep")?;
    Ok(sweep::predict_row(
        entry.protocol.as_ref(),
        topology,
        &CostMode::Counted(best),
        row.event,
        row.n,
        row.k,
    ))
}

/// The events a floor table shows by default.
pub(super) const FLOOR_EVENTS: [BenchEvent; 4] =
    [BenchEvent::Join, BenchEvent::LeaveRandom, BenchEvent::Merge, BenchEvent::PartitionRandom];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openssl_machine_readable_lines() {
        let text = "+DTP:2048:ffdh:1\n+F6:0:253:Ed25519:26921.649485:9821.428571\n\
                    +F8:0:2048:3645.918367:0.000274\n";
        let c = parse_openssl_speed(text).expect("parsed");
        assert!((c.ffdh2048_ms - 0.27428).abs() < 1e-4, "{c:?}");
        assert!((c.ed25519_sign_ms - 0.037145).abs() < 1e-5, "{c:?}");
        assert!((c.ed25519_verify_ms - 0.101818).abs() < 1e-5, "{c:?}");
        assert!(parse_openssl_speed("+F8:0:2048:0:0\n").is_err(), "a zero rate is refused");
        let err = parse_openssl_speed("nothing").expect_err("no lines");
        assert!(err.to_string().contains("ffdh2048"), "{err}");
    }
}
