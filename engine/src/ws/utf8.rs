//! Incremental, fail-fast UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames (fragmentation) and a frame across reads. RFC 6455
//! §8.1 lets an endpoint fail the connection as soon as the bytes seen so far cannot be the prefix
//! of valid UTF-8, and Autobahn (cases 6.4.x) checks that it does. [`Utf8Validator`] carries the
//! at most 3 bytes of an incomplete code point from one piece to the next and uses std's validator
//! (which already reports "invalid" as soon as a sequence's second byte is out of range, and
//! "incomplete" only for a valid prefix) on everything else.

/// The state of a UTF-8 validation in progress.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Utf8Validator {
    /// The start of an incomplete code point carried over from the last piece. Invariant:
    /// `pending[..pending_len]` is a valid, incomplete UTF-8 prefix (so `pending_len <= 3`).
    pending: [u8; 4],
    /// How many bytes of `pending` are in use.
    pending_len: u8,
}

/// The bytes fed so far cannot be the start of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// The length of the sequence that starts with `lead`, a valid lead byte (C2..=F4).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Forget everything: the next byte starts a new message.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether everything fed so far is complete UTF-8 (no code point cut in half).
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Validate the next piece. Fails as soon as the bytes so far cannot be a valid prefix.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]) - have;
            let take = need.min(input.len());
            self.pending[have..have + take].copy_from_slice(&input[..take]);
            let now = have + take;
            input = &input[take..];
            match std::str::from_utf8(&self.pending[..now]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; `input` is exhausted (or `take` would have completed it).
                    self.pending_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    let tail = &input[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<bool, InvalidUtf8> {
        let mut v = Utf8Validator::default();
        for p in pieces {
            v.feed(p)?;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn code_point_split_across_pieces_is_accepted() {
        let s = "κόσμε €𝄞".as_bytes();
        for cut in 0..=s.len() {
            assert_eq!(feed_all(&[&s[..cut], &s[cut..]]), Ok(true), "cut at {cut}");
        }
        let singles: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(feed_all(&singles), Ok(true));
    }

    #[test]
    fn incomplete_code_point_at_the_end_is_not_complete() {
        assert_eq!(feed_all(&[b"ab\xe2\x82"]), Ok(false));
        assert_eq!(feed_all(&[b"\xf0", b"\x9d", b"\x84"]), Ok(false));
    }

    #[test]
    fn invalid_byte_fails_as_soon_as_it_arrives() {
        // Autobahn 6.4.1: a valid first piece, then U+110000 (F4 90 80 80) which is out of range:
        // the second byte 0x90 already makes it invalid.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_and_overlongs_are_rejected() {
        assert_eq!(feed_all(&[b"\xed", b"\xa0\x80"]), Err(InvalidUtf8));
        assert_eq!(feed_all(&[b"\xc0\xaf"]), Err(InvalidUtf8));
        assert_eq!(feed_all(&[b"\xe0", b"\x80"]), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn incremental_validation_agrees_with_std_for_any_split(
            bytes in proptest::collection::vec(prop_oneof![any::<u8>(), 0x80u8..0xC0], 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&bytes[last..c]); last = c; }
            pieces.push(&bytes[last..]);
            let got = feed_all(&pieces);
            let want = std::str::from_utf8(&bytes);
            match want {
                Ok(_) => prop_assert_eq!(got, Ok(true)),
                Err(e) if e.error_len().is_none() => prop_assert_eq!(got, Ok(false)),
                Err(_) => prop_assert_eq!(got, Err(InvalidUtf8)),
            }
        }
    }
}
