//! `hactl qq`, `hactl na [--consume]`, `hactl ack TAG`: the seed's QuickQuery,
//! NeedsAttention and Acknowledge, as tables, as JSON, or as the seed's XML
//! (seed-controlplane.md §2.3-§2.5).
//!
//! `hactl na` looks without touching: it shows what the next NeedsAttention would report
//! ([`Hsdb::needs_attention_peek`]: the store's own selection, run in a read transaction
//! without tagging), through a read-only connection, and tags nothing — the engine of a
//! running `hactl run` is not disturbed. `hactl na --consume` is the real request: it
//! tags the items it reports with a new `hsTag` that `hactl ack TAG` then clears, as the
//! engine does after every NeedsAttention; it is for an operator who runs no engine (or
//! stopped it) and consumes the replies by hand. While a daemon answers on the admin
//! socket, `--consume` is refused unless `--force` is given: the items would be tagged
//! away from the engine's reply (it would see them again only under its next tag).

use std::collections::HashMap;
use std::fmt::Write as _;

use hsdb::{HostRecord, Hsdb, NaRows};

use super::Format;
use super::error::CliError;
use super::table::{Table, printable};
use crate::hs::build::{self, NaConfig, NaReply};
use crate::hs::{HostKey, NeedsAttEntry, NeedsAttention, QuickQuery};

/// The host's name for a reply's key (machine type, model, serial), when one host has it.
fn names(hosts: &[HostRecord]) -> HashMap<HostKey, String> {
    let mut out = HashMap::new();
    for h in hosts {
        out.insert(
            HostKey {
                machine_type: h.machine_type.clone(),
                model: h.model.clone(),
                serial: h.serial.clone(),
            },
            h.name.clone(),
        );
    }
    out
}

fn host_label(names: &HashMap<HostKey, String>, key: &HostKey) -> String {
    match names.get(key) {
        Some(name) => name.clone(),
        None => format!("{}-{}-{}", key.machine_type, key.model, key.serial),
    }
}

