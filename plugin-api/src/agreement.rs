//! [`Agreement`]: the shape every gka protocol session shares, so that a plugin writes only
//! its protocol logic and gets [`Session`] for free.
//!
//! On a new view the session asks [`SessionCore`] for the member's side, takes its last agreed
//! state only if that state is still shared by its side (see `SessionCore`), drops whatever
//! run was in progress, and then either
//! - continues from the agreed state when the side is the whole view (leave, partition, or
//!   no membership change): [`Agreement::on_whole_view`]; or
//! - starts a merge of the sides (join, merge, heal, initial agreement, or any restart after
//!   an interrupted run): [`Agreement::on_merge`].
//!
//! Payloads are opened (and checked) by the core before [`Agreement::on_message`] sees them.

use serde::de::DeserializeOwned;

use crate::core::{SessionCore, ViewChange};
use crate::error::SessionError;
use crate::protocol::{Counters, Output, Session, View};

/// A protocol's logic, driven by the blanket [`Session`] implementation.
pub trait Agreement: Send {
    /// What a member keeps from a completed agreement.
    type Agreed: Send;
    /// The protocol's message type.
    type Message: DeserializeOwned;

    /// The shared bookkeeping.
    fn core(&self) -> &SessionCore;
    /// The shared bookkeeping, mutably.
    fn core_mut(&mut self) -> &mut SessionCore;
    /// Takes the last agreed state out of the session, if any.
    fn take_agreed(&mut self) -> Option<Self::Agreed>;
    /// Forgets the run in progress, if any.
    fn reset_run(&mut self);
    /// The side is the whole view and shares `agreed`: a leave, partition or unchanged view.
    fn on_whole_view(&mut self, agreed: Self::Agreed, view: &View) -> Result<(), SessionError>;
    /// Several sides meet (or this member starts afresh); `kept` is this side's agreed state.
    fn on_merge(
        &mut self,
        change: &ViewChange,
        kept: Option<Self::Agreed>,
    ) -> Result<(), SessionError>;
    /// A checked message from a member of the view (possibly this member's own broadcast).
    fn on_message(&mut self, from: &str, msg: Self::Message) -> Result<(), SessionError>;
    /// A refresh of the agreed key was started (no agreement is running).
    fn on_refresh(&mut self) -> Result<(), SessionError>;
}

impl<A: Agreement> Session for A {
    fn handle_view(&mut self, _now_ms: u64, view: &View) -> Result<(), SessionError> {
        let change = self.core_mut().begin_view(view)?;
        let agreed = self.take_agreed();
        let kept = if change.keeps_state { agreed } else { None };
        self.reset_run();
        match kept {
            Some(agreed) if change.side_is_whole_view => self.on_whole_view(agreed, view),
            kept => self.on_merge(&change, kept),
        }
    }

    fn handle_payload(
        &mut self,
        _now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let msg = self.core_mut().open(from, payload)?;
        self.on_message(from, msg)
    }

    fn handle_refresh(&mut self, _now_ms: u64) -> Result<(), SessionError> {
        if self.core_mut().begin_refresh()? {
            self.on_refresh()
        } else {
            Ok(())
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.core_mut().poll_output()
    }

    fn counters(&self) -> Counters {
        self.core().counters()
    }
}
