//! A host group of three hosts with real daemons, for the end-to-end test of the whole
//! loop (`tests/control_loop.rs`) and the loop demo (`hvha-loop-demo`): two `hmd` per
//! host (a host has two I/O partitions), all writing one SQLite HSDB; real agents (`vmmd`
//! in a namespace per VM, and `hvncp-loadgen` on both HA networks of each host); files
//! for libvirt's test hypervisor describing the same VMs (same UUIDs) as the agents; a
//! control namespace for `hactl run`, joined to each `vmmd` VM by a management link with
//! an address, so the control plane's ping probe is real. A "hung" VM is an agent
//! stopped with SIGSTOP in a namespace that ignores ICMP echo
//! (`net.ipv4.icmp_echo_ignore_all`, per namespace).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Lab, binary, uuid, wait_for};
use hsdb::{HeartbeatState, HostId, Hsdb, Options, RelocationRow, Target, Uuid};

/// The three hosts: name, HSDB host id.
pub const HOSTS: [(&str, i64); 3] = [("host-a", 1), ("host-b", 2), ("host-c", 3)];
/// `vmmd` VMs per host.
pub const REAL_VMS: usize = 2;
/// `hvncp-loadgen` VMs per host (each seen by both monitors of the host).
pub const LOADGEN_VMS: u32 = 4;

/// Monitor `m` (1 or 2) of host `h` (0-based).
pub fn hm_uuid(h: usize, m: usize) -> String {
    format!("5c3196a3-c41f-4b5c-9861-000000000{h}{m:02}")
}

/// The `vmmd` VM `i` (1-based) of host `h`.
pub fn real_vm(h: usize, i: usize) -> String {
    format!("61be20f0-09a8-4753-b5e5-0000000{h}{i:04}")
}

/// The loadgen VMs of host `h`: their UUIDs come from `--uuid-mac 02:4c:0h:00:00:00`.
pub fn loadgen_uuid_mac(h: usize) -> String {
    format!("02:4c:0{h}:00:00:00")
}

/// `4c474c47-0000-4000-8000-<mac>`, as `hvncp-loadgen` derives it, for agent `i`.
pub fn loadgen_vm(h: usize, i: u32) -> Uuid {
    let mac = 0x024c_0000_0000_u64 + ((h as u64) << 24) + u64::from(i);
    let mut bytes = [
        0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    bytes[10..].copy_from_slice(&mac.to_be_bytes()[2..]);
    Uuid(bytes)
}

/// The management address of `vmmd` VM `i` of host `h` (its namespace side), and the
/// control namespace's side.
pub fn mgmt_addrs(h: usize, i: usize) -> (String, String) {
    (
        format!("10.77.{}.2", h * 10 + i),
        format!("10.77.{}.1", h * 10 + i),
    )
}

/// A libvirt test-hypervisor host file: 8 CPUs, 32 GiB, and the given domains running.
pub fn libvirt_host_xml(domains: &[(String, Uuid)]) -> String {
    let mut xml = String::from(
        "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>32</cores>\
         <threads>1</threads><mhz>2000</mhz></cpu>\n  <memory unit=\"KiB\">33554432</memory>\n",
    );
    for (dom, id) in domains {
        xml.push_str(&format!(
            "  <domain type=\"test\">\n    <name>{dom}</name>\n    <uuid>{id}</uuid>\n    \
             <memory unit=\"KiB\">524288</memory>\n    <vcpu>1</vcpu>\n    \
             <os><type>hvm</type></os>\n  </domain>\n"
        ));
    }
    xml.push_str("</node>\n");
    xml
}

/// Where the group's HSDB lives.
#[derive(Clone, Debug)]
pub enum Store {
    /// One SQLite file in the lab's directory (the embedded default).
    Sqlite,
    /// A PostgreSQL database, by URL (no password: the test servers trust local users).
    Postgres(String),
}

/// The URL of database `url` (a `postgres://` URL over TCP to this machine) through the
/// server's Unix socket instead: the daemons run in network namespaces, whose loopback
/// is not the server's, but the socket's file is reachable from every namespace. The
/// server says where its sockets are (`unix_socket_directories`).
pub fn unix_socket_url(url: &str) -> Result<String, String> {
    let config: postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let mut client =
        postgres::Client::connect(url, postgres::NoTls).map_err(|e| format!("{url}: {e}"))?;
    let dirs: String = client
        .query_one("SHOW unix_socket_directories", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| format!("{url}: {e}"))?;
    let port: String = client
        .query_one("SHOW port", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| format!("{url}: {e}"))?;
    let dir = dirs
        .split(',')
        .map(str::trim)
        .find(|d| Path::new(d).join(format!(".s.PGSQL.{port}")).exists())
        .ok_or_else(|| format!("{url}: no socket of port {port} in {dirs:?} on this machine"))?;
    let encoded: String = dir
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("hvha");
    let db = config.get_dbname().unwrap_or("postgres");
    Ok(format!("postgres://{user}@{encoded}:{port}/{db}"))
}

/// The lab: namespaces, daemons and files of the three hosts.
pub struct Group {
    /// The namespaces, processes and scratch directory.
    pub lab: Lab,
    /// The one HSDB every monitor and `hactl` use: a file path or a `postgres://` URL,
    /// as written in their `hsdb` settings.
    pub hsdb: String,
    /// The same, parsed.
    pub target: Target,
    /// Namespace of the control plane (`hactl run`), where the management links end.
    pub ctl_ns: String,
    /// Per host: a namespace linked to both monitors with no agent yet, where a VM
    /// restarted onto that host boots (the monitors' interfaces are fixed at their start).
    pub spare_ns: Vec<String>,
    /// Per host: the libvirt test-hypervisor file.
    pub host_files: Vec<PathBuf>,
    /// `hactl`'s configuration file.
    pub hactl_config: PathBuf,
}

/// The configuration of monitor `m` (1 or 2) of host `h` on `interfaces`: fast timers
/// (heartbeats every 200 ms, MISSING after [`VM_MISS_AFTER_MS`], commands polled every
/// 200 ms).
pub fn hmd_config(lab: &Lab, hsdb: &str, h: usize, m: usize, interfaces: &[String]) -> PathBuf {
    let (host, id) = HOSTS[h];
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("{i:?}")).collect();
    lab.write(
        &format!("hmd-{h}-{m}.toml"),
        &format!(
            "monitor_uuid = \"{}\"\nhost_id = {id}\nhost_name = \"{host}\"\nhsdb = {:?}\n\
             admin_socket = {:?}\ninterfaces = [{}]\nhello_period_ms = 500\nhb_period_ms = 200\n\
             vm_miss_after_ms = {VM_MISS_AFTER_MS}\nhm_heartbeat_period_ms = 500\nflush_ms = 10\n\
             command_poll_ms = 200\nsynchronous = \"normal\"\nlog = \"debug\"\n",
            hm_uuid(h, m),
            hsdb,
            lab.dir
                .join(format!("hmd-{h}-{m}.sock"))
                .display()
                .to_string(),
            interfaces.join(", ")
        ),
    )
}

