//! # BD: the Burmester-Desmedt group key agreement, as a gka plugin
//!
//! Members form a ring in view order. Every member i draws a fresh 256-bit share r_i and
//! broadcasts z_i = g^(r_i); once it has both neighbours' z it broadcasts
//! X_i = (z_(i+1) / z_(i-1))^(r_i). With every X it computes
//!
//! ```text
//! K = z_(i-1)^(n·r_i) · X_i^(n-1) · X_(i+1)^(n-2) ⋯ X_(i-2)^1 = g^(r_1 r_2 + r_2 r_3 + … + r_n
//! r_1)
//! ```
//!
//! Every event (join, leave, merge, partition, refresh) and every cascade restarts the protocol
//! in the newest view (docs/protocols.md §9.9): two broadcast rounds, 2n messages, three
//! exponentiations per member. The product of powers of the X values is computed with 2(n−1)
//! multiplications (a running prefix product), not with n−1 small exponentiations as in
//! Cliques, so BD's "hidden cost" here is multiplications only.
//!
//! With two members the X round carries nothing (X = 1 whatever the shares), so it is skipped:
//! K = z_other^(2·r_i), one round. A single member's key is z^r = g^(r·r).

#![forbid(unsafe_code)]

mod cost;
mod session;

gka_plugin_api::protocol! {
    /// The BD protocol (stateless factory).
    pub Bd { name: "bd", run: session::BdRun, cost: cost::cost }
}
