//! Placement with the policy planner, end to end: the engine on a real HSDB file and the
//! `sim` platform, hosts lost, VMs placed (or reported with reasons) as docs/controlplane.md
//! "Planner" says; and `hactl relocate --dry-run` / `hactl verify` as an operator runs
//! them, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

use controlplane::clock::{Clock, ManualClock};
use controlplane::fde::Fde;
use controlplane::params::GroupParams;
use controlplane::planner::{Flex, FlexibleCapacity, Policies, VmSet};
use controlplane::platform::VmSpec;
use controlplane::platform::sim::{HostState, SimPlatform};
use hsdb::{
    HelloId, HmRecord, HostId, HostRecord, Hsdb, MacAddr, Options, Priority, Target, Transition,
    Uuid, Version,
};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;
const V2: Version = Version { major: 2, minor: 0 };
const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

fn uuid(n: u8) -> Uuid {
    Uuid([n; 16])
}

fn hm(host: i64, n: u8) -> Uuid {
    let mut u = Uuid([0xa0 + n; 16]);
    u.0[0] = u8::try_from(host).unwrap();
    u
}

/// A VM of a test group.
#[derive(Clone, Copy)]
struct Vm {
    n: u8,
    host: i64,
    priority: Priority,
    cpu: u32,
    mem: u32,
}

fn vm(n: u8, host: i64, priority: Priority, cpu: u32, mem: u32) -> Vm {
    Vm {
        n,
        host,
        priority,
        cpu,
        mem,
    }
}

/// Hosts `host-1..` of group `hg` with the given CPU / memory and two monitors each
/// (registered at `at`); every VM discovered by its host's monitors at `at`, managed,
/// named `vmN`, its home its host.
fn populate(db: &mut Hsdb, hosts: &[(u32, u32)], vms: &[Vm], at: i64) {
    for (i, (cpu, mem)) in hosts.iter().enumerate() {
        let id = i64::try_from(i).unwrap() + 1;
        db.upsert_host(&HostRecord {
            id: HostId(id),
            name: format!("host-{id}"),
            machine_type: "8408".into(),
            model: "E8E".into(),
            serial: format!("S{id}"),
            cpu_milli: *cpu,
            memory_mb: *mem,
            host_group: "hg".into(),
        })
        .unwrap();
        for n in 1..=2 {
            db.register_hm(&HmRecord {
                uuid: hm(id, n),
                host: HostId(id),
                mac: MacAddr([2, 0, 0, 0, u8::try_from(id).unwrap(), n]),
                incarnation: HelloId::parse(b"1556303548.719328000.38").unwrap(),
                version: V2,
                at,
            })
            .unwrap();
        }
    }
    for v in vms {
        let batch: Vec<Transition> = (1..=2)
            .map(|m| Transition::Discovered {
                vm: uuid(v.n),
                hm: hm(v.host, m),
                mac: MacAddr([6, 0, 0, v.n, u8::try_from(v.host).unwrap(), m]),
                ostype: "linux".into(),
                ver_lower: V2,
                ver_upper: V2,
                at,
            })
            .collect();
        db.apply(&batch).unwrap();
        db.set_vm(
            &uuid(v.n),
            &hsdb::VmSettings {
                managed: Some(true),
                name: Some(format!("vm{}", v.n)),
                priority: Some(v.priority),
                cpu_milli: Some(v.cpu),
                memory_mb: Some(v.mem),
                home_host: Some(HostId(v.host)),
                ..Default::default()
            },
            at,
        )
        .unwrap();
    }
}

/// A host group `hg` on an HSDB file and the `sim` platform: hosts `host-1..` with the
/// given CPU / memory, two monitors each; every VM discovered by its host's monitors,
/// managed, its home its host; the `fast` profile.
struct Group {
    _dir: TempDir,
    db: Hsdb,
    platform: SimPlatform,
    clock: ManualClock,
    fde: Fde,
    hosts: i64,
}

