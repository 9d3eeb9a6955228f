//! The member's driver: one task that moves bytes between the core and the group layer,
//! ticks and measures, turns the core's events into metrics and runtime events, and recovers
//! the connection when it ends.

use std::time::Duration;

use gka_plugin_api::ViewEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::factory::CoreFactory;
use super::policy_watch::PolicyWatch;
use super::recovery::{Reconnect, Recovery};
use super::{Command, RuntimeEvent, SAMPLE_EVERY, TICK};
use crate::group::GroupEndpoint;
use crate::identity::access::RulesWatch;
use crate::member::{MemberCore, MemberEvent, Report, SwitchEvent};
use crate::policy::live::ExpCost;
use crate::policy::measure::CpuSampler;
use crate::policy::Decision;

/// Drives one member: its core, its connection, its measurements and metrics.
pub(super) struct Driver {
    core: MemberCore,
    /// What the core is (re)built from.
    factory: CoreFactory,
    events: mpsc::UnboundedSender<RuntimeEvent>,
    start: Instant,
    /// When the running agreement started (view, or switch commit).
    agreement_started: Option<Instant>,
    /// Time spent in the core during the running agreement.
    busy: Duration,
    exps_at_start: u64,
    /// The metrics label of the event the running agreement rekeys for.
    event_kind: &'static str,
    /// Whether the member has had a view yet.
    seen_view: bool,
    exps_seen: u64,
    exp_cost: ExpCost,
    cpu: CpuSampler,
    cpu_load: Option<f64>,
    watch: Option<PolicyWatch>,
    rules_watch: Option<RulesWatch>,
    /// The protocol last exported as active.
    active: Option<String>,
    /// When the delivery being handled reached the runtime.
    delivery_started: Option<Instant>,
    /// Exponentiations before that delivery.
    delivery_exps: u64,
    metrics: crate::metrics::MemberMetrics,
}

async fn flush<E: GroupEndpoint>(core: &mut MemberCore, endpoint: &mut E) -> std::io::Result<()> {
    while let Some(out) = core.poll_outgoing() {
        endpoint.send(out.view_id, out.to, out.bytes).await?;
    }
    Ok(())
}

/// How serving a connection ended.
enum Ended {
    /// The application left.
    Left,
    /// The connection ended, for this reason.
    Lost(String),
}

/// How a recovery ended.
enum Recovered<E> {
    Connected(E, u32),
    Left,
    GaveUp(String),
}

impl Driver {
    pub(super) fn new(
        core: MemberCore,
        factory: CoreFactory,
        watch: Option<PolicyWatch>,
        events: mpsc::UnboundedSender<RuntimeEvent>,
    ) -> Self {
        let exp_ms = factory.calibration.exp_ms;
        let (protocols, reasons) = factory.metric_labels();
        let metrics = crate::metrics::MemberMetrics::new(
            &factory.group,
            factory.identity.id(),
            &protocols,
            &reasons,
        );
        Self {
            metrics,
            core,
            factory,
            events,
            start: Instant::now(),
            agreement_started: None,
            busy: Duration::ZERO,
            exps_at_start: 0,
            event_kind: ViewEvent::Initial.label(),
            seen_view: false,
            exps_seen: 0,
            exp_cost: ExpCost::calibrated(exp_ms),
            cpu: CpuSampler::default(),
            cpu_load: None,
            watch,
            rules_watch: None,
            active: None,
            delivery_started: None,
            delivery_exps: 0,
        }
    }

