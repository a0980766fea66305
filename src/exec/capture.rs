//! Bounded output capture: the first and last bytes of a stream are kept, the middle is counted
//! and dropped, so the supervisor's memory stays bounded whatever a command prints.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct HeadTail {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl HeadTail {
    /// Keep at most `cap` bytes: the first half and the last half.
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2 + cap % 2;
        HeadTail {
            head_cap,
            tail_cap: cap / 2,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.head_cap - self.head.len();
        let n = room.min(data.len());
        self.head.extend_from_slice(&data[..n]);
        data = &data[n..];
        if self.tail_cap == 0 || data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The kept bytes: head, then tail (the dropped middle is not marked inside the bytes;
    /// `truncated` and `total` say so).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut v = self.head;
        v.extend(self.tail);
        v
    }
}

/// Finds the wrapper's exit marker `\x1eclawden-exit:<nonce>:<code>\x1e` in a byte stream,
/// passing every other byte through (bytes that might be the start of a marker are held back
/// until it is clear they are not).
#[derive(Debug)]
pub struct MarkerScanner {
    prefix: Vec<u8>,
    held: Vec<u8>,
    found: Option<i32>,
}

/// The longest tail after the prefix: up to 11 code characters and the closing separator.
const MAX_CODE_LEN: usize = 12;

impl MarkerScanner {
    pub fn new(nonce: &str) -> Self {
        MarkerScanner {
            prefix: format!("\x1eclawden-exit:{nonce}:").into_bytes(),
            held: Vec::new(),
            found: None,
        }
    }

    pub fn found(&self) -> Option<i32> {
        self.found
    }

    /// Feed bytes; returns the bytes that are ordinary output.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if self.found.is_some() {
            return data.to_vec();
        }
        self.held.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.held.iter().position(|&b| b == 0x1e) else {
                out.append(&mut self.held);
                return out;
            };
            out.extend_from_slice(&self.held[..start]);
            self.held.drain(..start);
            // held starts with 0x1e: a marker, a possible marker prefix, or plain output.
            let n = self.prefix.len().min(self.held.len());
            if self.held[..n] != self.prefix[..n] {
                out.push(self.held.remove(0));
                continue;
            }
            if self.held.len() < self.prefix.len() {
                return out; // wait for more
            }
            let rest = &self.held[self.prefix.len()..];
            match rest.iter().position(|&b| b == 0x1e) {
                Some(end) => {
                    let code = std::str::from_utf8(&rest[..end])
                        .ok()
                        .and_then(|s| s.parse::<i32>().ok());
                    match code {
                        Some(c) => {
                            self.found = Some(c);
                            let after = self.prefix.len() + end + 1;
                            let tail: Vec<u8> = self.held.drain(..).skip(after).collect();
                            out.extend(tail);
                            return out;
                        }
                        None => {
                            out.push(self.held.remove(0));
                            continue;
                        }
                    }
                }
                None if rest.len() > MAX_CODE_LEN => {
                    out.push(self.held.remove(0));
                    continue;
                }
                None => return out,
            }
        }
    }

    /// The stream ended: whatever is held back is output after all.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn head_tail_keeps_both_ends() {
        let mut h = HeadTail::new(8);
        h.push(b"0123456789abcdef");
        assert_eq!(h.total(), 16);
        assert!(h.truncated());
        assert_eq!(h.into_bytes(), b"0123cdef");
        let mut h = HeadTail::new(8);
        h.push(b"0123");
        h.push(b"45");
        assert!(!h.truncated());
        assert_eq!(h.into_bytes(), b"012345");
    }

    #[test]
    fn marker_is_found_across_chunks_and_removed() {
        let mut s = MarkerScanner::new("n1");
        let marker = b"\x1eclawden-exit:n1:42\x1e";
        let mut out = Vec::new();
        let mut input = b"err\x1eother".to_vec();
        input.extend_from_slice(marker);
        for chunk in input.chunks(3) {
            out.extend(s.feed(chunk));
        }
        out.extend(s.finish());
        assert_eq!(s.found(), Some(42));
        assert_eq!(out, b"err\x1eother");
    }

    #[test]
    fn wrong_nonce_is_output() {
        let mut s = MarkerScanner::new("n1");
        let mut out = s.feed(b"\x1eclawden-exit:n2:0\x1e");
        out.extend(s.finish());
        assert_eq!(s.found(), None);
        assert_eq!(out, b"\x1eclawden-exit:n2:0\x1e");
    }

    proptest! {
        #[test]
        fn head_tail_matches_model(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..20), cap in 0usize..64) {
            let mut h = HeadTail::new(cap);
            let all: Vec<u8> = chunks.concat();
            for c in &chunks { h.push(c); }
            let total = all.len();
            let truncated = h.truncated();
            let got = h.into_bytes();
            if total <= cap {
                prop_assert_eq!(&got, &all);
                prop_assert!(!truncated);
            } else {
                let head = cap / 2 + cap % 2;
                let tail = cap / 2;
                let mut want = all[..head].to_vec();
                want.extend_from_slice(&all[total - tail..]);
                prop_assert_eq!(&got, &want);
                prop_assert!(truncated);
            }
        }

        #[test]
        fn scanner_passes_plain_output_through(data in proptest::collection::vec(any::<u8>(), 0..200), split in 1usize..20) {
            let mut s = MarkerScanner::new("abc");
            let mut out = Vec::new();
            for c in data.chunks(split) { out.extend(s.feed(c)); }
            out.extend(s.finish());
            prop_assert_eq!(out, data);
        }
    }
}
