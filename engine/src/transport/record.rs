//! TLS record protection after the handshake: records are opened (decrypted) in place in the
//! incoming buffer and sealed (encrypted) straight into the outgoing buffer, with `ring`'s AEADs
//! and the traffic secrets rustls hands over at the end of the handshake
//! (`dangerous_into_kernel_connection`, the API made for kTLS). No allocation, no copy beyond
//! the one plaintext copy each way.
//!
//! Covers what rustls' `ring` provider negotiates: TLS 1.3 (AES-128-GCM, AES-256-GCM,
//! ChaCha20-Poly1305; RFC 8446 §5.2-5.3) and TLS 1.2 AEAD suites (AES-GCM with an explicit
//! nonce, RFC 5288; ChaCha20-Poly1305, RFC 7905).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use rustls::{AlertDescription, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion};

/// Bytes of a record header: type, legacy version (2), length (2).
pub(crate) const HEADER_LEN: usize = 5;
/// Bytes of an AEAD tag (all suites here).
const TAG_LEN: usize = 16;
/// Bytes of the explicit nonce a TLS 1.2 AES-GCM record carries.
const GCM_EXPLICIT_NONCE_LEN: usize = 8;
/// Largest plaintext a record may carry (2^14).
pub(crate) const MAX_PLAINTEXT: usize = 16 * 1024;

/// `ContentType::Alert` on the wire.
pub(crate) const ALERT: u8 = 21;
/// `ContentType::Handshake` on the wire.
pub(crate) const HANDSHAKE: u8 = 22;
/// `ContentType::ApplicationData` on the wire.
pub(crate) const APPLICATION_DATA: u8 = 23;

/// The protocol version, as far as record protection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// TLS 1.2: the header's type is the real one; AAD is seq ‖ type ‖ version ‖ length.
    Tls12,
    /// TLS 1.3: every record says `application_data`; the real type ends the plaintext; AAD is
    /// the header.
    Tls13,
}

impl Version {
    /// Maps rustls' negotiated version; `None` for anything that is neither 1.2 nor 1.3.
    pub(crate) fn of(version: ProtocolVersion) -> Option<Version> {
        match version {
            ProtocolVersion::TLSv1_2 => Some(Version::Tls12),
            ProtocolVersion::TLSv1_3 => Some(Version::Tls13),
            _ => None,
        }
    }

    /// Largest record fragment (after the header) a peer may send.
    pub(crate) fn max_fragment(self) -> usize {
        match self {
            // RFC 8446 §5.2: 2^14 + 256.
            Version::Tls13 => MAX_PLAINTEXT + 256,
            // RFC 5246 §6.2.3: 2^14 + 2048.
            Version::Tls12 => MAX_PLAINTEXT + 2048,
        }
    }
}

/// How the per-record nonce is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceShape {
    /// `iv XOR seq` (TLS 1.3, and TLS 1.2 ChaCha20-Poly1305).
    Xor,
    /// TLS 1.2 AES-GCM: 4 implicit bytes (`iv[..4]`) ‖ 8 explicit bytes sent in the record.
    Explicit,
}

/// A record header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Content type byte.
    pub(crate) typ: u8,
    /// Length of the fragment after the header.
    pub(crate) len: usize,
}

/// The legacy record version every record after the handshake carries (TLS 1.2's own; TLS 1.3
/// keeps it for compatibility, RFC 8446 §5.1).
const RECORD_VERSION: [u8; 2] = [3, 3];

/// A record version other than 0x0303 in a TLS 1.2 record (RFC 5246 §6.2.1: the version
/// negotiated; it is also part of the AEAD's additional data, which is built with 0x0303).
/// The peer is broken or the stream is corrupt.
pub(crate) fn wrong_tls12_record_version() -> Error {
    Error::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion)
}

