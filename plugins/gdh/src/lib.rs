//! # GDH: Group Diffie-Hellman (Cliques IKA.2 / GDH.3-style merge), as a gka plugin
//!
//! Each member i holds a 256-bit share r_i; the group secret is g^(r_1 r_2 ⋯ r_n) and member
//! i's partial key is P_i = g^(Π_(j≠i) r_j), so K = P_i^(r_i). The controller is the newest
//! member (the last of the protocol's member list, docs/protocols.md §9.5).
//!
//! ***Merge** (join is m = 1; initial agreement is a merge into the oldest member alone;
//!  docs/protocols.md §2.1):
//! 1. the base group's controller (the base group is the side of the oldest member of the new
//!    view) draws a fresh share and sends C = P_c^(r_c') up a unicast chain through the new
//!    members in view order, each raising it to its own share;
//! 2. the last new member broadcasts C without applying its share: it is the new controller;
//! 3. every other member factors its share out, C^(r_i⁻¹), and unicasts it to the controller;
//! 4. the controller raises each factor-out to its share and broadcasts the partial keys.
//!
//! m + 3 rounds, n + 2m − 1 unicasts, 2 broadcasts.
//!
//! **Leave, partition, refresh**: the controller draws a fresh share r' and broadcasts
//! P_i = F_i^(r') for every member, where F_i are the factor-outs it keeps from the last merge:
//! one round, one broadcast, all exponents short. If the controller left, the newest survivor
//! first derives the F_i from the published partial keys with its inverse share (full-length
//! exponents: the inherent cost of GDH noted in docs/protocols.md §9.2).
//!
//! **Cascades**: a new view restarts as a merge from the last agreed state of the oldest
//! member's side; members whose last run was interrupted join it as new members (the "basic
//! robust algorithm", docs/protocols.md §3).

#![forbid(unsafe_code)]

mod cost;
mod session;

gka_plugin_api::protocol! {
    /// The GDH protocol (stateless factory).
    pub Gdh { name: "gdh", run: session::GdhRun, cost: cost::cost }
}
