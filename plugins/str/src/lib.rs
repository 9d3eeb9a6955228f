//! # STR: the skinny-tree group key agreement (Steer et al.; Kim, Perrig, Tsudik), as a plugin
//!
//! Members sit on a chain, bottom (position 0) to top. Member i has a 256-bit share r_i and
//! publishes br_i = g^(r_i). The key of the internal node at position i ≥ 1 is K_i = br_i^(x_(i-1))
//! = bk_(i-1)^(r_i), where x_0 = r_0, x_i = H(K_i) maps the node key to a 256-bit exponent
//! (docs/protocols.md §9.2) and bk_i = g^(x_i) is published. The group secret is K_top; a lone
//! member's is br^r.
//!
//! - **Leave, partition, refresh** (one agreed chain): leavers are removed, and the sponsor, the
//!   member directly below the lowest leaver (the new bottom if the bottom left; the top for a
//!   refresh), refreshes its share, computes every key up to the top and broadcasts its new br
//!   and the blinded keys above it. One round, one broadcast.
//! - **Join, merge, initial agreement** (several groups): each group's top member broadcasts its
//!   chain; the chains are stacked, the largest at the bottom (ties by bottom member id,
//!   docs/protocols.md §9.6); the bottom chain's top member refreshes (if its group had a key) and
//!   broadcasts. Two rounds, k + 1 broadcasts for k groups.
//! - **Cascades**: a view during a run restarts from each side's last agreed chain (a member
//!   whose run was interrupted restarts alone), keeping the blinded keys that are still valid.
//!
//! Every member keeps the keys of its own path, so after an event it recomputes only the nodes
//! from the lowest changed one up.

#![forbid(unsafe_code)]

mod chain;
mod cost;
mod session;

gka_plugin_api::protocol! {
    /// The STR protocol (stateless factory).
    pub Str { name: "str", run: session::StrRun, cost: cost::cost }
}
