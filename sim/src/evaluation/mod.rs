//! Comparing a trace's replays: every fixed protocol, the adaptive policy, and two oracles.
//! The event oracle takes the best fixed protocol for each membership event; the phase oracle
//! the best fixed protocol for each phase of conditions (a step that sets the network or the
//! CPU load starts a phase), which is the best a policy can do that knows each phase's events
//! in advance but runs one protocol at a time, as every switching policy does. What counts is
//! what users wait for, the membership events' rekey latency; the switches' own agreements
//! run in the background and are reported apart (their CPU time and bytes, and the extra
//! latency of the events that overlapped them, which is already in those events' latency).

mod plot;

use std::fmt::Write as _;
use std::sync::Arc;

use gka_host::member::Catalogue;
use gka_host::policy::Policy;

use crate::trace::{replay, Mode, Replay, ReplayConfig, Trace, TraceError};

pub use plot::plot;

/// Every fixed protocol, the adaptive policy, and the oracle, compared.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// One replay per fixed protocol, then the adaptive one.
    pub replays: Vec<Replay>,
    /// The oracle's total: for each event, the best fixed protocol's rekey time (no switch
    /// costs), ms.
    pub oracle_ms: f64,
    /// The oracle's choice per step (empty for steps without an event).
    pub oracle_choice: Vec<String>,
    /// The phase oracle's total: for each phase of conditions, the best fixed protocol's
    /// rekey time over the phase's events (no switch costs), ms.
    pub phase_oracle_ms: f64,
    /// The phase oracle's choice per step (its phase's protocol).
    pub phase_choice: Vec<String>,
}

impl Evaluation {
    /// The adaptive replay.
    pub fn adaptive(&self) -> &Replay {
        self.replays.last().expect("the adaptive replay comes last")
    }

    /// The fixed replays.
    pub fn fixed(&self) -> &[Replay] {
        &self.replays[..self.replays.len() - 1]
    }

    /// The adaptive policy's regret: its membership-event latency minus the oracle's, ms.
    pub fn regret_ms(&self) -> f64 {
        self.adaptive().events_ms() - self.oracle_ms
    }

    /// The fixed protocol with the lowest membership-event latency, and that latency.
    pub fn best_fixed(&self) -> (String, f64) {
        self.fixed()
            .iter()
            .map(|r| (r.mode.trim_start_matches("fixed:").to_owned(), r.events_ms()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_default()
    }

    /// The extra latency of membership events that overlapped an adaptive switch: for each,
    /// its adaptive latency minus the latency of the same step in the fixed replay of the
    /// protocol that agreed its key (never negative), ms in total.
    pub fn overlap_extra_ms(&self) -> f64 {
        let adaptive = self.adaptive();
        let mut extra = 0.0;
        for (i, s) in adaptive.steps.iter().enumerate() {
            let Some(ms) = s.rekey_ms else { continue };
            let (from, to) = (s.at_s, s.at_s + ms / 1e3);
            let overlaps =
                adaptive.switches.iter().any(|w| w.at_s - w.ms / 1e3 < to && from < w.at_s);
            let fixed = self.fixed().iter().find(|r| r.mode == format!("fixed:{}", s.protocol));
            if let (true, Some(base)) = (overlaps, fixed.and_then(|r| r.steps[i].rekey_ms)) {
                extra += (ms - base).max(0.0);
            }
        }
        extra
    }

    /// The evaluation as one JSON object (see `gka bench adaptive --json`).
    pub fn json(&self, trace: &Trace, seed: u64) -> serde_json::Value {
        let fixed: serde_json::Map<String, serde_json::Value> = self
            .fixed()
            .iter()
            .map(|r| {
                let name = r.mode.trim_start_matches("fixed:").to_owned();
                (name, serde_json::to_value(r.event_stats()).unwrap_or_default())
            })
            .collect();
        let a = self.adaptive();
        let stats = a.event_stats();
        serde_json::json!({
            "trace": trace.name,
            "seed": seed,
            "fixed": fixed,
            "adaptive": {
                "total_ms": stats.total_ms,
                "mean_ms": stats.mean_ms,
                "p95_ms": stats.p95_ms,
                "switches": a.switches.len(),
                "switch_cpu_ms": a.overhead.cpu_ms,
                "switch_bytes": a.overhead.bytes,
                "switch_commit_to_key_ms": a.switches_ms(),
                "overlap_extra_ms": self.overlap_extra_ms(),
            },
            "oracle_ms": self.oracle_ms,
            "phase_oracle_ms": self.phase_oracle_ms,
            "best_fixed": self.best_fixed().0,
        })
    }
}

/// Replays `trace` with every protocol of `protocols` fixed, then with `policy`.
pub fn evaluate(
    catalogue: &Arc<Catalogue>,
    trace: &Trace,
    protocols: &[String],
    policy: &Policy,
    config: &ReplayConfig,
    mut progress: impl FnMut(&str),
) -> Result<Evaluation, TraceError> {
    trace.networks(&config.dir)?;
    // The fixed replays are independent: they run on every core (each builds its own
    // simulator), and come back in the order asked for.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Replay, TraceError>>> =
        protocols.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(protocols.len()) {
            let (next, done_tx) = (&next, done_tx.clone());
            scope.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = protocols.get(i) else { break };
                let r = replay(catalogue, trace, &Mode::Fixed(p.clone()), config);
                if done_tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        for (i, r) in done_rx.iter() {
            progress(&format!("fixed {}", protocols[i]));
            results[i] = Some(r);
        }
    });
    // A replay that panicked has taken the scope down with it: every slot is filled here.
    let mut replays = results.into_iter().flatten().collect::<Result<Vec<_>, _>>()?;
    // The adaptive run may only use what the fixed runs (and so the oracle) cover.
    let mut allowed = Catalogue::default();
    for name in protocols.iter().chain(std::iter::once(&trace.start)) {
        if let Some(e) = catalogue.get(name) {
            allowed.insert(e.protocol.clone(), e.plugin.clone());
        }
    }
    let allowed = Arc::new(allowed);
    let adaptive = Mode::Adaptive(Box::new(policy.clone()));
    replays.push(replay(&allowed, trace, &adaptive, config)?);
    progress("adaptive");
    let fixed = &replays[..protocols.len()];
    let mut oracle_ms = 0.0;
    let mut oracle_choice = Vec::new();
    for (i, _) in trace.step.iter().enumerate() {
        let best = fixed
            .iter()
            .filter_map(|r| r.steps[i].rekey_ms.map(|ms| (ms, r.mode.trim_start_matches("fixed:"))))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((ms, p)) => {
                oracle_ms += ms;
                oracle_choice.push(p.to_owned());
            }
            None => oracle_choice.push(String::new()),
        }
    }
    let (phase_oracle_ms, phase_choice) = phase_oracle(trace, fixed);
    Ok(Evaluation { replays, oracle_ms, oracle_choice, phase_oracle_ms, phase_choice })
}

