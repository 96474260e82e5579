//! The monitor reports its own health (docs/architecture.md, "The monitor's own
//! health"): its interfaces' carrier, and its graceful stop.
//!
//! - **Carrier.** Every [`LINK_CHECK`] each interface's flags are read
//!   ([`dataplane::io::has_carrier`]: up and running). A change is logged once, written
//!   to the HSDB (`hm_interface` row and an `HM_EVENT` in the seed's adapter-event form,
//!   `EVENT_TYPE=ADAPTER_DOWN`, seed 004 L6644-6667), and given to the heartbeat table:
//!   while an interface is deaf the misses of its VMs are withheld, and when it hears
//!   again each of them is owed a full `vm_miss_after` (MISSING only if still silent
//!   then). The previous run's VMs awaiting re-pairing are held the same way.
//! - **Graceful stop.** The monitor's row goes DOWN with the seed's node-shutdown reason,
//!   0x40 (`REASON=NODE_SHUTDOWN`, seed 004 L7012-7014, L7083-7085), and an `HM_EVENT`
//!   says so; a start registers it UP again (`Hsdb::register_hm`). A monitor killed
//!   (`kill -9`, a crash) writes nothing: its silence, `last_hb_ms` ageing, is what the
//!   control plane sees.

use std::time::Duration;

use dataplane::io::InterfaceName;
use dataplane::time::Instant;
use hsdb::{HmState, InterfaceState, Transition};

use super::{Monitor, epoch_ms};

/// How often the interfaces' carrier is read. A quarter of a second keeps a cable pull
/// well inside the shortest `vm_miss_after` (1 s), for one ioctl per interface.
pub(super) const LINK_CHECK: Duration = Duration::from_millis(250);

/// The seed's reason code for a node shut down on purpose (CAA `REASON=NODE_SHUTDOWN`,
/// seed 004 L7012-7014).
pub(super) const NODE_SHUTDOWN: u32 = 0x40;

/// Whether interface `name` is up with carrier; `false` when it cannot be read (gone).
pub(super) fn carrier(name: &InterfaceName) -> bool {
    dataplane::io::has_carrier(name).unwrap_or(false)
}

/// The `hm_interface` state of a carrier.
pub(super) fn interface_state(carrier: bool) -> InterfaceState {
    if carrier {
        InterfaceState::Up
    } else {
        InterfaceState::Down
    }
}

impl Monitor<'_> {
    /// Read every interface's carrier if a check is due (or `force`d after a receive
    /// error) and act on the changes.
    pub(super) fn on_link_check(&mut self, now: Instant, force: bool) {
        if !force && now < self.next_link_check {
            return;
        }
        self.next_link_check = now + LINK_CHECK;
        for i in 0..self.interfaces.len() {
            let name = self.config.interfaces[i];
            let up = carrier(&name);
            if up != self.interfaces[i].carrier {
                self.on_carrier_change(now, i, up);
            }
        }
    }

    /// Interface number `i` lost (`up == false`) or regained its carrier.
    fn on_carrier_change(&mut self, now: Instant, i: usize, up: bool) {
        let key = u16::try_from(i).unwrap_or(u16::MAX);
        self.interfaces[i].carrier = up;
        let iface = self.interfaces[i].name.clone();
        let miss_after_ms = self.config.vm_miss_after.as_millis();
        if up {
            let withheld = self.table.set_hearing(key, true, now);
            tracing::info!(
                %iface,
                withheld_vms = withheld,
                miss_after_ms,
                "interface has its carrier again: its VMs must heartbeat within vm_miss_after"
            );
            if self.interfaces.iter().all(|i| i.carrier) {
                let deadline = now + self.config.hello_period + self.config.vm_miss_after;
                self.rewatch.resume(deadline);
                self.awaited.resume(deadline);
            }
        } else {
            self.table.set_hearing(key, false, now);
            self.rewatch.hold();
            self.awaited.hold();
            tracing::warn!(
                %iface,
                "interface lost its carrier: the monitor hears none of its VMs; their misses are withheld until it is back and vm_miss_after has passed"
            );
        }
        self.pending.push(Transition::HmInterface {
            hm: self.config.monitor_uuid,
            interface: iface,
            state: interface_state(up),
            at: epoch_ms(&self.clock, now),
        });
    }

    /// The graceful stop's mark in the HSDB: the monitor DOWN, reason NODE_SHUTDOWN.
    pub(super) fn shutdown_event(&mut self) {
        let at = epoch_ms(&self.clock, self.clock.now());
        self.pending.push(Transition::HmEvent {
            hm: self.config.monitor_uuid,
            state: HmState::Down,
            reason: NODE_SHUTDOWN,
            text: "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN\n".to_string(),
            at,
        });
    }
}
