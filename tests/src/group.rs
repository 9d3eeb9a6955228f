//! A group of member runtimes for integration tests, over the daemon, etcd or the in-memory
//! network: identities and a trust store for a list of names, members spawned with common
//! settings, and every member's events folded into what tests ask about (its view, key,
//! protocol, data, switches), with bounded waits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gka_host::group::{EtcdConfig, MemGroup, Timing};
use gka_host::identity::{Identity, TrustStore};
use gka_host::member::{Catalogue, ControlTiming, MemberEvent, SwitchEvent};
use gka_host::net::{Daemon, DaemonAccess, DaemonConfig};
use gka_host::policy::measure::Calibration;
use gka_host::policy::Policy;
use gka_host::runtime::{
    spawn_member, spawn_member_etcd, spawn_member_on, Command, MemberConfig, MemberHandle,
    Recovery, RuntimeEvent, Switching,
};
use gka_plugin_api::{GroupId, Protocol};
use tokio::time::Instant;

/// A test identity: an Ed25519 key fixed by the name, so a daemon and the members a test
/// spawns later agree on it without passing keys around.
pub fn identity(name: &str) -> Identity {
    use sha2::{Digest, Sha256};
    let seed: [u8; 32] = Sha256::digest(format!("gka test identity {name}")).into();
    Identity::ed25519_from_seed(name, seed).expect("a valid member id")
}

/// Identities for `names` (see [`identity`]), and a trust store holding all of them.
pub fn identities(names: &[&str]) -> (Vec<Identity>, TrustStore) {
    let identities: Vec<Identity> = names.iter().map(|n| identity(n)).collect();
    let mut trust = TrustStore::default();
    for i in &identities {
        trust.insert(i.id(), i.public().clone());
    }
    (identities, trust)
}

/// The identity tests inject faults with: an operator at the daemons of [`daemon`].
pub fn operator() -> Identity {
    identity("test-operator")
}

/// A daemon on a free loopback port with a 20 ms batching window, a 5 ms tick and the given
/// failure timeout, admitting `names` (see [`identity`]) and taking faults from [`operator`].
pub async fn daemon(failure_timeout: Duration, names: &[&str]) -> Daemon {
    daemon_on("127.0.0.1:0", failure_timeout, names).await.expect("a daemon on loopback")
}

/// As [`daemon`], on `addr` (a loopback address a test chose, for a restart on the same port).
pub async fn daemon_on(
    addr: &str,
    failure_timeout: Duration,
    names: &[&str],
) -> std::io::Result<Daemon> {
    let mut access = DaemonAccess { members: identities(names).1, ..DaemonAccess::default() };
    access.operators.insert(operator().id(), operator().public().clone());
    let timing = Timing {
        batch_ms: 20,
        failure_timeout_ms: failure_timeout.as_millis().try_into().expect("a short timeout"),
    };
    Daemon::start(
        addr,
        DaemonConfig {
            timing,
            tick: Duration::from_millis(5),
            access,
            allow_control: true,
            ..DaemonConfig::default()
        },
    )
    .await
}

/// Switching settings that decide within a second: probes and evaluations every 200 ms,
/// reports every 300 ms, and fixed operation costs (no calibration run).
pub fn fast_switching(
    catalogue: Arc<Catalogue>,
    policy: Policy,
    policy_file: Option<PathBuf>,
) -> Switching {
    Switching {
        catalogue,
        policy: Some(policy),
        policy_file,
        timing: ControlTiming {
            probe_every: Duration::from_millis(200),
            report_every: Duration::from_millis(300),
            evaluate_every: Duration::from_millis(200),
            ..ControlTiming::default()
        },
        calibration: Some(Calibration { exp_ms: 0.5, sign_ms: 0.02, verify_ms: 0.05 }),
    }
}

