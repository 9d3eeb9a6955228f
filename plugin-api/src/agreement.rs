//! The framework every gka protocol session runs in, so that a plugin writes only its
//! protocol logic.
//!
//! A plugin implements [`Agreement`] on the state of one **run** (its phase: what it waits
//! for and what it holds meanwhile) and names it in [`protocol!`](crate::protocol). The
//! framework, [`Hosted`], owns everything else and implements [`Session`]:
//!
//! - the [`SessionCore`] (views, epochs, sealing and opening payloads, keys, counters) and
//!   the state of the last completed agreement, both handed to every callback in a
//!   [`Context`];
//! - the run: reset to `Default` on every view, and after every key;
//! - the commit at the member's own final broadcast: [`Context::broadcast_final`] sends the
//!   member's last message of a run and installs the key when the group delivers it back, so
//!   that every member installs at the same point of the agreed order.
//!
//! On a new view the framework asks the core for the member's side, keeps the last agreed
//! state only if the whole side still shares it (see [`SessionCore`]), resets the run, and
//! then either
//! - continues from the agreed state when the side is the whole view (leave, partition, or
//!   no membership change): [`Agreement::on_whole_view`]; or
//! - starts a merge of the sides (join, merge, heal, initial agreement, or any restart after
//!   an interrupted run): [`Agreement::on_merge`].
//!
//! Payloads are opened (and checked) by the core before [`Agreement::on_message`] sees them.
//!
//! **Refreshes** follow the crate's contract ("Completion and refresh"): every refresh is one
//! new epoch. One
//! that arrives while this member's agreement runs (a protocol whose last messages are
//! unicasts completes at different messages at different members) waits until the key is
//! installed; then the framework calls [`Agreement::on_refresh`] and hands the run, in order,
//! the payloads of that epoch that peers sent sooner (held meanwhile by the core).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::core::{SessionCore, ViewChange};
use crate::decoded_once::LiveSession;
use crate::error::SessionError;
use crate::places::ViewPlaces;
use crate::protocol::{Counters, Output, Session, SessionConfig, View};

/// A protocol's logic: the state of one run, driven by [`Hosted`].
pub trait Agreement: Default + Send + 'static {
    /// What a member keeps from a completed agreement.
    type Agreed: Send;
    /// The protocol's message type.
    type Message: DeserializeOwned;

    /// The side is the whole view and shares `agreed`: a leave, partition or unchanged view.
    fn on_whole_view(
        &mut self,
        cx: &mut Context<Self::Agreed>,
        agreed: Self::Agreed,
        view: &View,
    ) -> Result<(), SessionError>;

    /// Several sides meet (or this member starts afresh); `kept` is this side's agreed state.
    fn on_merge(
        &mut self,
        cx: &mut Context<Self::Agreed>,
        change: &ViewChange,
        kept: Option<Self::Agreed>,
    ) -> Result<(), SessionError>;

    /// A checked message from a member of the view (possibly this member's own broadcast,
    /// except the final one sent with [`Context::broadcast_final`]).
    fn on_message(
        &mut self,
        cx: &mut Context<Self::Agreed>,
        from: &str,
        msg: Self::Message,
    ) -> Result<(), SessionError>;

    /// A refresh of the agreed key starts (no agreement is running here: a refresh that came
    /// during one was queued until its key). By default the agreed state is handled as an
    /// unchanged view.
    fn on_refresh(&mut self, cx: &mut Context<Self::Agreed>) -> Result<(), SessionError> {
        let agreed = cx.agreed.take().ok_or_else(|| unexpected("refresh without a key"))?;
        let view = cx.core.view()?.clone();
        self.on_whole_view(cx, agreed, &view)
    }
}

/// A [`SessionError::Unexpected`] with this description: a message or state the protocol
/// does not allow here.
pub fn unexpected(what: impl Into<String>) -> SessionError {
    SessionError::Unexpected(what.into())
}

/// Round 1 of an additive event, in a protocol where each side sends its shared state (a tree,
/// a chain) to the group: the sides received so far and the members they cover. Once every
/// member of the view is covered, the sides can be merged.
#[derive(Debug)]
pub struct Sides<T> {
    sides: Vec<T>,
    /// Whether a side covered each member of the view, by place.
    covered: Vec<bool>,
    covered_count: usize,
    /// The view's members, at the first check: a merge of n singletons checks n sides.
    in_view: OnceLock<ViewPlaces>,
}

impl<T> Default for Sides<T> {
    fn default() -> Self {
        Self { sides: Vec::new(), covered: Vec::new(), covered_count: 0, in_view: OnceLock::new() }
    }
}

impl<T> Sides<T> {
    /// Checks a new side's members before anything of it is decoded: members of `view` that
    /// no earlier side covered, each once. Changes nothing.
    pub fn check<'a>(
        &self,
        view: &View,
        members: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SessionError> {
        let in_view = self.in_view.get_or_init(|| ViewPlaces::new(&view.members));
        let mut seen = HashSet::new();
        for member in members {
            let fresh = in_view.place(member).filter(|&place| {
                !self.covered.get(place).copied().unwrap_or(false) && seen.insert(place)
            });
            if fresh.is_none() {
                return Err(unexpected(format!("side member {member:?} unknown or repeated")));
            }
        }
        Ok(())
    }