/// The monitors' `vm_miss_after_ms`.
pub const VM_MISS_AFTER_MS: i64 = 1000;

/// `hactl --hsdb <hsdb> args…`, which must succeed.
pub fn hactl(hsdb: &str, args: &[&str]) -> String {
    let out = Command::new(binary("hactl"))
        .arg("--hsdb")
        .arg(hsdb)
        .args(args)
        .output()
        .expect("run hactl");
    assert!(
        out.status.success(),
        "hactl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every VM of host `h`: (libvirt domain name, UUID).
pub fn vms_of(h: usize) -> Vec<(String, Uuid)> {
    let mut vms: Vec<(String, Uuid)> = (1..=REAL_VMS)
        .map(|i| (format!("vm-{h}-{i}"), uuid(&real_vm(h, i))))
        .collect();
    vms.extend((0..LOADGEN_VMS).map(|i| (format!("lg-{h}-{i}"), loadgen_vm(h, i))));
    vms
}

/// Build the group for `test` and start its monitors and agents (not `hactl run`): the
/// hosts and VMs are first described in the HSDB with `hactl add` (docs/operators.md).
/// `None` (after printing why) when this machine cannot run it.
pub fn build(test: &str) -> Option<Group> {
    build_on(test, Store::Sqlite)
}

/// [`build`] with the HSDB in `store`.
pub fn build_on(test: &str, store: Store) -> Option<Group> {
    let mut lab = Lab::new(test)?;
    if !lab.tools_built(&["hvncp-loadgen", "hactl"]) {
        return None;
    }
    if Command::new("virsh").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "virsh not installed (.ci/run installs libvirt-clients)"
        );
        eprintln!("SKIPPED e2e::{test}: virsh not found (apt-get install libvirt-clients)");
        return None;
    }
    let hsdb = match store {
        Store::Sqlite => lab.dir.join("hsdb.sqlite").display().to_string(),
        Store::Postgres(url) => unix_socket_url(&url).expect("the test server's Unix socket"),
    };
    let target = Target::parse(&hsdb).expect("the lab's HSDB target parses");
    // The operator's set-up (docs/operators.md): hosts, then the VMs, managed, sized.
    for (h, (host, id)) in HOSTS.iter().enumerate() {
        hactl(
            &hsdb,
            &[
                "add",
                "host",
                host,
                "group=hg1",
                "cpu=32",
                "memory=32G",
                "machine_type=8408",
                "model=E8E",
                &format!("serial=21282F{h}"),
                &format!("id={id}"),
            ],
        );
        for (name, vm) in vms_of(h) {
            hactl(
                &hsdb,
                &[
                    "add",
                    "vm",
                    &vm.to_string(),
                    &format!("name={name}"),
                    "managed=yes",
                    "cpu=1",
                    "memory=512M",
                ],
            );
        }
    }
    // A failed host's VMs are pinged before they are restarted: one that still answers
    // sits behind a partition and is alive (docs/controlplane.md, host decisions).
    hactl(
        &hsdb,
        &[
            "modify",
            "host_group",
            "hg1",
            "host_failure_ping_vms=enable",
        ],
    );
    let ctl_ns = lab.netns("ctl");
    let mut spare_ns = Vec::new();
    let mut host_files = Vec::new();
    let mut ping = String::new();
    for (h, (host, _)) in HOSTS.iter().enumerate() {
        let ns = [lab.netns(&format!("h{h}m1")), lab.netns(&format!("h{h}m2"))];
        let mut ifaces: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for i in 1..=REAL_VMS {
            let vm_ns = lab.netns(&format!("h{h}v{i}"));
            for (m, hns) in ns.iter().enumerate() {
                let peer = format!("v{i}m{}", m + 1);
                lab.link(&vm_ns, &format!("ha{}", m + 1), hns, &peer);
                ifaces[m].push(peer);
            }
            // The management link, with an address: vmmd never uses it for HVNCP.
            let (vm_addr, ctl_addr) = mgmt_addrs(h, i);
            let ctl_if = format!("mg{h}{i}");
            lab.link(&vm_ns, "mg", &ctl_ns, &ctl_if);
            netlab::ip(&[
                "-n",
                &vm_ns,
                "addr",
                "add",
                &format!("{vm_addr}/24"),
                "dev",
                "mg",
            ]);
            netlab::ip(&[
                "-n",
                &ctl_ns,
                "addr",
                "add",
                &format!("{ctl_addr}/24"),
                "dev",
                &ctl_if,
            ]);
            ping.push_str(&format!("\"{}\" = \"{vm_addr}\"\n", real_vm(h, i)));
        }
        let spare = lab.netns(&format!("h{h}s"));
        for (m, hns) in ns.iter().enumerate() {
            let peer = format!("spm{}", m + 1);
            lab.link(&spare, &format!("ha{}", m + 1), hns, &peer);
            ifaces[m].push(peer);
        }
        spare_ns.push(spare);
        let gen_ns = lab.netns(&format!("h{h}g"));
        for (m, hns) in ns.iter().enumerate() {
            let peer = format!("gm{}", m + 1);
            lab.link(&gen_ns, &format!("g{}", m + 1), hns, &peer);
            ifaces[m].push(peer);
        }
        for m in 1..=2 {
            let config = hmd_config(&lab, &hsdb, h, m, &ifaces[m - 1]);
            let config = config.display().to_string();
            lab.spawn(
                &format!("hmd-{h}-{m}"),
                &ns[m - 1],
                "hmd",
                &["--config", &config],
            );
        }
        for i in 1..=REAL_VMS {
            let vm_ns = ns[0].replace(&format!("-h{h}m1"), &format!("-h{h}v{i}"));
            start_vmmd(&mut lab, &format!("vmmd-{h}-{i}"), &vm_ns, &real_vm(h, i));
        }
        let count = LOADGEN_VMS.to_string();
        for m in 1..=2 {
            let first_mac = format!("02:4c:0{h}:0{m}:00:00");
            let uuid_mac = loadgen_uuid_mac(h);
            let iface = format!("g{m}");
            let agents = lab.tool(
                &format!("loadgen-{h}-{m}"),
                &gen_ns,
                "hvncp-loadgen",
                &[
                    "--interface",
                    &iface,
                    "--agents",
                    &count,
                    "--first-mac",
                    &first_mac,
                    "--uuid-mac",
                    &uuid_mac,
                    "--report-ms",
                    "0",
                ],
            )?;
            // Kept alive by the lab (its stdin open); the handle is not needed.
            std::mem::forget(agents);
        }
        host_files.push(lab.write(&format!("{host}.xml"), &libvirt_host_xml(&vms_of(h))));
    }
    let hosts: String = HOSTS
        .iter()
        .zip(&host_files)
        .map(|((host, _), file)| format!("{host} = \"test://{}\"\n", file.display()))
        .collect();
    let hactl_config = lab.write(
        "hactl.toml",
        &format!(
            "hsdb = {hsdb:?}\nadmin_socket = {:?}\nhost_groups = [\"hg1\"]\nprofile = \"fast\"\n\
             log = \"debug\"\n[platform]\ndriver = \"libvirt\"\ntimeout_ms = 5000\n\
             ping_timeout_ms = {PING_TIMEOUT_MS}\n[platform.hosts]\n{hosts}[platform.ping]\n{ping}",
            lab.dir.join("hactl.sock").display().to_string(),
        ),
    );
    Some(Group {
        lab,
        hsdb,
        target,
        ctl_ns,
        spare_ns,
        host_files,
        hactl_config,
    })
}

