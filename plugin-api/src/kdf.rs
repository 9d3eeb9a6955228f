//! Key derivation: the group key a session hands to the host (docs/protocols.md §9.4).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The HKDF salt: a version label, so a future derivation can never collide with this one.
pub const KDF_SALT: &[u8] = b"gka group key v1";

/// Length of every derived group key.
pub const GROUP_KEY_LEN: usize = 32;

/// Where a key belongs: every field goes into the HKDF `info`, so two groups, views,
/// protocols or epochs never share a key even from the same secret.
#[derive(Debug, Clone, Copy)]
pub struct KeyContext<'a> {
    /// The group's name.
    pub group: &'a str,
    /// The view the key was agreed in.
    pub view_id: u64,
    /// The protocol's name (`gdh`, `tgdh`, ...).
    pub protocol: &'a str,
    /// The key's epoch.
    pub epoch: u64,
}

/// The HKDF `info` for a context: len-prefixed group ‖ view id ‖ len-prefixed protocol ‖ epoch.
fn context_info(ctx: &KeyContext<'_>) -> Vec<u8> {
    let mut info = Vec::with_capacity(32 + ctx.group.len() + ctx.protocol.len());
    info.extend_from_slice(&(ctx.group.len() as u32).to_be_bytes());
    info.extend_from_slice(ctx.group.as_bytes());
    info.extend_from_slice(&ctx.view_id.to_be_bytes());
    info.extend_from_slice(&(ctx.protocol.len() as u32).to_be_bytes());
    info.extend_from_slice(ctx.protocol.as_bytes());
    info.extend_from_slice(&ctx.epoch.to_be_bytes());
    info
}

/// K_group = HKDF-SHA256(ikm = fixed-length big-endian group secret, salt = [`KDF_SALT`],
/// info = len-prefixed group ‖ view id ‖ len-prefixed protocol ‖ epoch), 32 bytes.
pub fn derive_group_key(secret: &[u8], ctx: &KeyContext<'_>) -> Zeroizing<[u8; GROUP_KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), secret);
    let mut info = context_info(ctx);
    let mut okm = Zeroizing::new([0u8; GROUP_KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 · 32 bytes.
    hk.expand(&info, okm.as_mut()).expect("32-byte HKDF output is valid");
    info.zeroize();
    okm
}

/// A 32-byte key for an auxiliary purpose (for example CKD's key-wrapping key), derived from a
/// shared secret with a purpose label.
pub fn derive_subkey(secret: &[u8], label: &[u8]) -> Zeroizing<[u8; GROUP_KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(KDF_SALT), secret);
    let mut okm = Zeroizing::new([0u8; GROUP_KEY_LEN]);
    hk.expand(label, okm.as_mut()).expect("32-byte HKDF output is valid");
    okm
}

/// The salt of the key that ends a protocol switch: distinct from [`KDF_SALT`], so a switch
/// key can never equal a plain group key.
pub const SWITCH_SALT: &[u8] = b"gka protocol switch v1";

/// The first key after a protocol switch: HKDF-SHA256 over the new protocol's key and the
/// previous epoch's key together (ikm = new ‖ old), with the context as for
/// [`derive_group_key`]. Both keys are needed, so the switch never weakens the group key: an
/// attacker must break the new protocol's agreement *and* know the previous key.
pub fn derive_switch_key(
    new_key: &[u8; GROUP_KEY_LEN],
    old_key: &[u8; GROUP_KEY_LEN],
    ctx: &KeyContext<'_>,
) -> Zeroizing<[u8; GROUP_KEY_LEN]> {
    let mut ikm = Zeroizing::new([0u8; 2 * GROUP_KEY_LEN]);
    ikm[..GROUP_KEY_LEN].copy_from_slice(new_key);
    ikm[GROUP_KEY_LEN..].copy_from_slice(old_key);
    let hk = Hkdf::<Sha256>::new(Some(SWITCH_SALT), ikm.as_ref());
    let info = context_info(ctx);
    let mut okm = Zeroizing::new([0u8; GROUP_KEY_LEN]);
    hk.expand(&info, okm.as_mut()).expect("32-byte HKDF output is valid");
    okm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_context_field_changes_the_key() {
        let base = KeyContext { group: "g", view_id: 1, protocol: "bd", epoch: 2 };
        let k = derive_group_key(b"secret", &base);
        let variants = [
            KeyContext { group: "h", ..base },
            KeyContext { view_id: 2, ..base },
            KeyContext { protocol: "str", ..base },
            KeyContext { epoch: 3, ..base },
        ];
        for v in variants {
            assert_ne!(*derive_group_key(b"secret", &v), *k);
        }
        assert_ne!(*derive_group_key(b"secret2", &base), *k);
        assert_eq!(*derive_group_key(b"secret", &base), *k);
    }

    #[test]
    fn a_switch_key_needs_both_keys_and_differs_from_either() {
        let ctx = KeyContext { group: "g", view_id: 1, protocol: "str", epoch: 2 };
        let (new, old) = ([1u8; 32], [2u8; 32]);
        let k = derive_switch_key(&new, &old, &ctx);
        assert_eq!(*derive_switch_key(&new, &old, &ctx), *k);
        assert_ne!(*derive_switch_key(&new, &[3u8; 32], &ctx), *k);
        assert_ne!(*derive_switch_key(&[3u8; 32], &old, &ctx), *k);
        assert_ne!(*derive_switch_key(&old, &new, &ctx), *k);
        assert_ne!(*k, new);
        assert_ne!(*k, old);
        assert_ne!(*derive_switch_key(&new, &old, &KeyContext { epoch: 3, ..ctx }), *k);
    }
}
