//! `hactl` policy commands as an operator runs them (docs/operators.md "Policies"): add,
//! modify, query and delete collocations, anticollocations and workgroups; per-VM host
//! exclusions and home host; flexible capacity; every refusal naming its conflict and
//! leaving the HSDB unchanged. On SQLite, and the main path on PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use hsdb::{HostId, HostRecord, Hsdb, Options, PolicyView, Priority, Target, Uuid, VmSettings};

const HACTL: &str = env!("CARGO_BIN_EXE_hactl");

/// The HSDB the commands run against: an SQLite file or a PostgreSQL URL.
struct Store {
    hsdb: String,
    target: Target,
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    fn sqlite() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsdb.sqlite");
        let store = Store {
            hsdb: path.to_str().unwrap().to_owned(),
            target: Target::Sqlite(path),
            _dir: Some(dir),
        };
        store.populate();
        store
    }

    fn postgres(test: &str) -> Option<Store> {
        let server = pglab::require(test)?;
        let url = server.fresh_database(test);
        let store = Store {
            target: Target::parse(&url).unwrap(),
            hsdb: url,
            _dir: None,
        };
        store.populate();
        Some(store)
    }

    fn db(&self) -> Hsdb {
        Hsdb::connect(&self.target, &Options::default()).unwrap()
    }

    /// hg1: host-a, host-b, host-c (16 CPUs, 64 GiB); hg2: host-z. VMs on host-a (home):
    /// web1, web2 (2 CPUs, 8 GiB, Medium), db1, db2 (4 CPUs, 16 GiB, High), big1, big2
    /// (8 CPUs, 40 GiB, Low); app9 on host-z.
    fn populate(&self) {
        let mut db = self.db();
        for (id, name, group) in [
            (1, "host-a", "hg1"),
            (2, "host-b", "hg1"),
            (3, "host-c", "hg1"),
            (9, "host-z", "hg2"),
        ] {
            db.upsert_host(&HostRecord {
                id: HostId(id),
                name: name.into(),
                machine_type: "8408".into(),
                model: "E8E".into(),
                serial: format!("S{id}"),
                cpu_milli: 16_000,
                memory_mb: 65_536,
                host_group: group.into(),
            })
            .unwrap();
        }
        for (i, name, host, cpu, mem, priority) in [
            (1, "web1", 1, 2, 8, Priority::Medium),
            (2, "web2", 1, 2, 8, Priority::Medium),
            (3, "db1", 1, 4, 16, Priority::High),
            (4, "db2", 1, 4, 16, Priority::High),
            (5, "big1", 1, 8, 40, Priority::Low),
            (6, "big2", 1, 8, 40, Priority::Low),
            (9, "app9", 9, 2, 8, Priority::Medium),
        ] {
            db.set_vm(
                &vm(i),
                &VmSettings {
                    managed: Some(true),
                    name: Some(name.into()),
                    home_host: Some(HostId(host)),
                    cpu_milli: Some(cpu * 1000),
                    memory_mb: Some(mem * 1024),
                    priority: Some(priority),
                    ..VmSettings::default()
                },
                1,
            )
            .unwrap();
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--hsdb", self.hsdb.as_str()];
        all.extend_from_slice(args);
        Command::new(HACTL)
            .args(&all)
            .env_remove("RUST_LOG")
            .env_remove("HVHA_HSDB_PASSWORD")
            .output()
            .unwrap()
    }

    /// Run; the exit code must be `want`; stdout and stderr.
    #[track_caller]
    fn expect(&self, want: i32, args: &[&str]) -> (String, String) {
        let o = self.run(args);
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert_eq!(
            o.status.code(),
            Some(want),
            "hactl {args:?}\nstdout:\n{out}\nstderr:\n{err}"
        );
        (out, err)
    }

    /// Run a command that must be refused with exit `code`, its message naming each of
    /// `named`, the policies unchanged.
    #[track_caller]
    fn refused(&self, code: i32, args: &[&str], named: &[&str]) {
        let before = self.view();
        let (_, err) = self.expect(code, args);
        for n in named {
            assert!(err.contains(n), "hactl {args:?}: {n:?} not in\n{err}");
        }
        assert_eq!(self.view(), before, "hactl {args:?} changed the store");
    }

    fn view(&self) -> PolicyView {
        self.db().policy_view().unwrap()
    }
}

