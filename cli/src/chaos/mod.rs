//! `gka bench chaos`: a soak of real processes on loopback under faults.
//!
//! One `gka daemon` and `members` `gka member` processes (TGDH) in one group, every member
//! given a line every 100 ms. The first `stable` members are never touched; the others are
//! victims: every few seconds a killed victim is restarted (a join, so a rekey starts) and,
//! 20 to 80 ms later, another victim is killed with SIGKILL, in the middle of that rekey. A
//! third of the way in the daemon is stopped with SIGSTOP for 4 s; two thirds of the way in it
//! is restarted (SIGTERM, then a new daemon on the same address). Then the lines stop, the
//! group settles, and [`analysis::analyze`] reads what every process printed.
//!
//! Everything is bounded: the duration, the number of processes (one daemon and one process
//! per member at a time), and every wait. Only 127.0.0.1 is used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gka_host::identity::{Identity, Scheme};

pub mod analysis;
mod procs;

use analysis::{analyze, Findings, ProcessLog};
use procs::{Proc, Setup};

/// The soak's settings.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Member processes (at least 4).
    pub members: usize,
    /// How many of them are never killed.
    pub stable: usize,
    /// How long lines are sent and faults injected.
    pub duration: Duration,
    /// Seeds the choice and timing of kills.
    pub seed: u64,
    /// The `gka` program to run (this one).
    pub gka: PathBuf,
    /// Passed to members as `--plugins` (each directory once).
    pub plugins: Vec<PathBuf>,
}

/// What happened, and what the soak found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChaosReport {
    /// The four counts that must be zero, and the traffic behind them.
    pub findings: Findings,
    /// Members killed with SIGKILL.
    pub kills: usize,
    /// Members (re)started, the first start included.
    pub starts: usize,
    /// Daemon stops (SIGSTOP for 4 s).
    pub daemon_stalls: usize,
    /// Daemon restarts.
    pub daemon_restarts: usize,
    /// Seconds from the first line to the analysis.
    pub seconds: f64,
}

/// A small deterministic generator for the schedule (xorshift64*).
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A free loopback address (bound, read and released; the soak's daemons reuse it).
fn free_addr() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.to_string())
}

