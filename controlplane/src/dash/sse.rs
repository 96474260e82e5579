//! `/stream`: server-sent events carrying the live state to every open page.
//!
//! One thread (the ticker) asks [`views::snapshot`] for the state once a second, on one
//! HSDB connection of its own however many pages are open, and only while at least one
//! is. When the JSON differs from the last, it is published to the [`Feed`]; each
//! stream's thread waits on the feed and writes `event: snapshot` with the document. A
//! stream with nothing to send for [`KEEPALIVE`] gets a `: keepalive` comment (proxies
//! close silent connections). A stream ends when its session ends (logout, idle expiry,
//! the user removed), when a write fails or times out (a client that stopped reading),
//! or at the daemon's stop. At most [`MAX_STREAMS`] at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::views;

/// Most open streams.
pub const MAX_STREAMS: usize = 64;
/// How often the snapshot is taken.
pub const TICK: Duration = Duration::from_secs(1);
/// A comment after this long without an event.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct FeedState {
    version: u64,
    json: Option<Arc<str>>,
    stopped: bool,
}

/// The latest snapshot, and a condition to wait for the next.
#[derive(Debug, Default)]
pub struct Feed {
    state: Mutex<FeedState>,
    changed: Condvar,
}

/// What waiting on the feed gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A snapshot newer than the one seen: its version and JSON.
    Snapshot(u64, Arc<str>),
    /// Nothing new in time.
    Timeout,
    /// The daemon stops.
    Stopped,
}

impl Feed {
    /// Publish `json` if it differs from the last; true if it did.
    pub fn publish(&self, json: String) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.json.as_deref() == Some(json.as_str()) {
            return false;
        }
        s.version += 1;
        s.json = Some(Arc::from(json));
        drop(s);
        self.changed.notify_all();
        true
    }

    /// Forget the last snapshot (no page open: it grows stale).
    pub fn forget(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.json = None;
        }
    }

    /// Wake every stream to end.
    pub fn stop(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.stopped = true;
        }
        self.changed.notify_all();
    }

    /// Wait up to `timeout` for a snapshot newer than version `seen`.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> Wake {
        let Ok(s) = self.state.lock() else {
            return Wake::Stopped;
        };
        let Ok((s, _)) = self
            .changed
            .wait_timeout_while(s, timeout, |s| !s.stopped && s.version <= seen)
        else {
            return Wake::Stopped;
        };
        if s.stopped {
            return Wake::Stopped;
        }
        match &s.json {
            Some(json) if s.version > seen => Wake::Snapshot(s.version, Arc::clone(json)),
            _ => Wake::Timeout,
        }
    }
}

/// The snapshot taker: while `streams` > 0, every [`TICK`] a snapshot from its own
/// connection (made by `connect`, again after an error) into `feed`, until `stop`.
pub fn ticker(
    feed: &Feed,
    streams: &AtomicUsize,
    stop: &AtomicBool,
    connect: &dyn Fn() -> Result<hsdb::Hsdb, hsdb::Error>,
) {
    let mut db: Option<hsdb::Hsdb> = None;
    let mut last_error = String::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if streams.load(Ordering::Relaxed) == 0 {
            feed.forget();
            db = None;
        } else {
            let result = match db.as_mut() {
                Some(d) => Ok(d),
                None => connect().map(|d| db.insert(d)),
            }
            .and_then(|d| {
                views::snapshot(d, crate::clock::Clock::now_ms(&crate::clock::SystemClock))
            });
            match result {
                Ok(json) => {
                    feed.publish(json);
                    last_error.clear();
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        tracing::warn!(
                            "dashboard live snapshot failed: {msg}; the open pages keep the \
                             last state and it is tried again every second"
                        );
                        last_error = msg;
                    }
                    db = None;
                }
            }
        }
        let spent = started.elapsed();
        // Sleep the rest of the tick in short steps to see the stop.
        let mut left = TICK.saturating_sub(spent);
        while !left.is_zero() && !stop.load(Ordering::Relaxed) {
            let step = left.min(Duration::from_millis(100));
            std::thread::sleep(step);
            left = left.saturating_sub(step);
        }
    }
}

/// One event's bytes: `event: snapshot`, the document on `data:` lines.
pub fn event(json: &str) -> Vec<u8> {
    let mut out = String::with_capacity(json.len() + 32);
    out.push_str("event: snapshot\n");
    for line in json.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

/// Serve one stream until it ends; `alive` says whether the session still is.
pub fn serve(
    out: &mut dyn Write,
    feed: &Feed,
    head: &[u8],
    alive: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    out.write_all(head)?;
    out.write_all(b"retry: 3000\n\n")?;
    out.flush()?;
    let mut seen = 0;
    let mut last_write = Instant::now();
    loop {
        match feed.wait_newer(seen, TICK) {
            Wake::Stopped => return Ok(()),
            Wake::Snapshot(version, json) => {
                out.write_all(&event(&json))?;
                out.flush()?;
                seen = version;
                last_write = Instant::now();
            }
            Wake::Timeout => {}
        }
        if !alive() {
            return Ok(());
        }
        if last_write.elapsed() >= KEEPALIVE {
            out.write_all(b": keepalive\n\n")?;
            out.flush()?;
            last_write = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_feed_publishes_only_changes_and_wakes_waiters() {
        let feed = Feed::default();
        assert_eq!(feed.wait_newer(0, Duration::from_millis(10)), Wake::Timeout);
        assert!(feed.publish("{\"a\":1}".into()));
        assert!(!feed.publish("{\"a\":1}".into()));
        let Wake::Snapshot(v, json) = feed.wait_newer(0, Duration::from_millis(10)) else {
            panic!("a snapshot expected");
        };
        assert_eq!((v, &*json), (1, "{\"a\":1}"));
        assert_eq!(feed.wait_newer(1, Duration::from_millis(10)), Wake::Timeout);
        feed.stop();
        assert_eq!(feed.wait_newer(1, Duration::from_secs(10)), Wake::Stopped);
        assert_eq!(event("{\n}"), b"event: snapshot\ndata: {\ndata: }\n\n");
    }
}