impl Group {
    fn new(hosts: &[(u32, u32)], vms: &[Vm], params: impl FnOnce(&mut GroupParams)) -> Group {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Hsdb::open(dir.path().join("hsdb.sqlite"), &Options::default()).unwrap();
        populate(&mut db, hosts, vms, T0);
        let clock = ManualClock::new(T0);
        let platform = SimPlatform::empty(clock.clone(), 7);
        for (i, (cpu, mem)) in hosts.iter().enumerate() {
            platform
                .world()
                .add_host(&format!("host-{}", i + 1), *cpu, *mem)
                .unwrap();
        }
        for v in vms {
            platform
                .world()
                .add_vm(
                    &format!("host-{}", v.host),
                    VmSpec {
                        uuid: uuid(v.n),
                        name: format!("vm{}", v.n),
                        cpu_milli: v.cpu,
                        memory_mb: v.mem,
                    },
                )
                .unwrap();
        }
        let mut p = GroupParams::fast("hg");
        params(&mut p);
        let mut fde = Fde::new(p);
        fde.set_clock(std::sync::Arc::new(clock.clone()));
        Group {
            _dir: dir,
            db,
            platform,
            clock,
            fde,
            hosts: i64::try_from(hosts.len()).unwrap(),
        }
    }

    /// What the monitors of live hosts do: heartbeat, complete their commands.
    fn monitors_turn(&mut self, live: &[i64], now: i64) {
        let beats: Vec<Transition> = live
            .iter()
            .flat_map(|h| {
                (1..=2).map(move |n| Transition::HmHeartbeat {
                    hm: hm(*h, n),
                    at: now,
                })
            })
            .collect();
        self.db.apply(&beats).unwrap();
        for h in live {
            for n in 1..=2 {
                for c in self.db.commands_for(&hm(*h, n), 0, 100).unwrap() {
                    self.db.complete_command(c.id, "OK", now).unwrap();
                }
            }
        }
    }

    /// Run for `secs` virtual seconds; host `lost` is lost (monitors silent, hypervisor
    /// gone) from `lost_after` seconds on.
    fn run(&mut self, secs: i64, lost: i64, lost_after: i64) {
        let start = self.clock.now_ms();
        let lost_at = start + lost_after * 1_000;
        let mut next_second = start;
        while self.clock.now_ms() < start + secs * 1_000 {
            let now = self.clock.now_ms();
            if now >= next_second {
                let live: Vec<i64> = (1..=self.hosts)
                    .filter(|h| now < lost_at || *h != lost)
                    .collect();
                self.monitors_turn(&live, now);
                next_second = now + 1_000;
            }
            let host = format!("host-{lost}");
            if now >= lost_at && self.platform.world().host_state(&host) != Some(HostState::Lost) {
                self.platform.world().host_loss(&host).unwrap();
            }
            let t = self
                .fde
                .tick(now, &mut self.db, &mut self.platform)
                .unwrap();
            self.clock.advance_to(t.next_wake_ms.min(next_second));
        }
    }

    /// Events of `kind` in the HSDB's outbox.
    fn events(&self, kind: &str) -> Vec<(Option<Uuid>, String)> {
        self.db
            .events_after(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.vm, e.text))
            .collect()
    }

    fn running_on(&self, n: u8) -> Vec<String> {
        self.platform.world().vm_running_on(&uuid(n))
    }

    /// The size the sim platform runs VM `n` with.
    fn size(&self, n: u8) -> (u32, u32) {
        let w = self.platform.world();
        let s = w.vm_spec(&uuid(n)).unwrap();
        (s.cpu_milli, s.memory_mb)
    }
}

fn set(name: &str, members: &[u8]) -> VmSet {
    VmSet {
        name: name.into(),
        members: members.iter().map(|n| uuid(*n)).collect(),
    }
}

