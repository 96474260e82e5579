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

use std::collections::{BTreeSet, HashMap};

use dataplane::message::Uuid;
use dataplane::time::Instant;

/// The VMs still expected to (re-)pair, and when each is given up on.
///
/// Two uses: the previous run's DETECTED VMs after a restart (one deadline for all), and
/// the VMs a `START_MONITORING` command found without a session (`commands.rs`, a
/// deadline per command).
#[derive(Debug, Default)]
pub(super) struct Rewatch {
    /// VM -> its deadline.
    waiting: HashMap<Uuid, Instant>,
    /// The same, ordered by deadline.
    order: BTreeSet<(Instant, Uuid)>,
    /// An interface is deaf: no verdict until [`Rewatch::resume`] (the VMs may be
    /// behind it; which interface a VM uses is not in the HSDB).
    held: bool,
}

impl Rewatch {
    /// Watch `vms` again until `deadline`.
    pub(super) fn new(vms: impl IntoIterator<Item = Uuid>, deadline: Instant) -> Rewatch {
        let mut r = Rewatch::default();
        for vm in vms {
            r.add(vm, deadline);
        }
        r
    }

    /// Wait for `vm` until `deadline` (a later deadline if it is waited for already).
    pub(super) fn add(&mut self, vm: Uuid, deadline: Instant) {
        let deadline = match self.waiting.get(&vm) {
            Some(&old) if old >= deadline => return,
            Some(&old) => {
                self.order.remove(&(old, vm));
                deadline
            }
            None => deadline,
        };
        self.waiting.insert(vm, deadline);
        self.order.insert((deadline, vm));
    }

    /// VMs not re-paired yet.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether `vm` is waited for.
    pub(super) fn contains(&self, vm: &Uuid) -> bool {
        self.waiting.contains_key(vm)
    }

    /// `vm` opened a session with this run (or is no longer to be waited for): no
    /// longer waited for. True if it was.
    pub(super) fn paired(&mut self, vm: &Uuid) -> bool {
        match self.waiting.remove(vm) {
            Some(deadline) => {
                self.order.remove(&(deadline, *vm));
                true
            }
            None => false,
        }
    }

    /// An interface lost its carrier: the VMs that could not re-pair through it are
    /// not given up on while it is deaf.
    pub(super) fn hold(&mut self) {
        self.held = true;
    }

    /// Every interface hears again: give up on the VMs that have not re-paired by
    /// `deadline` (or by their own deadline, if later). O(VMs waited for).
    pub(super) fn resume(&mut self, deadline: Instant) {
        self.held = false;
        let late: Vec<(Instant, Uuid)> = self
            .order
            .iter()
            .take_while(|(d, _)| *d < deadline)
            .copied()
            .collect();
        for (old, vm) in late {
            self.order.remove(&(old, vm));
            self.order.insert((deadline, vm));
            self.waiting.insert(vm, deadline);
        }
    }

    /// When [`Rewatch::expire`] must run; `None` once nothing is waited for, or while
    /// held.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.held {
            return None;
        }
        self.order.first().map(|(d, _)| *d)
    }

    /// Every VM whose deadline is at or before `now` and that has not re-paired, by
    /// UUID (and these are no longer waited for). While held: nothing.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Uuid> {
        if self.held {
            return Vec::new();
        }
        let mut gone = Vec::new();
        while let Some(&(deadline, vm)) = self.order.first() {
            if deadline > now {
                break;
            }
            self.order.pop_first();
            self.waiting.remove(&vm);
            gone.push(vm);
        }
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
    fn each_vm_keeps_its_own_deadline() {
        let mut r = Rewatch::default();
        r.add(vm(1), Instant::from_millis(3000));
        r.add(vm(2), Instant::from_millis(1000));
        r.add(vm(3), Instant::from_millis(2000));
        // A later deadline replaces an earlier one, never the reverse.
        r.add(vm(3), Instant::from_millis(2500));
        r.add(vm(3), Instant::from_millis(100));
        assert!(r.contains(&vm(3)));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(1000)));
        assert_eq!(r.expire(Instant::from_millis(999)), []);
        assert_eq!(r.expire(Instant::from_millis(2400)), [vm(2)]);
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(2500)));
        assert!(r.paired(&vm(3)));
        assert!(!r.contains(&vm(3)));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(3000)));
        // Held at 2.9 s, resumed with a 3.5 s deadline: vm 1 is owed until then.
        r.hold();
        assert_eq!(r.expire(Instant::from_millis(3200)), []);
        r.resume(Instant::from_millis(3500));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(3500)));
        assert_eq!(r.expire(Instant::from_millis(3499)), []);
        assert_eq!(r.expire(Instant::from_millis(3500)), [vm(1)]);
        assert_eq!(r.len(), 0);
        assert_eq!(r.next_deadline(), None);
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
