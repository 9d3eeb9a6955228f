//! Reads what the soak's member processes printed and counts what must never happen: two
//! members with different keys for one epoch of one group run, a line lost without its sender
//! being told, a line delivered twice, and data delivered under a key that a member who had
//! already left holds.

use std::collections::{BTreeMap, BTreeSet};

/// Everything one member process printed, in order, from its start to its end.
#[derive(Debug, Clone, Default)]
pub struct ProcessLog {
    /// The member's id.
    pub member: String,
    /// Its stdout lines (`gka member --json`: one JSON object per line).
    pub lines: Vec<String>,
}

/// What the soak found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Findings {
    /// Keys (group run, epoch) for which members printed different fingerprints.
    pub divergent_epochs: usize,
    /// Lines neither delivered to every member of their view that was alive throughout, nor
    /// reported to their sender as not sent or not delivered.
    pub lost_lines: usize,
    /// Lines a member received more than once.
    pub duplicates: usize,
    /// Lines received in a view under the key of an earlier view whose members have not all
    /// stayed (a departed member holds that key).
    pub data_under_departed_epoch: usize,
    /// Lines the harness wrote to members.
    pub lines_sent: usize,
    /// Lines delivered back to their senders.
    pub lines_echoed: usize,
    /// Lines their senders reported as not sent or not delivered.
    pub lines_reported: usize,
    /// Distinct keys (group run, epoch) agreed.
    pub keys: usize,
    /// Examples of each problem, for the report (a few of each).
    pub examples: Vec<String>,
}

impl Findings {
    /// True when none of the four problems occurred.
    pub fn clean(&self) -> bool {
        self.divergent_epochs == 0
            && self.lost_lines == 0
            && self.duplicates == 0
            && self.data_under_departed_epoch == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 20 {
            self.examples.push(text);
        }
    }
}

/// One parsed line.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    View { id: u64, members: Vec<String> },
    Key { epoch: u64, fingerprint: String, run: String },
    Data { from: String, epoch: u64, text: String },
    NotSent(usize),
    Rejoined,
    Other,
}

/// Reads one `gka member --json` line; anything else is [`Event::Other`].
fn parse(line: &str) -> Event {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { return Event::Other };
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
    let number = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let epoch = || Some(gka_plugin_api::epoch_of(number("view")?, number("n")?));
    let parsed = match v.get("event").and_then(serde_json::Value::as_str) {
        Some("view") => (|| {
            let members = v.get("members")?.as_array()?;
            let members = members.iter().filter_map(|m| Some(m.as_str()?.to_owned())).collect();
            Some(Event::View { id: number("view")?, members })
        })(),
        Some("key") => (|| {
            Some(Event::Key {
                epoch: epoch()?,
                fingerprint: text("fingerprint")?,
                run: text("run")?,
            })
        })(),
        Some("message") => {
            (|| Some(Event::Data { from: text("from")?, epoch: epoch()?, text: text("text")? }))()
        }
        Some("not_sent") => Some(Event::NotSent(number("count").unwrap_or(1) as usize)),
        Some("disconnected") => Some(Event::NotSent(number("unsent").unwrap_or(0) as usize)),
        Some("rejoined") => Some(Event::Rejoined),
        _ => None,
    };
    parsed.unwrap_or(Event::Other)
}

/// A stretch of one process's log within one group run: from its start, or a rejoin, to the
/// next rejoin. Its run is the one its key lines name.
struct Segment<'a> {
    member: &'a str,
    run: Option<String>,
    events: Vec<Event>,
}

fn segments(logs: &[ProcessLog]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for log in logs {
        let mut current = Segment { member: &log.member, run: None, events: Vec::new() };
        for line in &log.lines {
            let event = parse(line);
            if event == Event::Rejoined {
                let next = Segment { member: &log.member, run: None, events: Vec::new() };
                out.push(std::mem::replace(&mut current, next));
                continue;
            }
            if let Event::Key { run, .. } = &event {
                current.run.get_or_insert_with(|| run.clone());
            }
            current.events.push(event);
        }
        out.push(current);
    }
    out
}