/// One member as a test sees it: what its events said so far.
#[derive(Debug)]
pub struct Watched {
    /// The running member.
    pub handle: MemberHandle,
    /// Members in its last view.
    pub view_size: usize,
    /// Its key in that view (epoch, fingerprint), if any yet.
    pub key: Option<(u64, String)>,
    /// The protocol of its last key (`name@version`).
    pub protocol: String,
    /// The application data it decrypted, in order.
    pub received: Vec<Vec<u8>>,
    /// Switches it completed.
    pub switches: usize,
    /// Switches it saw aborted.
    pub aborts: usize,
    /// Policy edits it refused, with their reasons.
    pub policy_rejected: Vec<String>,
    /// Times its connection to the group layer ended.
    pub disconnects: usize,
    /// Times it rejoined after that.
    pub rejoins: usize,
    /// Why it gave up recovering, if it did.
    pub failed: Option<String>,
}

impl Watched {
    fn new(handle: MemberHandle) -> Self {
        Self {
            handle,
            view_size: 0,
            key: None,
            protocol: String::new(),
            received: Vec::new(),
            switches: 0,
            aborts: 0,
            policy_rejected: Vec::new(),
            disconnects: 0,
            rejoins: 0,
            failed: None,
        }
    }

    /// Folds every event that arrived. Panics on what no test expects: a stopped member, data
    /// that does not decrypt, or a refused envelope.
    pub fn pump(&mut self, name: &str) {
        while let Ok(e) = self.handle.events.try_recv() {
            match e {
                RuntimeEvent::Member(MemberEvent::View(v)) => {
                    self.view_size = v.members.len();
                    self.key = None;
                }
                RuntimeEvent::Member(MemberEvent::Key { epoch, fingerprint, protocol, .. }) => {
                    self.key = Some((epoch, fingerprint));
                    self.protocol = protocol;
                }
                RuntimeEvent::Member(MemberEvent::Data { plaintext, .. }) => {
                    self.received.push(plaintext)
                }
                RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Completed { .. })) => {
                    self.switches += 1
                }
                RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Aborted { .. })) => {
                    self.aborts += 1
                }
                RuntimeEvent::Member(MemberEvent::Undecryptable { reason, .. }) => {
                    panic!("{name}: undecryptable: {reason}")
                }
                RuntimeEvent::Member(MemberEvent::Rejected(r)) => panic!("{name}: rejected {r}"),
                RuntimeEvent::PolicyRejected(e) => self.policy_rejected.push(e),
                RuntimeEvent::Disconnected { .. } => {
                    // What it held belongs to the ended connection's group run.
                    self.disconnects += 1;
                    self.view_size = 0;
                    self.key = None;
                }
                RuntimeEvent::Rejoined { .. } => self.rejoins += 1,
                RuntimeEvent::Failed(r) => self.failed = Some(r),
                RuntimeEvent::Stopped(r) => panic!("{name} stopped: {r}"),
                _ => {}
            }
        }
    }

    /// Whether it runs `protocol` (a name, without version).
    pub fn runs(&self, protocol: &str) -> bool {
        self.protocol.split('@').next() == Some(protocol)
    }

    /// Sends `bytes` to the group, encrypted.
    pub fn send(&self, bytes: &[u8]) {
        self.handle.commands.send(Command::Send(bytes.to_vec())).expect("the member runs");
    }
}

/// A group of member runtimes, by name.
#[derive(Debug, Default)]
pub struct TestGroup {
    /// The members.
    pub members: BTreeMap<String, Watched>,
}

/// What a member runs: its protocol and its switching settings, if any.
pub type MemberSetup = (Arc<dyn Protocol>, Option<Switching>);

/// Each member's name and runtime settings: identities for `names`, all trusted, each set up
/// by `setup`.
fn configs(
    group: &str,
    names: &[&str],
    setup: impl Fn(&str) -> MemberSetup,
    recovery: Option<Recovery>,
) -> Vec<(String, MemberConfig)> {
    let (identities, trust) = identities(names);
    identities
        .into_iter()
        .map(|identity| {
            let name = identity.id().to_owned();
            let (protocol, switching) = setup(&name);
            let config = MemberConfig {
                group: group.into(),
                identity,
                peers: trust.clone().into(),
                protocol,
                dh_group: GroupId::Ffdhe2048,
                heartbeat: Duration::from_millis(50),
                switching,
                recovery,
                certificate: None,
            };
            (name, config)
        })
        .collect()
}

