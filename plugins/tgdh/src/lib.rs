//! # TGDH: tree-based group Diffie-Hellman (Kim, Perrig, Tsudik), as a gka plugin
//!
//! Members are the leaves of a binary key tree. A leaf's exponent is its member's 256-bit share r;
//! an inner node's key is K = BK_left^(x_right) = BK_right^(x_left) = g^(x_l·x_r), its exponent x =
//! H(K) (docs/protocols.md §9.2) and its blinded key BK = g^x. The root's K is the group secret.
//! Every member keeps the blinded keys of the whole tree and the exponents of its own path.
//!
//! - **Join and merge**: each group's rightmost member broadcasts its tree; the trees are merged
//!   tallest first, each inserted at the shallowest rightmost node where it does not increase the
//!   height, else at the root (docs/protocols.md §9.6); the rightmost member under the first
//!   insertion point refreshes its share.
//! - **Leave and partition**: leavers' leaves are removed and their siblings promoted; the
//!   rightmost member under the deepest changed node refreshes its share.
//! - **Refresh**: the rightmost member refreshes its share.
//!
//! Then, until every blinded key is known, each member computes its path as far as it can, and
//! a member that is the sponsor (rightmost leaf) of a node it can compute and nobody has
//! published broadcasts the blinded keys of its path. A member installs the key once every
//! non-root node's blinded key has been delivered, which happens at the same message for every
//! member, whatever point a view change interrupts the run at. A new view restarts from each
//! side's last agreed tree, keeping every blinded key that is still valid (docs/protocols.md §9.9).

#![forbid(unsafe_code)]

mod cost;
mod session;
mod tree;

gka_plugin_api::protocol! {
    /// The TGDH protocol (stateless factory).
    pub Tgdh { name: "tgdh", run: session::TgdhRun, cost: cost::cost }
}
