//! Golden tests: the seed's example replies (seed-controlplane.md §2.3-§2.5) rebuilt from
//! HSDB states set up through the store's real API (hosts, monitors, transitions at chosen
//! times), compared with the seed's text up to white space, quote style and escaping, and
//! the deviations docs/controlplane.md names ("QuickQuery, NeedsAttention, Acknowledge").

#![allow(clippy::unwrap_used)]

mod hs_support;

use controlplane::hs::xml::{XmlLimits, parse_reply, write_needs_attention};
use controlplane::hs::{
    self, DiscoveryType, NeedsAttEntry, Reply, TagSource, VmStat, serve::serve_with,
};
use hs_support::*;
use hsdb::{HmState, VmSettings, VmState};

macro_rules! seed {
    ($name:literal) => {
        include_str!(concat!("hs_seed/", $name, ".xml"))
    };
}

/// A managed VM (the controller asked for it: ADDED) whose agent then completed its
/// handshake with both monitors of `host`.
fn managed_vm(lab: &mut Lab, vm: &str, host: SeedHost, at: i64) {
    lab.db
        .set_vm(
            &uuid(vm),
            &VmSettings {
                managed: Some(true),
                ..VmSettings::default()
            },
            at,
        )
        .unwrap();
    lab.discovered_on(vm, host, at);
}

/// The VMs of the reply, by host serial.
fn vms_of(reply: &hs::NeedsAttention) -> Vec<(String, VmStat)> {
    reply
        .entries
        .iter()
        .flat_map(|e| match e {
            NeedsAttEntry::Vms { host, vms } => vms
                .iter()
                .map(|v| (host.serial.clone(), v.clone()))
                .collect(),
            NeedsAttEntry::Vios(_) => vec![],
        })
        .collect()
}

#[test]
fn test_quick_query_healthy() {
    // Seed 004 L12281-12298: every monitor UP, responsive, heard 0 or 1 s ago.
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    let now = T0 + 600_000;
    lab.hm_heartbeat(H_21E0B2V.monitors[0], now - 1_400);
    lab.hm_heartbeat(H_21E0B2V.monitors[1], now - 400);
    lab.hm_heartbeat(H_2100DEW.monitors[0], now - 1_999);
    lab.hm_heartbeat(H_2100DEW.monitors[1], now);
    assert_same_xml(
        &lab.qq(now),
        seed!("qq_healthy"),
        &[Deviation::MonitorsByUuid],
    );
}

#[test]
fn test_quick_query_unhealthy() {
    // Seed 004 L7078-7096: one node shut down (CAA NODE_DOWN, reason 0x40, event data
    // pending) and every monitor stopped for 206,498-206,499 s.
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    let last = T0 + 1_000;
    for hm in [
        H_21E0B2V.monitors[0],
        H_21E0B2V.monitors[1],
        H_2100DEW.monitors[0],
    ] {
        lab.hm_heartbeat(hm, last);
    }
    lab.hm_event(
        H_21E0B2V.monitors[0],
        HmState::Down,
        0x40,
        "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN",
        last,
    );
    let now = last + 206_498_900;
    // The fourth monitor's last heartbeat is its registration at T0: one second more.
    assert_same_xml(
        &lab.qq(now),
        seed!("qq_unhealthy"),
        &[Deviation::MonitorsByUuid],
    );
}

#[test]
fn test_needs_attention_healthy_one_host() {
    // Seed 004 L12600-12610: one empty vmList for the host with a monitored VM; the host
    // without VMs is absent; nothing to acknowledge, so no hsTag.
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    managed_vm(&mut lab, VM_LPM, H_212424W, T0 + 1_000);
    lab.settle(T0 + 2_000);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 5_000);
    let (reply, xml) = lab.na(now, 11);
    assert_eq!(reply.reply.tag, None);
    assert!(!reply.more);
    assert_same_xml(&xml, seed!("na_healthy_one_host"), &[]);
}

#[test]
fn test_needs_attention_healthy_two_hosts() {
    // Seed 004 L12673-12686: one VM on each host, both heart-beating.
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    managed_vm(&mut lab, VM_LPM, H_212424W, T0 + 1_000);
    managed_vm(
        &mut lab,
        "0d1e2f30-0000-4000-8000-000000000001",
        H_21282FW,
        T0 + 1_000,
    );
    lab.settle(T0 + 2_000);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 5_000);
    assert_same_xml(&lab.na(now, 12).1, seed!("na_healthy_two_hosts"), &[]);
}