/// Host 1 runs 12 VMs of 2 CPUs (4 High, 4 Medium, 4 Low); hosts 2 and 3 have room for
/// 4 + 3 of them.
fn twelve_on_host_1() -> Vec<Vm> {
    (1..=12u8)
        .map(|n| {
            let p = match n {
                1..=4 => Priority::High,
                5..=8 => Priority::Medium,
                _ => Priority::Low,
            };
            vm(n, 1, p, 2_000, 2_048)
        })
        .collect()
}

const ROOM_FOR_7: [(u32, u32); 3] = [(24_000, 65_536), (8_000, 65_536), (6_000, 65_536)];

#[test]
fn twelve_vm_host_failure_with_room_for_seven() {
    let mut g = Group::new(&ROOM_FOR_7, &twelve_on_host_1(), |_| {});
    // Before the loss, the periodic verify already says host 1's loss cannot be absorbed.
    g.run(90, 1, 20);
    let short = g.events("GROUP_CAPACITY_SHORT");
    assert_eq!(short.len(), 1, "{short:?}");
    assert!(
        short[0]
            .1
            .starts_with("group hg cannot absorb the loss of every host: host host-1: 5 VM(s)"),
        "{short:?}"
    );
    // The 7 highest: 4 High and the 3 largest-first / by-name Medium ones.
    let placed: Vec<u8> = (1..=12).filter(|n| !g.running_on(*n).is_empty()).collect();
    assert_eq!(placed, [1, 2, 3, 4, 5, 6, 7], "placed");
    for n in 1..=7 {
        assert_eq!(
            g.size(n),
            (2_000, 2_048),
            "nominal size (no flexible capacity)"
        );
    }
    let no_host = g.events("VM_RESTART_NO_HOST");
    let reported: Vec<u8> = no_host.iter().map(|(v, _)| v.unwrap().0[0]).collect();
    assert_eq!(reported.len(), 5, "{no_host:?}");
    for n in 8..=12 {
        assert!(reported.contains(&n), "vm{n} reported: {reported:?}");
    }
    let text = &no_host.iter().find(|(v, _)| *v == Some(uuid(9))).unwrap().1;
    assert_eq!(
        text,
        "VM vm9 fits on no host of group hg: no host can take it: host-1: failed; host-2: no \
         room: free cpu 0 milli / memory 57344 MiB, needs 2000 / 2048; host-3: no room: free \
         cpu 0 milli / memory 59392 MiB, needs 2000 / 2048; tried again at every scan"
    );
    let summary = g.events("RESTART_SUMMARY");
    assert!(
        summary
            .iter()
            .any(|(_, t)| t == "7 out of 12 VMs have been successfully restarted"),
        "{summary:?}"
    );
    // Each restart's decision names the planner's reason.
    let decisions: Vec<String> = g
        .fde
        .decisions()
        .iter()
        .map(|d| d.reason.clone())
        .filter(|r| r.starts_with("policy planner: restart on host"))
        .collect();
    assert_eq!(decisions.len(), 7, "{decisions:#?}");
    assert!(
        decisions
            .iter()
            .all(|d| d.contains("(cpu 2000 milli, memory 2048 MiB): best fit: leaves")),
        "{decisions:#?}"
    );
    assert!(g.platform.world().violations().is_empty());
}

