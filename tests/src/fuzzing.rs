//! What each fuzz target does with its input, once: `fuzz/fuzz_targets/*.rs` (`cargo +nightly
//! fuzz run NAME`) call these, and `tests/tests/fuzz_corpora.rs` replays every kept input
//! through them on the stable toolchain. Each takes bytes from the network or from a file and
//! must answer with a value or a typed error: a panic is the failure a fuzzer finds.

use std::path::Path;

use gka_plugin_api::{Protocol, Session, SessionConfig, View};

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory of its corpus) and what it runs.
pub const TARGETS: [(&str, Target); 11] = [
    ("daemon_frames", daemon_frames),
    ("envelope", envelope),
    ("control", control),
    ("plugin_payloads", plugin_payloads),
    ("policy", policy),
    ("trace", trace),
    ("topology", topology),
    ("access_rules", access_rules),
    ("certificate", certificate),
    ("revocation_list", revocation_list),
    ("etcd_records", etcd_records),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A frame from a daemon connection, both ways, and the reassembly of views from them.
pub fn daemon_frames(data: &[u8]) {
    use gka_host::net::wire::{decode, ClientMsg, Reassembly, ServerMsg};
    let _ = decode::<ClientMsg>(data);
    if let Ok(msg) = decode::<ServerMsg>(data) {
        let mut reassembly = Reassembly::default();
        let _ = reassembly.push(msg);
    }
}

/// A signed envelope as it arrives (decoded, not yet checked).
pub fn envelope(data: &[u8]) {
    let _ = gka_host::envelope::Envelope::from_bytes(data);
    let _ = gka_host::envelope::Envelope::peek_header(data);
}

/// A member's control message (switch proposals, votes, reports, probes, confirmations).
pub fn control(data: &[u8]) {
    let _ = gka_host::member::Control::from_bytes(data);
}

/// A payload handed to a session of each of the five protocols, in the middle of a join: the
/// first byte picks the protocol and the sender, the rest is the payload.
pub fn plugin_payloads(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else { return };
    let protocols = crate::linked::protocols();
    let protocol = &protocols[usize::from(pick) % protocols.len()];
    let members = ["m0", "m1", "m2", "m3"];
    let from = members[usize::from(pick / 8) % members.len()];
    let mut session = joining_session(&**protocol);
    let _ = session.handle_payload(0, from, payload);
    while session.poll_output().is_some() {}
}

/// A session of `protocol` for member m3, which has just joined m0, m1 and m2.
fn joining_session(protocol: &dyn Protocol) -> Box<dyn Session> {
    let config = SessionConfig {
        group_name: "fuzz".into(),
        member_id: "m3".into(),
        dh_group: gka_plugin_api::GroupId::Ffdhe2048,
        rng_seed: [7; 32],
    };
    let mut session = protocol.new_session(config).expect("a session");
    let members: Vec<String> = ["m0", "m1", "m2", "m3"].map(String::from).to_vec();
    let view = View { view_id: 1, members: members.clone(), joined: members, left: vec![] };
    session.handle_view(0, &view).expect("a valid view");
    while session.poll_output().is_some() {}
    session
}

/// A policy file.
pub fn policy(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = gka_host::policy::Policy::parse(text, &gka_host::policy::KNOWN_PROTOCOLS);
    }
}

/// A trace for `gka bench adaptive`.
pub fn trace(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = gka_sim::trace::Trace::parse(text);
    }
}

/// A network topology file.
pub fn topology(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = gka_sim::Topology::parse(text);
    }
}

/// An access rules file (the CA files it names do not exist: their absence is an error too).
pub fn access_rules(data: &[u8]) {
    if let Some(text) = text(data) {
        let base = Path::new("/nonexistent-gka-fuzz");
        let _ = gka_host::identity::access::AccessRules::parse(text, base);
    }
}

/// A member certificate, as DER and inside PEM.
pub fn certificate(data: &[u8]) {
    let _ = gka_host::identity::cert::read_cert(data);
    if let Some(text) = text(data) {
        if let Ok(der) = gka_host::identity::cert::der_of_pem(text, "CERTIFICATE") {
            let _ = gka_host::identity::cert::read_cert(&der);
        }
    }
}

/// A domain's revocation list (DER).
pub fn revocation_list(data: &[u8]) {
    let _ = gka_host::identity::cert::read_crl(data);
}

/// The records a member reads from etcd: a member record, a view record, a message.
pub fn etcd_records(data: &[u8]) {
    use gka_host::group::etcd::layout::{MemberRecord, MessageRecord, ViewRecord};
    let _ = MemberRecord::decode(data, "m1");
    let _ = ViewRecord::decode(data);
    let _ = MessageRecord::decode(data);
}
