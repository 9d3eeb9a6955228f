//! At most a few lines of one kind a second: what a hostile peer can make a member print is
//! bounded, and what was held back is summed up, never hidden.

use std::collections::BTreeMap;
use std::time::Duration;

/// Lines printed per window before the rest are only counted.
pub(crate) const LINES_PER_WINDOW: u32 = 5;

/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// A rate limit on log lines of one kind, with a count of what it held back, by label.
#[derive(Debug, Default)]
pub(crate) struct LineLimit {
    window_start: Option<Duration>,
    printed: u32,
    held_back: BTreeMap<String, u64>,
}

impl LineLimit {
    /// Whether a line labelled `label` may be printed at `now` (time since any fixed start).
    /// Before the answer, a summary of what the previous window held back, if anything.
    pub(crate) fn admit(&mut self, now: Duration, label: &str) -> (Option<String>, bool) {
        let summary = self.roll(now);
        if self.printed < LINES_PER_WINDOW {
            self.printed += 1;
            (summary, true)
        } else {
            *self.held_back.entry(label.to_owned()).or_default() += 1;
            (summary, false)
        }
    }

    /// The summary of what the current window held back so far, if anything (at exit).
    pub(crate) fn flush(&mut self) -> Option<String> {
        self.window_start = None;
        self.printed = 0;
        summary(std::mem::take(&mut self.held_back))
    }

    /// Starts a new window if the current one is over; returns the summary of what it held
    /// back.
    pub(crate) fn roll(&mut self, now: Duration) -> Option<String> {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_sub(start) < WINDOW {
            return None;
        }
        self.window_start = Some(now);
        self.printed = 0;
        summary(std::mem::take(&mut self.held_back))
    }
}

fn summary(held_back: BTreeMap<String, u64>) -> Option<String> {
    if held_back.is_empty() {
        return None;
    }
    let total: u64 = held_back.values().sum();
    let parts: Vec<String> = held_back.into_iter().map(|(l, n)| format!("{l}: {n}")).collect();
    Some(format!("{total} more not shown ({})", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_prints_a_few_lines_and_a_summary() {
        let mut limit = LineLimit::default();
        let mut printed = 0;
        for i in 0..10_000u64 {
            let (summary, admit) = limit.admit(Duration::from_micros(i * 50), "unknown_sender");
            assert!(summary.is_none(), "the window is not over yet");
            printed += u32::from(admit);
        }
        assert_eq!(printed, LINES_PER_WINDOW);
        let (summary, admit) = limit.admit(Duration::from_millis(1_500), "bad_signature");
        assert!(admit, "a new window prints again");
        let summary = summary.expect("what was held back");
        assert!(summary.contains("9995 more") && summary.contains("unknown_sender: 9995"));
        assert_eq!(limit.roll(Duration::from_secs(3)), None, "nothing held back since");
        for _ in 0..LINES_PER_WINDOW + 2 {
            limit.admit(Duration::from_secs(3), "forged");
        }
        assert_eq!(limit.flush().as_deref(), Some("2 more not shown (forged: 2)"), "at exit");
    }
}