/// A lab of the seed's LPM hosts, one managed VM on each, everything acknowledged,
/// monitors heard at `now - 5 s`.
fn lpm_lab(now: i64) -> Lab {
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    managed_vm(&mut lab, VM_LPM, H_212424W, T0 + 1_000);
    managed_vm(
        &mut lab,
        "0d1e2f30-0000-4000-8000-000000000001",
        H_21282FW,
        T0 + 1_000,
    );
    lab.settle(T0 + 2_000);
    lab.heartbeat(&hosts, now - 5_000);
    lab
}

#[test]
fn test_missed_hb_from_the_earliest_of_two_misses() {
    // Seed 004 L12821-12840, L12928-12935: counts 42 and 2 → missedHb 42, no hsTag
    // (missed heartbeats are never acknowledged).
    let now = T0 + 600_000;
    let mut lab = lpm_lab(now);
    lab.missing(VM_LPM, H_212424W.monitors[0], now - 42_300);
    lab.missing(VM_LPM, H_212424W.monitors[1], now - 2_700);
    let (reply, xml) = lab.na(now, 13);
    assert_eq!(reply.reply.tag, None);
    assert_same_xml(&xml, seed!("na_missed_hb"), &[]);
    // One second later, 43 (seed 004 L12840): the miss is a present condition, reported
    // again at every NeedsAttention, never consumed.
    let (reply, _) = lab.na(now + 1_000, 14);
    assert_eq!(vms_of(&reply.reply)[0].1.missed_hb, Some(43));
    // An acknowledgement of anything clears no miss.
    hs::acknowledge(&mut lab.db, 13).unwrap();
    hs::acknowledge(&mut lab.db, 14).unwrap();
    let (reply, _) = lab.na(now + 2_000, 15);
    assert_eq!(vms_of(&reply.reply)[0].1.missed_hb, Some(44));
    // Heartbeats back on one monitor: no longer missed on every monitor.
    lab.detected(VM_LPM, H_212424W.monitors[1], now + 2_500);
    assert_same_xml(
        &lab.na(now + 3_000, 16).1,
        seed!("na_healthy_two_hosts"),
        &[],
    );
}

#[test]
fn test_single_path_miss_not_reported() {
    // TC-9 (seed 004 L12928-12935): count1 40, count2 0 → the VM is not reported.
    let now = T0 + 600_000;
    let mut lab = lpm_lab(now);
    lab.missing(VM_LPM, H_212424W.monitors[0], now - 40_000);
    assert_same_xml(&lab.na(now, 21).1, seed!("na_healthy_two_hosts"), &[]);
}

#[test]
fn test_miss_younger_than_a_second_not_reported() {
    // Both monitors missed it, the later less than a second ago: the seed's count is 0 on
    // that monitor, so nothing is reported yet; a second later it is.
    let now = T0 + 600_000;
    let mut lab = lpm_lab(now);
    lab.missing(VM_LPM, H_212424W.monitors[0], now - 900);
    lab.missing(VM_LPM, H_212424W.monitors[1], now - 600);
    assert_same_xml(&lab.na(now, 22).1, seed!("na_healthy_two_hosts"), &[]);
    let (reply, _) = lab.na(now + 1_000, 23);
    assert_eq!(vms_of(&reply.reply)[0].1.missed_hb, Some(1));
}

