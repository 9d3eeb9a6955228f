//! `gka bench trace`: traces drawn from a churn model, so that adaptation is evaluated on
//! more than hand-written steps.
//!
//! The model: the group starts with `start_members`; arrivals are a Poisson process (one
//! member, or with `merge_probability` a merge of `merge_size` members at once); every member
//! lives an exponentially distributed time, after which it leaves (a random member, or with
//! `oldest_probability` the oldest one); the size stays within 2 and `max_members`. Time is cut
//! into phases of random length, each with its network (drawn from `networks`) and CPU load.
//! The same seed writes the same trace.

use std::fmt::Write as _;

use crate::trace::SplitMix;

/// A churn model (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnModel {
    /// Seeds every draw.
    pub seed: u64,
    /// The trace's length, minutes.
    pub minutes: f64,
    /// Members at the start.
    pub start_members: usize,
    /// The most members at once.
    pub max_members: usize,
    /// Arrivals per minute.
    pub arrivals_per_min: f64,
    /// A member's mean lifetime, minutes.
    pub mean_lifetime_min: f64,
    /// The chance that an arrival is a merge of `merge_size` members.
    pub merge_probability: f64,
    /// Members in a merge.
    pub merge_size: usize,
    /// The chance that a departure is the oldest member's.
    pub oldest_probability: f64,
    /// A phase's length, minutes: drawn uniformly from this range.
    pub phase_min: (f64, f64),
    /// The networks phases draw from (presets or files relative to the trace).
    pub networks: Vec<String>,
    /// The CPU loads phases draw from.
    pub cpu_loads: Vec<f64>,
}

impl Default for ChurnModel {
    fn default() -> Self {
        Self {
            seed: 1,
            minutes: 30.0,
            start_members: 16,
            max_members: 128,
            arrivals_per_min: 4.0,
            mean_lifetime_min: 8.0,
            merge_probability: 0.1,
            merge_size: 8,
            oldest_probability: 0.2,
            phase_min: (4.0, 10.0),
            networks: vec!["lan".into(), "wan".into()],
            cpu_loads: vec![0.0, 0.0, 0.9],
        }
    }
}

/// Why a model was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("churn model: {0}")]
pub struct ChurnError(String);

