//! Errors a session returns. Invalid or hostile peer input is always an error value, never a
//! panic, and a session that returns an error has not changed its state.

use crate::group::ElementError;

/// A payload that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload has no bytes at all.
    #[error("empty payload")]
    Empty,
    /// The payload exceeds the size limit.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The format byte is not one this plugin reads.
    #[error("unknown payload format {0}")]
    UnknownFormat(u8),
    /// Bytes were left after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The body does not decode (truncated, bad tag, bad length...).
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Everything that can go wrong in a session call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The payload could not be decoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A group element in the payload was refused.
    #[error("invalid group element: {0}")]
    Element(#[from] ElementError),
    /// The payload belongs to another view.
    #[error("payload for view {got}, current view is {current}")]
    StaleView {
        /// The payload's view id.
        got: u64,
        /// The session's current view id.
        current: u64,
    },
    /// The payload belongs to another epoch of this view.
    #[error("payload for epoch {got}, current epoch is {current}")]
    StaleEpoch {
        /// The payload's epoch.
        got: u64,
        /// The epoch being agreed.
        current: u64,
    },
    /// The sender is not a member of the current view.
    #[error("sender {0:?} is not a member of the current view")]
    NotAMember(String),
    /// A payload arrived before the first view.
    #[error("no view installed yet")]
    NoView,
    /// The payload is well formed but does not fit the protocol's state (wrong sender for this
    /// step, duplicate, inconsistent contents).
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// The host supplied an inconsistent view.
    #[error("invalid view: {0}")]
    InvalidView(String),
    /// The session configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The plugin panicked; the session is unusable from now on.
    #[error("plugin panicked: {0}")]
    Panicked(String),
    /// An error reported across the plugin ABI (a loaded plugin), by kind and message.
    #[error("{kind:?}: {message}")]
    Plugin {
        /// The error's kind.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
}

/// The kind of a [`SessionError`]: the part of it that crosses the plugin ABI as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`SessionError::Payload`].
    Payload,
    /// [`SessionError::Element`].
    Element,
    /// [`SessionError::StaleView`].
    StaleView,
    /// [`SessionError::StaleEpoch`].
    StaleEpoch,
    /// [`SessionError::NotAMember`].
    NotAMember,
    /// [`SessionError::NoView`].
    NoView,
    /// [`SessionError::Unexpected`].
    Unexpected,
    /// [`SessionError::InvalidView`].
    InvalidView,
    /// [`SessionError::Config`].
    Config,
    /// [`SessionError::Panicked`].
    Panicked,
    /// A kind this version does not know (from a newer plugin).
    Other,
}

impl ErrorKind {
    /// The stable number of this kind at the ABI.
    pub fn code(self) -> u8 {
        match self {
            Self::Payload => 1,
            Self::Element => 2,
            Self::StaleView => 3,
            Self::StaleEpoch => 4,
            Self::NotAMember => 5,
            Self::NoView => 6,
            Self::Unexpected => 7,
            Self::InvalidView => 8,
            Self::Config => 9,
            Self::Panicked => 10,
            Self::Other => 255,
        }
    }

    /// The kind with the given [`ErrorKind::code`]; unknown numbers map to [`ErrorKind::Other`].
    pub fn from_code(code: u8) -> Self {
        [
            Self::Payload,
            Self::Element,
            Self::StaleView,
            Self::StaleEpoch,
            Self::NotAMember,
            Self::NoView,
            Self::Unexpected,
            Self::InvalidView,
            Self::Config,
            Self::Panicked,
        ]
        .into_iter()
        .find(|k| k.code() == code)
        .unwrap_or(Self::Other)
    }
}

impl SessionError {
    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Payload(_) => ErrorKind::Payload,
            Self::Element(_) => ErrorKind::Element,
            Self::StaleView { .. } => ErrorKind::StaleView,
            Self::StaleEpoch { .. } => ErrorKind::StaleEpoch,
            Self::NotAMember(_) => ErrorKind::NotAMember,
            Self::NoView => ErrorKind::NoView,
            Self::Unexpected(_) => ErrorKind::Unexpected,
            Self::InvalidView(_) => ErrorKind::InvalidView,
            Self::Config(_) => ErrorKind::Config,
            Self::Panicked(_) => ErrorKind::Panicked,
            Self::Plugin { kind, .. } => *kind,
        }
    }
}
