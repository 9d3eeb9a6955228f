//! The member's plugin session, with its counters read once per call into it.

use std::cell::Cell;

use gka_plugin_api::{Counters, Output, Session, SessionError, View};

/// A plugin session whose [`Counters`] are read from the plugin only after a call that could
/// change them. A driver that charges every delivery by the exponentiations it caused asks
/// twice per delivery, and most deliveries (confirmations, votes, probes) never reach the
/// plugin: in a simulation of thousands of members, each of those asks would be a call
/// across the plugin boundary into memory no other step touches.
pub(super) struct MeteredSession {
    session: Box<dyn Session>,
    counters: Cell<Option<Counters>>,
}

impl MeteredSession {
    /// Wraps a session.
    pub(super) fn new(session: Box<dyn Session>) -> Self {
        Self { session, counters: Cell::new(None) }
    }

    /// [`Session::handle_view`].
    pub(super) fn handle_view(&mut self, now_ms: u64, view: &View) -> Result<(), SessionError> {
        self.counters.set(None);
        self.session.handle_view(now_ms, view)
    }

    /// [`Session::handle_payload`].
    pub(super) fn handle_payload(
        &mut self,
        now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        self.counters.set(None);
        self.session.handle_payload(now_ms, from, payload)
    }

    /// [`Session::handle_refresh`].
    pub(super) fn handle_refresh(&mut self, now_ms: u64) -> Result<(), SessionError> {
        self.counters.set(None);
        self.session.handle_refresh(now_ms)
    }

    /// [`Session::poll_output`]. Counters change only while the session handles an input,
    /// so polling what it produced keeps them.
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.session.poll_output()
    }

    /// [`Session::counters`], read from the plugin at most once between calls into it.
    pub(super) fn counters(&self) -> Counters {
        if let Some(counters) = self.counters.get() {
            return counters;
        }
        let counters = self.session.counters();
        self.counters.set(Some(counters));
        counters
    }
}

impl std::fmt::Debug for MeteredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredSession").field("counters", &self.counters.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A session that counts the calls into it as exponentiations, and how often its counters
    /// were read.
    #[derive(Default)]
    struct Counting {
        calls: u64,
        reads: Arc<AtomicU64>,
    }

    impl Session for Counting {
        fn handle_view(&mut self, _: u64, _: &View) -> Result<(), SessionError> {
            self.calls += 1;
            Ok(())
        }
        fn handle_payload(&mut self, _: u64, _: &str, _: &[u8]) -> Result<(), SessionError> {
            self.calls += 1;
            Ok(())
        }
        fn handle_refresh(&mut self, _: u64) -> Result<(), SessionError> {
            self.calls += 1;
            Ok(())
        }
        fn poll_output(&mut self) -> Option<Output> {
            None
        }
        fn counters(&self) -> Counters {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Counters { exponentiations: self.calls, ..Counters::default() }
        }
    }

    #[test]
    fn counters_are_read_once_after_each_call_into_the_session() {
        let reads = Arc::new(AtomicU64::new(0));
        let mut session =
            MeteredSession::new(Box::new(Counting { calls: 0, reads: reads.clone() }));
        let exps = |s: &MeteredSession| s.counters().exponentiations;
        assert_eq!((exps(&session), exps(&session)), (0, 0));
        assert_eq!(reads.load(Ordering::Relaxed), 1, "the second read is the cached one");
        let view = View { view_id: 1, members: vec!["a".into()], joined: vec![], left: vec![] };
        session.handle_view(0, &view).expect("view");
        assert_eq!(exps(&session), 1);
        session.handle_payload(0, "a", b"x").expect("payload");
        assert_eq!(exps(&session), 2);
        session.handle_refresh(0).expect("refresh");
        assert_eq!((exps(&session), exps(&session)), (3, 3));
        assert!(session.poll_output().is_none());
        assert_eq!(exps(&session), 3);
        assert_eq!(reads.load(Ordering::Relaxed), 4, "one read after each call, none after a poll");
    }
}