impl ChurnModel {
    fn check(&self) -> Result<(), ChurnError> {
        let bad = |why: &str| Err(ChurnError(why.to_owned()));
        if !(self.minutes > 0.0 && self.minutes <= 24.0 * 60.0) {
            return bad("minutes must be in (0, 1440]");
        }
        if !(2..=crate::trace::MAX_TRACE_MEMBERS).contains(&self.max_members)
            || !(2..=self.max_members).contains(&self.start_members)
        {
            return bad("sizes must satisfy 2 <= start_members <= max_members <= 1024");
        }
        // Steps are at least a second apart: rates beyond that, or lifetimes shorter than it,
        // would only stack steps (and could keep the draw from ever moving on).
        if !(self.arrivals_per_min > 0.0 && self.arrivals_per_min <= 60.0) {
            return bad("arrivals_per_min must be in (0, 60]");
        }
        if !(self.mean_lifetime_min >= 1.0 / 60.0 && self.mean_lifetime_min.is_finite()) {
            return bad("mean_lifetime_min must be at least 1/60 (a second) and finite");
        }
        let chances = [self.merge_probability, self.oldest_probability];
        if chances.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return bad("probabilities must be in [0, 1]");
        }
        if self.merge_size == 0 || self.networks.is_empty() || self.cpu_loads.is_empty() {
            return bad("merge_size, networks and cpu_loads must not be empty");
        }
        if self.merge_size > self.max_members {
            return bad("merge_size must not exceed max_members");
        }
        if self.cpu_loads.iter().any(|c| !(0.0..=1.0).contains(c)) {
            return bad("CPU loads must be in [0, 1]");
        }
        let (lo, hi) = self.phase_min;
        if !(lo >= 1.0 / 60.0 && lo <= hi && hi.is_finite()) {
            return bad("phase lengths must satisfy 1/60 (a second) <= min <= max");
        }
        Ok(())
    }

    /// The trace (TOML, the format of [`crate::trace::Trace`]) named `name`; checked as a
    /// trace before it is handed out.
    pub fn generate(&self, name: &str) -> Result<String, ChurnError> {
        self.check()?;
        let text = self.draw(name);
        crate::trace::Trace::parse(&text)
            .map_err(|e| ChurnError(format!("the drawn trace: {e}")))?;
        Ok(text)
    }

    fn draw(&self, name: &str) -> String {
        let mut rng = SplitMix(self.seed);
        let end_s = self.minutes * 60.0;
        let exp = |rng: &mut SplitMix, mean: f64| -mean * (1.0 - rng.unit()).ln();
        let pick = |rng: &mut SplitMix, n: usize| (rng.next_u64() % n as u64) as usize;
        // Departure times of the members present (order does not matter: leavers are drawn).
        let mut lives: Vec<f64> =
            (0..self.start_members).map(|_| exp(&mut rng, self.mean_lifetime_min * 60.0)).collect();
        let mut out = String::new();
        let first_network = &self.networks[pick(&mut rng, self.networks.len())];
        let _ = writeln!(
            out,
            "# Drawn by `gka bench trace` (seed {}): Poisson arrivals ({}/min, merges of {} with \
             chance {}), lifetimes of {} min on average, the oldest leaving with chance {}.",
            self.seed,
            self.arrivals_per_min,
            self.merge_size,
            self.merge_probability,
            self.mean_lifetime_min,
            self.oldest_probability
        );
        let _ = writeln!(out, "name = {name:?}\nnetwork = {first_network:?}\ntail_s = 60\n");
        let _ = writeln!(out, "[[step]]\nat_s = 0\njoin = {}\n", self.start_members);
        let mut next_arrival = exp(&mut rng, 60.0 / self.arrivals_per_min);
        let (lo, hi) = self.phase_min;
        let mut next_phase = (lo + (hi - lo) * rng.unit()) * 60.0;
        let mut last_at = 0.0_f64;
        loop {
            let next_departure = lives.iter().copied().fold(f64::INFINITY, f64::min);
            let t = next_arrival.min(next_departure).min(next_phase);
            if t >= end_s {
                break;
            }
            // Steps one second apart at least (a step is one view).
            let at = (t.max(last_at + 1.0) * 10.0).round() / 10.0;
            if t == next_phase {
                let network = &self.networks[pick(&mut rng, self.networks.len())];
                let cpu = self.cpu_loads[pick(&mut rng, self.cpu_loads.len())];
                let _ =
                    writeln!(out, "[[step]]\nat_s = {at}\nnetwork = {network:?}\ncpu = {cpu}\n");
                next_phase = t + (lo + (hi - lo) * rng.unit()) * 60.0;
            } else if t == next_arrival {
                let k = if rng.unit() < self.merge_probability { self.merge_size } else { 1 };
                let k = k.min(self.max_members - lives.len());
                if k > 0 {
                    for _ in 0..k {
                        lives.push(t + exp(&mut rng, self.mean_lifetime_min * 60.0));
                    }
                    let _ = writeln!(out, "[[step]]\nat_s = {at}\njoin = {k}\n");
                }
                next_arrival = t + exp(&mut rng, 60.0 / self.arrivals_per_min);
            } else {
                let i = lives.iter().position(|l| *l == next_departure).expect("a departure");
                if lives.len() <= 2 {
                    // The group never empties: this member stays a while longer.
                    lives[i] = t + exp(&mut rng, self.mean_lifetime_min * 60.0);
                    continue;
                }
                lives.swap_remove(i);
                let how = if rng.unit() < self.oldest_probability {
                    "leave_oldest"
                } else {
                    "leave_random"
                };
                let _ = writeln!(out, "[[step]]\nat_s = {at}\n{how} = 1\n");
            }
            last_at = at;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    #[test]
    fn a_seed_draws_a_valid_trace_and_the_same_one_again() {
        let model = ChurnModel { minutes: 60.0, ..ChurnModel::default() };
        let text = model.generate("drawn").unwrap();
        let trace = Trace::parse(&text).expect("a valid trace");
        assert_eq!(trace.name, "drawn");
        let joins = trace.step.iter().filter(|s| s.join > 0).count();
        let leaves = trace.step.iter().filter(|s| s.leaving() > 0).count();
        let phases = trace.step.iter().filter(|s| s.network.is_some()).count();
        assert!(joins > 100 && leaves > 100 && phases >= 4, "{joins} {leaves} {phases}");
        assert!(trace.step.iter().any(|s| s.leave_oldest > 0));
        assert!(trace.step.iter().any(|s| s.join == model.merge_size));
        assert_eq!(model.generate("drawn").unwrap(), text, "the same seed");
        let other = ChurnModel { seed: 2, ..model.clone() }.generate("drawn").unwrap();
        assert_ne!(other, text);
        let bad = ChurnModel { max_members: 1, ..model };
        assert!(bad.generate("x").is_err());
    }
}
