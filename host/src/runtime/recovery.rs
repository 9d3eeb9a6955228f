//! How a member over the daemon recovers when its connection ends (the daemon restarted, went
//! away, or expelled it): it rejoins as a new incarnation, with a fresh member core, after a
//! growing, jittered back-off, and gives up only after [`Recovery::give_up_after`].

use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use rand_core::{OsRng, RngCore};

/// Reconnection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The wait before the first attempt.
    pub first_delay: Duration,
    /// The longest wait between two attempts (the wait doubles up to it).
    pub max_delay: Duration,
    /// How long one attempt (connect, challenge, join) may take.
    pub attempt_timeout: Duration,
    /// How long to keep trying before the runtime stops with [`super::RuntimeEvent::Failed`].
    pub give_up_after: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl Recovery {
    /// The wait before attempt `attempt` (1 for the first): `first_delay` doubled per earlier
    /// attempt, at most `max_delay`, then scaled by a random factor in [1/2, 1] so that the
    /// members of a group do not all come back at the same instant.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        let capped = doubled.min(self.max_delay);
        let jitter = 0.5 + f64::from(OsRng.next_u32() % 1024) / 2046.0;
        capped.mul_f64(jitter)
    }
}

/// Makes a new connection to the group layer (joined, as a new incarnation).
pub(super) type Reconnect<E> = Box<dyn FnMut() -> BoxFuture<'static, io::Result<E>> + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_its_cap_with_jitter() {
        let r = Recovery {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            ..Recovery::default()
        };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1_000), (40, 1_000)] {
            let d = r.delay(attempt).as_millis() as u64;
            assert!((full / 2..=full).contains(&d), "attempt {attempt}: {d} ms, full {full}");
        }
    }
}