impl Header {
    /// Parses the header at the front of `buf`; `Ok(None)` when fewer than 5 bytes are there.
    /// A fragment longer than the version allows is an error (the peer is broken or hostile),
    /// and so is a record version other than 0x0303 in TLS 1.2 (whose AAD holds the version) or
    /// other than 0x03xx in TLS 1.3 (where RFC 8446 §5.1 says to ignore the minor byte; the AAD
    /// is the header as received).
    pub(crate) fn parse(buf: &[u8], version: Version) -> Result<Option<Header>, Error> {
        let [typ, major, minor, hi, lo, ..] = *buf else {
            return Ok(None);
        };
        if major != RECORD_VERSION[0] {
            return Err(Error::InvalidMessage(
                rustls::InvalidMessage::UnknownProtocolVersion,
            ));
        }
        if version == Version::Tls12 && minor != RECORD_VERSION[1] {
            return Err(wrong_tls12_record_version());
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len > version.max_fragment() {
            return Err(Error::PeerSentOversizedRecord);
        }
        Ok(Some(Header { typ, len }))
    }
}

/// What [`Keys::open`] found: the record's real content type and where its plaintext lies
/// inside the record buffer it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Content type (inner type for TLS 1.3).
    pub(crate) typ: u8,
    /// Offset of the plaintext from the start of the record (header included).
    pub(crate) start: usize,
    /// End of the plaintext (exclusive), from the start of the record.
    pub(crate) end: usize,
}