/// Runs the soak; `say` hears about each fault as it is injected.
pub fn run(config: &ChaosConfig, mut say: impl FnMut(&str)) -> Result<ChaosReport> {
    if config.members < 4 || config.members > 32 {
        bail!("--members must be 4 to 32, not {}", config.members);
    }
    if config.stable == 0 || config.stable + 2 > config.members {
        bail!("keep at least one stable member and two victims ({} members)", config.members);
    }
    let dir = tempfile::tempdir().context("no temporary directory")?;
    let ids: Vec<String> = (1..=config.members).map(|i| format!("m{i}")).collect();
    for id in &ids {
        Identity::generate(id, Scheme::Ed25519)?.write(dir.path())?;
    }
    let setup = Setup {
        gka: config.gka.clone(),
        keys: dir.path().to_path_buf(),
        trust: dir.path().to_path_buf(),
        plugins: config.plugins.clone(),
    };
    let addr = free_addr()?;
    let mut daemon = setup.daemon(&addr)?;
    let mut running: BTreeMap<String, Proc> = BTreeMap::new();
    for id in &ids {
        running.insert(id.clone(), setup.member(&addr, id)?);
    }
    for (id, p) in &running {
        p.wait_for(Duration::from_secs(60), |l| l.contains(r#""event":"key""#))
            .with_context(|| format!("{id} never got a first key"))?;
    }
    let stable: BTreeSet<String> = ids[..config.stable].iter().cloned().collect();
    let victims: Vec<String> = ids[config.stable..].to_vec();
    let mut finished: Vec<ProcessLog> = Vec::new();
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut counter: BTreeMap<String, usize> = BTreeMap::new();
    let mut schedule = Schedule(config.seed.max(1));
    let mut report = ChaosReport {
        findings: Findings::default(),
        kills: 0,
        starts: ids.len(),
        daemon_stalls: 0,
        daemon_restarts: 0,
        seconds: 0.0,
    };

    let start = Instant::now();
    let stall_at = config.duration / 3;
    let restart_at = config.duration * 2 / 3;
    let mut stalled_until: Option<Instant> = None;
    let (mut stalled, mut restarted) = (false, false);
    let mut next_victim_event = start + Duration::from_millis(schedule.between(1_500, 3_500));
    let mut kill_at: Option<Instant> = None;
    let mut tick = start;
    while start.elapsed() < config.duration {
        tick += Duration::from_millis(100);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (id, p) in running.iter_mut() {
            let k = counter.entry(id.clone()).or_default();
            *k += 1;
            if p.say(&format!("{id}#{k}")) && stable.contains(id) {
                *sent.entry(id.clone()).or_default() += 1;
            }
        }
        let now = Instant::now();
        let t = now - start;
        if !stalled && t >= stall_at {
            stalled = true;
            daemon.signal(libc::SIGSTOP);
            stalled_until = Some(now + Duration::from_secs(4));
            report.daemon_stalls += 1;
            say(&format!("{:5.1} s: daemon stopped (SIGSTOP) for 4 s", t.as_secs_f64()));
        }
        if stalled_until.is_some_and(|until| now >= until) {
            stalled_until = None;
            daemon.signal(libc::SIGCONT);
            say(&format!("{:5.1} s: daemon resumed", t.as_secs_f64()));
        }
        if !restarted && stalled_until.is_none() && t >= restart_at {
            restarted = true;
            daemon.stop(Duration::from_secs(5));
            daemon = setup.daemon(&addr)?;
            report.daemon_restarts += 1;
            say(&format!("{:5.1} s: daemon restarted", t.as_secs_f64()));
        }
        if kill_at.is_some_and(|at| now >= at) {
            kill_at = None;
            let up: Vec<&String> = victims.iter().filter(|v| running.contains_key(*v)).collect();
            if !up.is_empty() {
                let victim = up[schedule.next() as usize % up.len()].clone();
                if let Some(mut p) = running.remove(&victim) {
                    p.kill();
                    finished.push(p.log());
                    report.kills += 1;
                    say(&format!("{:5.1} s: killed {victim} (SIGKILL)", t.as_secs_f64()));
                }
            }
        }
        if now >= next_victim_event {
            next_victim_event = now + Duration::from_millis(schedule.between(1_500, 3_500));
            let down: Vec<&String> = victims.iter().filter(|v| !running.contains_key(*v)).collect();
            if let Some(victim) = down.first().map(|v| (*v).clone()) {
                running.insert(victim.clone(), setup.member(&addr, &victim)?);
                report.starts += 1;
                say(&format!("{:5.1} s: restarted {victim}", t.as_secs_f64()));
            }
            // Mid-rekey: the restart's join (or the group's last change) is being agreed on.
            kill_at = Some(now + Duration::from_millis(schedule.between(20, 80)));
        }
    }
    // Let the group settle: every line in flight comes back or is reported.
    std::thread::sleep(Duration::from_secs(8));
    for (_, mut p) in running {
        p.kill();
        finished.push(p.log());
    }
    daemon.kill();
    report.findings = analyze(&finished, &stable, &sent);
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

impl ChaosReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let f = &self.findings;
        let mut out = String::new();
        out.push_str("| what | count |\n|---|---|\n");
        for (what, n) in [
            ("divergent epochs (one run, one epoch, two keys)", f.divergent_epochs),
            ("lines lost among members alive throughout", f.lost_lines),
            ("duplicate deliveries", f.duplicates),
            ("data under a departed member's epoch", f.data_under_departed_epoch),
            ("keys agreed (run, epoch)", f.keys),
            ("lines given to stable members", f.lines_sent),
            ("... delivered back to their sender", f.lines_echoed),
            ("... reported to their sender as not sent or not delivered", f.lines_reported),
            ("members killed (SIGKILL)", self.kills),
            ("member processes started", self.starts),
            ("daemon stalls (SIGSTOP 4 s)", self.daemon_stalls),
            ("daemon restarts", self.daemon_restarts),
        ] {
            out.push_str(&format!("| {what} | {n} |\n"));
        }
        out.push_str(&format!("\n{:.0} s in all.\n", self.seconds));
        for e in &f.examples {
            out.push_str(&format!("- {e}\n"));
        }
        out
    }
}