#[test]
fn flexible_capacity_lets_more_in() {
    let mut g = Group::new(&ROOM_FOR_7, &twelve_on_host_1(), |_| {});
    let half = Flex {
        cpu_pct: 50,
        memory_pct: 50,
    };
    g.fde.set_policies(Policies {
        flexible: FlexibleCapacity {
            high: Flex::default(),
            medium: half,
            low: half,
        },
        ..Policies::default()
    });
    g.run(120, 1, 10);
    // 4 High at 2 CPUs (8) + 4 Medium at 1 (4) + 2 Low at 1 (2) = 14 CPUs of room; the
    // Low ones by name: vm10, vm11 before vm12, vm9.
    let placed: Vec<u8> = (1..=12).filter(|n| !g.running_on(*n).is_empty()).collect();
    assert_eq!(placed, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11], "placed");
    for n in 1..=4 {
        assert_eq!(g.size(n), (2_000, 2_048), "High: 100 %");
    }
    for n in [5, 6, 7, 8, 10, 11] {
        assert_eq!(g.size(n), (1_000, 1_024), "vm{n}: 50 % away from home");
    }
    let no_host = g.events("VM_RESTART_NO_HOST");
    let mut reported: Vec<u8> = no_host.iter().map(|(v, _)| v.unwrap().0[0]).collect();
    reported.sort_unstable();
    assert_eq!(reported, [9, 12], "{no_host:?}");
    assert!(
        no_host[0].1.contains("needs 1000 / 1024"),
        "the flexible size: {no_host:?}"
    );
    let d: Vec<String> = g
        .fde
        .decisions()
        .iter()
        .map(|d| d.reason.clone())
        .filter(|r| r.contains("flexible capacity (Low away from home: cpu 50%, memory 50%)"))
        .collect();
    assert_eq!(d.len(), 2, "the two Low VMs placed: {d:#?}");
}

#[test]
fn collocation_group_that_fits_nowhere() {
    let vms = [
        vm(1, 1, Priority::High, 3_000, 1_024),
        vm(2, 1, Priority::High, 3_000, 1_024),
        vm(3, 1, Priority::Medium, 1_000, 1_024),
    ];
    let mut g = Group::new(
        &[(8_000, 16_384), (5_000, 16_384), (5_000, 16_384)],
        &vms,
        |_| {},
    );
    g.fde.set_policies(Policies {
        collocations: vec![set("db", &[1, 2])],
        ..Policies::default()
    });
    g.run(60, 1, 10);
    assert!(g.running_on(1).is_empty() && g.running_on(2).is_empty());
    assert_eq!(g.running_on(3).len(), 1, "the other VM is placed");
    let no_host = g.events("VM_RESTART_NO_HOST");
    assert_eq!(no_host.len(), 2, "{no_host:?}");
    let t1 = &no_host.iter().find(|(v, _)| *v == Some(uuid(1))).unwrap().1;
    assert!(
        t1.contains("no host can take it with vm2 (collocated): host-1: failed; host-2: no room: free cpu 5000 milli / memory 16384 MiB, needs 6000 / 2048"),
        "{t1}"
    );
}

#[test]
fn anticollocation_pair_in_a_two_host_group_after_one_failed() {
    let vms = [
        vm(1, 1, Priority::High, 1_000, 1_024),
        vm(2, 2, Priority::High, 1_000, 1_024),
    ];
    let mut g = Group::new(&[(8_000, 16_384), (8_000, 16_384)], &vms, |_| {});
    g.fde.set_policies(Policies {
        anticollocations: vec![set("pair", &[1, 2])],
        ..Policies::default()
    });
    g.run(40, 1, 10);
    assert!(g.running_on(1).is_empty(), "never next to vm2");
    assert_eq!(g.running_on(2), ["host-2"]);
    let no_host = g.events("VM_RESTART_NO_HOST");
    assert_eq!(no_host.len(), 1);
    assert_eq!(
        no_host[0].1,
        "VM vm1 fits on no host of group hg: no host can take it: host-1: failed; host-2: \
         anticollocated with VM vm2 there (anticollocation pair); tried again at every scan"
    );
}

#[test]
fn exclusion_list_naming_every_other_host() {
    let vms = [
        vm(1, 1, Priority::High, 1_000, 1_024),
        vm(2, 1, Priority::High, 1_000, 1_024),
    ];
    let mut g = Group::new(&[(8_000, 16_384); 3], &vms, |_| {});
    g.fde.set_policies(Policies {
        exclusions: BTreeMap::from([(uuid(1), vec![HostId(2), HostId(3)])]),
        ..Policies::default()
    });
    g.run(40, 1, 10);
    assert!(g.running_on(1).is_empty());
    assert_eq!(g.running_on(2).len(), 1);
    let no_host = g.events("VM_RESTART_NO_HOST");
    assert_eq!(no_host.len(), 1);
    assert_eq!(
        no_host[0].1,
        "VM vm1 fits on no host of group hg: no host can take it: host-1: failed; host-2: on \
         the VM's host exclusion list; host-3: on the VM's host exclusion list; tried again at \
         every scan"
    );
}

