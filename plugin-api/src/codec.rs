//! The versioned binary encoding of plugin payloads: one format byte, then a `postcard` body,
//! with a size limit checked before anything is decoded.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PayloadError;

/// The payload format this crate writes. A payload with any other first byte is refused.
pub const PAYLOAD_FORMAT: u8 = 1;

/// The largest payload a plugin accepts or emits: 4 MiB, enough for a TGDH tree of 4,096
/// `ffdhe4096` bkeys, and small enough that a hostile sender cannot exhaust memory.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

/// Encodes a message as `[PAYLOAD_FORMAT] ‖ postcard(msg)`.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, PayloadError> {
    let mut out = vec![PAYLOAD_FORMAT];
    let body = postcard::to_allocvec(msg).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    out.extend_from_slice(&body);
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { len: out.len(), max: MAX_PAYLOAD_BYTES });
    }
    Ok(out)
}

/// Decodes the first fields of a payload written by [`encode`] (a prefix of its message's
/// fields, as `T`), ignoring the rest: a look at a header before the whole is decoded.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    decode_with_rest(bytes).map(|(prefix, _)| prefix)
}

/// The message at the start of a payload written by [`encode`], and how many bytes follow it.
fn decode_with_rest<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), PayloadError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { len: bytes.len(), max: MAX_PAYLOAD_BYTES });
    }
    let (&format, body) = bytes.split_first().ok_or(PayloadError::Empty)?;
    if format != PAYLOAD_FORMAT {
        return Err(PayloadError::UnknownFormat(format));
    }
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| PayloadError::Malformed(e.to_string()))?;
    Ok((msg, rest.len()))
}

/// Decodes a payload written by [`encode`], refusing oversized, truncated, trailing-garbage or
/// wrong-format input with a typed error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    let (msg, rest) = decode_with_rest(bytes)?;
    if rest > 0 {
        return Err(PayloadError::TrailingBytes(rest));
    }
    Ok(msg)
}
