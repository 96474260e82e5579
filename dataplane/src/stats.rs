//! Counters for every stage and every drop reason of an endpoint.
//!
//! Plain integers owned by the thread that owns the endpoint (no atomics on the
//! per-frame path); daemons publish snapshots of them.

use crate::session::Refusal;
use crate::wire;

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Counters of one endpoint. Names match the Prometheus metrics and
        /// `docs/hvncp.md`.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl Counters {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$( (stringify!($name), self.$name) ),*].into_iter()
            }

            /// Every counter's name and description (its documentation, for the
            /// `# HELP` line of a metrics page), in declaration order.
            pub const HELP: &'static [(&'static str, &'static str)] =
                &[$( (stringify!($name), concat!($($doc),*)) ),*];
        }
    };
}

counters! {
    /// Frames handed to the endpoint.
    frames_in,
    /// Frames produced for sending.
    frames_out,
    /// Heartbeats received and accepted.
    heartbeats_in,
    /// Heartbeats whose packet number was already seen, taken as liveness anyway.
    heartbeats_duplicate,
    /// Heartbeats sent.
    heartbeats_out,
    /// Hellos received.
    hellos_in,
    /// Hellos sent.
    hellos_out,
    /// Reliable messages delivered to the application.
    messages_in,
    /// Frames shorter than the headers, or whose payload length runs past the frame.
    drop_truncated,
    /// Frames of another EtherType.
    drop_ethertype,
    /// Frames of another major version.
    drop_version,
    /// Frames with a bad checksum.
    drop_checksum,
    /// Frames with an impossible flag combination.
    drop_flags,
    /// Frames with a payload longer than one packet may carry.
    drop_oversized,
    /// Frames addressed to another MAC, or sent by ourselves.
    drop_not_for_us,
    /// Frames from a MAC with no session that do not open one.
    drop_no_session,
    /// Data from a peer whose SYN we do not hold.
    drop_not_open,
    /// Packets older than the duplicate window.
    drop_stale,
    /// Fragments refused by reassembly, and partial messages discarded on timeout.
    drop_reassembly,
    /// Fragments refused because reassembly memory was exhausted.
    drop_budget,
    /// New peers refused because the session table is full of established peers.
    drop_table_full,
    /// New peers refused, with no state created, because every half-open place is
    /// taken by a handshake younger than the half-open grace (they retry).
    drop_half_open_full,
    /// Packets received twice (acknowledged again, not delivered).
    duplicates,
    /// Acknowledgements of nothing in flight.
    acks_unexpected,
    /// Well-formed messages with a verb we do not know.
    msg_unknown,
    /// Payloads that are not valid messages for their context.
    msg_malformed,
    /// SYNs refused (bad properties, incompatible version, identity conflict).
    syn_refused,
    /// SYNs of an agent incarnation that a later one replaced, dropped.
    syn_old_incarnation,
    /// SYNs without ACKR on an open session (refreshes): accepted, nothing changes.
    syn_refreshes,
    /// Handshakes that failed: our SYN never acknowledged, or the peer's never sent.
    handshakes_failed,
    /// Sessions that became established.
    sessions_established,
    /// Sessions that failed or were closed.
    sessions_closed,
    /// Sessions a monitor opened from its side because an agent kept sending data
    /// (after the monitor restarted or its side of the session failed).
    sessions_reopened,
    /// Peers added to the table.
    peers_added,
    /// Half-open peers evicted to make room for a new one (the oldest first).
    peers_evicted,
    /// Peers removed by the application (refused SYNs included).
    peers_removed,
}

impl Counters {
    /// Count a frame the wire layer refused.
    pub fn count_wire(&mut self, e: wire::Error) {
        let c = match e {
            wire::Error::Truncated { .. } | wire::Error::LengthBeyondFrame { .. } => {
                &mut self.drop_truncated
            }
            wire::Error::WrongEtherType { .. } => &mut self.drop_ethertype,
            wire::Error::BadVersion { .. } => &mut self.drop_version,
            wire::Error::BadChecksum { .. } => &mut self.drop_checksum,
            wire::Error::InvalidFlags { .. } => &mut self.drop_flags,
            wire::Error::Oversized { .. } | wire::Error::BufferTooSmall { .. } => {
                &mut self.drop_oversized
            }
        };
        *c += 1;
    }

    /// Count a frame a session refused.
    pub fn count_refusal(&mut self, r: Refusal) {
        let c = match r {
            Refusal::NotOpen => &mut self.drop_not_open,
            Refusal::Stale => &mut self.drop_stale,
            Refusal::Reassembly => &mut self.drop_reassembly,
            Refusal::OverBudget => &mut self.drop_budget,
            Refusal::Oversized => &mut self.drop_oversized,
            Refusal::Hello => &mut self.msg_malformed,
            Refusal::UnexpectedAck => &mut self.acks_unexpected,
        };
        *c += 1;
    }

    /// Sum of every `drop_*` counter.
    pub fn drops(&self) -> u64 {
        self.iter()
            .filter(|(name, _)| name.starts_with("drop_"))
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mapping() {
        let mut c = Counters::default();
        c.count_wire(wire::Error::BadChecksum {
            found: 1,
            computed: 2,
        });
        c.count_wire(wire::Error::LengthBeyondFrame {
            len: 9,
            available: 1,
        });
        c.count_refusal(Refusal::Stale);
        assert_eq!(c.drop_checksum, 1);
        assert_eq!(c.drop_truncated, 1);
        assert_eq!(c.drop_stale, 1);
        assert_eq!(c.drops(), 3);
        assert!(c.iter().any(|(n, v)| n == "drop_checksum" && v == 1));
    }
}