fn bit(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// `hactl qq`.
pub fn quick_query(
    db: &Hsdb,
    config: &NaConfig,
    now_ms: i64,
    format: Format,
) -> Result<String, CliError> {
    let qq = build::quick_query(db, now_ms, config)?;
    match format {
        Format::Json => super::json(&qq),
        Format::Xml => Ok(crate::hs::xml::write_quick_query(&qq)),
        Format::Table => Ok(qq_table(&qq, &names(&db.hosts()?))),
    }
}

fn qq_table(qq: &QuickQuery, names: &HashMap<HostKey, String>) -> String {
    let mut t = Table::new(&[
        "HOST",
        "SERIAL",
        "MONITOR",
        "STATE",
        "HM_RESPONSIVE",
        "HM_RESPONSE_SEC",
        "HAS_DATA",
        "REASON",
    ]);
    for host in &qq.hosts {
        for s in &host.stats {
            t.row(vec![
                host_label(names, &host.host),
                host.host.serial.clone(),
                s.uuid.to_string(),
                s.state.as_str().to_owned(),
                bit(s.hm_responsive).to_owned(),
                s.hm_response_sec.to_string(),
                bit(s.has_data).to_owned(),
                format!("{:#010x}", s.reason),
            ]);
        }
        if host.stats.is_empty() {
            t.row(vec![
                host_label(names, &host.host),
                host.host.serial.clone(),
                "(no monitor registered)".into(),
            ]);
        }
    }
    if t.is_empty() {
        return "no host in the HSDB\n".to_owned();
    }
    let unhealthy = qq
        .hosts
        .iter()
        .flat_map(|h| &h.stats)
        .filter(|s| s.state == crate::hs::ViosState::Down || !s.hm_responsive)
        .count();
    let total: usize = qq.hosts.iter().map(|h| h.stats.len()).sum();
    let mut out = t.render();
    let _ = writeln!(
        out,
        "{} hosts, {total} monitors, {unhealthy} DOWN or not responsive",
        qq.hosts.len()
    );
    out
}

/// `hactl na` (peek): the next reply's content, nothing tagged.
pub fn peek(db: &Hsdb, config: &NaConfig, now_ms: i64, format: Format) -> Result<String, CliError> {
    let rows = db.needs_attention_peek(now_ms, config.limits(), config.group.as_deref())?;
    let reply = NaReply {
        reply: build::needs_attention_reply(&rows, config.hm_silent_after_ms),
        more: rows.more,
    };
    render_na(&reply, Some(&rows), &db.hosts()?, format, false)
}

/// `hactl na --consume`: the real request; the items reported are tagged with `tag`.
pub fn consume(
    db: &mut Hsdb,
    config: &NaConfig,
    now_ms: i64,
    tag: i64,
    format: Format,
) -> Result<String, CliError> {
    let reply = build::needs_attention(db, now_ms, config, tag)?;
    render_na(&reply, None, &db.hosts()?, format, true)
}

fn render_na(
    reply: &NaReply,
    rows: Option<&NaRows>,
    hosts: &[HostRecord],
    format: Format,
    consumed: bool,
) -> Result<String, CliError> {
    match format {
        Format::Json => return super::json(reply),
        Format::Xml => return Ok(crate::hs::xml::write_needs_attention(&reply.reply)),
        Format::Table => {}
    }
    let names = names(hosts);
    let mut out = na_table(&reply.reply, &names);
    if let Some(rows) = rows {
        let items: usize = rows.vms.iter().map(|v| v.items.len()).sum();
        if items > 0 {
            let _ = writeln!(
                out,
                "{items} pending items would be tagged by the next NeedsAttention (nothing was \
                 tagged: `hactl na --consume` tags them)"
            );
        }
    }
    if consumed {
        match reply.reply.tag {
            Some(tag) => {
                let _ = writeln!(
                    out,
                    "hsTag {tag}: acknowledge with `hactl ack -- {tag}` once handled (until \
                     then every NeedsAttention reports these items again, under a new tag)"
                );
            }
            None => out.push_str("no item to acknowledge (no hsTag)\n"),
        }
    }
    if reply.more {
        out.push_str("more items wait: they come in the next replies\n");
    }
    Ok(out)
}

fn na_table(na: &NeedsAttention, names: &HashMap<HostKey, String>) -> String {
    let mut out = String::new();
    let mut monitors = Table::new(&[
        "HOST",
        "MONITOR",
        "STATE",
        "HM_RESPONSIVE",
        "HM_RESPONSE_SEC",
        "HAS_DATA",
        "REASON",
    ]);
    let mut vms = Table::new(&[
        "HOST",
        "VM",
        "STATE",
        "STATE_CHG",
        "MISSED_HB",
        "SHORT_MSG",
        "MISSED_HM_ENTRY",
        "DISCOVERY",
    ]);
    let mut quiet_hosts = Vec::new();
    for entry in &na.entries {
        match entry {
            NeedsAttEntry::Vios(status) => {
                for s in &status.stats {
                    monitors.row(vec![
                        host_label(names, &status.host),
                        s.uuid.to_string(),
                        s.state.as_str().to_owned(),
                        bit(s.hm_responsive).to_owned(),
                        s.hm_response_sec.to_string(),
                        bit(s.has_data).to_owned(),
                        format!("{:#010x}", s.reason),
                    ]);
                }
            }
            NeedsAttEntry::Vms { host, vms: list } => {
                if list.is_empty() {
                    quiet_hosts.push(host_label(names, host));
                }
                for v in list {
                    vms.row(vec![
                        host_label(names, host),
                        v.uuid.to_string(),
                        v.state.as_str().to_owned(),
                        bit(v.state_chg).to_owned(),
                        v.missed_hb.map_or("-".into(), |s| format!("{s} s")),
                        v.short_msg.map_or("-".into(), |m| format!("{m:#x}")),
                        v.missed_hm_entry.map_or("-".into(), |u| u.to_string()),
                        v.discovery.map_or("-".into(), |d| d.as_str().to_owned()),
                    ]);
                }
            }
        }
    }
    if let Some(tag) = na.tag {
        let _ = writeln!(out, "hsTag {tag}");
    }
    if !monitors.is_empty() {
        out.push_str("monitors needing attention:\n");
        out.push_str(&monitors.render());
    }
    if !vms.is_empty() {
        if !monitors.is_empty() {
            out.push('\n');
        }
        out.push_str("VMs needing attention:\n");
        out.push_str(&vms.render());
    }
    if monitors.is_empty() && vms.is_empty() {
        out.push_str("nothing needs attention");
        if !quiet_hosts.is_empty() {
            let _ = write!(
                out,
                " (hosts with monitored VMs, all well: {})",
                printable(&quiet_hosts.join(", "))
            );
        }
        out.push('\n');
    }
    out
}

/// `hactl ack TAG`: clears the VM items and the monitor events of the tag.
pub fn acknowledge(db: &mut Hsdb, tag: i64, format: Format) -> Result<String, CliError> {
    let done = build::acknowledge(db, tag)?;
    if format == Format::Json {
        return super::json(&done);
    }
    if done.items == 0 && done.events == 0 {
        return Ok(format!(
            "hsTag {tag}: nothing to clear (already acknowledged, or never issued)\n"
        ));
    }
    Ok(format!(
        "hsTag {tag}: {} VM items and {} monitor events acknowledged\n",
        done.items, done.events
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hsdb::{HelloId, HmRecord, HmState, HostId, MacAddr, Options, Transition, Uuid, Version};

    const T0: i64 = 1_556_303_548_719;
    const V: Version = Version { major: 2, minor: 0 };

    fn uuid(i: u8, j: u8) -> Uuid {
        let mut b = [0x11; 16];
        b[0] = i;
        b[15] = j;
        Uuid(b)
    }

    fn hm(host: u8, side: u8) -> Uuid {
        uuid(0xa0 + host * 2 + side, 0)
    }

    fn discovered(vm: Uuid, hm: Uuid, at: i64) -> Transition {
        Transition::Discovered {
            vm,
            hm,
            mac: MacAddr([0x6a, 0, 0, 0, vm.0[0], hm.0[0]]),
            ostype: "Linux".into(),
            ver_lower: V,
            ver_upper: V,
            at,
        }
    }

    /// A file HSDB: hosts 1, 2 in `hg1`, host 3 in `hg2`, two monitors each; a VM missed
    /// on both monitors, one on a single path with a doorbell, a move, new VMs, a
    /// monitor DOWN and one silent.
    fn busy(dir: &std::path::Path) -> Hsdb {
        let mut db = Hsdb::open(dir.join("hsdb.sqlite"), &Options::default()).unwrap();
        for (id, group) in [(1, "hg1"), (2, "hg1"), (3, "hg2")] {
            db.upsert_host(&HostRecord {
                id: HostId(id),
                name: format!("host-{id}"),
                machine_type: "8408".into(),
                model: "E8E".into(),
                serial: format!("S{id}"),
                cpu_milli: 8_000,
                memory_mb: 32_768,
                host_group: group.into(),
            })
            .unwrap();
            for side in 0..2u8 {
                let n = u8::try_from(id).unwrap() * 2 + side;
                db.register_hm(&HmRecord {
                    uuid: hm(u8::try_from(id).unwrap(), side),
                    host: HostId(id),
                    mac: MacAddr([2, 0, 0, 0, 0, n]),
                    incarnation: HelloId {
                        secs: 1,
                        nanos: 0,
                        suffix: u32::from(n),
                    },
                    version: V,
                    at: T0,
                })
                .unwrap();
            }
        }
        let (a, b, c) = (uuid(1, 1), uuid(2, 2), uuid(3, 3));
        db.apply(&[
            discovered(a, hm(1, 0), T0),
            discovered(a, hm(1, 1), T0),
            discovered(b, hm(1, 0), T0),
            discovered(b, hm(1, 1), T0),
            discovered(c, hm(3, 0), T0),
            Transition::Missing {
                vm: a,
                hm: hm(1, 0),
                at: T0 + 2_000,
            },
            Transition::Missing {
                vm: a,
                hm: hm(1, 1),
                at: T0 + 5_000,
            },
            Transition::Missing {
                vm: b,
                hm: hm(1, 0),
                at: T0 + 2_000,
            },
            Transition::Doorbell {
                vm: b,
                hm: hm(1, 1),
                vector: 0x28,
                at: T0 + 3_000,
            },
            Transition::HmEvent {
                hm: hm(2, 0),
                state: HmState::Down,
                reason: 0x40,
                text: "EVENT_TYPE=NODE_DOWN".into(),
                at: T0 + 3_000,
            },
            Transition::HmHeartbeat {
                hm: hm(1, 0),
                at: T0 + 40_000,
            },
            discovered(c, hm(2, 1), T0 + 4_000),
        ])
        .unwrap();
        db
    }

    /// `hactl na` shows exactly what `hactl na --consume` then reports (its `hsTag`
    /// aside), in every format, and tags nothing; the look works on a read-only
    /// connection. The store runs one selection for both (`needs_attention_peek`).
    #[test]
    fn peek_tags_nothing_and_shows_what_a_consuming_call_returns() {
        // hg2 holds no item (its VM moved to hg1), only silent monitors.
        for (group, max_items) in [
            (None, 1_000),
            (Some("hg1"), 1_000),
            (None, 1),
            (Some("hg2"), 1_000),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut db = busy(dir.path());
            let ro =
                Hsdb::open_read_only(dir.path().join("hsdb.sqlite"), &Options::default()).unwrap();
            let config = NaConfig {
                group: group.map(str::to_owned),
                max_items,
                hm_silent_after_ms: 30_000,
            };
            let now = T0 + 50_000;
            let before = db.pending().unwrap();
            let looked = peek(&ro, &config, now, Format::Json).unwrap();
            let xml = peek(&ro, &config, now, Format::Xml).unwrap();
            let table = peek(&ro, &config, now, Format::Table).unwrap();
            assert_eq!(db.pending().unwrap(), before, "a look tags nothing");
            assert_eq!(
                table.contains("would be tagged"),
                group != Some("hg2"),
                "{table}"
            );
            let mut looked: serde_json::Value = serde_json::from_str(&looked).unwrap();
            assert!(looked["hsTag"].is_null(), "{looked}");
            let consumed = consume(&mut db, &config, now, 4242, Format::Json).unwrap();
            let mut consumed: serde_json::Value = serde_json::from_str(&consumed).unwrap();
            let tagged = db.pending().unwrap().iter().any(|p| p.tag == Some(4242));
            assert_eq!(tagged, group != Some("hg2"));
            assert_eq!(
                consumed["hsTag"],
                if tagged {
                    serde_json::json!("4242")
                } else {
                    serde_json::Value::Null
                },
                "{consumed}"
            );
            consumed["hsTag"] = serde_json::Value::Null;
            looked["hsTag"] = serde_json::Value::Null;
            assert_eq!(looked, consumed, "group {group:?}, max_items {max_items}");
            assert_eq!(looked["more"], serde_json::json!(max_items == 1));
            assert!(!looked["entries"].as_array().unwrap().is_empty());
            // The look's XML is a reply without an hsTag.
            assert!(
                xml.contains("<needsAtt>") && !xml.contains("hsTag"),
                "{xml}"
            );
        }
    }
}
