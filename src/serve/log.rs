//! A bounded, sequenced event log with followers: the events of one call (or the service's
//! `/v1/events`). Each event gets the next `seq`; the log keeps at most `cap_bytes` of events
//! (the oldest go first, `started` included — a follower that fell behind is told it missed
//! some) and wakes followers on every append and on close.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

struct Inner {
    next_seq: u64,
    items: VecDeque<(u64, Value, usize)>,
    bytes: usize,
    closed: bool,
}

pub struct EventLog {
    inner: Mutex<Inner>,
    notify: Notify,
    cap_bytes: usize,
}

/// What a follower gets: events after its `seq`, whether some were dropped before them, and
/// whether the log is closed (no more will come).
pub struct Batch {
    pub events: Vec<Value>,
    pub missed: u64,
    pub closed: bool,
    pub last_seq: u64,
}

impl EventLog {
    pub fn new(cap_bytes: usize) -> Self {
        EventLog {
            inner: Mutex::new(Inner {
                next_seq: 1,
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            cap_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append `event` (an object; `seq` is added) and return its seq. Ignored once closed.
    pub fn push(&self, mut event: Value) -> u64 {
        let seq = {
            let mut g = self.lock();
            if g.closed {
                return 0;
            }
            let seq = g.next_seq;
            g.next_seq += 1;
            if let Value::Object(m) = &mut event {
                m.insert("seq".into(), Value::from(seq));
            }
            let size = event.to_string().len();
            g.bytes += size;
            g.items.push_back((seq, event, size));
            while g.bytes > self.cap_bytes && g.items.len() > 1 {
                if let Some((_, _, s)) = g.items.pop_front() {
                    g.bytes -= s;
                }
            }
            seq
        };
        self.notify.notify_waiters();
        seq
    }

    /// Push a last event and close the log.
    pub fn close_with(&self, event: Value) {
        self.push(event);
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Bytes of the events it keeps (their JSON size).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Events with seq > `after`.
    pub fn after(&self, after: u64) -> Batch {
        let g = self.lock();
        let first = g.items.front().map(|i| i.0).unwrap_or(g.next_seq);
        let missed = first.saturating_sub(after.saturating_add(1));
        let events: Vec<Value> = g
            .items
            .iter()
            .filter(|i| i.0 > after)
            .map(|i| i.1.clone())
            .collect();
        Batch {
            last_seq: g.next_seq - 1,
            events,
            missed,
            closed: g.closed,
        }
    }

    /// Wait for events after `after`, or until `timeout` passes (an empty batch).
    pub async fn wait_after(&self, after: u64, timeout: std::time::Duration) -> Batch {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let b = self.after(after);
        if !b.events.is_empty() || b.closed {
            return b;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        self.after(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sequenced_bounded_and_reports_what_was_missed() {
        let log = EventLog::new(200);
        for i in 0..20 {
            log.push(json!({"type": "stdout", "text": format!("line {i}")}));
        }
        let b = log.after(0);
        assert!(b.missed > 0, "old events were dropped");
        assert!(!b.events.is_empty());
        let seqs: Vec<u64> = b
            .events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(*seqs.last().unwrap(), 20);
        assert_eq!(b.last_seq, 20);
        assert!(log.after(20).events.is_empty());
        log.close_with(json!({"type": "exit"}));
        let b = log.after(20);
        assert!(b.closed);
        assert_eq!(b.events[0]["type"], "exit");
        assert_eq!(log.push(json!({})), 0, "closed logs take nothing");
    }

    #[tokio::test]
    async fn followers_wake_on_push() {
        let log = std::sync::Arc::new(EventLog::new(1 << 20));
        let l2 = log.clone();
        let t = tokio::spawn(async move {
            l2.wait_after(0, std::time::Duration::from_secs(10))
                .await
                .events
                .len()
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log.push(json!({"type": "x"}));
        assert_eq!(t.await.unwrap(), 1);
    }
}
