//! Local measurements for the policy: calibrated costs of the operations a rekey is made of,
//! and this machine's CPU load. (Round-trip times and bandwidth need the group: they come with
//! the runtime's ping/pong.)

// Measuring this machine means reading its clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use gka_plugin_api::{Dh, GroupId};

use crate::identity::{Identity, Scheme};

/// Measured costs of one operation each, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// One general modular exponentiation with a 256-bit exponent.
    pub exp_ms: f64,
    /// One signature with the identity scheme.
    pub sign_ms: f64,
    /// One verification.
    pub verify_ms: f64,
}

fn mean_ms(runs: u32, mut f: impl FnMut()) -> f64 {
    f(); // warm up (tables, caches)
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(runs)
}

/// Times `runs` exponentiations in `group` and `runs` signatures and verifications with a fresh
/// key of `scheme`.
pub fn calibrate(group: GroupId, scheme: Scheme, runs: u32) -> Calibration {
    let identity = Identity::generate("calibration", scheme).expect("a calibration key");
    calibrate_with(group, &identity, runs)
}

/// Times `runs` exponentiations in `group` and `runs` signatures and verifications with
/// `identity` (a running member calibrates with its own key).
pub fn calibrate_with(group: GroupId, identity: &Identity, runs: u32) -> Calibration {
    let dh = Dh::new(group);
    let mut rng = gka_plugin_api::rng::session_rng([9; 32]);
    let x = dh.random_exponent(&mut rng);
    let base = dh.blind(&dh.random_exponent(&mut rng));
    let exp_ms = mean_ms(runs, || {
        std::hint::black_box(dh.pow(&base, &x));
    });
    let message = [7u8; 256];
    let signature = identity.sign(&message);
    let sign_ms = mean_ms(runs, || {
        std::hint::black_box(identity.sign(&message));
    });
    let verify_ms = mean_ms(runs, || {
        std::hint::black_box(identity.public().verify(&message, &signature).is_ok());
    });
    Calibration { exp_ms, sign_ms, verify_ms }
}

/// CPU time counters from `/proc/stat`: (busy, total) jiffies over all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total.saturating_sub(idle), total))
}

/// This machine's CPU load (0 to 1) over `window`, from `/proc/stat`; None where it is not
/// available. Blocks for `window`: a running member uses [`CpuSampler`] instead.
pub fn cpu_load(window: Duration) -> Option<f64> {
    let mut sampler = CpuSampler::default();
    cpu_times()?;
    sampler.sample();
    std::thread::sleep(window);
    sampler.sample()
}

/// CPU load between successive calls, without blocking.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    /// The load since the previous call (None on the first call, when nothing changed, or
    /// where `/proc/stat` is not available).
    pub fn sample(&mut self) -> Option<f64> {
        let (busy, total) = cpu_times()?;
        let previous = self.last.replace((busy, total));
        let (busy0, total0) = previous?;
        let dt = total.saturating_sub(total0);
        (dt > 0).then(|| busy.saturating_sub(busy0) as f64 / dt as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_yields_positive_costs_in_a_sane_order() {
        let c = calibrate(GroupId::Ffdhe2048, Scheme::Ed25519, 3);
        assert!(c.exp_ms > 0.0 && c.sign_ms > 0.0 && c.verify_ms > 0.0, "{c:?}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_load_is_a_fraction() {
        let load = cpu_load(Duration::from_millis(50)).expect("/proc/stat is readable on Linux");
        assert!((0.0..=1.0).contains(&load), "{load}");
    }
}
