//! Credentials and tokens that must never reach a log.

use std::fmt;
use std::sync::atomic::{compiler_fence, Ordering};

use crate::venue::json::JsonStr;

/// An owned secret (client secret, access or refresh token).
///
/// `Debug` prints `***`; there is no `Display`. The bytes are overwritten with zeros when the
/// secret is dropped (best effort: copies made through [`expose`](Self::expose) are the
/// caller's).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret text, for the encoder and the credentials check only.
    #[inline]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        for b in bytes.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference to an initialized byte of a
            // live allocation; a volatile write keeps the compiler from eliding the dead store.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        compiler_fence(Ordering::SeqCst);
    }
}

/// A secret borrowed from a received message (a token in a `public/auth` result).
///
/// `Debug` prints `***`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretStr<'a>(JsonStr<'a>);

impl<'a> SecretStr<'a> {
    pub(crate) fn new(s: JsonStr<'a>) -> SecretStr<'a> {
        SecretStr(s)
    }

    /// The token as it appears in the message (escapes not decoded).
    pub fn expose(&self) -> JsonStr<'a> {
        self.0
    }

    /// An owned [`Secret`] with escapes decoded (allocates: cold path).
    pub fn to_secret(&self) -> Secret {
        Secret(self.0.to_owned_string())
    }
}

impl fmt::Debug for SecretStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
