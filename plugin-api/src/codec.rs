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

/// Bytes in a message (an element's encoding, a wrapped key), serialized as one byte string.
/// postcard writes a byte string exactly as it writes a `Vec<u8>` (a length, then the bytes),
/// but reads it in one copy instead of one visitor call per byte: a TGDH tree of thousands of
/// blinded keys, read by every member, would otherwise cost more than the rest of its decoding.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_encoded_exactly_as_a_vec_of_u8() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct AsBytes(Vec<(u8, Bytes)>, Option<Bytes>);
        #[derive(serde::Serialize)]
        struct AsVec(Vec<(u8, Vec<u8>)>, Option<Vec<u8>>);
        for len in [0usize, 1, 127, 128, 256, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let bytes = AsBytes(vec![(1, data.clone().into())], Some(data.clone().into()));
            let vec = AsVec(vec![(1, data.clone())], Some(data));
            let encoded = encode(&bytes).expect("encodes");
            assert_eq!(encoded, encode(&vec).expect("encodes"), "length {len}");
            assert_eq!(decode::<AsBytes>(&encoded).expect("decodes"), bytes);
        }
        // A truncated byte string is refused, not read past its end.
        let encoded = encode(&AsBytes(Vec::new(), Some(vec![9; 300].into()))).expect("encodes");
        assert!(decode::<AsBytes>(&encoded[..encoded.len() - 1]).is_err());
    }
}
