//! Builds a member's core from its settings: once at start, and again for each new
//! incarnation after a reconnect (a fresh session, nothing carried over but the settings and
//! the newest valid policy).

use std::sync::Arc;

use gka_plugin_api::{GroupId, Protocol, SessionConfig};
use rand_core::{OsRng, RngCore};

use super::{MemberConfig, Peers, Switching};
use crate::envelope::EnvelopeChecker;
use crate::identity::access::AccessRules;
use crate::identity::{Identity, TrustStore};
use crate::member::{Catalogue, ControlTiming, MemberCore};
use crate::policy::measure::Calibration;
use crate::policy::Policy;

/// Everything a member core is built from.
pub(super) struct CoreFactory {
    pub(super) group: String,
    pub(super) identity: Arc<Identity>,
    peers: Peers,
    protocol: Arc<dyn Protocol>,
    dh_group: GroupId,
    catalogue: Option<(Arc<Catalogue>, ControlTiming)>,
    policy: Option<Policy>,
    pub(super) calibration: Calibration,
    /// How often to prove liveness to the group layer.
    pub(super) heartbeat: std::time::Duration,
}

impl CoreFactory {
    /// Takes the settings apart (and calibrates the operation costs once, if switching needs
    /// them and none were given).
    pub(super) fn new(config: MemberConfig) -> (Self, Option<Switching>) {
        let calibration = match &config.switching {
            Some(Switching { calibration: Some(c), .. }) => *c,
            Some(_) => crate::policy::measure::calibrate_with(config.dh_group, &config.identity, 4),
            // Without switching, measurements only feed metrics: the policy's defaults will do.
            None => {
                let d = crate::policy::Inputs::default();
                Calibration { exp_ms: d.exp_ms, sign_ms: d.sign_ms, verify_ms: d.verify_ms }
            }
        };
        let factory = Self {
            group: config.group,
            identity: Arc::new(config.identity),
            peers: config.peers,
            protocol: config.protocol,
            dh_group: config.dh_group,
            catalogue: config.switching.as_ref().map(|s| (s.catalogue.clone(), s.timing)),
            policy: config.switching.as_ref().and_then(|s| s.policy.clone()),
            calibration,
            heartbeat: config.heartbeat,
        };
        (factory, config.switching)
    }

    /// The label values this member's metrics start with: the protocols it may run, and its
    /// policy's switch reasons (none without a policy).
    pub(super) fn metric_labels(&self) -> (Vec<String>, Vec<String>) {
        let mut protocols = match &self.catalogue {
            Some((catalogue, _)) => catalogue.names(),
            None => Vec::new(),
        };
        let own = self.protocol.descriptor().name;
        if !protocols.contains(&own) {
            protocols.push(own);
        }
        let reasons = self.policy.as_ref().map_or_else(Vec::new, |policy| {
            let fixed = ["fixed", "cost", "not_allowed"].map(str::to_owned);
            fixed
                .into_iter()
                .chain(policy.rules.iter().map(|r| format!("rule:{}", r.name)))
                .collect()
        });
        (protocols, reasons)
    }

    /// How the member knows its peers (with the newest valid rules).
    pub(super) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The newest valid access rules, for cores built from now on.
    pub(super) fn set_rules(&mut self, new: AccessRules) {
        if let Peers::Certificates { rules, .. } = &mut self.peers {
            *rules = new;
        }
    }

    /// The newest valid policy, for cores built from now on.
    pub(super) fn set_policy(&mut self, policy: Policy) {
        self.policy = Some(policy);
    }

    /// A fresh core: a new session of the starting protocol, seeded from the operating system.
    pub(super) fn build(&self) -> std::io::Result<MemberCore> {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let session = self
            .protocol
            .new_session(SessionConfig {
                group_name: self.group.clone(),
                member_id: self.identity.id().to_owned(),
                dh_group: self.dh_group,
                rng_seed: seed,
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let descriptor = self.protocol.descriptor();
        let protocol = format!("{}@{}", descriptor.name, descriptor.version);
        let trust = match &self.peers {
            Peers::Keys(trust) => trust.clone(),
            Peers::Certificates { .. } => TrustStore::default(),
        };
        let checker = EnvelopeChecker::new(&self.group, trust);
        let mut core_seed = [0u8; 32];
        OsRng.fill_bytes(&mut core_seed);
        let mut core = MemberCore::new(
            self.identity.clone(),
            &self.group,
            &protocol,
            session,
            checker,
            core_seed,
        )
        .with_protocol(self.protocol.clone());
        if let Peers::Certificates { rules, .. } = &self.peers {
            core = core.with_access_rules(rules.clone(), time::OffsetDateTime::now_utc());
        }
        if let Some((catalogue, timing)) = &self.catalogue {
            core = core.with_catalogue(catalogue.clone(), self.dh_group).with_timing(*timing);
            if let Some(p) = &self.policy {
                core = core.with_policy(p.clone());
            }
        }
        Ok(core)
    }
}
