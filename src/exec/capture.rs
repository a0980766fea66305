//! Bounded output capture: the first and last bytes of a stream are kept, the middle is counted
//! and dropped, so the supervisor's memory stays bounded whatever a command prints.

// One implementation for the supervisor and the in-container agent.
pub use clawden_agent::capture::HeadTail;

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

    }
}
