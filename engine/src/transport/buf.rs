//! A fixed-capacity byte FIFO over one heap block allocated at construction.

/// Bytes waiting between a producer and a consumer (socket ↔ TLS ↔ caller), in one contiguous
/// block that never grows.
///
/// Data lives in `buf[start..end]`; new bytes are appended at `end` and consumed from `start`.
/// When the tail runs short, [`ByteQueue::compact`] moves the live bytes to the front.
#[derive(Debug)]
pub(crate) struct ByteQueue {
    /// Storage; its length is the capacity and never changes.
    buf: Box<[u8]>,
    /// Start of the live bytes. Invariant: `start <= end`.
    start: usize,
    /// End of the live bytes. Invariant: `end <= buf.len()`.
    end: usize,
}

impl ByteQueue {
    /// Allocates a zeroed queue of `capacity` bytes (the only allocation it ever makes).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Forgets the live bytes (the memory is kept).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Total capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Number of live bytes.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes that could still be queued (after compaction).
    pub(crate) fn free(&self) -> usize {
        self.buf.len() - self.len()
    }

    /// The live bytes.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The live bytes, mutably (rustls decrypts incoming records in place).
    pub(crate) fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Moves the live bytes to the front so the whole free space is one tail.
    pub(crate) fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Ensures the tail has room for `n` bytes if the queue as a whole does, compacting only
    /// when needed. Returns whether the tail now has that room.
    pub(crate) fn reserve_tail(&mut self, n: usize) -> bool {
        if self.buf.len() - self.end < n {
            self.compact();
        }
        self.buf.len() - self.end >= n
    }

    /// The writable tail after the live bytes. Fill it, then [`ByteQueue::commit`].
    pub(crate) fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of the tail (written through [`ByteQueue::spare_mut`]) as live.
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len() - self.end, "commit past the tail");
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Drops `n` bytes from the front. When the queue empties, both ends go back to 0 so the
    /// whole block is tail again, for free.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "consume past the live bytes");
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Appends as much of `src` as fits; returns how much that was.
    pub(crate) fn push(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.free());
        self.reserve_tail(n);
        self.buf[self.end..self.end + n].copy_from_slice(&src[..n]);
        self.end += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::ByteQueue;

    #[test]
    fn push_pop_keeps_order_across_compaction() {
        let mut q = ByteQueue::new(8);
        assert_eq!(q.push(b"abcdef"), 6);
        assert_eq!(&q.filled()[..4], b"abcd");
        q.consume(4);
        // Tail has 2 bytes, total free is 6: push compacts.
        assert_eq!(q.push(b"ghijklmn"), 6);
        assert_eq!(q.filled(), b"efghijkl");
        assert_eq!(q.free(), 0);
        assert_eq!(q.push(b"z"), 0);
    }

    #[test]
    fn consume_to_empty_resets_to_front() {
        let mut q = ByteQueue::new(4);
        q.push(b"abc");
        q.consume(3);
        assert!(q.is_empty());
        assert_eq!(q.spare_mut().len(), 4);
    }
}