/// hactl's `platform.ping_timeout_ms`.
pub const PING_TIMEOUT_MS: i64 = 1000;

/// Start `vmmd` for VM `vm` in namespace `ns` (HA interfaces `ha1`, `ha2`) as process
/// `label`.
pub fn start_vmmd(lab: &mut Lab, label: &str, ns: &str, vm: &str) {
    let config = lab.write(
        &format!("{label}.toml"),
        &format!(
            "vm_uuid = \"{vm}\"\ninterfaces = [\"ha1\", \"ha2\"]\nrescan_ms = 1000\n{}",
            crate::vmmd_ame_section(&lab.dir, label)
        ),
    );
    let config = config.display().to_string();
    lab.spawn(label, ns, "vmmd", &["--config", &config]);
}

impl Group {
    /// The HSDB, read-only, if it can be opened yet.
    pub fn db(&self) -> Option<Hsdb> {
        Hsdb::connect_read_only(&self.target, &Options::default()).ok()
    }

    /// Every VM of every host DETECTED by both monitors of its host.
    pub fn all_detected(&self) -> bool {
        let Some(db) = self.db() else {
            return false;
        };
        for h in 0..HOSTS.len() {
            for (_, vm) in vms_of(h) {
                for m in 1..=2 {
                    let row = db.vm_hm(&vm, &uuid(&hm_uuid(h, m))).ok().flatten();
                    if row.map(|r| r.last_state) != Some(HeartbeatState::Detected) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The relocations of `vm`, oldest first.
    pub fn relocations(&self, vm: &Uuid) -> Vec<RelocationRow> {
        let mut rows = self
            .db()
            .and_then(|db| db.relocations(Some(vm), 100).ok())
            .unwrap_or_default();
        rows.reverse();
        rows
    }

    /// The first relocation of `vm` that ended, waiting up to `within`.
    pub fn wait_relocated(&self, vm: &Uuid, within: Duration) -> Option<RelocationRow> {
        wait_for(within, || {
            self.relocations(vm)
                .into_iter()
                .find(|r| r.ended_ms.is_some())
        })
    }

    /// Make VM `i` of host `h` hang: its agent stopped, its OS deaf to ping.
    pub fn hang(&self, h: usize, i: usize, deaf: bool) {
        self.lab.signal(&format!("vmmd-{h}-{i}"), "STOP");
        if deaf {
            self.icmp(h, i, false);
        }
    }

    /// Host `h` fails: both its monitors die, its `vmmd` VMs die with it (agent killed,
    /// no ping answer) except those in `partitioned` (alive, answering ping, but cut off
    /// from their monitors), its load-generator agents die, and its hypervisor becomes
    /// unreachable (its file gone, its `virsh` connection cut).
    pub fn fail_host(&mut self, h: usize, partitioned: &[usize]) {
        for m in 1..=2 {
            self.lab.kill_9(&format!("hmd-{h}-{m}"));
            self.lab.kill_9(&format!("loadgen-{h}-{m}"));
        }
        for i in 1..=REAL_VMS {
            if !partitioned.contains(&i) {
                self.icmp(h, i, false);
                self.lab.kill_9(&format!("vmmd-{h}-{i}"));
            }
        }
        let gone = self.host_files[h].with_extension("gone");
        std::fs::rename(&self.host_files[h], &gone).expect("move the host's file away");
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.host_files[h].display().to_string()])
            .status();
    }

    /// Undo [`Group::hang`].
    pub fn resume(&self, h: usize, i: usize) {
        self.icmp(h, i, true);
        self.lab.signal(&format!("vmmd-{h}-{i}"), "CONT");
    }

    /// Answer ping in VM `i` of host `h`, or not.
    pub fn icmp(&self, h: usize, i: usize, answer: bool) {
        let ns = self.ctl_ns.replace("-ctl", &format!("-h{h}v{i}"));
        let value = if answer { "0" } else { "1" };
        netlab::ip(&[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.icmp_echo_ignore_all={value}"),
        ]);
    }

    /// Every daemon's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut labels = Vec::new();
        for h in 0..HOSTS.len() {
            for m in 1..=2 {
                labels.push(format!("hmd-{h}-{m}"));
            }
            for i in 1..=REAL_VMS {
                labels.push(format!("vmmd-{h}-{i}"));
            }
        }
        labels.extend(["hactl", "ctl-a", "ctl-b"].map(str::to_owned));
        labels
            .iter()
            .filter(|l| self.lab.dir.join(format!("{l}.log")).exists())
            .map(|l| format!("--- {l}\n{}", self.lab.log(l)))
            .collect()
    }
}

/// The HSDB id of host `h`.
pub fn host_id(h: usize) -> HostId {
    HostId(HOSTS[h].1)
}

/// Ok when `r` ended well on another host than `from`, within `bound_ms` of `fault_ms`.
pub fn check_moved(
    r: &RelocationRow,
    from: usize,
    fault_ms: i64,
    bound_ms: i64,
) -> Result<i64, String> {
    let ended = r.ended_ms.ok_or("not ended")?;
    let result = r.result.clone().unwrap_or_default();
    if !result.starts_with("success") {
        return Err(format!("relocation {} ended with {result:?}", r.id));
    }
    if r.from_host != Some(host_id(from)) || r.to_host.is_none() || r.to_host == Some(host_id(from))
    {
        return Err(format!(
            "relocation {} went {:?} -> {:?}",
            r.id, r.from_host, r.to_host
        ));
    }
    let took = ended - fault_ms;
    if took > bound_ms {
        return Err(format!(
            "relocation {} ended {took} ms after the fault; the bound is {bound_ms} ms",
            r.id
        ));
    }
    Ok(took)
}

/// The placement policies the end-to-end tests set on the VMs of host `h` (docs/operators.md,
/// "Policies"), through `hactl` as an operator would, before `hactl run` starts: `vm-h-1`
/// never goes to the next host (host `h+1`), so it goes to the other one; `lg-h-0` and
/// `lg-h-1` are collocated; `lg-h-2` and `lg-h-3` anticollocated.
pub fn set_policies(g: &Group, h: usize) {
    let excluded = HOSTS[(h + 1) % HOSTS.len()].0;
    hactl(
        &g.hsdb,
        &[
            "modify",
            "vm",
            &format!("vm-{h}-1"),
            &format!("blacklist_hosts={excluded}"),
            "policy=add",
        ],
    );
    hactl(
        &g.hsdb,
        &[
            "add",
            "collocation",
            "lg-together",
            &format!("vm=lg-{h}-0,lg-{h}-1"),
        ],
    );
    hactl(
        &g.hsdb,
        &[
            "add",
            "anticollocation",
            "lg-apart",
            &format!("vm=lg-{h}-2,lg-{h}-3"),
        ],
    );
}

/// Ok when the relocations of host `h`'s VMs (`moves`: VM name → its relocation) obey
/// the policies of [`set_policies`].
pub fn check_policies(h: usize, moves: &[(String, RelocationRow)]) -> Result<(), String> {
    let to = |name: &str| -> Result<Option<HostId>, String> {
        moves
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.to_host)
            .ok_or_else(|| format!("{name} not relocated"))
    };
    let excluded = host_id((h + 1) % HOSTS.len());
    let other = host_id((h + 2) % HOSTS.len());
    let first = to(&format!("vm-{h}-1"))?;
    if first != Some(other) {
        return Err(format!(
            "vm-{h}-1 excludes host {excluded:?}: it went to {first:?}, not {other:?}"
        ));
    }
    let (a, b) = (to(&format!("lg-{h}-0"))?, to(&format!("lg-{h}-1"))?);
    if a != b {
        return Err(format!(
            "collocated lg-{h}-0 and lg-{h}-1 went to {a:?} and {b:?}"
        ));
    }
    let (c, d) = (to(&format!("lg-{h}-2"))?, to(&format!("lg-{h}-3"))?);
    if c == d {
        return Err(format!(
            "anticollocated lg-{h}-2 and lg-{h}-3 both went to {c:?}"
        ));
    }
    Ok(())
}