#[test]
fn advisory_mode_does_nothing_but_tells_the_plan() {
    let vms = [
        vm(1, 1, Priority::High, 4_000, 1_024),
        vm(2, 1, Priority::Low, 6_000, 1_024),
    ];
    let mut g = Group::new(&[(16_000, 16_384), (5_000, 16_384)], &vms, |p| {
        p.restart_policy = controlplane::params::RestartPolicy::Advisory;
    });
    g.run(40, 1, 10);
    assert!(g.running_on(1).is_empty() && g.running_on(2).is_empty());
    assert!(g.db.relocations(None, 10).unwrap().is_empty(), "no restart");
    let advised = g.events("VM_RESTART_ADVISED");
    assert_eq!(advised.len(), 2, "{advised:?}");
    let t1 = &advised.iter().find(|(v, _)| *v == Some(uuid(1))).unwrap().1;
    assert!(
        t1.starts_with(
            "VM vm1 on host host-1 needs a restart (its host failed); restart_policy is \
             advisory: not restarted — the policy planner would restart it on host host-2 \
             (cpu 4000 milli, memory 1024 MiB): best fit"
        ),
        "{t1}"
    );
    assert!(
        t1.ends_with("; restart it there by hand, or set restart_policy=auto"),
        "{t1}"
    );
    let t2 = &advised.iter().find(|(v, _)| *v == Some(uuid(2))).unwrap().1;
    assert!(
        t2.contains(
            "the policy planner finds it no host: no host can take it: host-1: failed; \
             host-2: no room: free cpu 1000 milli / memory 15360 MiB, needs 6000 / 1024"
        ),
        "{t2}"
    );
}

// ---- hactl relocate --dry-run / hactl verify ------------------------------------------

/// An HSDB for the command line, SQLite or PostgreSQL, populated by [`populate`] with
/// the monitors heart-beating now (wall clock: `hactl` judges monitor health by it).
struct CliStore {
    target: Target,
    hsdb: String,
    _dir: Option<TempDir>,
}

impl CliStore {
    fn sqlite(hosts: &[(u32, u32)], vms: &[Vm]) -> CliStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsdb.sqlite");
        let store = CliStore {
            hsdb: path.to_str().unwrap().to_owned(),
            target: Target::Sqlite(path),
            _dir: Some(dir),
        };
        store.populate(hosts, vms);
        store
    }

    fn postgres(test: &str, hosts: &[(u32, u32)], vms: &[Vm]) -> Option<CliStore> {
        let server = pglab::require(test)?;
        let url = server.fresh_database(test);
        let store = CliStore {
            target: Target::parse(&url).unwrap(),
            hsdb: url,
            _dir: None,
        };
        store.populate(hosts, vms);
        Some(store)
    }

    fn db(&self) -> Hsdb {
        Hsdb::connect(&self.target, &Options::default()).unwrap()
    }

    fn populate(&self, hosts: &[(u32, u32)], vms: &[Vm]) {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let mut db = self.db();
        populate(&mut db, hosts, vms, now);
        let beats: Vec<Transition> = (1..=i64::try_from(hosts.len()).unwrap())
            .flat_map(|h| {
                (1..=2).map(move |n| Transition::HmHeartbeat {
                    hm: hm(h, n),
                    at: now,
                })
            })
            .collect();
        db.apply(&beats).unwrap();
    }

    /// `hactl --hsdb <store> args…`.
    fn hactl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--hsdb", self.hsdb.as_str()];
        all.extend_from_slice(args);
        Command::new(HACTL)
            .args(&all)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
}

const DRY_RUN_HOSTS: [(u32, u32); 3] = [(24_000, 32_768), (8_000, 32_768), (12_000, 32_768)];