fn vm(i: u8) -> Uuid {
    Uuid([0x10, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, i])
}

#[test]
fn sets_add_query_modify_delete() {
    sets_lifecycle(&Store::sqlite());
}

#[test]
fn sets_add_query_modify_delete_on_postgres() {
    let Some(store) = Store::postgres("hactl_policy_sets_on_postgres") else {
        return;
    };
    sets_lifecycle(&store);
    // A refusal on PostgreSQL too: checked inside the transaction, rolled back.
    store.expect(0, &["add", "collocation", "db", "vm=db1,db2"]);
    store.refused(
        2,
        &["add", "anticollocation", "apart", "vm=db2,db1"],
        &[
            "collocation \"db\"",
            "anticollocation \"apart\"",
            "db1",
            "db2",
        ],
    );
}

fn sets_lifecycle(s: &Store) {
    let (out, _) = s.expect(0, &["add", "collocation", "db", "vm=db1,db2"]);
    assert_eq!(
        out,
        "collocation \"db\" added in host group hg1: db1, db2\n"
    );
    // A VM by UUID as well as by name.
    let web2 = vm(2).to_string();
    let members = format!("vm=web1,{web2}");
    s.expect(0, &["add", "anticollocation", "web", &members]);
    let (out, _) = s.expect(0, &["add", "workgroup", "batch", "vm=big1,big2"]);
    assert!(out.starts_with("workgroup \"batch\" added"), "{out}");

    let (out, _) = s.expect(0, &["query", "collocation"]);
    assert_eq!(
        out,
        "NAME  HOST_GROUP  VMS  MEMBERS  PROBLEMS\ndb    hg1         2    db1,db2  -\n"
    );
    let (out, _) = s.expect(0, &["query", "anticollocation", "web"]);
    assert!(out.contains("Host_group  hg1\n"), "{out}");
    assert!(out.contains(&format!("web2    {web2}")), "{out}");
    let (out, _) = s.expect(0, &["--json", "query", "workgroup"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["name"], "batch");
    assert_eq!(json[0]["members"][1]["name"], "big2");
    assert_eq!(json[0]["members"][1]["uuid"], vm(6).to_string());
    assert_eq!(json[0]["problems"], serde_json::json!([]));

    // Add and remove members, then replace them.
    let (out, _) = s.expect(
        0,
        &["modify", "anticollocation", "web", "vm=db1", "policy=add"],
    );
    // As many VMs apart as hosts: stored, with the warning.
    assert_eq!(
        out,
        "anticollocation \"web\" now: web1, web2, db1\nwarning: anticollocation \"web\" has \
         as many members as its group has hosts (3): after a host failure the member it ran \
         cannot be restarted apart from the others (it stays down, reported by the planner)\n"
    );
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "anticollocation",
            "web",
            "vm=web1",
            "policy=delete",
        ],
    );
    assert_eq!(out, "anticollocation \"web\" now: web2, db1\n");
    let (out, _) = s.expect(0, &["modify", "anticollocation", "web", "vm=web1,web2"]);
    assert_eq!(out, "anticollocation \"web\" now: web1, web2\n");
    let stored = s
        .db()
        .policy(hsdb::PolicyKind::Anticollocation, "web")
        .unwrap()
        .unwrap();
    assert_eq!(stored.members, [vm(1), vm(2)]);

    // query vm shows the sets a VM is in.
    let (out, _) = s.expect(0, &["query", "vm", "db1"]);
    assert!(
        out.contains("Policies                    collocation \"db\"\n"),
        "{out}"
    );

    // Delete; again is "no such" (exit 4); the query says there is none.
    let (out, _) = s.expect(0, &["delete", "workgroup", "batch"]);
    assert_eq!(out, "workgroup \"batch\" deleted\n");
    let (_, err) = s.expect(4, &["delete", "workgroup", "batch"]);
    assert!(err.contains("no workgroup \"batch\""), "{err}");
    let (out, _) = s.expect(0, &["query", "workgroup"]);
    assert_eq!(
        out,
        "no workgroup yet (hactl add workgroup NAME vm=VM,VM,…)\n"
    );
    s.expect(4, &["query", "workgroup", "batch"]);
    s.expect(0, &["delete", "collocation", "db"]);
    s.expect(0, &["delete", "anticollocation", "web"]);
    assert_eq!(s.view().sets, []);
}