#[test]
fn test_monitoring_started_state_change_then_ack() {
    // Seed 004 L12047-12066: the managed VM's monitoring reached STARTED → stateChg='1'
    // with an hsTag; acknowledged with that tag (TC-10); then the VM is no longer
    // reported until a further change.
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 5_000);
    managed_vm(&mut lab, VM_LPM, H_212424W, now - 3_000);
    let tag = -1_234_658_345_958_918_737;
    let (reply, xml) = lab.na(now, tag);
    assert_eq!(reply.reply.tag, Some(tag));
    assert_same_xml(&xml, seed!("na_started"), &[]);
    // Not acknowledged yet: reported again, under the new reply's tag.
    let (again, _) = lab.na(now + 20_000, 31);
    assert_eq!(again.reply.tag, Some(31));
    assert_eq!(vms_of(&again.reply).len(), 1);
    let acked = hs::acknowledge(&mut lab.db, 31).unwrap();
    assert!(acked.items >= 1, "{acked:?}");
    let (after, xml) = lab.na(now + 40_000, 32);
    assert_eq!(after.reply.tag, None);
    assert_same_xml(&xml, seed!("na_healthy_one_host"), &[]);
    // A further change is reported again.
    lab.apply(&[hsdb::Transition::Suspended {
        vm: uuid(VM_LPM),
        hm: uuid(H_212424W.monitors[0]),
        at: now + 41_000,
    }]);
    let (changed, _) = lab.na(now + 42_000, 33);
    let vms = vms_of(&changed.reply);
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].1.state, VmState::Suspended);
    assert!(vms[0].1.state_chg);
}

#[test]
fn test_doorbell_short_msg_tag_and_ack() {
    // Seed 004 L12107-12117: a doorbell → shortMsg="0x2" with an hsTag.
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    managed_vm(&mut lab, VM_LPM, H_212424W, T0 + 1_000);
    lab.settle(T0 + 2_000);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 5_000);
    lab.doorbell(VM_LPM, H_212424W.monitors[0], 0x2, now - 1_000);
    let tag = 1_735_421_413_719_889_094;
    let (reply, xml) = lab.na(now, tag);
    assert_same_xml(&xml, seed!("na_doorbell_0x2"), &[]);
    assert_eq!(reply.reply.tag, Some(tag));
    hs::acknowledge(&mut lab.db, tag).unwrap();
    assert_eq!(lab.db.vm(&uuid(VM_LPM)).unwrap().unwrap().short_msg, 0);
    assert_same_xml(
        &lab.na(now + 1_000, 41).1,
        seed!("na_healthy_one_host"),
        &[],
    );
}

#[test]
fn test_doorbell_0x28_two_hosts() {
    // TC-11, seed 004 L13575-13592: the FDE lab's doorbell; every needsAtt of the reply
    // carries the tag, the other host's empty list too.
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    let vm = "4e395e99-fffb-4345-8067-2d5296ba7d91";
    managed_vm(&mut lab, vm, H_21E0B2V, T0 + 1_000);
    managed_vm(
        &mut lab,
        "0d1e2f30-0000-4000-8000-000000000002",
        H_2100DEW,
        T0 + 1_000,
    );
    lab.settle(T0 + 2_000);
    let now = T0 + 60_000;
    lab.heartbeat(&hosts, now - 5_000);
    lab.doorbell(vm, H_21E0B2V.monitors[1], 0x28, now - 2_000);
    let tag = -3_026_381_694_404_356_594;
    let (reply, xml) = lab.na(now, tag);
    assert_same_xml(&xml, seed!("na_doorbell_0x28"), &[]);
    let acked = hs::acknowledge(&mut lab.db, tag).unwrap();
    assert_eq!(acked.items, 1);
    assert!(reply.reply.tag.is_some());
    let (after, _) = lab.na(now + 1_000, 51);
    assert_eq!(after.reply.tag, None);
    assert!(vms_of(&after.reply).is_empty());
}

#[test]
fn test_lost_ack_re_reported_under_a_new_tag() {
    // Gap 2: a reply whose acknowledgement never arrives is reported again by the next
    // NeedsAttention under that reply's new tag; the old tag then clears nothing.
    let now = T0 + 600_000;
    let mut lab = lpm_lab(now);
    lab.doorbell(VM_LPM, H_212424W.monitors[0], 0x2, now - 1_000);
    let (first, _) = lab.na(now, 61);
    assert_eq!(first.reply.tag, Some(61));
    // The acknowledgement of 61 is lost.
    let (second, xml) = lab.na(now + 20_000, 62);
    assert_eq!(second.reply.tag, Some(62));
    assert_eq!(vms_of(&second.reply), vms_of(&first.reply));
    // Only the tag differs from the first reply.
    assert_eq!(
        xml,
        write_needs_attention(&hs::NeedsAttention {
            tag: Some(62),
            ..first.reply.clone()
        })
    );
    // The lost acknowledgement arrives late: it clears nothing.
    assert_eq!(hs::acknowledge(&mut lab.db, 61).unwrap().items, 0);
    let (third, _) = lab.na(now + 40_000, 63);
    assert_eq!(vms_of(&third.reply).len(), 1);
    assert_eq!(hs::acknowledge(&mut lab.db, 63).unwrap().items, 1);
    assert!(vms_of(&lab.na(now + 60_000, 64).0.reply).is_empty());
}