/// The keys of one direction, and its record sequence number.
pub(crate) struct Keys {
    /// The AEAD key.
    key: LessSafeKey,
    /// The static IV: XORed with the sequence number (or, for TLS 1.2 AES-GCM, its first 4 bytes
    /// are the implicit nonce part and the rest seeds the explicit part).
    iv: [u8; NONCE_LEN],
    /// Sequence number of the next record in this direction. Invariant: starts where rustls left
    /// off (or 0 after a key update) and goes up by one per record opened or sealed.
    seq: u64,
    /// How nonces are formed for this suite and version.
    shape: NonceShape,
    /// The version the records follow.
    version: Version,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keys")
            .field("algorithm", self.key.algorithm())
            .field("seq", &self.seq)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Sets up one direction from rustls' extracted secrets and the sequence number to go on from.
    pub(crate) fn new(
        version: Version,
        seq: u64,
        secrets: ConnectionTrafficSecrets,
    ) -> Result<Keys, Error> {
        let (algorithm, key, iv, gcm) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => {
                return Err(Error::General(
                    "negotiated cipher suite has no in-place record layer".into(),
                ))
            }
        };
        let unbound = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| Error::General("traffic key of the wrong length".into()))?;
        let iv: [u8; NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| Error::General("traffic IV of the wrong length".into()))?;
        let shape = if gcm && version == Version::Tls12 {
            NonceShape::Explicit
        } else {
            NonceShape::Xor
        };
        Ok(Keys {
            key: LessSafeKey::new(unbound),
            iv,
            seq,
            shape,
            version,
        })
    }

    /// Sequence number of the next record.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// `iv XOR seq`, the nonce of the current record (TLS 1.2 AES-GCM: its last 8 bytes are
    /// the explicit part sent, unique because `seq` is).
    fn xor_nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        nonce
    }

    /// Moves to the next record's sequence number; running out ends the connection (2^64
    /// records: never in practice, and the confidentiality limit comes long before). `exhausted`
    /// is the error for the direction: [`Error::EncryptError`] when sealing,
    /// [`receive_sequence_exhausted`] when opening.
    fn advance(&mut self, exhausted: fn() -> Error) -> Result<(), Error> {
        self.seq = self.seq.checked_add(1).ok_or_else(exhausted)?;
        Ok(())
    }

    /// TLS 1.2 additional data: seq ‖ type ‖ version ‖ plaintext length.
    fn tls12_aad(&self, typ: u8, plain_len: usize) -> [u8; 13] {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&self.seq.to_be_bytes());
        aad[8] = typ;
        aad[9..11].copy_from_slice(&RECORD_VERSION);
        aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
        aad
    }

    /// Decrypts the complete record at the front of `record` (header included; `record` may be
    /// longer: only the header's length is used) in place. The plaintext stays in `record` at
    /// the returned offsets. Fails on a bad tag ([`Error::DecryptError`]), a TLS 1.3 record
    /// whose outer type is not `application_data`, a missing inner type
    /// ([`rustls::PeerMisbehaved::IllegalTlsInnerPlaintext`]), an oversized plaintext
    /// ([`Error::PeerSentOversizedRecord`]; TLS 1.3: checked on the inner plaintext *with* its
    /// padding, at most 2^14 + 1 bytes, RFC 8446 §5.4) or, after 2^64 records, an exhausted
    /// sequence number.
    pub(crate) fn open(&mut self, header: Header, record: &mut [u8]) -> Result<Opened, Error> {
        let total = HEADER_LEN + header.len;
        let record = &mut record[..total];
        let opened = match self.version {
            Version::Tls13 => {
                if header.typ != APPLICATION_DATA {
                    return Err(unexpected(header.typ));
                }
                if header.len < TAG_LEN + 1 {
                    return Err(Error::DecryptError);
                }
                // RFC 8446 §5.4: the inner plaintext (content, type byte and padding) must not
                // exceed 2^14 + 1 bytes, whatever the padding. Checked before decrypting: the
                // length is in the (authenticated) header, and a record over it is fatal anyway.
                if header.len - TAG_LEN > MAX_PLAINTEXT + 1 {
                    return Err(Error::PeerSentOversizedRecord);
                }
                let nonce = Nonce::assume_unique_for_key(self.xor_nonce());
                let (head, body) = record.split_at_mut(HEADER_LEN);
                let plain = self
                    .key
                    .open_in_place(nonce, Aad::from(&*head), body)
                    .map_err(|_| Error::DecryptError)?;
                // Strip the zero padding; the last non-zero byte is the real content type.
                let Some(typ_at) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(Error::PeerMisbehaved(
                        rustls::PeerMisbehaved::IllegalTlsInnerPlaintext,
                    ));
                };
                debug_assert!(typ_at <= MAX_PLAINTEXT, "inner plaintext checked above");
                Opened {
                    typ: plain[typ_at],
                    start: HEADER_LEN,
                    end: HEADER_LEN + typ_at,
                }
            }
            Version::Tls12 => {
                let (nonce, start) = match self.shape {
                    NonceShape::Xor => (self.xor_nonce(), HEADER_LEN),
                    NonceShape::Explicit => {
                        if header.len < GCM_EXPLICIT_NONCE_LEN {
                            return Err(Error::DecryptError);
                        }
                        let mut nonce = [0u8; NONCE_LEN];
                        nonce[..4].copy_from_slice(&self.iv[..4]);
                        nonce[4..].copy_from_slice(
                            &record[HEADER_LEN..HEADER_LEN + GCM_EXPLICIT_NONCE_LEN],
                        );
                        (nonce, HEADER_LEN + GCM_EXPLICIT_NONCE_LEN)
                    }
                };
                let Some(plain_len) = total.checked_sub(start + TAG_LEN) else {
                    return Err(Error::DecryptError);
                };
                if plain_len > MAX_PLAINTEXT {
                    return Err(Error::PeerSentOversizedRecord);
                }
                let aad = self.tls12_aad(header.typ, plain_len);
                self.key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut record[start..],
                    )
                    .map_err(|_| Error::DecryptError)?;
                Opened {
                    typ: header.typ,
                    start,
                    end: start + plain_len,
                }
            }
        };
        self.advance(receive_sequence_exhausted)?;
        Ok(opened)
    }

    /// Bytes [`Keys::seal`] writes for `plain_len` bytes of plaintext.
    pub(crate) fn sealed_len(&self, plain_len: usize) -> usize {
        HEADER_LEN + self.fragment_len(plain_len)
    }

    /// Fragment length (after the header) of a record carrying `plain_len` bytes.
    fn fragment_len(&self, plain_len: usize) -> usize {
        match (self.version, self.shape) {
            (Version::Tls13, _) => plain_len + 1 + TAG_LEN,
            (Version::Tls12, NonceShape::Xor) => plain_len + TAG_LEN,
            (Version::Tls12, NonceShape::Explicit) => GCM_EXPLICIT_NONCE_LEN + plain_len + TAG_LEN,
        }
    }

    /// Encrypts `plain` (at most 2^14 bytes) as one record of type `typ` into the front of
    /// `out`, which must hold [`Keys::sealed_len`] bytes. Returns the bytes written.
    pub(crate) fn seal(&mut self, typ: u8, plain: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        debug_assert!(plain.len() <= MAX_PLAINTEXT, "record plaintext too long");
        let fragment = self.fragment_len(plain.len());
        let total = HEADER_LEN + fragment;
        if out.len() < total || plain.len() > MAX_PLAINTEXT {
            return Err(Error::EncryptError);
        }
        let out = &mut out[..total];
        let outer = match self.version {
            Version::Tls13 => APPLICATION_DATA,
            Version::Tls12 => typ,
        };
        out[..HEADER_LEN].copy_from_slice(&[outer, 3, 3, 0, 0]);
        out[3..HEADER_LEN].copy_from_slice(&(fragment as u16).to_be_bytes());
        let nonce = self.xor_nonce();
        let tag = match self.version {
            Version::Tls13 => {
                let end = HEADER_LEN + plain.len();
                out[HEADER_LEN..end].copy_from_slice(plain);
                out[end] = typ;
                let (head, body) = out.split_at_mut(HEADER_LEN);
                self.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&*head),
                    &mut body[..plain.len() + 1],
                )
            }
            Version::Tls12 => {
                let start = match self.shape {
                    NonceShape::Xor => HEADER_LEN,
                    NonceShape::Explicit => {
                        out[HEADER_LEN..HEADER_LEN + GCM_EXPLICIT_NONCE_LEN]
                            .copy_from_slice(&nonce[4..]);
                        HEADER_LEN + GCM_EXPLICIT_NONCE_LEN
                    }
                };
                out[start..start + plain.len()].copy_from_slice(plain);
                let aad = self.tls12_aad(typ, plain.len());
                self.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut out[start..start + plain.len()],
                )
            }
        }
        .map_err(|_| Error::EncryptError)?;
        out[total - TAG_LEN..].copy_from_slice(tag.as_ref());
        self.advance(|| Error::EncryptError)?;
        Ok(total)
    }
}