#[test]
fn every_refusal_names_the_conflict_and_changes_nothing() {
    let s = Store::sqlite();
    s.expect(0, &["add", "collocation", "db", "vm=db1,db2"]);
    s.expect(0, &["add", "anticollocation", "web", "vm=web1,web2"]);

    // An unknown VM, an unknown host, a set that does not exist: exit 4.
    s.refused(
        4,
        &["add", "collocation", "x", "vm=db1,nosuch"],
        &["nosuch"],
    );
    s.refused(
        4,
        &[
            "modify",
            "vm",
            "web1",
            "blacklist_hosts=host-q",
            "policy=add",
        ],
        &["host-q"],
    );
    s.refused(4, &["modify", "collocation", "nope", "vm=web1"], &["nope"]);
    // The same name twice for one kind.
    s.refused(
        2,
        &["add", "collocation", "db", "vm=web1,web2"],
        &["collocation \"db\" exists"],
    );
    // Together and apart with the same partner.
    s.refused(
        2,
        &["add", "anticollocation", "apart", "vm=db2,web1,db1"],
        &[
            "db1 (",
            "db2 (",
            "collocation \"db\" (always on one host)",
            "anticollocation \"apart\" (never on one host)",
            "refused, nothing changed",
        ],
    );
    // The same through a member added later.
    s.refused(
        2,
        &["modify", "collocation", "db", "vm=web1,web2"],
        &[
            "collocation \"db\"",
            "anticollocation \"web\"",
            "web1 (",
            "web2 (",
        ],
    );
    // A VM in two collocations.
    s.refused(
        2,
        &["add", "collocation", "db3", "vm=db1,big1"],
        &["db1 (", "collocation \"db\" and in collocation \"db3\""],
    );
    // A collocation that can never fit: 2 × 40 GiB > 64 GiB on every host.
    s.refused(
        2,
        &["add", "collocation", "big", "vm=big1,big2"],
        &[
            "collocation \"big\" can never fit",
            "16 CPUs and 81920 MiB",
            "host-a (16 CPUs, 65536 MiB)",
        ],
    );
    // More VMs apart than the group has hosts (3).
    s.refused(
        2,
        &["add", "anticollocation", "wide", "vm=big1,big2,db1,db2"],
        &["anticollocation \"wide\" has 4 members but its group has 3 hosts"],
    );
    // Mixed priorities in a collocation or workgroup.
    s.refused(
        2,
        &["add", "workgroup", "mixed", "vm=web1,db1"],
        &[
            "workgroup \"mixed\" mixes priorities",
            "web1 (",
            "MEDIUM",
            "db1 (",
            "HIGH",
        ],
    );
    // Members of two host groups.
    s.refused(
        2,
        &["add", "anticollocation", "span", "vm=web1,app9"],
        &["host group \"hg1\"", "app9 (", "host group \"hg2\""],
    );
    // Fewer than two VMs.
    s.refused(
        2,
        &["add", "anticollocation", "one", "vm=web1"],
        &["1 member(s)"],
    );
    // Removing a member that is not one; adding one twice.
    s.refused(
        2,
        &["modify", "collocation", "db", "vm=web1", "policy=delete"],
        &["\"web1\"", "a member of collocation \"db\""],
    );
    s.refused(
        2,
        &["add", "workgroup", "w", "vm=web1,web1"],
        &["\"web1\"", "each VM once"],
    );

    // Exclusions that leave no backup host: refused without --force.
    s.refused(
        2,
        &[
            "modify",
            "vm",
            "web1",
            "blacklist_hosts=host-b,host-c",
            "policy=add",
        ],
        &["no backup host will be left for VM web1", "--force"],
    );
    s.refused(
        2,
        &["modify", "vm", "web1", "blacklist_hosts=host-b"],
        &["policy=add"],
    );
    s.refused(
        2,
        &[
            "modify",
            "vm",
            "web1",
            "blacklist_hosts=host-b",
            "policy=add",
            "priority=High",
        ],
        &["\"priority=High\"", "no other key"],
    );
    // Flexible capacity: the range, the seed's words we do not take, priority required.
    for (args, named) in [
        (
            &[
                "modify",
                "host_group",
                "hg1",
                "memory_capacity=0",
                "priority=low",
            ][..],
            &["memory_capacity = \"0\"", "1..100"][..],
        ),
        (
            &[
                "modify",
                "host_group",
                "hg1",
                "cpu_capacity=101",
                "priority=low",
            ],
            &["cpu_capacity = \"101\""],
        ),
        (
            &[
                "modify",
                "host_group",
                "hg1",
                "cpu_capacity=minimum",
                "priority=low",
            ],
            &["\"minimum\"", "nominal size"],
        ),
        (
            &["modify", "host_group", "hg1", "memory_capacity=50"],
            &["need priority=High|Medium|Low"],
        ),
        (
            &[
                "modify",
                "host_group",
                "hg1",
                "memory_capacity=50",
                "priority=urgent",
            ],
            &["\"urgent\""],
        ),
    ] {
        s.refused(2, args, named);
    }
    s.refused(
        4,
        &[
            "modify",
            "host_group",
            "hg9",
            "memory_capacity=50",
            "priority=low",
        ],
        &["hg9"],
    );
    // Lowering flexible capacity makes big1+big2 fit (2 × 40 GiB × 70 % = 56 GiB); going
    // back to 100 % would make that collocation never fit: refused.
    s.expect(
        0,
        &[
            "modify",
            "host_group",
            "hg1",
            "memory_capacity=70",
            "priority=low",
        ],
    );
    s.expect(0, &["add", "collocation", "big", "vm=big1,big2"]);
    s.refused(
        2,
        &[
            "modify",
            "host_group",
            "hg1",
            "memory_capacity=none",
            "priority=low",
        ],
        &["collocation \"big\" can never fit"],
    );
}