fn dry_run_vms() -> [Vm; 4] {
    [
        vm(1, 1, Priority::High, 4_000, 4_096),
        vm(2, 1, Priority::Medium, 2_000, 2_048),
        vm(3, 1, Priority::Low, 11_000, 2_048),
        vm(4, 2, Priority::Medium, 1_000, 1_024),
    ]
}

#[test]
fn relocate_dry_run_prints_the_plan_and_why() {
    dry_run_checks(&CliStore::sqlite(&DRY_RUN_HOSTS, &dry_run_vms()));
}

#[test]
fn relocate_dry_run_on_postgres() {
    if let Some(store) = CliStore::postgres(
        "relocate_dry_run_on_postgres",
        &DRY_RUN_HOSTS,
        &dry_run_vms(),
    ) {
        dry_run_checks(&store);
    }
}

fn dry_run_checks(store: &CliStore) {
    // Policies through hactl: vm2 never next to vm4.
    assert_exit(
        &store.hactl(&["add", "anticollocation", "apart", "vm=vm2,vm4"]),
        0,
    );
    let o = store.hactl(&["relocate", "--dry-run", "host-1"]);
    assert_exit(&o, 0);
    let text = out(&o);
    assert!(
        text.starts_with(
            "dry run: nothing is moved. Plan for group hg: the failure of host host-1 (3 \
             managed VMs)\npolicies: 0 collocation(s), 1 anticollocation(s), 0 workgroup(s), 0 \
             host exclusion list(s)"
        ),
        "{text}"
    );
    // vm1 (High) first: host-2 leaves 3 CPUs (37 %), host-3 8 (66 %): host-2 (best fit).
    // vm2: host-2 holds vm4 (anticollocation): host-3. vm3 (11 CPUs): nowhere.
    let lines: Vec<&str> = text.lines().collect();
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("vm1")[..7],
        ["vm1", "High", "host-1", "host-2", "4000", "4096", "0"]
    );
    assert_eq!(
        row("vm2")[..7],
        ["vm2", "Medium", "host-1", "host-3", "2000", "2048", "0"]
    );
    assert_eq!(
        row("vm3")[..7],
        ["vm3", "Low", "host-1", "-", "-", "-", "-"]
    );
    assert!(
        text.contains("host-2  anticollocated with VM vm4 there (anticollocation apart)"),
        "{text}"
    );
    assert!(
        text.contains(
            "host-2  no room: free cpu 3000 milli / memory 27648 MiB, needs 11000 / 2048"
        ),
        "{text}"
    );
    assert!(text.ends_with("2 of 3 VMs placed, 1 nowhere.\n"), "{text}");
    // JSON: the same plan.
    let o = store.hactl(&["relocate", "--dry-run", "vm:vm2", "--json"]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j["group"], "hg");
    assert_eq!(j["plan"][0]["name"], "vm2");
    assert_eq!(j["plan"][0]["to"], "host-3");
    assert_eq!(j["plan"][0]["why_not"][0]["host"], "host-1");
    assert_eq!(
        j["plan"][0]["why_not"][0]["reason"],
        "the VM's failed source"
    );
    // A host in planned maintenance receives nothing: vm2 has no other host.
    store
        .db()
        .set_host_maintenance(HostId(3), Some(T0), None)
        .unwrap();
    let o = store.hactl(&["relocate", "--dry-run", "vm2"]);
    assert_exit(&o, 0);
    assert!(
        out(&o).contains("    host-3  not eligible: in maintenance\n"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).ends_with("0 of 1 VMs placed, 1 nowhere.\n"),
        "{}",
        out(&o)
    );
    // Without --dry-run: refused, naming what to use instead; unknown names: exit 4.
    let o = store.hactl(&["relocate", "host-1"]);
    assert_exit(&o, 2);
    assert!(err(&o).contains("add --dry-run"), "{}", err(&o));
    assert!(err(&o).contains("hactl host evacuate HOST"), "{}", err(&o));
    assert_exit(&store.hactl(&["relocate", "--dry-run", "nosuch"]), 4);
    assert_exit(&store.hactl(&["relocate", "--dry-run"]), 2);
}

