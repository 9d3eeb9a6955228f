//! The member core: one member's sans-IO state machine around a key-agreement session.
//!
//! It signs and checks envelopes, hosts the plugin session, adopts the group's protocol,
//! keeps the data keys and encrypts application data, runs the agreed protocol switch, and
//! probes, reports and evaluates the policy. It does no IO and reads no clock: the runtime
//! (or the simulator) hands it deliveries, the time and randomness, and sends what it emits.

mod control;
mod core;
mod switch;

pub use self::control::{
    Control, ControlError, PluginRef, Proposal, Report, SwitchId, Verdict, CONTROL_FORMAT,
    MAX_CONTROL_BODY,
};
pub use self::core::{
    ControlTiming, MemberCore, MemberError, MemberEvent, Outgoing, KEPT_KEYS, MAX_HELD_BYTES,
    MAX_HELD_PAYLOADS,
};
pub use self::switch::{verdict, Catalogue, CatalogueEntry, SwitchEvent, VoterState};
