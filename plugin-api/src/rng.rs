//! Randomness for sessions: always injected by the host as a seed, never read from the OS
//! inside a plugin, so a seeded run is reproducible byte for byte.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The RNG every session draws its shares from: ChaCha20 seeded by the host.
pub type SessionRng = ChaCha20Rng;

/// A session RNG from the host's 32-byte seed.
pub fn session_rng(seed: [u8; 32]) -> SessionRng {
    ChaCha20Rng::from_seed(seed)
}
