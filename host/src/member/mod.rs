//! The sans-IO core of a member: a plugin session, wrapped in signed envelopes, with the group
//! key put to use for application data, live measurements shared with the group, and the
//! agreed protocol switch. The member runtime (tokio, TCP to the daemon) and the in-memory
//! network both drive it; it reads no clock and does no IO itself: time comes in as the
//! `now` argument, a `Duration` since any fixed start.
//!
//! ```text
//!  Delivery (view / message bytes) ─► MemberCore ─► Outgoing (envelope bytes to send)
//!  send_data(plaintext), tick(now) ─►            ─► MemberEvent (views, keys, data, switches,
//!                                                                rejections)
//! ```
//!
//! One file per job: `core.rs` (the state and how it is built), `dispatch.rs` (every input,
//! handed to the part it concerns), `keyring.rs` (data keys and the AEAD), `adoption.rs` (the
//! group's protocol and the payloads held until it is announced), `switch.rs` (the switch's
//! state and transitions), `telemetry.rs` (reports and the policy evaluation), `control.rs`
//! (control messages), `peers.rs` (who is in the key, by certificate), `status.rs` (the snapshot it gives on
//! request) and `events.rs` (what the core emits).
//!
//! - Every plugin payload leaves in an envelope signed by this member and bound to group, view,
//!   epoch, protocol and sequence number; every received envelope is checked against the trust
//!   store first (see [`crate::envelope`]), and refusals are reported and counted, never passed
//!   to the plugin.
//! - Epochs are the host's: `epoch_of(view, n)`, where a new view starts at n = 0 and each
//!   refresh or protocol switch adds one. Every member computes them alike.
//! - Application data is encrypted with ChaCha20-Poly1305 under the newest installed key and
//!   tagged with its epoch; the last [`KEPT_KEYS`] keys are kept, so data sent just before a
//!   rekey still decrypts. Data sent before the first key is refused with an error, and data
//!   under an unknown or forgotten epoch is reported as an event: nothing is dropped silently.
//! - **Which protocol runs.** In every view the oldest (trusted) member announces the protocol
//!   it runs. A member for which that member is new (a joiner, or the other side of a healed
//!   partition) holds the view's protocol messages until the announcement, then runs the
//!   group's protocol, starting a fresh session of it if it ran another one.
//! - **Measurements.** The core probes round trips to a few peers each
//!   [`ControlTiming::probe_every`] and reports its measurements to the group once its key is in
//!   place in a view, then every [`ControlTiming::report_every`].
//! - **Switching** (`switch.rs`, [`SwitchEvent`]): the oldest member evaluates its policy at
//!   quiescent points and proposes; everyone votes; the agreed order decides commit or abort
//!   alike at every member.

mod adoption;
mod confirm;
mod control;
mod core;
mod dispatch;
mod events;
mod keyring;
mod liveness;
mod metered;
mod peers;
mod status;
mod switch;
mod telemetry;
#[cfg(test)]
mod test_support;

pub use self::adoption::{MAX_HELD_BYTES, MAX_HELD_PAYLOADS};
pub use self::confirm::{Confirm, Tag, MAX_RESTARTS_PER_VIEW};
pub use self::control::{
    Control, ControlError, PluginRef, Proposal, SwitchId, Verdict, CONTROL_FORMAT, MAX_CONTROL_BODY,
};
pub use self::core::MemberCore;
pub use self::events::{ControlTiming, MemberError, MemberEvent, Outgoing};
pub use self::keyring::{KEPT_KEYS, MAX_UNECHOED};
pub use self::liveness::{CONFIRM_GAP_DIVISOR, DEADLINE_FACTOR};
pub use self::status::{MemberStatus, RosterEntry};
pub use self::switch::{verdict, Catalogue, CatalogueEntry, SwitchEvent, VoterState};
/// A member's live measurements, as it reports them to the group.
pub use crate::policy::live::Report;