/// Counts the problems in `logs`. `stable` are the members never killed; `sent` is how many
/// lines the harness wrote to each of them.
pub fn analyze(
    logs: &[ProcessLog],
    stable: &BTreeSet<String>,
    sent: &BTreeMap<String, usize>,
) -> Findings {
    let mut f = Findings::default();
    let segments = segments(logs);
    // (run, view) -> members; (run, epoch) -> fingerprints.
    let mut views: BTreeMap<(&str, u64), Vec<String>> = BTreeMap::new();
    let mut keys: BTreeMap<(&str, u64), BTreeSet<&str>> = BTreeMap::new();
    for s in &segments {
        let Some(run) = s.run.as_deref() else { continue };
        for e in &s.events {
            match e {
                Event::View { id, members } => {
                    views.entry((run, *id)).or_insert_with(|| members.clone());
                }
                Event::Key { epoch, fingerprint, run } => {
                    keys.entry((run.as_str(), *epoch)).or_default().insert(fingerprint.as_str());
                }
                _ => {}
            }
        }
    }
    f.keys = keys.len();
    for ((run, epoch), fps) in &keys {
        if fps.len() > 1 {
            f.divergent_epochs += 1;
            f.example(format!("run {run} epoch {epoch}: fingerprints {fps:?}"));
        }
    }

    // Who received what; what each sender saw come back, in which view.
    let mut received: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut echoed: Vec<(&str, &str, (&str, u64))> = Vec::new();
    let mut reported: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &segments {
        let mut view: Option<u64> = None;
        for e in &s.events {
            match e {
                Event::View { id, .. } => view = Some(*id),
                Event::NotSent(n) => *reported.entry(s.member).or_default() += n,
                Event::Data { from, epoch, text } => {
                    let text = text.as_str();
                    *received.entry((s.member, text)).or_default() += 1;
                    let (Some(run), Some(v)) = (s.run.as_deref(), view) else { continue };
                    if *from == s.member {
                        echoed.push((s.member, text, (run, v)));
                    }
                    // No view from the key's view to the one it is used in may have lost any of
                    // the key's holders (one that left and came back still counts as gone).
                    let key_view = epoch >> 24;
                    let Some(holders) = views.get(&(run, key_view)) else { continue };
                    if key_view >= v {
                        continue;
                    }
                    let gone = views
                        .range((run, key_view + 1)..=(run, v))
                        .find_map(|(_, members)| holders.iter().find(|m| !members.contains(m)));
                    if let Some(gone) = gone {
                        f.data_under_departed_epoch += 1;
                        f.example(format!(
                            "{} got {text:?} in view {v} under view {key_view}'s key, which \
                             {gone} (gone since) holds",
                            s.member
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    for ((member, text), n) in &received {
        if *n > 1 {
            f.duplicates += n - 1;
            f.example(format!("{member} got {text:?} {n} times"));
        }
    }
    // Every echoed line reached every member of its view that was alive throughout.
    let mut seen_echo: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (sender, text, key) in &echoed {
        if !seen_echo.insert((sender, text)) {
            continue;
        }
        let Some(members) = views.get(key) else { continue };
        for m in members.iter().filter(|m| stable.contains(*m) && *m != sender) {
            if !received.contains_key(&(m.as_str(), *text)) {
                f.lost_lines += 1;
                f.example(format!("{text:?} from {sender} (view {}) never reached {m}", key.1));
            }
        }
    }
    // Every line a stable member was given came back to it or was reported.
    for member in stable {
        let given = sent.get(member).copied().unwrap_or(0);
        let back = seen_echo.iter().filter(|(s, _)| s == member).count();
        let told = reported.get(member.as_str()).copied().unwrap_or(0);
        f.lines_sent += given;
        f.lines_echoed += back;
        f.lines_reported += told;
        if back + told < given {
            f.lost_lines += given - back - told;
            f.example(format!(
                "{member}: {given} lines given, {back} came back, {told} reported: {} unaccounted",
                given - back - told
            ));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(member: &str, lines: &[&str]) -> ProcessLog {
        ProcessLog { member: member.into(), lines: lines.iter().map(|l| l.to_string()).collect() }
    }

    const V1: &str = r#"{"event":"view","view":1,"members":["a","b","c"]}"#;
    const V2: &str = r#"{"event":"view","view":2,"members":["a","b"]}"#;
    const K1: &str =
        r#"{"event":"key","epoch":"1.0","view":1,"n":0,"fingerprint":"aa","run":"r1"}"#;
    const K2: &str =
        r#"{"event":"key","epoch":"2.0","view":2,"n":0,"fingerprint":"bb","run":"r1"}"#;

    /// A line `from` sent under view `view`'s first key.
    fn data(from: &str, view: u64, text: &str) -> String {
        format!(
            r#"{{"event":"message","from":"{from}","epoch":"{view}.0","view":{view},"n":0,"text":"{text}"}}"#
        )
    }

    #[test]
    fn a_clean_run_is_clean_and_each_problem_is_counted() {
        let stable: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let sent: BTreeMap<String, usize> = [("a".into(), 2), ("b".into(), 0)].into();
        let (a1, a2, a2_old) = (data("a", 1, "a#1"), data("a", 2, "a#2"), data("a", 1, "a#2"));
        let clean = [log("a", &[V1, K1, &a1, V2, K2, &a2]), log("b", &[V1, K1, &a1, V2, K2, &a2])];
        let f = analyze(&clean, &stable, &sent);
        assert!(f.clean(), "{f:?}");
        assert_eq!((f.lines_sent, f.lines_echoed, f.keys), (2, 2, 2));

        let bad = [
            log(
                "a",
                &[
                    V1, K1, &a1, V2,
                    // Sent in view 2 under view 1's key: c, gone, holds it.
                    &a2_old,
                ],
            ),
            log(
                "b",
                &[
                    V1,
                    r#"{"event":"key","epoch":"1.0","view":1,"n":0,"fingerprint":"zz","run":"r1"}"#,
                    &a1,
                    &a1,
                    V2,
                ],
            ),
        ];
        let f = analyze(&bad, &stable, &sent);
        assert_eq!(f.divergent_epochs, 1, "{f:?}");
        assert_eq!(f.duplicates, 1, "{f:?}");
        assert_eq!(f.data_under_departed_epoch, 1, "{f:?}");
        // a#2 came back to a but never reached b.
        assert_eq!(f.lost_lines, 1, "{f:?}");

        // c left and came back before the data under view 1's key: still a departed holder.
        let back = r#"{"event":"view","view":3,"members":["a","b","c"]}"#;
        let rejoined = [log("a", &[V1, K1, V2, back, &a1])];
        let f = analyze(&rejoined, &stable, &BTreeMap::new());
        assert_eq!(f.data_under_departed_epoch, 1, "{f:?}");
    }

    #[test]
    fn reported_lines_are_not_lost_and_unreported_ones_are() {
        let stable: BTreeSet<String> = ["a"].iter().map(|s| s.to_string()).collect();
        let sent: BTreeMap<String, usize> = [("a".into(), 5)].into();
        let a1 = data("a", 1, "a#1");
        let a = log(
            "a",
            &[
                V1,
                K1,
                &a1,
                r#"{"event":"not_sent","count":1,"reason":"members left"}"#,
                r#"{"event":"not_sent","count":1,"reason":"members joined"}"#,
                r#"{"event":"disconnected","reason":"closed","unsent":1}"#,
                r#"{"event":"rejoined","attempt":1}"#,
                "not JSON: ignored",
            ],
        );
        let f = analyze(std::slice::from_ref(&a), &stable, &sent);
        assert_eq!((f.lines_reported, f.lost_lines), (3, 1), "{f:?}");
        let sent: BTreeMap<String, usize> = [("a".into(), 4)].into();
        assert!(analyze(&[a], &stable, &sent).clean());
    }
}
