//! Receive side of a session: duplicate detection over 8-bit packet numbers, and
//! reassembly of fragmented messages per priority.

use std::time::Duration;

use crate::time::Instant;

/// Packet numbers remembered behind the highest one received (`docs/hvncp.md` §3.5).
pub const DEDUP_WINDOW: u8 = 64;

/// `now - last > horizon`, in integer nanoseconds (this runs for every packet; building
/// a `Duration` would cost a division).
#[inline]
fn silent_longer_than(last: Instant, now: Instant, horizon: Duration) -> bool {
    let horizon = u64::try_from(horizon.as_nanos()).unwrap_or(u64::MAX);
    now.as_nanos().saturating_sub(last.as_nanos()) > horizon
}

/// What the duplicate window says about a packet number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never delivered: deliver it.
    New,
    /// Already delivered: acknowledge again, deliver nothing.
    Duplicate,
    /// Too far behind to tell: drop it (`drop_stale`).
    Stale,
}

/// The numbers recently received from the peer.
///
/// 8-bit numbers wrap, so "ahead" and "behind" are taken modulo 256: up to 127 ahead is
/// new, up to 63 behind is looked up in the bitmap, further behind is stale. After a
/// silence longer than the sender's whole retransmission span no duplicate can still be
/// on its way, so the window forgets and any number is new again: a peer that lost 128
/// heartbeats in a row is not mistaken for a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxWindow {
    highest: u8,
    /// Bit i set: number `highest - i` was received.
    bitmap: u64,
    last_rx: Instant,
}

impl RxWindow {
    /// A window expecting `first` as the next number (from the peer's SYN). The 64
    /// numbers before it count as already seen: a delayed packet of the session this SYN
    /// replaced must not be delivered into the new one.
    pub fn new(first: u8, now: Instant) -> RxWindow {
        RxWindow {
            highest: first.wrapping_sub(1),
            bitmap: !0,
            last_rx: now,
        }
    }

    /// Classify `number` without recording it.
    pub fn classify(&self, number: u8, now: Instant, horizon: Duration) -> Seen {
        if silent_longer_than(self.last_rx, now, horizon) {
            return Seen::New;
        }
        let ahead = number.wrapping_sub(self.highest);
        if ahead != 0 && ahead < 128 {
            return Seen::New;
        }
        let behind = self.highest.wrapping_sub(number);
        if behind >= DEDUP_WINDOW {
            Seen::Stale
        } else if self.bitmap & (1u64 << behind) != 0 {
            Seen::Duplicate
        } else {
            Seen::New
        }
    }

    /// Note that the peer is still sending (a duplicate or stale packet arrived).
    pub fn touch(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// Record `number` as delivered. Call only after [`RxWindow::classify`] said `New`.
    pub fn record(&mut self, number: u8, now: Instant, horizon: Duration) {
        if silent_longer_than(self.last_rx, now, horizon) {
            self.highest = number;
            self.bitmap = 1;
            self.last_rx = now;
            return;
        }
        self.last_rx = now;
        let ahead = number.wrapping_sub(self.highest);
        if ahead != 0 && ahead < 128 {
            self.bitmap = if u32::from(ahead) >= u64::BITS {
                0
            } else {
                self.bitmap << ahead
            };
            self.bitmap |= 1;
            self.highest = number;
        } else {
            let behind = self.highest.wrapping_sub(number);
            if behind < DEDUP_WINDOW {
                self.bitmap |= 1u64 << behind;
            }
        }
    }

    /// Classify `number` and, if new, record it.
    pub fn check_and_record(&mut self, number: u8, now: Instant, horizon: Duration) -> Seen {
        let seen = self.classify(number, now, horizon);
        match seen {
            Seen::New => self.record(number, now, horizon),
            Seen::Duplicate | Seen::Stale => self.touch(now),
        }
        seen
    }
}

/// One received fragment.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// Fragment index.
    pub index: u8,
    /// BEG flag.
    pub first: bool,
    /// END flag.
    pub last: bool,
    /// Its payload.
    pub data: &'a [u8],
}

/// Outcome of adding one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// More fragments needed.
    Partial,
    /// The whole message.
    Complete(Vec<u8>),
}

