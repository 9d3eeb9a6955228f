//! What the member core's unit tests share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gka_plugin_api::{Counters, Output, Session, SessionError, View};

use super::MemberCore;
use crate::envelope::EnvelopeChecker;
use crate::group::Delivery;
use crate::identity::{Identity, Scheme, TrustStore};

/// A session that only records the payloads it is given.
#[derive(Default)]
pub(super) struct Recorder(pub(super) Arc<Mutex<Vec<Vec<u8>>>>);

impl Session for Recorder {
    fn handle_view(&mut self, _: u64, _: &View) -> Result<(), SessionError> {
        Ok(())
    }
    fn handle_payload(&mut self, _: u64, _: &str, p: &[u8]) -> Result<(), SessionError> {
        self.0.lock().unwrap().push(p.to_vec());
        Ok(())
    }
    fn handle_refresh(&mut self, _: u64) -> Result<(), SessionError> {
        Ok(())
    }
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
    fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// A core for `me`, running a [`Recorder`], that trusts every member of `members` and has
/// been handed view 1 with those members.
pub(super) fn core_in_view(me: &str, members: &[&str]) -> MemberCore {
    let mut trust = TrustStore::default();
    let mut mine = None;
    for m in members {
        let identity = Identity::generate(m, Scheme::Ed25519).expect("identity");
        trust.insert(m, identity.public().clone());
        if *m == me {
            mine = Some(identity);
        }
    }
    let identity = mine.expect("me is a member");
    let checker = EnvelopeChecker::new("g", trust);
    let session = Box::new(Recorder::default());
    let mut core = MemberCore::new(identity, "g", "tgdh@0.1.0", session, checker, [9; 32]);
    let view = View {
        view_id: 1,
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        joined: vec![],
        left: vec![],
    };
    let run = crate::group::GroupRun::default();
    core.handle_delivery(Duration::ZERO, Delivery::View { view, run, certificates: Vec::new() })
        .expect("view");
    core
}