#[test]
fn exclusions_home_host_and_flexible_capacity() {
    let s = Store::sqlite();
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "vm",
            "web1",
            "blacklist_hosts=host-c",
            "policy=add",
        ],
    );
    assert!(out.contains("excluded host-c (1 changed)"), "{out}");
    assert!(out.contains("excluded hosts now: host-c\n"), "{out}");
    // With --force, exclusions that leave no backup host are stored, with a warning.
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "vm",
            "web2",
            "blacklist_hosts=host-b,host-c",
            "policy=add",
            "--force",
        ],
    );
    assert!(
        out.contains("warning: no backup host will be left for VM web2"),
        "{out}"
    );
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "vm",
            "web2",
            "blacklist_hosts=host-b",
            "policy=delete",
        ],
    );
    assert!(out.contains("excluded hosts now: host-c\n"), "{out}");
    // Home host: the existing key of `modify vm`; shown with the exclusions.
    s.expect(0, &["modify", "vm", "web1", "homehost=host-b"]);
    let (out, _) = s.expect(0, &["query", "vm", "web1"]);
    assert!(
        out.contains("Home_host                   host-b\n"),
        "{out}"
    );
    assert!(
        out.contains("Blacklist_hosts             host-c\n"),
        "{out}"
    );
    let (out, _) = s.expect(0, &["--json", "query", "vm", "web1"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["host_exclusions"], serde_json::json!(["host-c"]));
    assert_eq!(json[0]["home_host"], "host-b");
    // A VM's own change that breaks a set it is in is not refused, but said.
    s.expect(0, &["add", "collocation", "db", "vm=db1,db2"]);
    let (out, _) = s.expect(0, &["modify", "vm", "db2", "priority=Low"]);
    assert!(
        out.contains("warning: collocation \"db\" mixes priorities (db1 (")
            && out.contains("HIGH, db2 (")
            && out.contains("LOW)"),
        "{out}"
    );
    let (out, _) = s.expect(0, &["modify", "vm", "db2", "priority=High"]);
    assert!(!out.contains("warning"), "{out}");
    // Excluding its home host: allowed, with a warning.
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "vm",
            "web1",
            "blacklist_hosts=host-b",
            "policy=add",
        ],
    );
    assert!(
        out.contains("warning: VM web1 (")
            && out.contains("its home host host-b is in its exclusion list"),
        "{out}"
    );

    // Flexible capacity per priority; `none` is back to 100 %.
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "host_group",
            "hg1",
            "memory_capacity=50",
            "cpu_capacity=80",
            "priority=low",
        ],
    );
    assert_eq!(
        out,
        "host_group hg1: LOW VMs restarted away from their home host get cpu_capacity 80%, \
         memory_capacity 50%\n"
    );
    s.expect(
        0,
        &[
            "modify",
            "host_group",
            "hg1",
            "cpu_capacity=none",
            "priority=Low",
        ],
    );
    let rows = s.db().flexible_capacity(Some("hg1")).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.priority, r.cpu_pct, r.memory_pct))
            .collect::<Vec<_>>(),
        [(Priority::Low, 100, 50)]
    );
    let (out, _) = s.expect(0, &["query", "policy", "--host-group", "hg1"]);
    assert!(
        out.contains("hg1         LOW       100%          50%\n"),
        "{out}"
    );
    assert!(out.contains("web1  host-b,host-c\n"), "{out}");
    s.expect(
        0,
        &[
            "modify",
            "host_group",
            "hg1",
            "memory_capacity=none",
            "priority=low",
        ],
    );
    assert_eq!(s.db().flexible_capacity(None).unwrap(), []);
    // The restart policy stays a parameter of the group.
    s.expect(
        0,
        &["modify", "host_group", "hg1", "restart_policy=advisory"],
    );
    let (out, _) = s.expect(0, &["--json", "query", "policy"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["host_exclusions"]["web1"],
        serde_json::json!(["host-b", "host-c"])
    );
}

