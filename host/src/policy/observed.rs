//! What the running protocol's rekeys really took beyond its cost model's prediction.
//!
//! A cost model predicts the average event: an average leaver, the merge and partition sizes
//! of [`super::WEIGHED_EVENTS`]. Groups are not average. When the oldest members keep leaving,
//! CKD's controller and STR's bottom of the chain go every time, and each of those rekeys costs
//! a linear number of exponentiations where the model expected about one. Each member measures
//! every membership rekey of the protocol it runs, from the view to the last member's key
//! confirmation (the point at which every member has proved it holds the new key), and keeps
//! how far that exceeded the prediction; the policy adds the excess to that protocol's
//! prediction for that kind of event. Only excess counts, never a shortfall: a rekey that is
//! cheaper than predicted is the model's average at work, and rewarding it would only make the
//! running protocol look better than the ones it is compared with, whose rekeys are not
//! measured. Observations fade with the policy's horizon (half of their weight per horizon),
//! so that a protocol the group left for its excess can be chosen again once conditions change.

use std::time::Duration;

use gka_plugin_api::EventKind;

/// The least weight of a new observation against what was kept: the first observations are
/// averaged alike (a running mean), later ones weigh at least this much, so the estimate
/// follows a change within a handful of events while one unlucky event (a random leaver that
/// was the controller) does not swing it.
const MIN_WEIGHT: f64 = 0.2;

/// One (protocol, event kind)'s kept excess.
#[derive(Debug, Clone, PartialEq)]
struct Excess {
    protocol: String,
    kind: EventKind,
    ms: f64,
    at: Duration,
    count: u32,
}

/// Observed excess latency per protocol and event kind (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    kept: Vec<Excess>,
}

fn faded(ms: f64, since: Duration, half_life_s: f64) -> f64 {
    if half_life_s <= 0.0 {
        return 0.0;
    }
    ms * 0.5f64.powf(since.as_secs_f64() / half_life_s)
}

impl Observed {
    /// Records a rekey of `protocol` for a `kind` event at `now` that took `observed_ms`
    /// (less what the measurement itself adds) where `predicted_ms` was expected; what was
    /// kept before has faded with `half_life_s`.
    pub fn record(
        &mut self,
        now: Duration,
        protocol: &str,
        kind: EventKind,
        observed_ms: f64,
        predicted_ms: f64,
        half_life_s: f64,
    ) {
        if !observed_ms.is_finite() || !predicted_ms.is_finite() {
            return;
        }
        let sample = (observed_ms - predicted_ms).max(0.0);
        match self.kept.iter_mut().find(|e| e.protocol == protocol && e.kind == kind) {
            Some(e) => {
                let old = faded(e.ms, now.saturating_sub(e.at), half_life_s);
                e.count = e.count.saturating_add(1);
                e.ms = old + (1.0 / f64::from(e.count)).max(MIN_WEIGHT) * (sample - old);
                e.at = now;
            }
            None => self.kept.push(Excess {
                protocol: protocol.to_owned(),
                kind,
                ms: sample,
                at: now,
                count: 1,
            }),
        }
    }

    /// The excess to add to predictions at `now`, as (protocol, kind, ms), leaving out what
    /// has faded below 0.1 ms.
    pub fn excess_ms(&self, now: Duration, half_life_s: f64) -> Vec<(String, EventKind, f64)> {
        self.kept
            .iter()
            .map(|e| {
                (e.protocol.clone(), e.kind, faded(e.ms, now.saturating_sub(e.at), half_life_s))
            })
            .filter(|(_, _, ms)| *ms >= 0.1)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn excess_builds_up_fades_and_never_goes_below_zero() {
        let mut o = Observed::default();
        o.record(S(0), "ckd", EventKind::Leave, 64.3, 0.3, 300.0);
        assert_eq!(o.excess_ms(S(0), 300.0), [("ckd".to_owned(), EventKind::Leave, 64.0)]);
        o.record(S(0), "ckd", EventKind::Leave, 32.3, 0.3, 300.0);
        assert_eq!(o.excess_ms(S(0), 300.0)[0].2, 48.0);
        // Half after one horizon.
        assert!((o.excess_ms(S(300), 300.0)[0].2 - 24.0).abs() < 1e-9);
        // A cheaper rekey than predicted is a zero sample, not a reward (a running mean of
        // three so far).
        o.record(S(300), "ckd", EventKind::Leave, 0.1, 0.3, 300.0);
        assert!((o.excess_ms(S(300), 300.0)[0].2 - 16.0).abs() < 1e-9);
        // After many observations one weighs a fifth.
        for _ in 0..20 {
            o.record(S(300), "ckd", EventKind::Leave, 0.3, 0.3, 300.0);
        }
        o.record(S(300), "ckd", EventKind::Leave, 10.3, 0.3, 300.0);
        let ms = o.excess_ms(S(300), 300.0)[0].2;
        assert!((2.0..2.3).contains(&ms), "{ms}");
        // Other protocols and kinds are kept apart; faded entries drop out.
        o.record(S(300), "tgdh", EventKind::Join, 5.0, 5.0, 300.0);
        assert_eq!(o.excess_ms(S(300), 300.0).len(), 1);
        assert!(o.excess_ms(S(300 + 3000), 300.0).is_empty());
        o.record(S(0), "str", EventKind::Join, f64::NAN, 1.0, 300.0);
        assert_eq!(o.excess_ms(S(300), 300.0).len(), 1);
    }
}
