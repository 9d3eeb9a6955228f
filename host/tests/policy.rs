//! The policy engine: table-driven decisions (`tests/policy/decisions.toml`) with the real
//! plugins' cost models, and `Policy::parse` on broken files naming line, column and reason.

use std::collections::BTreeMap;
use std::path::Path;

use gka_host::policy::{Decision, Inputs, Policy, State, KNOWN_PROTOCOLS};
use gka_plugin_api::Protocol;

#[test]
fn decisions_from_the_data_file() {
    let linked = gka_tests::linked::protocols();
    let protocols: BTreeMap<String, &dyn Protocol> =
        linked.iter().map(|p| (p.descriptor().name, &**p as &dyn Protocol)).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/policy/decisions.toml")).unwrap();
    let file: toml::Value = toml::from_str(&text).unwrap();
    let cases = file["case"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let policy_text = match case.get("policy_file") {
            Some(f) => std::fs::read_to_string(root.join("..").join(f.as_str().unwrap())).unwrap(),
            None => case["policy"].as_str().unwrap().to_owned(),
        };
        let policy = Policy::parse(&policy_text, &KNOWN_PROTOCOLS)
            .unwrap_or_else(|e| panic!("{name}: invalid policy: {e:?}"));
        let mut inputs = Inputs::default();
        for (k, v) in case["inputs"].as_table().unwrap() {
            let v = v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).unwrap();
            assert!(inputs.set(k, v), "{name}: unknown input {k}");
        }
        let st = case["state"].as_table().unwrap();
        let num =
            |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).unwrap();
        let state = State {
            current: st["current"].as_str().unwrap().to_owned(),
            since_switch_s: num(&st["since_switch_s"]),
            since_abort_s: st.get("since_abort_s").map(num),
        };
        let expect = case["expect"].as_table().unwrap();
        let decision = policy.decide(&protocols, &inputs, &state);
        let reason = match (&decision, expect["decision"].as_str().unwrap()) {
            (Decision::Stay { reason, .. }, "stay") => reason,
            (Decision::Switch { to, reason, .. }, "switch") => {
                if let Some(want) = expect.get("to") {
                    assert_eq!(to, want.as_str().unwrap(), "{name}: {decision:?}");
                }
                reason
            }
            _ => panic!("{name}: got {decision:?}, expected {expect:?}"),
        };
        let want = expect["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{name}: reason {reason:?} lacks {want:?}");
    }
}

fn errors(text: &str) -> Vec<String> {
    Policy::parse(text, &KNOWN_PROTOCOLS)
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn broken_files_name_line_column_and_reason() {
    let bad_toml = errors("mode = \"rules\"\nallow = [\"tgdh\"\n");
    assert!(bad_toml[0].starts_with("3:1:") || bad_toml[0].starts_with("2:"), "{bad_toml:?}");

    let unknown_protocol =
        errors("mode = \"rules\"\n\n[[rule]]\nname = \"x\"\nprotocol = \"foo\"\n");
    assert_eq!(unknown_protocol.len(), 1);
    assert!(unknown_protocol[0].starts_with("5:12:"), "{unknown_protocol:?}");
    assert!(unknown_protocol[0].contains("unknown protocol \"foo\""));

    let unknown_key = errors("mode = \"cost\"\nspeed = 3\n");
    assert!(unknown_key[0].starts_with("2:1:"), "{unknown_key:?}");
    assert!(unknown_key[0].contains("unknown field `speed`"), "{unknown_key:?}");

    let range = errors("mode = \"rules\"\n[[rule]]\nname = \"r\"\nprotocol = \"str\"\nwhen.group_size = { min = 50, max = 10 }\n");
    assert!(range[0].starts_with("5:"), "{range:?}");
    assert!(range[0].contains("impossible range for group_size"), "{range:?}");

    // Not a number, infinite or absurd durations would stall or crash a running member.
    for bad in ["nan", "inf", "1e20", "-1"] {
        let e = errors(&format!("mode = \"cost\"\n[stability]\nmin_view_age_s = {bad}\n"));
        assert!(e[0].starts_with("3:18:"), "{bad}: {e:?}");
        assert!(e[0].contains("a duration must be between 0 and"), "{bad}: {e:?}");
    }

    // Values that can never hold, and choices that leave nothing to run.
    let load = errors("mode = \"rules\"\n[[rule]]\nname = \"hot\"\nprotocol = \"ckd\"\nwhen.cpu_worst = { min = 1.85 }\n");
    assert!(load[0].starts_with("5:") && load[0].contains("can never hold"), "{load:?}");
    let zero = errors("mode = \"cost\"\n[bounds.str]\nmax_size = 0\n");
    assert!(zero[0].starts_with("2:") && zero[0].contains("max_size = 0"), "{zero:?}");
    let nothing = errors("mode = \"cost\"\nallow = [\"str\"]\ndeny = [\"str\"]\n");
    assert!(nothing[0].contains("leave no protocol"), "{nothing:?}");
    let fixed = errors("mode = \"fixed\"\nfixed = \"ckd\"\nallow = [\"bd\", \"str\"]\n");
    assert!(fixed[0].starts_with("2:9:") && fixed[0].contains("not allowed"), "{fixed:?}");

    let several = errors("mode = \"fixed\"\ndeny = [\"nope\"]\n[stability]\nmin_gain = 2.0\n");
    assert_eq!(several.len(), 3, "every error is reported: {several:?}");
}

#[test]
fn the_shipped_policy_is_valid() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy.toml"))
            .unwrap();
    Policy::parse(&text, &KNOWN_PROTOCOLS).expect("policy.toml is valid");
}