    /// Watches the access rules (and what they name) for edits.
    pub(super) fn watching_rules(mut self, watch: Option<RulesWatch>) -> Self {
        self.rules_watch = watch;
        self
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn emit(&self, event: RuntimeEvent) {
        let _ = self.events.send(event);
    }

    /// Answers [`Command::Status`].
    fn report_status(&self) {
        self.emit(RuntimeEvent::Status(Box::new(self.core.status())));
    }

    /// Runs the member until it leaves, or its connection ends for good.
    pub(super) async fn run<E: GroupEndpoint>(
        mut self,
        mut connection: E,
        mut reconnect: Option<(Recovery, Reconnect<E>)>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        self.refresh_measurements();
        let last = loop {
            let reason = match self.serve(&mut connection, &mut commands).await {
                Ended::Left => break RuntimeEvent::Stopped("left the group".to_owned()),
                Ended::Lost(reason) => reason,
            };
            let unsent = self.core.unsent();
            self.emit(RuntimeEvent::Disconnected { reason: reason.clone(), unsent });
            let Some((recovery, connect)) = reconnect.as_mut() else {
                break RuntimeEvent::Stopped(reason);
            };
            match self.recover(recovery, connect, &mut commands).await {
                Recovered::Connected(c, attempt) => match self.factory.build() {
                    Ok(core) => {
                        connection = c;
                        self.restart(core);
                        self.emit(RuntimeEvent::Rejoined { attempt });
                    }
                    Err(e) => break RuntimeEvent::Failed(format!("cannot start a session: {e}")),
                },
                Recovered::Left => break RuntimeEvent::Stopped("left the group".to_owned()),
                Recovered::GaveUp(why) => break RuntimeEvent::Failed(why),
            }
        };
        self.emit(last);
    }

    /// A fresh core for a new incarnation: per-agreement bookkeeping starts again.
    fn restart(&mut self, core: MemberCore) {
        self.core = core;
        self.agreement_started = None;
        self.busy = Duration::ZERO;
        self.exps_at_start = 0;
        self.exps_seen = 0;
        self.seen_view = false;
        self.event_kind = ViewEvent::Initial.label();
        self.refresh_measurements();
    }

    /// Waits and rejoins until a join succeeds, the application leaves, or time is up.
    async fn recover<E: GroupEndpoint>(
        &mut self,
        recovery: &Recovery,
        connect: &mut Reconnect<E>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Recovered<E> {
        let started = Instant::now();
        let mut last_error = String::from("no attempt yet");
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let wait = tokio::time::sleep(recovery.delay(attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    command = commands.recv() => match command {
                        Some(Command::Send(_)) => self.emit(RuntimeEvent::NotSent(
                            "reconnecting to the group layer".to_owned(),
                        )),
                        Some(Command::Leave) | None => return Recovered::Left,
                        Some(Command::Status) => self.report_status(),
                    },
                }
            }
            if started.elapsed() >= recovery.give_up_after {
                return Recovered::GaveUp(format!(
                    "could not rejoin the group within {:?} ({} attempts; last: {last_error})",
                    recovery.give_up_after,
                    attempt - 1
                ));
            }
            match connect().await {
                Ok(c) => return Recovered::Connected(c, attempt),
                Err(e) => last_error = e.to_string(),
            }
        }
    }

    /// Serves one connection until the member leaves or the connection ends.
    async fn serve<E: GroupEndpoint>(
        &mut self,
        connection: &mut E,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let mut heartbeat = tokio::time::interval(self.factory.heartbeat);
        let mut tick = tokio::time::interval(TICK);
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                delivery = connection.recv() => {
                    let delivery = match delivery {
                        Ok(Some(d)) => d,
                        Ok(None) => {
                            return Ended::Lost("the group layer closed the connection".to_owned())
                        }
                        Err(e) => return Ended::Lost(format!("group layer error: {e}")),
                    };
                    if let crate::group::Delivery::View { .. } = &delivery {
                        self.agreement_started = Some(Instant::now());
                        self.busy = Duration::ZERO;
                        self.exps_at_start = self.core.exponentiations_total();
                    }
                    let started = Instant::now();
                    self.delivery_started = Some(started);
                    self.delivery_exps = self.core.exponentiations_total();
                    self.core.set_wall_time(time::OffsetDateTime::now_utc());
                    if let Err(e) = self.core.handle_delivery(self.now(), delivery) {
                        self.emit(RuntimeEvent::Member(MemberEvent::ProtocolError {
                            from: self.core.id().to_owned(),
                            error: e.to_string(),
                        }));
                    }
                    self.busy += started.elapsed();
                    self.after_core();
                    self.delivery_started = None;
                }
                command = commands.recv() => match command {
                    Some(Command::Send(data)) => {
                        if let Err(e) = self.core.send_data(&data) {
                            self.emit(RuntimeEvent::NotSent(e.to_string()));
                        }
                    }
                    Some(Command::Leave) | None => {
                        let _ = connection.leave().await;
                        return Ended::Left;
                    }
                    Some(Command::Status) => self.report_status(),
                },
                _ = tick.tick() => {
                    self.core.tick(self.now());
                    self.after_core();
                }
                _ = sample.tick() => {
                    self.refresh_measurements();
                    self.poll_policy();
                    self.poll_rules();
                }
                _ = heartbeat.tick() => {
                    if let Err(e) = connection.heartbeat().await {
                        return Ended::Lost(format!("connection error: {e}"));
                    }
                }
            }
            if let Err(e) = flush(&mut self.core, connection).await {
                return Ended::Lost(format!("connection error: {e}"));
            }
        }
    }

    fn refresh_measurements(&mut self) {
        if let Some(load) = self.cpu.sample() {
            self.cpu_load = Some(load);
        }
        self.core.set_local_measurements(Report {
            cpu_load: self.cpu_load,
            exp_ms: Some(self.exp_cost.ms()),
            sign_ms: Some(self.factory.calibration.sign_ms),
            verify_ms: Some(self.factory.calibration.verify_ms),
            ..Report::default()
        });
        let probes = self.core.probes();
        self.metrics.measurements(
            probes.rtt_median_ms().map(|ms| ms / 1e3),
            probes.bandwidth_mbps(),
            self.cpu_load,
            self.exp_cost.ms() / 1e3,
        );
    }

    fn poll_policy(&mut self) {
        let Some(watch) = &mut self.watch else { return };
        match watch.poll() {
            None => {}
            Some(Ok(policy)) => {
                self.factory.set_policy(policy.clone());
                self.core.set_policy(policy);
            }
            Some(Err(e)) => self.emit(RuntimeEvent::PolicyRejected(e)),
        }
    }

    fn poll_rules(&mut self) {
        let Some(watch) = &mut self.rules_watch else { return };
        match watch.poll() {
            None => {}
            Some(Ok(rules)) => {
                self.factory.set_rules(rules.clone());
                self.core.set_access_rules(rules);
                self.emit(RuntimeEvent::RulesChanged);
            }
            Some(Err(problems)) => self.emit(RuntimeEvent::RulesRejected(problems.join("; "))),
        }
    }

    /// Turns what the core reported into metrics and events.
    fn after_core(&mut self) {
        let protocol = self.core.protocol_name().to_owned();
        if self.active.as_deref() != Some(protocol.as_str()) {
            self.metrics.active_protocol(&protocol, self.active.as_deref());
            self.active = Some(protocol.clone());
        }
        while let Some(e) = self.core.poll_event() {
            match &e {
                MemberEvent::View(v) => {
                    self.metrics.view(v.members.len());
                    self.event_kind = ViewEvent::of(v, !self.seen_view).label();
                    self.seen_view = true;
                }
                MemberEvent::Rejected(r) => self.metrics.rejected(r.label()),
                MemberEvent::KeyConfirmed { .. } => self.metrics.key_confirmation(true),
                MemberEvent::KeyMismatch { .. } => self.metrics.key_confirmation(false),
                MemberEvent::AgreementOverdue { .. } => self.metrics.agreement_overdue(),
                MemberEvent::Excluded { members, .. } => self.metrics.excluded(members.len()),
                MemberEvent::Key { epoch, .. } => {
                    if let Some(t) = self.agreement_started.take() {
                        let latency = t.elapsed();
                        self.metrics.rekey(&protocol, self.event_kind, latency.as_secs_f64());
                        let exps =
                            self.core.exponentiations_total().saturating_sub(self.exps_at_start);
                        self.exp_cost.refine(self.busy, exps);
                        self.emit(RuntimeEvent::RekeyLatency { epoch: *epoch, latency });
                    }
                }
                MemberEvent::Switch(s) => self.on_switch(s),
                _ => {}
            }
            self.emit(RuntimeEvent::Member(e));
        }
        let exps = self.core.exponentiations_total();
        crate::metrics::exponentiations(&protocol, exps.saturating_sub(self.exps_seen));
        self.exps_seen = exps;
    }

    fn on_switch(&mut self, event: &SwitchEvent) {
        match event {
            SwitchEvent::Decided { decision, predictions, .. } => {
                let chosen = match decision {
                    Decision::Switch { to, .. } => to.as_str(),
                    Decision::Stay { .. } => self.core.protocol_name(),
                };
                self.metrics.decision(chosen, decision.label());
                for p in predictions {
                    for (event, ms) in &p.per_event {
                        self.metrics.predicted(&p.protocol, event.name(), ms / 1e3);
                    }
                }
            }
            SwitchEvent::Committed { .. } => {
                // The new session started inside the delivery that committed: its first round
                // counts, from that delivery's start.
                let started = self.delivery_started.unwrap_or_else(Instant::now);
                self.event_kind = "switch";
                self.agreement_started = Some(started);
                self.busy = started.elapsed();
                self.exps_at_start = self.delivery_exps;
            }
            SwitchEvent::Aborted { label, .. } => self.metrics.switch_aborted(label),
            SwitchEvent::Completed { from, to, commit_to_key, .. } => {
                self.metrics.switched(from, to, commit_to_key.as_secs_f64());
            }
            SwitchEvent::Proposed(_)
            | SwitchEvent::Voted { .. }
            | SwitchEvent::Adopted { .. }
            | SwitchEvent::PolicyApplied => {}
        }
    }
}