const VERIFY_HOSTS: [(u32, u32); 3] = [(16_000, 16_384), (8_000, 16_384), (8_000, 16_384)];

fn verify_vms() -> [Vm; 3] {
    [
        vm(1, 1, Priority::High, 6_000, 1_024),
        vm(2, 1, Priority::Low, 6_000, 1_024),
        vm(3, 2, Priority::Medium, 2_000, 1_024),
    ]
}

#[test]
fn verify_lists_every_vm_without_a_place_and_exits_7() {
    verify_checks(&CliStore::sqlite(&VERIFY_HOSTS, &verify_vms()));
}

#[test]
fn verify_on_postgres() {
    if let Some(store) = CliStore::postgres("verify_on_postgres", &VERIFY_HOSTS, &verify_vms()) {
        verify_checks(&store);
    }
}

fn verify_checks(store: &CliStore) {
    let o = store.hactl(&["verify", "hg"]);
    // host-1's loss: vm1 (High) to host-2 (6 CPUs free after vm3: the best fit), vm2 to
    // host-3. host-2's loss: vm3 fits on host-1. host-3 runs nothing.
    assert_exit(&o, 0);
    assert!(
        out(&o).contains("Group hg can absorb the loss of any one host."),
        "{}",
        out(&o)
    );
    // Make host-1's loss impossible to absorb: vm2 may not go to host-3.
    assert_exit(
        &store.hactl(&[
            "modify",
            "vm",
            "vm2",
            "blacklist_hosts=host-3",
            "policy=add",
        ]),
        0,
    );
    let o = store.hactl(&["verify", "hg"]);
    assert_exit(&o, 7);
    let text = out(&o);
    let line = text
        .lines()
        .find(|l| l.starts_with("host-1 ") && l.contains(" vm2 "))
        .unwrap_or_else(|| panic!("no line for vm2:\n{text}"));
    assert!(
        line.ends_with(
            "no host can take it (of 3 hosts: 1 failed, 1 no room, 1 on an exclusion list)"
        ),
        "{text}"
    );
    assert!(
        text.contains("    host-3: on the VM's host exclusion list\n"),
        "{text}"
    );
    assert!(
        text.contains("Group hg cannot absorb the loss of host host-1."),
        "{text}"
    );
    assert!(
        err(&o).contains("host group hg cannot absorb the loss of every host (exit 7)"),
        "{}",
        err(&o)
    );
    let o = store.hactl(&["verify", "--json"]);
    assert_exit(&o, 7);
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j[0]["absorbs_any_host_loss"], false);
    assert_eq!(j[0]["hosts"][0]["unplaced"][0]["name"], "vm2");
    assert_exit(&store.hactl(&["verify", "nosuch"]), 4);
}

#[test]
fn vm_move_cli_plans_first_and_writes_the_request() {
    vm_move_checks(&CliStore::sqlite(&DRY_RUN_HOSTS, &dry_run_vms()));
}

#[test]
fn vm_move_cli_on_postgres() {
    if let Some(store) =
        CliStore::postgres("vm_move_cli_on_postgres", &DRY_RUN_HOSTS, &dry_run_vms())
    {
        vm_move_checks(&store);
    }
}

