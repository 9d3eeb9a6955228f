//! Each runtime event as one [`Line`]: its kind, its fields (the `--json` form) and its text
//! (the form people read). Both outputs come from here, so they never say different things.

use gka_host::member::{MemberEvent, MemberStatus, SwitchEvent};
use gka_host::policy::Decision;
use gka_host::runtime::RuntimeEvent;
use gka_plugin_api::EpochLabel;
use serde_json::{json, Map, Value};

/// One thing to print.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    /// The `event` field of the JSON form: `view`, `key`, `message`, `switch`, `rejection`,
    /// `decision`, ...
    pub(super) kind: &'static str,
    /// The text form (without time and member id).
    pub(super) text: String,
    /// The JSON form's other fields.
    pub(super) fields: Map<String, Value>,
}

impl Line {
    pub(super) fn new(kind: &'static str, text: String, fields: Value) -> Self {
        let fields = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self { kind, text, fields }
    }
}

/// An epoch's JSON fields: `epoch` as `view.n`, and its parts.
fn epoch_fields(epoch: u64) -> Value {
    let label = EpochLabel(epoch);
    json!({ "epoch": label.to_string(), "view": label.view_id(), "n": label.n() })
}

fn merged(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

/// A policy decision.
pub(super) fn decision(decision: &Decision) -> Line {
    match decision {
        Decision::Stay { reason, label } => Line::new(
            "decision",
            format!("policy: stay ({reason})"),
            json!({ "decision": "stay", "label": label, "reason": reason }),
        ),
        Decision::Switch { to, reason, gain, label } => Line::new(
            "decision",
            format!("policy: switch to {to} ({reason}; predicted gain {:.0}%)", gain * 100.0),
            json!({ "decision": "switch", "to": to, "label": label, "reason": reason, "gain": gain }),
        ),
    }
}

fn switch(s: &SwitchEvent) -> Line {
    let line = |step: &str, text: String, fields: Value| {
        Line::new("switch", text, merged(json!({ "step": step }), fields))
    };
    match s {
        SwitchEvent::Decided { decision: d, .. } => decision(d),
        SwitchEvent::Proposed(p) => line(
            "proposed",
            format!("switch {} proposed: {} -> {} ({})", p.id, p.from, p.to.tag(), p.reason),
            json!({ "id": p.id.to_string(), "from": p.from, "to": p.to.tag(), "reason": p.reason }),
        ),
        SwitchEvent::Voted { id, verdict } => line(
            "voted",
            format!("voted on {id}: {verdict:?}"),
            json!({ "id": id.to_string(), "verdict": format!("{verdict:?}") }),
        ),
        SwitchEvent::Committed { id, to } => line(
            "committed",
            format!("switch {id} to {to} committed"),
            json!({ "id": id.to_string(), "to": to }),
        ),
        SwitchEvent::Aborted { id, reason, label } => line(
            "aborted",
            format!("switch {id} aborted: {reason}"),
            json!({ "id": id.to_string(), "reason": reason, "label": label }),
        ),
        SwitchEvent::Completed { from, to, epoch, commit_to_key, label, .. } => line(
            "completed",
            format!(
                "switched {from} -> {to}: key {}, {:.1} ms from commit to key",
                EpochLabel(*epoch),
                commit_to_key.as_secs_f64() * 1e3
            ),
            merged(
                json!({ "from": from, "to": to, "label": label,
                        "commit_to_key_ms": commit_to_key.as_secs_f64() * 1e3 }),
                epoch_fields(*epoch),
            ),
        ),
        SwitchEvent::Adopted { protocol } => line(
            "adopted",
            format!("runs the group's protocol {protocol}"),
            json!({ "protocol": protocol }),
        ),
        SwitchEvent::PolicyApplied => {
            line("policy_applied", "new policy in force".into(), json!({}))
        }
    }
}

fn member_event(e: &MemberEvent) -> Option<Line> {
    Some(match e {
        MemberEvent::View(v) => Line::new(
            "view",
            format!(
                "view {} members {:?} joined {:?} left {:?}",
                v.view_id, v.members, v.joined, v.left
            ),
            json!({ "view": v.view_id, "members": v.members, "joined": v.joined, "left": v.left }),
        ),
        MemberEvent::Key { epoch, fingerprint, protocol, run } => Line::new(
            "key",
            format!("key {} fingerprint {fingerprint} ({protocol}) run {run}", EpochLabel(*epoch)),
            merged(
                json!({ "fingerprint": fingerprint, "protocol": protocol, "run": run.to_string() }),
                epoch_fields(*epoch),
            ),
        ),
        MemberEvent::Data { from, epoch, plaintext } => {
            let text = String::from_utf8_lossy(plaintext);
            Line::new(
                "message",
                format!("{from} ({}): {text}", EpochLabel(*epoch)),
                merged(json!({ "from": from, "text": text }), epoch_fields(*epoch)),
            )
        }
        MemberEvent::Switch(s) => switch(s),
        MemberEvent::Rejected(r) => Line::new(
            "rejection",
            format!("rejected ({}): {r}", r.label()),
            json!({ "label": r.label(), "reason": r.to_string() }),
        ),
        MemberEvent::ProtocolError { from, error } => Line::new(
            "protocol_error",
            format!("protocol error from {from}: {error}"),
            json!({ "from": from, "error": error }),
        ),
        MemberEvent::Undecryptable { from, epoch, reason } => Line::new(
            "undecryptable",
            format!("undecryptable from {from} ({}): {reason}", EpochLabel(*epoch)),
            merged(json!({ "from": from, "reason": reason }), epoch_fields(*epoch)),
        ),
        MemberEvent::RevocationApplied { domain, number, from } => Line::new(
            "revocation",
            format!("revocation list {number} of domain {domain} in force (sent by {from})"),
            json!({ "domain": domain, "number": number, "from": from }),
        ),
        MemberEvent::Resent { count } => Line::new(
            "resent",
            format!("sent again under the new key: {count} line(s) a view change cut"),
            json!({ "count": count }),
        ),
        MemberEvent::NotResent { count } => Line::new(
            "not_sent",
            format!("not sent: {count} line(s) a view change cut (members joined)"),
            json!({ "count": count, "reason": "members joined" }),
        ),
        MemberEvent::KeyConfirmed { .. } => return None,
        MemberEvent::NotInKey { members } => {
            let list: Vec<String> = members.iter().map(|(m, why)| format!("{m} ({why})")).collect();
            let rows: Vec<Value> =
                members.iter().map(|(m, why)| json!({ "member": m, "reason": why })).collect();
            Line::new(
                "not_in_key",
                format!("not in the key: {}", list.join(", ")),
                json!({ "members": rows }),
            )
        }
        MemberEvent::AgreementOverdue { epoch, waited, silent } => Line::new(
            "agreement_overdue",
            format!(
                "agreement for {} overdue after {:.1} s; silent: {silent:?}",
                EpochLabel(*epoch),
                waited.as_secs_f64()
            ),
            merged(
                json!({ "waited_s": waited.as_secs_f64(), "silent": silent }),
                epoch_fields(*epoch),
            ),
        ),
        MemberEvent::Excluded { epoch, members } => Line::new(
            "excluded",
            format!(
                "excluded for stalling {}: {members:?}; agreeing without them",
                EpochLabel(*epoch)
            ),
            merged(json!({ "members": members }), epoch_fields(*epoch)),
        ),
        MemberEvent::KeyMismatch { epoch, diverging, restarted } => {
            let next = if *restarted { "a fresh agreement starts" } else { "no more restarts" };
            Line::new(
                "key_mismatch",
                format!(
                    "KEY MISMATCH at {}: {diverging:?} hold another key; {next}",
                    EpochLabel(*epoch)
                ),
                merged(
                    json!({ "diverging": diverging, "restarted": restarted }),
                    epoch_fields(*epoch),
                ),
            )
        }
    })
}

/// The line an event prints, if it prints one.
pub(super) fn event(e: &RuntimeEvent) -> Option<Line> {
    Some(match e {
        RuntimeEvent::Member(m) => return member_event(m),
        RuntimeEvent::RekeyLatency { epoch, latency } => Line::new(
            "rekey",
            format!("rekey to {} took {:.1} ms", EpochLabel(*epoch), latency.as_secs_f64() * 1e3),
            merged(json!({ "ms": latency.as_secs_f64() * 1e3 }), epoch_fields(*epoch)),
        ),
        RuntimeEvent::NotSent(reason) => Line::new(
            "not_sent",
            format!("not sent: {reason}"),
            json!({ "count": 1, "reason": reason }),
        ),
        RuntimeEvent::PolicyRejected(e) => Line::new(
            "policy_rejected",
            format!("policy edit rejected: {e}"),
            json!({ "reason": e }),
        ),
        RuntimeEvent::RulesChanged => {
            Line::new("rules_reloaded", "access rules reloaded".into(), json!({}))
        }
        RuntimeEvent::RulesRejected(e) => Line::new(
            "rules_rejected",
            format!("access rules edit rejected, the previous rules stay: {e}"),
            json!({ "reason": e }),
        ),
        RuntimeEvent::Disconnected { reason, unsent } => Line::new(
            "disconnected",
            format!("disconnected: {reason}; {unsent} line(s) not delivered; rejoining"),
            json!({ "reason": reason, "unsent": unsent }),
        ),
        RuntimeEvent::Rejoined { attempt } => Line::new(
            "rejoined",
            format!("rejoined as a new incarnation (attempt {attempt})"),
            json!({ "attempt": attempt }),
        ),
        RuntimeEvent::Stopped(reason) => {
            Line::new("stopped", format!("stopped: {reason}"), json!({ "reason": reason }))
        }
        RuntimeEvent::Failed(reason) => {
            Line::new("gave_up", format!("gave up: {reason}"), json!({ "reason": reason }))
        }
        RuntimeEvent::Status(_) => return None,
    })
}

/// `/who`.
pub(super) fn who(status: &MemberStatus) -> Line {
    let view = status.view_id.map_or("no view yet".to_owned(), |v| format!("view {v}"));
    let rows: Vec<String> = status
        .members
        .iter()
        .map(|m| {
            let domain = m.domain.as_deref().map(|d| format!(", domain {d}")).unwrap_or_default();
            let key = if m.in_key { "in the key" } else { "NOT in the key" };
            format!("{} ({key}{domain})", m.id)
        })
        .collect();
    Line::new(
        "who",
        format!("{view}: {}", rows.join("; ")),
        json!({ "view": status.view_id, "members": status.members }),
    )
}

/// `/key`.
pub(super) fn key(status: &MemberStatus) -> Line {
    match (status.epoch, &status.fingerprint) {
        (Some(epoch), Some(fp)) => {
            let running =
                if status.agreement_running { "; a new agreement is running" } else { "" };
            Line::new(
                "key_info",
                format!(
                    "key {} fingerprint {fp} ({}){running}",
                    EpochLabel(epoch),
                    status.protocol
                ),
                merged(
                    json!({ "fingerprint": fp, "protocol": status.protocol,
                            "agreement_running": status.agreement_running }),
                    epoch_fields(epoch),
                ),
            )
        }
        _ => Line::new(
            "key_info",
            format!("no key yet ({})", status.protocol),
            json!({ "epoch": null, "protocol": status.protocol,
                    "agreement_running": status.agreement_running }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_view_dot_n_in_both_forms() {
        let e = RuntimeEvent::Member(MemberEvent::Key {
            epoch: gka_plugin_api::epoch_of(3, 1),
            fingerprint: "ab12".into(),
            protocol: "tgdh@0.3.0".into(),
            run: gka_host::group::GroupRun::default(),
        });
        let line = event(&e).expect("a key prints");
        assert_eq!(line.kind, "key");
        assert!(line.text.starts_with("key 3.1 fingerprint ab12 (tgdh@0.3.0)"), "{}", line.text);
        assert_eq!(line.fields["epoch"], "3.1");
        assert_eq!((line.fields["view"].as_u64(), line.fields["n"].as_u64()), (Some(3), Some(1)));
    }
}
