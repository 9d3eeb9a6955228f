//! The interactive side of `gka member`: stdin lines go to the group or are commands, and
//! every event is printed, as text or as one JSON object per line.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use gka_host::member::{MemberEvent, MemberStatus, SwitchEvent};
use gka_host::policy::Decision;
use gka_host::runtime::{Command, MemberHandle, RuntimeEvent};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::describe::{self, Line};
use super::input::{Input, COMMANDS};
use crate::ratelimit::{LineLimit, WINDOW};

/// How long a member that leaves waits for the group layer to confirm it.
const LEAVE_WAIT: Duration = Duration::from_secs(10);

/// How a member's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ended {
    /// It left on request (Ctrl-D, `/quit`, SIGINT or SIGTERM).
    Left,
    /// It lost the group and gave up rejoining.
    GaveUp(String),
}

/// Where lines go: text (`HH:MM:SS.mmm [id] ...`, UTC) or JSON objects, one per line.
#[derive(Debug)]
pub(super) struct Printer {
    pub(super) id: String,
    pub(super) json: bool,
}

impl Printer {
    pub(super) fn print(&self, line: &Line) {
        let now = time::OffsetDateTime::now_utc();
        let text = if self.json {
            let mut object = serde_json::Map::new();
            let stamp = now.format(&time::format_description::well_known::Rfc3339);
            object.insert("time".into(), json!(stamp.unwrap_or_default()));
            object.insert("member".into(), json!(self.id));
            object.insert("event".into(), json!(line.kind));
            object.extend(line.fields.clone());
            Value::Object(object).to_string()
        } else {
            let (h, m, s) = now.to_hms();
            format!("{h:02}:{m:02}:{s:02}.{:03} [{}] {}", now.millisecond(), self.id, line.text)
        };
        let mut out = std::io::stdout().lock();
        // A reader that went away (`| head`) ends nothing here: the member still leaves
        // cleanly on Ctrl-D or a signal.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }

    fn say(&self, kind: &'static str, text: String, fields: Value) {
        self.print(&Line::new(kind, text, fields));
    }
}

/// What `/stats` counts beyond the member's own status.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    not_sent: u64,
    received: u64,
    views: u64,
    keys: u64,
    last_rekey_ms: Option<f64>,
    refused: u64,
}

impl Tally {
    fn count(&mut self, e: &RuntimeEvent) {
        match e {
            RuntimeEvent::Member(MemberEvent::Data { .. }) => self.received += 1,
            RuntimeEvent::Member(MemberEvent::View(_)) => self.views += 1,
            RuntimeEvent::Member(MemberEvent::Key { .. }) => self.keys += 1,
            RuntimeEvent::Member(
                MemberEvent::Rejected(_)
                | MemberEvent::ProtocolError { .. }
                | MemberEvent::Undecryptable { .. },
            ) => self.refused += 1,
            RuntimeEvent::NotSent(_) => self.not_sent += 1,
            RuntimeEvent::Member(MemberEvent::NotResent { count }) => {
                self.not_sent += *count as u64
            }
            RuntimeEvent::RekeyLatency { latency, .. } => {
                self.last_rekey_ms = Some(latency.as_secs_f64() * 1e3)
            }
            _ => {}
        }
    }

    fn line(&self, status: &MemberStatus, uptime: Duration) -> Line {
        let rekey = self.last_rekey_ms.map_or("none yet".to_owned(), |ms| format!("{ms:.1} ms"));
        Line::new(
            "stats",
            format!(
                "up {:.0} s; lines sent {} (not sent {}), received {}; views {}, keys {}, last \
                 rekey {rekey}; refused {}; envelopes signed {}, checked {}; exponentiations {}; \
                 in flight {}",
                uptime.as_secs_f64(),
                self.sent,
                self.not_sent,
                self.received,
                self.views,
                self.keys,
                self.refused,
                status.signed,
                status.verified,
                status.exponentiations,
                status.unsent,
            ),
            json!({
                "uptime_s": uptime.as_secs_f64(), "sent": self.sent, "not_sent": self.not_sent,
                "received": self.received, "views": self.views, "keys": self.keys,
                "last_rekey_ms": self.last_rekey_ms, "refused": self.refused,
                "signed": status.signed, "verified": status.verified,
                "exponentiations": status.exponentiations, "in_flight": status.unsent,
            }),
        )
    }
}

/// Which command a status answer is for (answers come in the order asked).
#[derive(Debug, Clone, Copy)]
enum Query {
    Who,
    Key,
    Stats,
}