#[test]
fn test_old_tag_never_clears_items_reported_later() {
    let now = T0 + 600_000;
    let mut lab = lpm_lab(now);
    let other = "0d1e2f30-0000-4000-8000-000000000001";
    lab.doorbell(VM_LPM, H_212424W.monitors[0], 0x2, now - 1_000);
    let (first, _) = lab.na(now, 71);
    assert_eq!(first.reply.tag, Some(71));
    // After the reply: a second doorbell of the same VM and one of another VM.
    lab.doorbell(VM_LPM, H_212424W.monitors[1], 0x8, now + 1_000);
    lab.doorbell(other, H_21282FW.monitors[0], 0x1, now + 1_000);
    assert_eq!(hs::acknowledge(&mut lab.db, 71).unwrap().items, 1);
    // The doorbell that rang after the reply survives the acknowledgement.
    assert_eq!(lab.db.vm(&uuid(VM_LPM)).unwrap().unwrap().short_msg, 0x8);
    let (second, _) = lab.na(now + 2_000, 72);
    let vms = vms_of(&second.reply);
    assert_eq!(vms.len(), 2, "{vms:?}");
    let short = |vm: &str| {
        vms.iter()
            .find(|(_, v)| v.uuid == uuid(vm))
            .and_then(|(_, v)| v.short_msg)
    };
    assert_eq!(short(VM_LPM), Some(0x8));
    assert_eq!(short(other), Some(0x1));
    // 71 again clears nothing of this reply.
    assert_eq!(hs::acknowledge(&mut lab.db, 71).unwrap().items, 0);
    assert_eq!(hs::acknowledge(&mut lab.db, 72).unwrap().items, 2);
}

#[test]
fn test_moved_vm() {
    // TC-13, seed 004 L13016-13037: after a live migration the VM is listed under its new
    // host with stateChg, discoveryInfo MOVED and the new host's monitor that has no row
    // for it yet; the old host, with no monitored VM left, is absent.
    let hosts = [H_21282FW, H_212424W];
    let mut lab = Lab::new(&hosts);
    managed_vm(&mut lab, VM_LPM, H_212424W, T0 + 1_000);
    lab.settle(T0 + 2_000);
    let now = T0 + 600_000;
    lab.heartbeat(&hosts, now - 5_000);
    lab.discovered(VM_LPM, H_21282FW.monitors[1], now - 2_000);
    let tag = -8_403_607_219_422_560_833;
    let (reply, xml) = lab.na(now, tag);
    assert_same_xml(&xml, seed!("na_moved"), &[Deviation::EachVmOnce]);
    let vm = &vms_of(&reply.reply)[0].1;
    assert_eq!(vm.discovery, Some(DiscoveryType::Moved));
    hs::acknowledge(&mut lab.db, tag).unwrap();
    // Acknowledged: nothing more about it; the new host's empty list only.
    let (after, _) = lab.na(now + 1_000, 81);
    assert_eq!(after.reply.tag, None);
    assert!(vms_of(&after.reply).is_empty());
    let serials: Vec<&str> = after
        .reply
        .entries
        .iter()
        .filter_map(|e| match e {
            NeedsAttEntry::Vms { host, .. } => Some(host.serial.as_str()),
            NeedsAttEntry::Vios(_) => None,
        })
        .collect();
    assert_eq!(serials, ["21282FW"]);
}

#[test]
fn test_vios_only_needs_attention() {
    // Seed 004 L7126-7144: every monitor stopped for 207,055 s, one node down with event
    // data: monitors only, no hsTag.
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    let last = T0 + 1_000;
    lab.heartbeat(&hosts, last);
    lab.hm_event(
        H_21E0B2V.monitors[0],
        HmState::Down,
        0x40,
        "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN",
        last,
    );
    let (reply, xml) = lab.na(last + 207_055_400, 91);
    assert_eq!(reply.reply.tag, None);
    assert_same_xml(&xml, seed!("na_vios_only"), &[Deviation::MonitorsByUuid]);
}