/// Why a fragment could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassemblyError {
    /// The message would exceed the size limit, or a fragment contradicts the others.
    Malformed,
    /// An earlier message of this priority was discarded incomplete; its missing
    /// fragments are refused (not acknowledged) so the sender fails loudly instead of
    /// believing it was delivered.
    Poisoned,
    /// The memory budget for reassembly is exhausted; the fragment is not acknowledged
    /// and will be retransmitted.
    OverBudget,
}

/// One message being reassembled.
///
/// The sender has at most one acknowledged message in flight per priority
/// (`docs/hvncp.md` §3.6), so every fragment of a priority belongs to the same message
/// until it completes.
#[derive(Debug, Default)]
pub struct Reassembly {
    parts: Vec<Option<Box<[u8]>>>,
    /// Fragment count, known once the END fragment arrived.
    total: Option<usize>,
    received: usize,
    bytes: usize,
    last_progress: Option<Instant>,
    poisoned: bool,
}

impl Reassembly {
    /// True when a message is partly received.
    pub fn in_progress(&self) -> bool {
        self.received > 0
    }

    /// True after an incomplete message was discarded, until the peer's next SYN.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When an incomplete message must be discarded, if one is held.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_progress() {
            self.last_progress.map(|t| t + timeout)
        } else {
            None
        }
    }

    /// Discard the incomplete message if it made no progress for `timeout`. Returns
    /// the bytes released; the priority is then poisoned until the next SYN.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Option<usize> {
        let deadline = self.deadline(timeout)?;
        if now < deadline {
            return None;
        }
        let freed = self.bytes;
        *self = Reassembly {
            poisoned: true,
            ..Reassembly::default()
        };
        Some(freed)
    }

    /// Forget everything, poison included (on a new SYN from the peer).
    pub fn reset(&mut self) -> usize {
        let freed = self.bytes;
        *self = Reassembly::default();
        freed
    }

    /// Add a fragment. `budget` is the number of bytes this session may still hold.
    pub fn add(
        &mut self,
        now: Instant,
        fragment: Fragment<'_>,
        max_message: usize,
        budget: usize,
    ) -> Result<Assembled, ReassemblyError> {
        let Fragment {
            index,
            first,
            last,
            data,
        } = fragment;
        if self.poisoned {
            return Err(ReassemblyError::Poisoned);
        }
        let index = usize::from(index);
        if index >= super::config::MAX_FRAGMENTS
            || (first && index != 0)
            || self.total.is_some_and(|t| index >= t)
            || (last && self.received > 0 && self.parts.len() > index + 1)
        {
            return Err(ReassemblyError::Malformed);
        }
        if self.bytes + data.len() > max_message {
            // Drop the message and refuse the rest of it: acknowledging its remaining
            // fragments would tell the sender a discarded message was delivered.
            self.reset();
            self.poisoned = true;
            return Err(ReassemblyError::Malformed);
        }
        if data.len() > budget {
            return Err(ReassemblyError::OverBudget);
        }
        if self.parts.len() <= index {
            self.parts.resize_with(index + 1, || None);
        }
        if self.parts[index].is_some() {
            // A different packet number carrying a fragment we hold: cannot be a
            // retransmission (those are caught by the duplicate window).
            return Err(ReassemblyError::Malformed);
        }
        self.parts[index] = Some(data.into());
        self.received += 1;
        self.bytes += data.len();
        self.last_progress = Some(now);
        if last {
            self.total = Some(index + 1);
        }
        match self.total {
            Some(total) if self.received == total => {
                let mut out = Vec::with_capacity(self.bytes);
                for part in self.parts.drain(..).flatten() {
                    out.extend_from_slice(&part);
                }
                *self = Reassembly::default();
                Ok(Assembled::Complete(out))
            }
            _ => Ok(Assembled::Partial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(10);

    fn frag(index: u8, first: bool, last: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            index,
            first,
            last,
            data,
        }
    }

    #[test]
    fn window_new_duplicate_stale() {
        let t = Instant::from_millis(0);
        let mut w = RxWindow::new(250, t);
        assert_eq!(w.check_and_record(250, t, H), Seen::New);
        assert_eq!(w.check_and_record(250, t, H), Seen::Duplicate);
        // Wraps past 255.
        assert_eq!(w.check_and_record(3, t, H), Seen::New);
        assert_eq!(w.check_and_record(252, t, H), Seen::New, "late but unseen");
        assert_eq!(w.check_and_record(252, t, H), Seen::Duplicate);
        assert_eq!(w.check_and_record(3, t, H), Seen::Duplicate);
        // 64 behind the highest (3) is stale.
        assert_eq!(w.check_and_record(3u8.wrapping_sub(64), t, H), Seen::Stale);
        assert_eq!(
            w.check_and_record(3u8.wrapping_sub(63), t, H),
            Seen::Duplicate,
            "196 is before the SYN's 250: a packet of the replaced session"
        );
    }

    #[test]
    fn numbers_before_the_syn_are_never_delivered() {
        let t = Instant::from_millis(0);
        let mut w = RxWindow::new(10, t);
        for n in (10u8.wrapping_sub(63)..=255).chain(0..10) {
            assert_eq!(w.check_and_record(n, t, H), Seen::Duplicate, "{n}");
        }
        assert_eq!(w.check_and_record(10, t, H), Seen::New);
    }

    #[test]
    fn window_jump_clears_bitmap() {
        let t = Instant::from_millis(0);
        let mut w = RxWindow::new(0, t);
        assert_eq!(w.check_and_record(0, t, H), Seen::New);
        assert_eq!(w.check_and_record(100, t, H), Seen::New);
        assert_eq!(w.check_and_record(0, t, H), Seen::Stale);
        assert_eq!(w.check_and_record(99, t, H), Seen::New);
    }

    #[test]
    fn window_forgets_after_silence() {
        let mut w = RxWindow::new(0, Instant::from_millis(0));
        assert_eq!(w.check_and_record(5, Instant::from_millis(1), H), Seen::New);
        // 130 numbers later (wrapped to "behind") after a long silence: accepted.
        let later = Instant::from_millis(1) + H + Duration::from_millis(1);
        assert_eq!(
            w.check_and_record(5u8.wrapping_add(130), later, H),
            Seen::New
        );
        assert_eq!(
            w.check_and_record(5u8.wrapping_add(130), later, H),
            Seen::Duplicate
        );
    }

    #[test]
    fn reassembly_out_of_order() {
        let t = Instant::from_millis(0);
        let mut r = Reassembly::default();
        assert_eq!(
            r.add(t, frag(2, false, true, b"ef"), 100, 100),
            Ok(Assembled::Partial)
        );
        assert_eq!(
            r.add(t, frag(0, true, false, b"ab"), 100, 100),
            Ok(Assembled::Partial)
        );
        assert_eq!(r.bytes(), 4);
        assert_eq!(
            r.add(t, frag(1, false, false, b"cd"), 100, 100),
            Ok(Assembled::Complete(b"abcdef".to_vec()))
        );
        assert!(!r.in_progress());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn reassembly_limits_and_poison() {
        let t = Instant::from_millis(0);
        let mut r = Reassembly::default();
        assert_eq!(
            r.add(t, frag(0, true, false, &[0; 60]), 100, 100),
            Ok(Assembled::Partial)
        );
        assert_eq!(
            r.add(t, frag(1, false, false, &[0; 60]), 100, 100),
            Err(ReassemblyError::Malformed),
            "beyond max_message"
        );
        assert!(!r.in_progress(), "oversized message dropped whole");
        assert_eq!(
            r.add(t, frag(2, false, true, &[0; 10]), 100, 100),
            Err(ReassemblyError::Poisoned),
            "the rest of the oversized message is refused"
        );
        r.reset();
        assert_eq!(
            r.add(t, frag(0, true, false, &[0; 60]), 100, 10),
            Err(ReassemblyError::OverBudget)
        );
        assert_eq!(
            r.add(t, frag(3, true, false, b"x"), 100, 100),
            Err(ReassemblyError::Malformed)
        );
        assert_eq!(
            r.add(t, frag(0, true, false, b"x"), 100, 100),
            Ok(Assembled::Partial)
        );
        let timeout = Duration::from_secs(2);
        assert_eq!(r.deadline(timeout), Some(t + timeout));
        assert_eq!(r.expire(t + Duration::from_secs(1), timeout), None);
        assert_eq!(r.expire(t + timeout, timeout), Some(1));
        assert_eq!(
            r.add(t, frag(1, false, true, b"y"), 100, 100),
            Err(ReassemblyError::Poisoned)
        );
        r.reset();
        assert_eq!(
            r.add(t, frag(0, true, true, b"z"), 100, 100),
            Ok(Assembled::Complete(b"z".to_vec()))
        );
    }
}