#[test]
fn a_set_made_invalid_later_is_shown_and_can_be_mended() {
    let s = Store::sqlite();
    s.expect(0, &["add", "anticollocation", "three", "vm=web1,web2,big1"]);
    // big1 goes for good (released, then pruned by the housekeeping).
    s.expect(0, &["modify", "vm", "big1", "managed=no"]);
    assert_eq!(s.db().prune_vms(i64::MAX).unwrap(), 1);
    let big1 = vm(5).to_string();
    let (out, _) = s.expect(0, &["--json", "query", "anticollocation", "three"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["members"][2]["uuid"], big1.as_str());
    assert_eq!(json[0]["members"][2]["name"], "");
    assert_eq!(
        json[0]["problems"][0],
        format!("anticollocation \"three\": member {big1} is not a VM in the HSDB").as_str()
    );
    let (out, _) = s.expect(0, &["query", "policy"]);
    assert!(
        out.contains(&format!(
            "problem: anticollocation \"three\": member {big1}"
        )),
        "{out}"
    );
    // An unrelated change is not blocked by it.
    s.expect(0, &["add", "collocation", "db", "vm=db1,db2"]);
    // Any change of the set itself must mend it: adding is refused, naming the member…
    s.refused(
        2,
        &["modify", "anticollocation", "three", "vm=db1", "policy=add"],
        &[&format!("member {big1} is not a VM")],
    );
    // …removing the gone member by its UUID is how.
    let (out, _) = s.expect(
        0,
        &[
            "modify",
            "anticollocation",
            "three",
            &format!("vm={big1}"),
            "policy=delete",
        ],
    );
    assert_eq!(out, "anticollocation \"three\" now: web1, web2\n");
    let (out, _) = s.expect(0, &["query", "policy"]);
    assert!(!out.contains("problem:"), "{out}");
}