/// The phase oracle over the fixed replays: its total, and its choice per step.
fn phase_oracle(trace: &Trace, fixed: &[Replay]) -> (f64, Vec<String>) {
    let mut starts: Vec<usize> = trace
        .step
        .iter()
        .enumerate()
        .filter(|(i, s)| *i == 0 || s.network.is_some() || s.cpu.is_some())
        .map(|(i, _)| i)
        .collect();
    starts.push(trace.step.len());
    let mut total = 0.0;
    let mut choice = Vec::new();
    for w in starts.windows(2) {
        let phase = w[0]..w[1];
        let best = fixed
            .iter()
            .map(|r| {
                let ms: f64 = r.steps[phase.clone()].iter().filter_map(|s| s.rekey_ms).sum();
                (ms, r.mode.trim_start_matches("fixed:"))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let (ms, p) = best.unwrap_or((0.0, ""));
        total += ms;
        choice.extend(phase.map(|_| p.to_owned()));
    }
    (total, choice)
}

/// The evaluation as Markdown: totals, then per step.
pub fn markdown(trace: &Trace, e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Trace `{}`\n", trace.name);
    let _ = writeln!(
        out,
        "Rekey latency of the membership events (what users wait for), and, apart, what the \
         switches cost in the background:\n"
    );
    let _ = writeln!(
        out,
        "| mode | events total (ms) | mean (ms) | p95 (ms) | vs oracle | switches | switch CPU (ms) | switch bytes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &e.replays {
        let st = r.event_stats();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:+.1}% | {} | {:.1} | {} |",
            r.mode,
            st.total_ms,
            st.mean_ms,
            st.p95_ms,
            (st.total_ms / e.oracle_ms.max(1e-9) - 1.0) * 100.0,
            r.switches.len(),
            r.overhead.cpu_ms,
            r.overhead.bytes
        );
    }
    let _ = writeln!(
        out,
        "| oracle (best fixed protocol per event) | {:.1} | | | 0% | | | |",
        e.oracle_ms
    );
    let _ = writeln!(
        out,
        "| phase oracle (best fixed protocol per phase of conditions) | {:.1} | | | {:+.1}% | | | |",
        e.phase_oracle_ms,
        (e.phase_oracle_ms / e.oracle_ms.max(1e-9) - 1.0) * 100.0
    );
    let _ = writeln!(
        out,
        "\nEvents that overlapped a switch waited {:.1} ms more in all than under the fixed \
         protocol that agreed their keys (included above).",
        e.overlap_extra_ms()
    );
    let _ =
        writeln!(out, "\nPer step (rekey ms; the adaptive column names the protocol that ran):\n");
    let fixed = &e.replays[..e.replays.len() - 1];
    let names: Vec<&str> = fixed.iter().map(|r| r.mode.trim_start_matches("fixed:")).collect();
    let _ = writeln!(
        out,
        "| at (s) | step | members | {} | adaptive | oracle | phase |",
        names.join(" | ")
    );
    let _ = writeln!(out, "|---:|---|---:|{}---:|---|---|", "---:|".repeat(names.len()));
    for (i, s) in e.adaptive().steps.iter().enumerate() {
        let cells: Vec<String> = fixed
            .iter()
            .map(|r| r.steps[i].rekey_ms.map_or_else(|| "-".into(), |ms| format!("{ms:.1}")))
            .collect();
        let adaptive =
            s.rekey_ms.map_or_else(|| "-".into(), |ms| format!("{ms:.1} ({})", s.protocol));
        let _ = writeln!(
            out,
            "| {:.0} | {} | {} | {} | {adaptive} | {} | {} |",
            s.at_s,
            s.what,
            s.members,
            cells.join(" | "),
            e.oracle_choice[i],
            e.phase_choice[i]
        );
    }
    if !e.adaptive().switches.is_empty() {
        let _ = writeln!(out, "\nSwitches of the adaptive run:\n");
        let _ = writeln!(out, "| at (s) | from | to | reason | commit to key (ms) |");
        let _ = writeln!(out, "|---:|---|---|---|---:|");
        for s in &e.adaptive().switches {
            let _ = writeln!(
                out,
                "| {:.1} | {} | {} | {} | {:.1} |",
                s.at_s, s.from, s.to, s.reason, s.ms
            );
        }
    }
    out
}
