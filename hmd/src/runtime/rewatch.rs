//! A restart forgets no VM: the VMs this monitor's previous run left DETECTED in the
//! HSDB are watched again until they re-pair (the seed's `vioHmRestartVMs`, called by
//! the processing thread at start-up: "vioHmRestartVMs: VMs to Restart=0, rc=0",
//! seed 004 L8365-8367).
//!
//! A VM re-pairs when its agent, seeing the new Hello identifier, opens a new session
//! (`Established`); from then on the heartbeat table watches it as any other VM. One
//! that has not re-paired by the deadline — one Hello period (the agent may miss the
//! first Hello) plus `vm_miss_after` (the miss detection every VM is owed) after the
//! start — is declared MISSING. Without this, a VM that died while the monitor was down
//! stays DETECTED in the HSDB forever: a failure nobody reports.
//!
//! Pure and clock-injected: the driver gives the time.

use std::collections::HashSet;

use dataplane::message::Uuid;
use dataplane::time::Instant;

/// The VMs still expected to re-pair, and when they are given up on.
#[derive(Debug)]
pub(super) struct Rewatch {
    waiting: HashSet<Uuid>,
    deadline: Instant,
    /// An interface is deaf: no verdict until [`Rewatch::resume`] (the VMs may be
    /// behind it; which interface a VM uses is not in the HSDB).
    held: bool,
}

impl Rewatch {
    /// Watch `vms` again until `deadline`.
    pub(super) fn new(vms: impl IntoIterator<Item = Uuid>, deadline: Instant) -> Rewatch {
        Rewatch {
            waiting: vms.into_iter().collect(),
            deadline,
            held: false,
        }
    }

    /// VMs not re-paired yet.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// `vm` opened a session with this run: no longer waited for. True if it was.
    pub(super) fn paired(&mut self, vm: &Uuid) -> bool {
        self.waiting.remove(vm)
    }

    /// An interface lost its carrier: the VMs that could not re-pair through it are
    /// not given up on while it is deaf.
    pub(super) fn hold(&mut self) {
        self.held = true;
    }

    /// Every interface hears again: give up on the VMs that have not re-paired by
    /// `deadline` (or by the original deadline, if later).
    pub(super) fn resume(&mut self, deadline: Instant) {
        self.held = false;
        self.deadline = self.deadline.max(deadline);
    }

    /// When [`Rewatch::expire`] must run; `None` once nothing is waited for, or while
    /// held.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        (!self.waiting.is_empty() && !self.held).then_some(self.deadline)
    }

    /// At or after the deadline: every VM that has not re-paired, by UUID (and none is
    /// waited for any more). Before it, or while held: nothing.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Uuid> {
        if self.held || now < self.deadline || self.waiting.is_empty() {
            return Vec::new();
        }
        let mut gone: Vec<Uuid> = self.waiting.drain().collect();
        gone.sort_unstable();
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    #[test]
    fn unpaired_vms_expire_at_the_deadline_not_before() {
        let deadline = Instant::from_millis(1500);
        let mut r = Rewatch::new([vm(3), vm(1), vm(2)], deadline);
        assert_eq!(r.len(), 3);
        assert_eq!(r.next_deadline(), Some(deadline));
        assert!(r.paired(&vm(2)));
        assert!(!r.paired(&vm(2)), "paired once");
        assert!(!r.paired(&vm(9)), "never waited for");
        assert_eq!(r.expire(Instant::from_millis(1499)), []);
        assert_eq!(r.len(), 2);
        assert_eq!(r.expire(deadline), [vm(1), vm(3)]);
        assert_eq!(r.len(), 0);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expire(Instant::from_millis(9999)), []);
    }

    #[test]
    fn a_deaf_interface_holds_the_verdict_until_a_new_deadline() {
        let mut r = Rewatch::new([vm(1), vm(2)], Instant::from_millis(1500));
        r.hold();
        assert_eq!(r.next_deadline(), None, "no wake-up while held");
        assert_eq!(r.expire(Instant::from_millis(5000)), []);
        assert!(
            r.paired(&vm(2)),
            "re-pairing through another interface still counts"
        );
        // Carrier back at 5 s: the VM is owed until 6.5 s.
        r.resume(Instant::from_millis(6500));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(6500)));
        assert_eq!(r.expire(Instant::from_millis(6499)), []);
        assert_eq!(r.expire(Instant::from_millis(6500)), [vm(1)]);
        // Resuming never brings a deadline forward.
        let mut r = Rewatch::new([vm(1)], Instant::from_millis(9000));
        r.hold();
        r.resume(Instant::from_millis(100));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(9000)));
    }

    #[test]
    fn nothing_to_rewatch_needs_no_wake_up() {
        let mut r = Rewatch::new([], Instant::from_millis(10));
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expire(Instant::from_millis(20)), []);
        // Every VM re-paired: no deadline either.
        let mut r = Rewatch::new([vm(1)], Instant::from_millis(10));
        assert!(r.paired(&vm(1)));
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expire(Instant::from_millis(20)), []);
    }
}