/// The error for a record of a type that may not appear now.
pub(crate) fn unexpected(typ: u8) -> Error {
    Error::InappropriateMessage {
        expect_types: vec![ContentType::ApplicationData],
        got_type: ContentType::from(typ),
    }
}

/// The receive side's sequence number ran out (2^64 records under one key).
pub(crate) fn receive_sequence_exhausted() -> Error {
    Error::General("receive sequence number exhausted (2^64 records under one key)".into())
}

/// A failure of the record layer, with the alert to send the peer about it (`None`: say
/// nothing, e.g. the peer already sent a fatal alert). Most errors imply their alert
/// ([`alert_for`]); a few need another one, e.g. a TLS 1.3 warning alert is reported as the
/// alert received but answered with `decode_error`, as rustls does.
#[derive(Debug)]
pub(crate) struct Fatal {
    /// What went wrong.
    pub(crate) error: Error,
    /// The alert to send before giving up.
    pub(crate) alert: Option<AlertDescription>,
}

impl From<Error> for Fatal {
    fn from(error: Error) -> Self {
        Fatal {
            alert: alert_for(&error),
            error,
        }
    }
}

/// The alert to send the peer before giving up on `error` (`None`: say nothing, e.g. the peer
/// already sent a fatal alert). Follows RFC 8446 §5-6 and rustls' choices.
pub(crate) fn alert_for(error: &Error) -> Option<AlertDescription> {
    use rustls::{InvalidMessage as M, PeerMisbehaved as P};
    match error {
        Error::DecryptError => Some(AlertDescription::BadRecordMac),
        Error::PeerSentOversizedRecord => Some(AlertDescription::RecordOverflow),
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            Some(AlertDescription::UnexpectedMessage)
        }
        // RFC 8446 §5.4 (no non-zero byte), §5.1 (key change mid-record), and the flood
        // counters (BoringSSL answers those with unexpected_message too).
        Error::PeerMisbehaved(
            P::IllegalTlsInnerPlaintext
            | P::KeyEpochWithPendingFragment
            | P::TooManyEmptyFragments
            | P::TooManyWarningAlertsReceived
            | P::TooManyKeyUpdateRequests
            | P::TooManyRenegotiationRequests,
        ) => Some(AlertDescription::UnexpectedMessage),
        // RFC 8446 §4.6.3: a KeyUpdate value other than 0 or 1.
        Error::InvalidMessage(M::InvalidKeyUpdate) => Some(AlertDescription::IllegalParameter),
        Error::InvalidMessage(M::UnknownProtocolVersion) => Some(AlertDescription::ProtocolVersion),
        Error::InvalidMessage(_) | Error::PeerMisbehaved(_) => Some(AlertDescription::DecodeError),
        Error::AlertReceived(_) => None,
        _ => Some(AlertDescription::InternalError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn secrets(kind: u8) -> ConnectionTrafficSecrets {
        let key = AeadKey::from([7u8; 32]);
        let iv = Iv::from([9u8; NONCE_LEN]);
        match kind {
            0 => ConnectionTrafficSecrets::Aes256Gcm { key, iv },
            1 => ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
            _ => unreachable!(),
        }
    }

    fn pair(version: Version, kind: u8, seq: u64) -> (Keys, Keys) {
        (
            Keys::new(version, seq, secrets(kind)).unwrap(),
            Keys::new(version, seq, secrets(kind)).unwrap(),
        )
    }

    fn all() -> Vec<(Version, u8)> {
        vec![
            (Version::Tls13, 0),
            (Version::Tls13, 1),
            (Version::Tls12, 0),
            (Version::Tls12, 1),
        ]
    }

    #[test]
    fn sealed_records_open_to_the_same_type_and_plaintext_in_every_suite() {
        for (version, kind) in all() {
            let (mut tx, mut rx) = pair(version, kind, 5);
            for (typ, plain) in [
                (APPLICATION_DATA, &b"hello"[..]),
                (ALERT, &[1, 0][..]),
                (APPLICATION_DATA, &[0u8; MAX_PLAINTEXT][..]),
            ] {
                let mut buf = vec![0u8; tx.sealed_len(plain.len()) + 3];
                let n = tx.seal(typ, plain, &mut buf).unwrap();
                assert_eq!(n, tx.sealed_len(plain.len()));
                let header = Header::parse(&buf, version).unwrap().unwrap();
                assert_eq!(HEADER_LEN + header.len, n);
                let opened = rx.open(header, &mut buf).unwrap();
                assert_eq!(opened.typ, typ, "{version:?} {kind}");
                assert_eq!(&buf[opened.start..opened.end], plain);
            }
            assert_eq!(tx.seq(), 8);
            assert_eq!(rx.seq(), 8);
        }
    }

    #[test]
    fn a_flipped_bit_or_a_skipped_sequence_number_fails_to_open() {
        for (version, kind) in all() {
            let (mut tx, mut rx) = pair(version, kind, 0);
            let mut buf = vec![0u8; 64];
            let n = tx.seal(APPLICATION_DATA, b"order", &mut buf).unwrap();
            let mut tampered = buf.clone();
            tampered[n - 1] ^= 1;
            let header = Header::parse(&tampered, version).unwrap().unwrap();
            assert_eq!(
                rx.open(header, &mut tampered),
                Err(Error::DecryptError),
                "{version:?} {kind}"
            );
            // A record sealed at seq 1 does not open at seq 0 (replay / reorder protection).
            let (mut tx, mut rx) = pair(version, kind, 0);
            tx.seal(APPLICATION_DATA, b"a", &mut buf).unwrap();
            tx.seal(APPLICATION_DATA, b"b", &mut buf).unwrap();
            let header = Header::parse(&buf, version).unwrap().unwrap();
            assert_eq!(rx.open(header, &mut buf), Err(Error::DecryptError));
        }
    }

    #[test]
    fn oversized_or_foreign_headers_are_refused_before_decrypting() {
        let mut rec = [23u8, 3, 3, 0x41, 0x01];
        assert_eq!(
            Header::parse(&rec, Version::Tls13),
            Err(Error::PeerSentOversizedRecord)
        );
        rec[1] = 2;
        assert!(Header::parse(&rec, Version::Tls12).is_err());
        assert_eq!(Header::parse(&rec[..4], Version::Tls13), Ok(None));
        // TLS 1.3 records must say application_data outside.
        let (mut rx, _) = pair(Version::Tls13, 0, 0);
        let mut buf = [
            22u8, 3, 3, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let header = Header::parse(&buf, Version::Tls13).unwrap().unwrap();
        assert!(matches!(
            rx.open(header, &mut buf),
            Err(Error::InappropriateMessage { .. })
        ));
    }

    #[test]
    fn a_tls12_record_version_other_than_0303_is_refused_while_tls13_ignores_the_minor_byte() {
        let rec = [APPLICATION_DATA, 3, 1, 0, 40];
        assert_eq!(
            Header::parse(&rec, Version::Tls12),
            Err(wrong_tls12_record_version())
        );
        assert_eq!(
            alert_for(&wrong_tls12_record_version()),
            Some(AlertDescription::ProtocolVersion)
        );
        // RFC 8446 §5.1: legacy_record_version is ignored (it is in the AAD anyway).
        assert_eq!(
            Header::parse(&rec, Version::Tls13),
            Ok(Some(Header {
                typ: APPLICATION_DATA,
                len: 40
            }))
        );
    }

    #[test]
    fn an_exhausted_receive_sequence_is_a_receive_side_error() {
        for (version, kind) in all() {
            let (mut tx, mut rx) = pair(version, kind, u64::MAX);
            let mut buf = vec![0u8; 64];
            // Sealing the last record works, then the send side runs out.
            assert_eq!(
                tx.seal(APPLICATION_DATA, b"last", &mut buf),
                Err(Error::EncryptError)
            );
            let header = Header::parse(&buf, version).unwrap().unwrap();
            assert_eq!(rx.open(header, &mut buf), Err(receive_sequence_exhausted()));
        }
    }

    #[test]
    fn a_tls13_record_over_2_14_plus_1_bytes_of_inner_plaintext_is_refused_before_opening() {
        let (mut tx, mut rx) = pair(Version::Tls13, 0, 0);
        // 2^14 bytes + type byte: the largest allowed.
        let mut buf = vec![0u8; MAX_PLAINTEXT + 64];
        let n = tx
            .seal(APPLICATION_DATA, &[1u8; MAX_PLAINTEXT], &mut buf)
            .unwrap();
        let header = Header::parse(&buf[..n], Version::Tls13).unwrap().unwrap();
        assert!(rx.open(header, &mut buf).is_ok());
        // One byte more (padding or not) is refused whatever the ciphertext.
        let header = Header {
            typ: APPLICATION_DATA,
            len: MAX_PLAINTEXT + 2 + TAG_LEN,
        };
        let mut buf = vec![0u8; HEADER_LEN + header.len];
        assert_eq!(
            rx.open(header, &mut buf),
            Err(Error::PeerSentOversizedRecord)
        );
    }

    #[test]
    fn alerts_follow_rfc_8446_and_rustls() {
        use rustls::{InvalidMessage as M, PeerMisbehaved as P};
        let cases = [
            (Error::DecryptError, Some(AlertDescription::BadRecordMac)),
            (
                Error::PeerSentOversizedRecord,
                Some(AlertDescription::RecordOverflow),
            ),
            (
                Error::PeerMisbehaved(P::IllegalTlsInnerPlaintext),
                Some(AlertDescription::UnexpectedMessage),
            ),
            (
                Error::PeerMisbehaved(P::KeyEpochWithPendingFragment),
                Some(AlertDescription::UnexpectedMessage),
            ),
            (
                Error::PeerMisbehaved(P::TooManyEmptyFragments),
                Some(AlertDescription::UnexpectedMessage),
            ),
            (
                Error::InvalidMessage(M::InvalidKeyUpdate),
                Some(AlertDescription::IllegalParameter),
            ),
            (
                Error::InvalidMessage(M::MessageTooShort),
                Some(AlertDescription::DecodeError),
            ),
            (Error::AlertReceived(AlertDescription::UserCanceled), None),
        ];
        for (error, alert) in cases {
            assert_eq!(alert_for(&error), alert, "{error:?}");
        }
    }

    #[test]
    fn a_tls13_record_of_only_padding_is_refused() {
        let (mut tx, mut rx) = pair(Version::Tls13, 0, 0);
        let mut buf = vec![0u8; 64];
        // Type byte 0: after stripping padding nothing is left.
        let n = tx.seal(0, b"", &mut buf).unwrap();
        let header = Header::parse(&buf[..n], Version::Tls13).unwrap().unwrap();
        let error = rx.open(header, &mut buf).unwrap_err();
        assert_eq!(
            error,
            Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalTlsInnerPlaintext)
        );
        assert_eq!(alert_for(&error), Some(AlertDescription::UnexpectedMessage));
    }
}
