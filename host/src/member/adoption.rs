//! Protocol adoption: which protocol a member runs. In every view the oldest member announces
//! its protocol; a member that cannot be sure it already runs it (a joiner, the other side of
//! a healed partition) holds the view's protocol payloads until the announcement, then runs the
//! group's protocol, starting a fresh session of it if it ran another one, and replays what it
//! held.

use std::sync::Arc;

use gka_plugin_api::{Protocol, Session, SessionConfig, SessionError};
use rand_core::RngCore;

use super::control::PluginRef;
use super::core::{fresh_view, plugin_now};
use super::events::{MemberError, MemberEvent};
use super::metered::MeteredSession;
use super::switch::{SwitchEvent, SwitchState};
use super::MemberCore;

/// Protocol payloads a member holds while it waits for the group's protocol announcement.
pub const MAX_HELD_PAYLOADS: usize = 4096;

/// Bytes of protocol payloads a member holds while it waits for the announcement.
pub const MAX_HELD_BYTES: usize = 16 << 20;

/// Protocol payloads held until the group's protocol is announced, within the bounds above.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// (sender, protocol, body), in delivery order.
    pub(super) payloads: Vec<(String, String, Vec<u8>)>,
    bytes: usize,
}

impl Held {
    /// Holds one payload; false (and nothing held) once a bound would be passed.
    pub(super) fn push(&mut self, from: &str, protocol: &str, body: &[u8]) -> bool {
        if self.payloads.len() >= MAX_HELD_PAYLOADS || self.bytes + body.len() > MAX_HELD_BYTES {
            return false;
        }
        self.bytes += body.len();
        self.payloads.push((from.to_owned(), protocol.to_owned(), body.to_vec()));
        true
    }
}

impl MemberCore {
    pub(super) fn on_announce(&mut self, from: &str, plugin: PluginRef) -> Result<(), MemberError> {
        if self.leader() != Some(from) {
            self.error(from, "a protocol announcement from a member that is not the oldest".into());
            return Ok(());
        }
        let Some(held) = self.held.take() else {
            // Not waiting: this member went on from the previous view with the oldest member,
            // so they run the same protocol.
            self.announced = plugin.tag() == self.protocol;
            if !self.announced {
                let error =
                    format!("the group runs {}, this member runs {}", plugin.tag(), self.protocol);
                self.error(from, error);
            }
            return Ok(());
        };
        let trusted = self.trusted_view_in_full().expect("an announcement comes in a view");
        // The same protocol: this member's own session goes on (from its state, if it has one).
        if plugin.tag() == self.protocol {
            self.session.handle_view(plugin_now(self.now), &trusted)?;
        } else {
            match self.prepare_session(&plugin) {
                Ok(session) => self.replace_session(session),
                Err(reason) => {
                    let error =
                        format!("cannot run the group's protocol {}: {reason}", plugin.tag());
                    self.error(from, error);
                    self.held = Some(held);
                    return Ok(());
                }
            }
            self.protocol = plugin.tag();
            // A switch this member was finishing belongs to the group it came from.
            self.switch = SwitchState::Stable;
            self.events.push_back(MemberEvent::Switch(SwitchEvent::Adopted {
                protocol: self.protocol.clone(),
            }));
            self.session.handle_view(plugin_now(self.now), &fresh_view(&trusted))?;
        }
        self.announced = true;
        self.drain_session();
        for (sender, protocol, body) in &held.payloads {
            self.on_protocol(sender, protocol, body);
        }
        Ok(())
    }

    /// A fresh session of `plugin`, which must be in the catalogue, the same version and the
    /// same build.
    pub(super) fn replace_session(&mut self, session: Box<dyn Session>) {
        self.retired_exponentiations += self.session.counters().exponentiations;
        self.session = MeteredSession::new(session);
        // A fresh session has nothing queued.
        self.refreshes_queued = 0;
    }

    pub(super) fn next_seed(&mut self) -> [u8; 32] {
        let n = self.sessions_started;
        self.sessions_started += 1;
        match &mut self.seed_source {
            Some(source) => source(n),
            None => {
                let mut seed = [0u8; 32];
                self.rng.fill_bytes(&mut seed);
                seed
            }
        }
    }

    pub(super) fn prepare_session(
        &mut self,
        plugin: &PluginRef,
    ) -> Result<Box<dyn Session>, String> {
        let catalogue = self.catalogue.clone();
        let entry = catalogue.get(&plugin.name).ok_or("no such plugin here")?;
        if entry.plugin.version != plugin.version || entry.plugin.sha256 != plugin.sha256 {
            return Err(format!(
                "this member has {} (sha256 {})",
                entry.plugin.tag(),
                entry.plugin.sha256
            ));
        }
        self.new_session_of(&entry.protocol).map_err(|e| e.to_string())
    }

    /// A new session of `protocol` for this member, seeded from the core's seed source.
    pub(super) fn new_session_of(
        &mut self,
        protocol: &Arc<dyn Protocol>,
    ) -> Result<Box<dyn Session>, SessionError> {
        let seed = self.next_seed();
        protocol.new_session(SessionConfig {
            group_name: self.group.clone(),
            member_id: self.identity.id().to_owned(),
            dh_group: self.dh_group,
            rng_seed: seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_payloads_stop_at_the_count_bound() {
        let mut held = Held::default();
        for _ in 0..MAX_HELD_PAYLOADS {
            assert!(held.push("a", "tgdh@0.1.0", b"x"));
        }
        assert!(!held.push("a", "tgdh@0.1.0", b"x"), "one more is refused");
        assert_eq!(held.payloads.len(), MAX_HELD_PAYLOADS);
    }

    #[test]
    fn held_payloads_stop_at_the_byte_bound() {
        let mut held = Held::default();
        let big = vec![0u8; MAX_HELD_BYTES / 2];
        assert!(held.push("a", "p", &big));
        assert!(held.push("b", "p", &big));
        assert!(!held.push("c", "p", b"x"), "the budget is spent");
        assert!(held.push("c", "p", b""), "an empty payload still fits");
        let senders: Vec<&str> = held.payloads.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(senders, ["a", "b", "c"], "kept in delivery order");
    }
}