/// `hactl vm move` on the real binary: the plan printed first (target and why, why not
/// each other host, how it moves); --dry-run writes nothing; without it the MOVE request
/// is written (requested by `cli:…`); refusals exit 5, unknown names 4, --wait without a
/// controller 6; `query relocation` shows a relocation's reasons.
fn vm_move_checks(store: &CliStore) {
    let o = store.hactl(&["vm", "move", "vm1", "--to", "host-3", "--dry-run"]);
    assert_exit(&o, 0);
    let text = out(&o);
    assert!(
        text.starts_with(
            "Plan: move VM vm1 (host group hg) from host host-1 to host host-3 by live migration\n\
             vm1: to host-3 (cpu 4000 milli, memory 4096 MiB, wave 0) — best fit"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n    host-1  not eligible: the VM runs there now\n"),
        "{text}"
    );
    assert!(
        text.contains("\n    host-2  not eligible: not the host asked for\n"),
        "{text}"
    );
    assert!(
        text.ends_with("moved by live migration\ndry run: nothing written.\n"),
        "{text}"
    );
    assert!(
        store
            .db()
            .move_requests_of(&uuid(1), 10)
            .unwrap()
            .is_empty(),
        "--dry-run writes nothing"
    );
    // JSON, to the planner's best host.
    let o = store.hactl(&["vm", "move", "vm2", "--dry-run", "--json"]);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j["name"], "vm2");
    assert_eq!(j["from"], "host-1");
    assert_eq!(j["live"], true);
    assert!(j["request"].is_null());
    assert!(
        j["explanation"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("vm2: to {} (", j["to"].as_str().unwrap())),
        "{j}"
    );
    // Written: the request for the group's leader.
    let o = store.hactl(&["vm", "move", "vm1", "--to", "host-3"]);
    assert_exit(&o, 0);
    let reqs = store.db().move_requests_of(&uuid(1), 10).unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.kind, r.state, r.host, r.target_host),
        (
            hsdb::RequestKind::Move,
            hsdb::RequestState::Pending,
            HostId(1),
            Some(HostId(3))
        )
    );
    assert!(r.requested_by.starts_with("cli:"), "{}", r.requested_by);
    assert!(
        out(&o).contains(&format!(
            "request {}: move VM vm1 — for the controller leading host group hg; not waiting",
            r.id
        )),
        "{}",
        out(&o)
    );
    // A second move of the same VM while the first is open: refused, exit 5.
    let o = store.hactl(&["vm", "move", "vm1"]);
    assert_exit(&o, 5);
    assert!(err(&o).contains("is already PENDING"), "{}", err(&o));
    // Refusals and unknown names.
    let o = store.hactl(&["vm", "move", "vm4", "--to", "host-2"]);
    assert_exit(&o, 5);
    assert!(
        err(&o).contains("VM vm4 already runs on host host-2"),
        "{}",
        err(&o)
    );
    assert_exit(&store.hactl(&["vm", "move", "nosuch"]), 4);
    assert_exit(&store.hactl(&["vm", "move", "vm4", "--to", "nosuch"]), 4);
    assert_exit(
        &store.hactl(&["vm", "move", "vm4", "--dry-run", "--wait", "1"]),
        2,
    );
    // No controller runs: --wait gives up, exit 6; the request stays.
    let o = store.hactl(&["vm", "move", "vm4", "--wait", "1"]);
    assert_exit(&o, 6);
    assert!(
        err(&o).contains("no controller has picked it up"),
        "{}",
        err(&o)
    );
    assert_eq!(store.db().move_requests_of(&uuid(4), 10).unwrap().len(), 1);
    // query relocation shows a relocation's reasons.
    let reasons = "vm2: to host-3 (cpu 2000 milli, memory 2048 MiB, wave 0) — best fit\n    host-1  the VM's failed source";
    let id = store
        .db()
        .relocation_begin_explained(
            &uuid(2),
            Some(HostId(1)),
            Some(HostId(3)),
            hsdb::RelocationKind::Relocate,
            Some(reasons),
            T0,
        )
        .unwrap();
    let o = store.hactl(&["query", "relocation"]);
    assert_exit(&o, 0);
    assert!(
        out(&o).contains(&format!(
            "relocation {id} (RELOCATE {}):\n  vm2: to host-3 (cpu 2000 milli, memory 2048 MiB, wave 0) — best fit\n      host-1  the VM's failed source\n",
            uuid(2)
        )),
        "{}",
        out(&o)
    );
    let o = store.hactl(&["query", "relocation", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(j[0]["reasons"], reasons);
}