/// The CAA exercise after the node came back (seed 004 L7255-7302, L7533-7564): its
/// monitor UP with event data pending, two unmanaged VMs just discovered on the other
/// host.
fn mixed_lab(now: i64) -> Lab {
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    managed_vm(
        &mut lab,
        "4e395e99-fffb-4345-8067-2d5296ba7d91",
        H_21E0B2V,
        T0 + 1_000,
    );
    lab.settle(T0 + 2_000);
    let node = H_21E0B2V.monitors[0];
    lab.hm_event(
        node,
        HmState::Down,
        0x40,
        "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN",
        T0 + 10_000,
    );
    // The node and its monitor restart: UP, reason 0, the event still pending.
    lab.db
        .register_hm(&hsdb::HmRecord {
            uuid: uuid(node),
            host: H_21E0B2V.id,
            mac: hsdb::MacAddr([0x6a, 0x6a, 0, 0, 0, 1]),
            incarnation: hsdb::HelloId::parse(b"1556303999.719328000.39").unwrap(),
            version: V2_0,
            at: now - 300,
        })
        .unwrap();
    lab.heartbeat(&[H_2100DEW], now - 5_000);
    lab.hm_heartbeat(H_21E0B2V.monitors[1], now - 5_000);
    for vm in [
        "57275f1e-3680-4eef-945a-fe7670500310",
        "31603d8c-5a2f-437c-ba33-f25321415cc4",
    ] {
        lab.discovered_on(vm, H_2100DEW, now - 2_000);
    }
    lab
}

#[test]
fn test_mixed_monitor_and_unmanaged_discoveries() {
    // Seed 004 L7533-7564: a monitor with event data, an empty list, two unmanaged VMs
    // newly discovered (UNKNOWN + UNMANAGED), one tag on every needsAtt.
    let now = T0 + 600_000;
    let mut lab = mixed_lab(now);
    let tag = -6_630_805_255_682_309_212;
    let (reply, xml) = lab.na(now, tag);
    assert_same_xml(&xml, seed!("na_mixed"), &[Deviation::EachVmOnce]);
    for (_, vm) in vms_of(&reply.reply) {
        assert_eq!(vm.state, VmState::Unknown);
        assert_eq!(vm.discovery, Some(DiscoveryType::Unmanaged));
    }
    // The JSON form of the same reply: field names as documented.
    let json: serde_json::Value = serde_json::to_value(&reply).unwrap();
    assert_eq!(json["hsTag"], "-6630805255682309212");
    assert_eq!(json["more"], false);
    assert_eq!(json["entries"][0]["kind"], "vios");
    assert_eq!(json["entries"][0]["stats"][0]["hasData"], true);
    assert_eq!(json["entries"][0]["stats"][0]["hmResponseSec"], 0);
    assert_eq!(json["entries"][2]["kind"], "vms");
    assert_eq!(json["entries"][2]["host"]["serial"], "2100DEW");
    let vm = &json["entries"][2]["vms"][0];
    assert_eq!(vm["uuid"], "57275f1e-3680-4eef-945a-fe7670500310");
    assert_eq!(vm["state"], "UNKNOWN");
    assert_eq!(vm["discoveryInfo"], "UNMANAGED");
    assert_eq!(vm["missedHb"], serde_json::Value::Null);
}

/// A tag source that hands out the given tags in order.
struct Tags(Vec<i64>);

impl TagSource for Tags {
    fn next_tag(&mut self) -> i64 {
        assert!(
            !self.0.is_empty(),
            "more tags asked for than the test expects"
        );
        self.0.remove(0)
    }
}