    /// Adds a side whose members passed [`Sides::check`]. Returns every side, in arrival
    /// order, once the sides cover all of `view`.
    pub fn add(
        &mut self,
        view: &View,
        members: impl IntoIterator<Item = String>,
        side: T,
    ) -> Option<Vec<T>> {
        let in_view = self.in_view.get_or_init(|| ViewPlaces::new(&view.members));
        self.covered.resize(in_view.len(), false);
        for member in members {
            if let Some(place) = in_view.place(&member) {
                if !std::mem::replace(&mut self.covered[place], true) {
                    self.covered_count += 1;
                }
            }
        }
        self.sides.push(side);
        (self.covered_count >= view.members.len()).then(|| std::mem::take(&mut self.sides))
    }
}

/// Computes the group secret of a commit once the member's final broadcast is delivered.
type Finish<A> = Box<dyn FnOnce(&SessionCore, &A) -> Result<Secret, SessionError> + Send>;

/// The raw group secret (fixed-length big-endian bytes), wiped when dropped.
type Secret = Zeroizing<Vec<u8>>;

/// A commit waiting for the member's own final broadcast.
struct PendingCommit<A> {
    agreed: A,
    finish: Finish<A>,
}

/// What the framework keeps for a plugin, handed to every [`Agreement`] callback.
pub struct Context<A> {
    /// The shared bookkeeping.
    pub core: SessionCore,
    /// The state of the last completed agreement. The framework takes it out at every view
    /// and hands it to the run; a run may park it here while it still needs it.
    pub agreed: Option<A>,
    pending: Option<PendingCommit<A>>,
    committed: bool,
}

impl<A> std::fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("core", &self.core)
            .field("agreed", &self.agreed.is_some())
            .field("pending_commit", &self.pending.is_some())
            .finish()
    }
}

impl<A> Context<A> {
    /// Ends the running agreement: keeps `agreed` for the next event and installs the key
    /// derived from `secret`. The framework resets the run afterwards.
    pub fn commit(&mut self, agreed: A, secret: &[u8]) -> Result<(), SessionError> {
        self.agreed = Some(agreed);
        self.committed = true;
        self.core.install_key(secret)
    }

    /// Broadcasts this member's last message of the run. When the group delivers it back,
    /// `agreed` is committed with `secret`, at the same point of the agreed order as the
    /// other members install theirs.
    pub fn broadcast_final<M: Serialize>(
        &mut self,
        msg: &M,
        agreed: A,
        secret: Secret,
    ) -> Result<(), SessionError>
    where
        A: Send + 'static,
    {
        self.broadcast_final_with(msg, agreed, move |_, _| Ok(secret))
    }

    /// As [`Context::broadcast_final`], but the secret is computed from the agreed state
    /// once the broadcast is delivered back (for a protocol whose last exponentiation comes
    /// after its final message, off the critical path of the others).
    pub fn broadcast_final_with<M: Serialize>(
        &mut self,
        msg: &M,
        agreed: A,
        finish: impl FnOnce(&SessionCore, &A) -> Result<Secret, SessionError> + Send + 'static,
    ) -> Result<(), SessionError>
    where
        A: Send + 'static,
    {
        self.core.broadcast(msg)?;
        self.pending = Some(PendingCommit { agreed, finish: Box::new(finish) });
        Ok(())
    }

    /// Commits the pending final broadcast if `from` is this member and the payload just
    /// opened was its last broadcast in flight. True if it did.
    fn commit_own_final(&mut self, from: &str) -> Result<bool, SessionError> {
        if from != self.core.me() || self.core.broadcasts_in_flight() > 0 {
            return Ok(false);
        }
        let Some(PendingCommit { agreed, finish }) = self.pending.take() else {
            return Ok(false);
        };
        let secret = finish(&self.core, &agreed)?;
        self.commit(agreed, &secret)?;
        Ok(true)
    }
}

/// A plugin's [`Agreement`] hosted as a [`Session`] (see the module docs).
#[derive(Debug)]
pub struct Hosted<R: Agreement> {
    cx: Context<R::Agreed>,
    run: R,
    /// Counts this session among the process's (see [`DecodedOnce`](crate::DecodedOnce)).
    _live: LiveSession,
}

impl<R: Agreement> Hosted<R> {
    /// A session of `protocol` (its descriptor name, bound into every key) for one member.
    pub fn new(protocol: &'static str, config: SessionConfig) -> Result<Self, SessionError> {
        let core = SessionCore::new(protocol, config)?;
        Ok(Self {
            cx: Context { core, agreed: None, pending: None, committed: false },
            run: R::default(),
            _live: LiveSession::new(),
        })
    }