impl TestGroup {
    /// Members `names` of `group` over the daemon at `daemon`, each set up by `setup`; they
    /// stop when their connection ends.
    pub async fn over_daemon(
        daemon: SocketAddr,
        group: &str,
        names: &[&str],
        setup: impl Fn(&str) -> MemberSetup,
    ) -> Self {
        Self::over_daemon_recovering(daemon, group, names, setup, None).await
    }

    /// As [`Self::over_daemon`], recovering their connections with `recovery`.
    pub async fn over_daemon_recovering(
        daemon: SocketAddr,
        group: &str,
        names: &[&str],
        setup: impl Fn(&str) -> MemberSetup,
        recovery: Option<Recovery>,
    ) -> Self {
        let daemon = daemon.to_string();
        Self::spawned(configs(group, names, setup, recovery), |c| spawn_member(&daemon, c)).await
    }

    /// Members spawned one after another by `spawn`.
    async fn spawned<F>(
        configs: Vec<(String, MemberConfig)>,
        spawn: impl Fn(MemberConfig) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = std::io::Result<MemberHandle>>,
    {
        let mut members = BTreeMap::new();
        for (name, config) in configs {
            let handle = spawn(config).await.expect("a member");
            members.insert(name, Watched::new(handle));
        }
        Self { members }
    }

    /// Members `names` of `group` over the etcd cluster `etcd`, each set up by `setup`, joined
    /// one after another, recovering with `recovery`.
    pub async fn over_etcd(
        etcd: &EtcdConfig,
        group: &str,
        names: &[&str],
        setup: impl Fn(&str) -> MemberSetup,
        recovery: Option<Recovery>,
    ) -> Self {
        Self::spawned(configs(group, names, setup, recovery), |c| spawn_member_etcd(etcd, c)).await
    }

    /// Members `names` of `group` over the in-memory network `net`, each set up by `setup`.
    pub fn over_memnet(
        net: &MemGroup,
        group: &str,
        names: &[&str],
        setup: impl Fn(&str) -> MemberSetup,
    ) -> Self {
        let mut members = BTreeMap::new();
        for (name, config) in configs(group, names, setup, None) {
            let endpoint = net.connect(&name).expect("a member joins");
            let handle = spawn_member_on(endpoint, config).expect("a member");
            members.insert(name, Watched::new(handle));
        }
        Self { members }
    }

    /// Folds every member's events.
    pub fn pump(&mut self) {
        for (name, m) in self.members.iter_mut() {
            m.pump(name);
        }
    }

    /// Waits (polling every 5 ms of tokio time, at most `timeout`) until `done` holds.
    ///
    /// # Panics
    ///
    /// When the time is up, naming `what`.
    pub async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&BTreeMap<String, Watched>) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if done(&self.members) {
                return;
            }
            assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every member is in a view of `size` and holds one key; returns it.
    pub async fn agreed(&mut self, size: usize) -> (u64, String) {
        self.wait(&format!("one key in a view of {size}"), Duration::from_secs(20), |m| {
            one_key(m).is_some() && m.values().all(|w| w.view_size == size)
        })
        .await;
        one_key(&self.members).expect("checked")
    }

    /// Tells every member to leave.
    pub fn leave_all(&self) {
        for m in self.members.values() {
            let _ = m.handle.commands.send(Command::Leave);
        }
    }
}

/// The key every member holds, if they all hold the same one.
pub fn one_key(members: &BTreeMap<String, Watched>) -> Option<(u64, String)> {
    let first = members.values().next()?.key.clone()?;
    members.values().all(|m| m.key.as_ref() == Some(&first)).then_some(first)
}