#[test]
fn test_serve_the_seeds_requests() {
    // A user of the seed's tooling sends its requests unchanged and gets its replies.
    let now = T0 + 600_000;
    let mut lab = mixed_lab(now);
    let config = lab.config.clone();
    let limits = XmlLimits::default();
    let mut tags = Tags(vec![
        -6_630_805_255_682_309_212,
        55,
        378_617_663_756_949_861,
    ]);
    let mut ask = |lab: &mut Lab, request: &str, at: i64| {
        hs::serve::serve_with(
            &mut lab.db,
            at,
            request.as_bytes(),
            &config,
            &limits,
            &mut tags,
        )
        .unwrap()
    };
    let na = ask(&mut lab, seed!("request_needs_attention"), now);
    assert_same_xml(&na, seed!("na_mixed"), &[Deviation::EachVmOnce]);
    // The seed's acknowledgement of that tag (seed 004 L7571-7575): an empty reply.
    let ack = ask(&mut lab, seed!("request_acknowledge"), now + 1_000);
    assert_eq!(parse_reply(ack.as_bytes(), &limits).unwrap(), Reply::Empty);
    // The discoveries are consumed; the monitor's event data is not (node data is).
    let na = ask(&mut lab, seed!("request_needs_attention"), now + 2_000);
    let Reply::NeedsAttention(na) = parse_reply(na.as_bytes(), &limits).unwrap() else {
        panic!("not a NeedsAttention");
    };
    assert_eq!(na.tag, None);
    assert!(vms_of(&na).is_empty());
    assert!(matches!(&na.entries[0], NeedsAttEntry::Vios(s) if s.stats[0].has_data));
    // QuickQuery shows the event data pending; node data delivers it under its tag.
    let qq = ask(&mut lab, seed!("request_quick_query"), now + 3_000);
    assert!(qq.contains("hasData='1'"));
    let nd = ask(&mut lab, seed!("request_query_node_data"), now + 4_000);
    let Reply::NodeData(nd) = parse_reply(nd.as_bytes(), &limits).unwrap() else {
        panic!("not node data");
    };
    assert_eq!(nd.tag, Some(378_617_663_756_949_861));
    assert_eq!(
        nd.hosts[0].nodes[0].event,
        "EVENT_TYPE=NODE_DOWN\nREASON=NODE_SHUTDOWN"
    );
    // Acknowledged with the same verb: the data is gone, hasData back to 0.
    let ack = seed!("request_acknowledge").replace("-6630805255682309212", "378617663756949861");
    ask(&mut lab, &ack, now + 5_000);
    let qq = ask(&mut lab, seed!("request_quick_query"), now + 6_000);
    assert!(!qq.contains("hasData='1'"), "{qq}");
    // A request that is not the seed's is refused, naming the value.
    let bad = seed!("request_quick_query").replace("VIO_HS_QUICK_QUERY", "VIO_HS_REBOOT");
    let err = serve_with(
        &mut lab.db,
        now,
        bad.as_bytes(),
        &config,
        &limits,
        &mut tags,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("action_str=\"VIO_HS_REBOOT\""), "{err}");
}

#[test]
fn test_node_data_reply() {
    // Seed 004 L7609-7655: the node's three CAA events, oldest first, one tag; the event
    // texts are the seed's (abbreviated as in the digest).
    let hosts = [H_21E0B2V, H_2100DEW];
    let mut lab = Lab::new(&hosts);
    let seed_tree = tree(seed!("node_data"));
    let texts: Vec<String> = seed_tree.children[0].children[0].children[0]
        .children
        .iter()
        .map(|n| n.attr("event").unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 3);
    let node = H_21E0B2V.monitors[0];
    lab.hm_event(node, HmState::Down, 0x40, &texts[0], T0 + 1_000);
    lab.hm_event(node, HmState::Down, 0x40, &texts[1], T0 + 2_000);
    lab.hm_event(node, HmState::Up, 0, &texts[2], T0 + 3_000);
    let tag = 378_617_663_756_949_861;
    let reply = hs::node_data(&mut lab.db, &lab.config, tag).unwrap();
    assert!(!reply.more);
    let xml = hs::xml::write_node_data(&reply.reply);
    assert_same_xml(&xml, seed!("node_data"), &[]);
    // A NeedsAttention acknowledgement does not clear node data; its own does.
    let now = T0 + 10_000;
    lab.heartbeat(&hosts, now);
    lab.na_ack(now, 5);
    assert!(lab.qq(now).contains("hasData='1'"));
    assert_eq!(hs::acknowledge(&mut lab.db, tag).unwrap().events, 3);
    assert!(!lab.qq(now).contains("hasData='1'"));
}