    /// [`Hosted::new`], boxed as a [`Session`] trait object.
    pub fn boxed(
        protocol: &'static str,
        config: SessionConfig,
    ) -> Result<Box<dyn Session>, SessionError> {
        Ok(Box::new(Self::new(protocol, config)?))
    }

    /// Resets the run once it committed (a completed run holds nothing more), then starts
    /// the next queued refresh, if any, with the payloads peers already sent for it.
    fn after(&mut self, result: Result<(), SessionError>) -> Result<(), SessionError> {
        if !std::mem::take(&mut self.cx.committed) {
            return result;
        }
        self.run = R::default();
        result?;
        if !self.cx.core.start_queued_refresh() {
            return Ok(());
        }
        let started = self.run.on_refresh(&mut self.cx);
        self.after(started)?;
        for (from, payload) in self.cx.core.take_held() {
            self.deliver(&from, &payload)?;
        }
        Ok(())
    }

    /// Opens a payload (or holds it, if it belongs to a queued epoch) and hands it to the run.
    fn deliver(&mut self, from: &str, payload: &[u8]) -> Result<(), SessionError> {
        let Some(msg) = self.cx.core.open_or_hold::<R::Message>(from, payload)? else {
            return Ok(());
        };
        let result = match self.cx.commit_own_final(from) {
            Ok(true) => Ok(()),
            Ok(false) => self.run.on_message(&mut self.cx, from, msg),
            Err(e) => Err(e),
        };
        self.after(result)
    }
}

impl<R: Agreement> Session for Hosted<R> {
    fn handle_view(&mut self, _now_ms: u64, view: &View) -> Result<(), SessionError> {
        let change = self.cx.core.begin_view(view)?;
        let agreed = self.cx.agreed.take();
        let kept = if change.keeps_state { agreed } else { None };
        self.cx.pending = None;
        self.run = R::default();
        let result = match kept {
            Some(agreed) if change.side_is_whole_view => {
                self.run.on_whole_view(&mut self.cx, agreed, view)
            }
            kept => self.run.on_merge(&mut self.cx, &change, kept),
        };
        self.after(result)
    }

    fn handle_payload(
        &mut self,
        _now_ms: u64,
        from: &str,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        self.deliver(from, payload)
    }

    fn handle_refresh(&mut self, _now_ms: u64) -> Result<(), SessionError> {
        if !self.cx.core.begin_refresh()? {
            return Ok(());
        }
        let result = self.run.on_refresh(&mut self.cx);
        self.after(result)
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.cx.core.poll_output()
    }

    fn counters(&self) -> Counters {
        self.cx.core.counters()
    }
}

/// Declares a plugin's [`Protocol`](crate::Protocol) factory: a unit struct named `$ty` whose
/// descriptor takes its version and summary from the plugin crate's `Cargo.toml` (`version`
/// and `description`), whose cost model is `$cost`, and whose sessions host the run `$run`
/// (an [`Agreement`]) in a [`Hosted`] session.
///
/// ```ignore
/// gka_plugin_api::protocol! {
///     /// The BD protocol.
///     pub Bd { name: "bd", run: session::BdRun, cost: cost::cost }
/// }
/// ```
///
/// It declares only the factory: export it from a `cdylib` with
/// [`export_protocol!`](crate::export_protocol).
#[macro_export]
macro_rules! protocol {
    (
        $(#[$attr:meta])*
        $vis:vis $ty:ident { name: $name:expr, run: $run:ty, cost: $cost:path $(,)? }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Clone, Copy)]
        $vis struct $ty;

        impl $crate::Protocol for $ty {
            fn descriptor(&self) -> $crate::Descriptor {
                $crate::Descriptor {
                    name: ::std::string::String::from($name),
                    version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
                    summary: ::std::string::String::from(env!("CARGO_PKG_DESCRIPTION")),
                    events: $crate::EventKind::ALL.to_vec(),
                }
            }

            fn cost(&self, event: $crate::EventKind, n: u64, k: u64) -> $crate::CostFigures {
                $cost(event, n, k)
            }

            fn new_session(
                &self,
                config: $crate::SessionConfig,
            ) -> ::std::result::Result<::std::boxed::Box<dyn $crate::Session>, $crate::SessionError>
            {
                $crate::Hosted::<$run>::boxed($name, config)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_cover_the_view_once_each() {
        let view = View {
            view_id: 1,
            members: vec!["a".into(), "b".into(), "c".into()],
            joined: vec![],
            left: vec![],
        };
        let mut sides = Sides::default();
        sides.check(&view, ["a"]).expect("a side");
        assert_eq!(sides.add(&view, ["a".to_owned()], 1), None, "not complete");
        assert!(sides.check(&view, ["x"]).is_err(), "not in the view");
        assert!(sides.check(&view, ["a"]).is_err(), "already covered");
        assert!(sides.check(&view, ["b", "b"]).is_err(), "repeated");
        sides.check(&view, ["b", "c"]).expect("the rest");
        assert_eq!(sides.add(&view, ["b".to_owned(), "c".to_owned()], 2), Some(vec![1, 2]));
    }
}
