//! Bounded replies: a discovery storm of 100,000 VMs is consumed in steps, each reply
//! carrying at most the configured number of items, every VM reported exactly once
//! across the acknowledged replies.

#![allow(clippy::unwrap_used)]

mod hs_support;

use std::collections::HashSet;

use controlplane::hs::{self, NeedsAttEntry};
use hs_support::*;
use hsdb::{MacAddr, Transition, Uuid};

const VMS: u32 = 100_000;
const MAX_ITEMS: usize = 7_000;

fn vm_n(i: u32) -> Uuid {
    let mut bytes = [0x5a; 16];
    bytes[12..].copy_from_slice(&i.to_be_bytes());
    Uuid(bytes)
}

#[test]
fn test_discovery_storm_consumed_in_steps() {
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    lab.config.max_items = MAX_ITEMS;
    let hm = uuid(H_212424W.monitors[0]);
    let batch: Vec<Transition> = (0..VMS)
        .map(|i| {
            let b = i.to_be_bytes();
            Transition::Discovered {
                vm: vm_n(i),
                hm,
                mac: MacAddr([0x6a, 0x02, b[0], b[1], b[2], b[3]]),
                ostype: "linux".into(),
                ver_lower: V2_0,
                ver_upper: V2_0,
                at: T0 + 1_000,
            }
        })
        .collect();
    lab.apply(&batch);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 1_000);

    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut replies = 0;
    loop {
        replies += 1;
        assert!(replies <= 100, "the storm never drains");
        let (reply, xml) = lab.na(now + replies, 1_000 + replies);
        let vms: Vec<Uuid> = reply
            .reply
            .entries
            .iter()
            .flat_map(|e| match e {
                NeedsAttEntry::Vms { vms, .. } => vms.iter().map(|v| v.uuid).collect(),
                NeedsAttEntry::Vios(_) => vec![],
            })
            .collect();
        assert!(
            vms.len() <= MAX_ITEMS,
            "reply {replies}: {} items",
            vms.len()
        );
        assert!(
            xml.len() < 200 * MAX_ITEMS + 4_096,
            "reply {replies}: {} bytes",
            xml.len()
        );
        for vm in &vms {
            assert!(seen.insert(*vm), "{vm} reported twice");
        }
        match reply.reply.tag {
            Some(tag) => {
                assert!(!vms.is_empty());
                assert_eq!(hs::acknowledge(&mut lab.db, tag).unwrap().items, vms.len());
            }
            None => {
                assert!(vms.is_empty() && !reply.more);
                break;
            }
        }
        // `more` says exactly whether another full reply is due.
        assert_eq!(reply.more, seen.len() < VMS as usize, "reply {replies}");
    }
    assert_eq!(seen.len(), VMS as usize);
    // 100,000 / 7,000 → 15 replies with items, then the empty one.
    assert_eq!(replies, 16);
}
