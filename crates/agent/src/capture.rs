//! Bounded output capture: the first and last bytes of a stream are kept, the middle is counted
//! and dropped, so memory stays bounded whatever a command prints.

use std::collections::VecDeque;

/// Head-and-tail capture of one output stream with an exact byte count.
#[derive(Debug, Clone)]
pub struct HeadTail {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl HeadTail {
    /// Keep at most `cap` bytes: the first half (rounded up) and the last half.
    pub fn new(cap: usize) -> Self {
        HeadTail {
            head_cap: cap / 2 + cap % 2,
            tail_cap: cap / 2,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// Add bytes; returns how many of them (from the start of `data`) went to the head.
    pub fn push(&mut self, mut data: &[u8]) -> usize {
        self.total += data.len() as u64;
        let n = (self.head_cap - self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..n]);
        data = &data[n..];
        if self.tail_cap == 0 || data.is_empty() {
            return n;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
        n
    }

    /// Every byte pushed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes were dropped between head and tail.
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The kept head.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The kept tail (bytes after the head, at most half the cap).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// Bytes dropped between head and tail.
    pub fn dropped(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept bytes: head, then tail (the dropped middle is not marked inside the bytes;
    /// `truncated` and `total` say so).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut v = self.head;
        v.extend(self.tail);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_with_exact_total() {
        let mut c = HeadTail::new(6);
        assert_eq!(c.push(b"ab"), 2);
        assert_eq!(c.push(b"cdefgh"), 1);
        assert_eq!(c.push(b"ijk"), 0);
        assert_eq!(c.head(), b"abc");
        assert_eq!(c.tail(), b"ijk");
        assert_eq!(c.total(), 11);
        assert!(c.truncated());
        assert_eq!(c.dropped(), 5);
        let mut s = HeadTail::new(10);
        s.push(b"12345");
        assert!(!s.truncated());
        assert_eq!(s.head(), b"12345");
        let mut z = HeadTail::new(0);
        assert_eq!(z.push(b"x"), 0);
        assert_eq!(z.total(), 1);
        assert!(z.truncated());
    }
}