/// Runs the session until the member leaves or gives up.
pub(super) async fn run(mut handle: MemberHandle, printer: Printer) -> anyhow::Result<Ended> {
    if std::io::stdin().is_terminal() && !printer.json {
        eprintln!("type a line to send it to the group; /help lists the commands; Ctrl-D leaves");
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut leaving: Option<tokio::time::Instant> = None;
    let mut queries = VecDeque::new();
    let mut tally = Tally::default();
    let started = Instant::now();
    // Refusals of what peers send are counted in full (metrics, /stats) but printed a few a
    // second.
    let mut refusals = LineLimit::default();
    let mut summary_tick = tokio::time::interval(WINDOW);
    // The policy decides every second; a decision is printed once, until its kind changes.
    let mut last_decision: Option<String> = None;
    let mut signals = Signals::new()?;
    let leave = |handle: &MemberHandle, leaving: &mut Option<tokio::time::Instant>| {
        if leaving.is_none() {
            let _ = handle.commands.send(Command::Leave);
            *leaving = Some(tokio::time::Instant::now() + LEAVE_WAIT);
        }
    };
    let ended = loop {
        let deadline = leaving.unwrap_or_else(|| tokio::time::Instant::now() + LEAVE_WAIT);
        tokio::select! {
            line = lines.next_line(), if stdin_open && leaving.is_none() => match line {
                Ok(Some(l)) => match Input::parse(&l) {
                    Input::Line(text) => {
                        tally.sent += 1;
                        let _ = handle.commands.send(Command::Send(text.into_bytes()));
                    }
                    Input::Nothing => {}
                    Input::Who => ask(&handle, &mut queries, Query::Who),
                    Input::Key => ask(&handle, &mut queries, Query::Key),
                    Input::Stats => ask(&handle, &mut queries, Query::Stats),
                    Input::Help => help(&printer),
                    Input::Quit => leave(&handle, &mut leaving),
                    Input::Unknown(word) => printer.say(
                        "error",
                        format!("unknown command {word}; /help lists the commands"),
                        json!({ "error": format!("unknown command {word}") }),
                    ),
                },
                // End of input (Ctrl-D) leaves; so does input that cannot be read.
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    leave(&handle, &mut leaving);
                }
            },
            _ = signals.recv(), if leaving.is_none() => leave(&handle, &mut leaving),
            () = tokio::time::sleep_until(deadline), if leaving.is_some() => {
                printer.say(
                    "stopped",
                    "stopped: the group layer did not confirm the leave in time".into(),
                    json!({ "reason": "leave not confirmed" }),
                );
                break Ended::Left;
            }
            event = handle.events.recv() => {
                let Some(e) = event else { break Ended::Left };
                tally.count(&e);
                match &e {
                    RuntimeEvent::Stopped(_) => {
                        print_event(&printer, &e);
                        break Ended::Left;
                    }
                    RuntimeEvent::Failed(reason) => {
                        flush_refusals(&printer, &mut refusals);
                        print_event(&printer, &e);
                        break Ended::GaveUp(reason.clone());
                    }
                    RuntimeEvent::Status(status) => {
                        let line = match queries.pop_front() {
                            Some(Query::Who) => describe::who(status),
                            Some(Query::Key) => describe::key(status),
                            Some(Query::Stats) | None => tally.line(status, started.elapsed()),
                        };
                        printer.print(&line);
                    }
                    RuntimeEvent::Member(MemberEvent::Switch(SwitchEvent::Decided {
                        decision, ..
                    })) => {
                        // The label, not the reason: the reason's figures move every time.
                        let key = match decision {
                            Decision::Stay { label, .. } => label.clone(),
                            Decision::Switch { to, label, .. } => format!("{label} {to}"),
                        };
                        if last_decision.as_deref() != Some(key.as_str()) {
                            printer.print(&describe::decision(decision));
                            last_decision = Some(key);
                        }
                    }
                    _ => {
                        if let Some(label) = refusal_label(&printer.id, &e) {
                            let (summary, admit) = refusals.admit(started.elapsed(), label);
                            held_back(&printer, summary);
                            if !admit {
                                continue;
                            }
                        }
                        print_event(&printer, &e);
                    }
                }
            },
            _ = summary_tick.tick() => held_back(&printer, refusals.roll(started.elapsed())),
        }
    };
    flush_refusals(&printer, &mut refusals);
    Ok(ended)
}

fn ask(handle: &MemberHandle, queries: &mut VecDeque<Query>, query: Query) {
    if handle.commands.send(Command::Status).is_ok() {
        queries.push_back(query);
    }
}

fn help(printer: &Printer) {
    let text: Vec<String> = COMMANDS.iter().map(|(c, what)| format!("{c}: {what}")).collect();
    let fields: Vec<Value> =
        COMMANDS.iter().map(|(c, what)| json!({ "command": c, "does": what })).collect();
    printer.say("help", text.join("; "), json!({ "commands": fields }));
}

fn print_event(printer: &Printer, e: &RuntimeEvent) {
    if let Some(line) = describe::event(e) {
        printer.print(&line);
    }
}

fn held_back(printer: &Printer, summary: Option<String>) {
    if let Some(s) = summary {
        printer.say("refusals_held_back", format!("refused: {s}"), json!({ "summary": s }));
    }
}

fn flush_refusals(printer: &Printer, refusals: &mut LineLimit) {
    held_back(printer, refusals.flush());
}

/// The kind of a refusal of something a peer sent, for the rate limit on printing them
/// (this member's own errors are always printed).
fn refusal_label(id: &str, e: &RuntimeEvent) -> Option<&'static str> {
    match e {
        RuntimeEvent::Member(MemberEvent::Rejected(r)) => Some(r.label()),
        RuntimeEvent::Member(MemberEvent::ProtocolError { from, .. }) if from != id => {
            Some("protocol_error")
        }
        RuntimeEvent::Member(MemberEvent::Undecryptable { .. }) => Some("undecryptable"),
        _ => None,
    }
}

/// SIGINT and SIGTERM: both make the member leave cleanly.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
