//! Every membership scenario, driven through the in-memory harness.

gka_conformance::scenario_tests!(Box::new(gka_gdh::Gdh));

/// Once the controller has broadcast its partial-key list, collection is over: a factor-out
/// replayed to it before the list comes back is refused, and the group still agrees.
mod replays {
    use std::collections::BTreeSet;

    use gka_tests::Harness;

    #[test]
    fn a_factor_out_replayed_after_the_key_list_is_refused() {
        let mut h = Harness::new(Box::new(gka_gdh::Gdh), 21);
        let c = h.create(&["m0", "m1", "m2"]);
        // m2, the last of the chain, is the controller: it broadcasts the chain's final value,
        // collects factor-outs (unicasts to it), then broadcasts the partial-key list.
        let mut seen = BTreeSet::new();
        let mut last_to_controller = None;
        let mut controller_broadcasts = 0;
        for _ in 0..100 {
            let in_flight = h.take_in_flight(c);
            assert!(!in_flight.is_empty(), "the key list was never sent");
            for (from, to, payload) in &in_flight {
                if !seen.insert(payload.clone()) {
                    continue;
                }
                if to.as_deref() == Some("m2") {
                    last_to_controller = Some((from.clone(), payload.clone()));
                }
                if from == "m2" && to.is_none() {
                    controller_broadcasts += 1;
                }
            }
            if controller_broadcasts == 2 {
                let (from, factor_out) = last_to_controller.expect("a factor-out reached m2");
                let replay = h.inject(c, &from, "m2", &factor_out);
                assert!(replay.is_err(), "a factor-out after the key list must be refused");
                h.put_in_flight(c, in_flight);
                h.settle(c).expect("the group still agrees");
                return;
            }
            h.put_in_flight(c, in_flight);
            h.deliver_one(c);
        }
        panic!("no key list within 100 deliveries");
    }
}
