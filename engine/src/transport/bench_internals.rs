//! The TLS record layer (`record.rs`), exposed for `spinwire-bench`'s `tls_record` benchmark
//! only. Compiled with the `bench-internals` feature (off by default); not a public API and
//! not covered by semver.
//!
//! [`RecordKeys`] wraps the transport's own per-direction keys: build one per direction from
//! the secrets rustls hands over (`dangerous_extract_secrets` / `dangerous_into_kernel_connection`),
//! then [`RecordKeys::seal_application_data`] writes one record into a buffer and
//! [`RecordKeys::open_in_place`] decrypts one record where it lies, exactly the calls the
//! transport makes on its send and receive paths. Neither allocates.

use std::ops::Range;

use rustls::{ConnectionTrafficSecrets, Error, ProtocolVersion};

use super::record::{Header, Keys, Opened, Version, APPLICATION_DATA, HEADER_LEN, MAX_PLAINTEXT};

/// Largest plaintext one record carries (2^14 bytes); longer messages take several records.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_PLAINTEXT;

/// The keys and sequence number of one direction of a TLS connection, as the transport
/// holds them after the handshake.
#[derive(Debug)]
pub struct RecordKeys {
    /// The transport's record keys. Invariant: its sequence number is the one of the next
    /// record in this direction (starts where rustls left off).
    keys: Keys,
    /// The version `keys` were built for (headers are parsed by its rules).
    version: Version,
}

/// One record opened by [`RecordKeys::open_in_place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRecord {
    /// The record's real content type (for TLS 1.3, the inner type).
    pub content_type: u8,
    /// Where the plaintext lies in the buffer given to `open_in_place`.
    pub plaintext: Range<usize>,
    /// Bytes the whole record took (header included); the next record starts there.
    pub record_len: usize,
}

impl OpenedRecord {
    /// Whether the record is application data (content type 23).
    pub fn is_application_data(&self) -> bool {
        self.content_type == APPLICATION_DATA
    }
}

impl RecordKeys {
    /// Sets up one direction for `version` (TLS 1.2 or 1.3) from rustls' extracted secrets and
    /// the sequence number to go on from (the `u64` of `ExtractedSecrets::tx` / `rx`).
    ///
    /// Fails on another protocol version or a cipher suite the record layer does not cover.
    pub fn new(
        version: ProtocolVersion,
        seq: u64,
        secrets: ConnectionTrafficSecrets,
    ) -> Result<RecordKeys, Error> {
        let version = Version::of(version)
            .ok_or_else(|| Error::General(format!("no in-place record layer for {version:?}")))?;
        Ok(RecordKeys {
            keys: Keys::new(version, seq, secrets)?,
            version,
        })
    }

    /// Sequence number of the next record sealed or opened with these keys.
    pub fn seq(&self) -> u64 {
        self.keys.seq()
    }

    /// Bytes [`RecordKeys::seal_application_data`] writes for `plain_len` bytes of plaintext.
    pub fn sealed_len(&self, plain_len: usize) -> usize {
        self.keys.sealed_len(plain_len)
    }

    /// Encrypts `plain` (at most [`MAX_RECORD_PLAINTEXT`] bytes) as one application-data
    /// record into the front of `out`, which must hold [`RecordKeys::sealed_len`] bytes.
    /// Returns the bytes written. A too-long `plain` or too-short `out` is
    /// [`Error::EncryptError`].
    pub fn seal_application_data(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        if plain.len() > MAX_PLAINTEXT {
            return Err(Error::EncryptError);
        }
        self.keys.seal(APPLICATION_DATA, plain, out)
    }

    /// Decrypts the record at the front of `buf` in place (`buf` may hold more after it) and
    /// says where its plaintext lies. Fails on an incomplete record
    /// ([`rustls::InvalidMessage::MessageTooShort`]), a malformed header, or anything the
    /// transport's open path refuses (bad tag, wrong sequence number, oversized record).
    pub fn open_in_place(&mut self, buf: &mut [u8]) -> Result<OpenedRecord, Error> {
        let too_short = || Error::InvalidMessage(rustls::InvalidMessage::MessageTooShort);
        let header = Header::parse(buf, self.version)?.ok_or_else(too_short)?;
        let record_len = HEADER_LEN + header.len;
        if buf.len() < record_len {
            return Err(too_short());
        }
        let Opened { typ, start, end } = self.keys.open(header, buf)?;
        Ok(OpenedRecord {
            content_type: typ,
            plaintext: start..end,
            record_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn secrets() -> ConnectionTrafficSecrets {
        ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([3u8; 32]),
            iv: Iv::from([5u8; 12]),
        }
    }

    #[test]
    fn a_sealed_application_record_opens_in_place_to_the_same_bytes() {
        let mut tx = RecordKeys::new(ProtocolVersion::TLSv1_3, 4, secrets()).unwrap();
        let mut rx = RecordKeys::new(ProtocolVersion::TLSv1_3, 4, secrets()).unwrap();
        let mut buf = vec![0u8; tx.sealed_len(300) + 10];
        let n = tx.seal_application_data(&[0xab; 300], &mut buf).unwrap();
        assert_eq!(n, tx.sealed_len(300));
        let opened = rx.open_in_place(&mut buf).unwrap();
        assert!(opened.is_application_data());
        assert_eq!(opened.record_len, n);
        assert_eq!(&buf[opened.plaintext], &[0xab; 300][..]);
        assert_eq!((tx.seq(), rx.seq()), (5, 5));
    }

    #[test]
    fn incomplete_records_oversized_plaintext_and_other_versions_are_errors() {
        assert!(RecordKeys::new(ProtocolVersion::TLSv1_1, 0, secrets()).is_err());
        let mut tx = RecordKeys::new(ProtocolVersion::TLSv1_3, 0, secrets()).unwrap();
        let mut rx = RecordKeys::new(ProtocolVersion::TLSv1_3, 0, secrets()).unwrap();
        let mut big = vec![0u8; 2 * MAX_PLAINTEXT];
        assert_eq!(
            tx.seal_application_data(&[1; MAX_PLAINTEXT + 1], &mut big),
            Err(Error::EncryptError)
        );
        let mut buf = vec![0u8; 64];
        let n = tx.seal_application_data(b"hello", &mut buf).unwrap();
        assert_eq!(
            rx.open_in_place(&mut buf[..n - 1]),
            Err(Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooShort
            ))
        );
        assert_eq!(
            rx.open_in_place(&mut buf[..3]),
            Err(Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooShort
            ))
        );
        // Nothing was consumed by the failed attempts: the record still opens.
        let opened = rx.open_in_place(&mut buf[..n]).unwrap();
        assert_eq!(&buf[opened.plaintext], b"hello");
    }
}
