//! The whole loop with real daemons: three hosts, two `hmd` each (a host has two I/O
//! partitions), all writing one SQLite HSDB; real agents (`vmmd` in a namespace per VM,
//! and `hvncp-loadgen` on both HA networks of each host); `hactl run` in the fast
//! profile on libvirt's test hypervisor, whose per-host files describe the same VMs (same
//! UUIDs) as the agents. Each `vmmd` VM has a management address in its own namespace,
//! so the control plane's ping probe is real: a "hung" VM is an agent stopped with
//! SIGSTOP in a namespace that ignores ICMP echo (`net.ipv4.icmp_echo_ignore_all`, per
//! namespace).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hsdb::{HeartbeatState, Hsdb, Options, Uuid};
use hvha_e2e::{Lab, uuid, wait_for};

/// The three hosts: name, HSDB host id.
const HOSTS: [(&str, i64); 3] = [("host-a", 1), ("host-b", 2), ("host-c", 3)];
/// `vmmd` VMs per host.
const REAL_VMS: usize = 2;
/// `hvncp-loadgen` VMs per host (each seen by both monitors of the host).
const LOADGEN_VMS: u32 = 4;

/// Monitor `m` (1 or 2) of host `h` (0-based).
fn hm_uuid(h: usize, m: usize) -> String {
    format!("5c3196a3-c41f-4b5c-9861-000000000{h}{m:02}")
}

/// The `vmmd` VM `i` (1-based) of host `h`.
fn real_vm(h: usize, i: usize) -> String {
    format!("61be20f0-09a8-4753-b5e5-0000000{h}{i:04}")
}

/// The loadgen VMs of host `h`: their UUIDs come from `--uuid-mac 02:4c:0h:00:00:00`.
fn loadgen_uuid_mac(h: usize) -> String {
    format!("02:4c:0{h}:00:00:00")
}

/// `4c474c47-0000-4000-8000-<mac>`, as `hvncp-loadgen` derives it, for agent `i`.
fn loadgen_vm(h: usize, i: u32) -> Uuid {
    let mac = 0x024c_0000_0000_u64 + ((h as u64) << 24) + u64::from(i);
    let mut bytes = [
        0x4c, 0x47, 0x4c, 0x47, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0,
    ];
    bytes[10..].copy_from_slice(&mac.to_be_bytes()[2..]);
    Uuid(bytes)
}

/// The management address of `vmmd` VM `i` of host `h` (its namespace side), and the
/// control namespace's side.
fn mgmt_addrs(h: usize, i: usize) -> (String, String) {
    (
        format!("10.77.{}.2", h * 10 + i),
        format!("10.77.{}.1", h * 10 + i),
    )
}

/// A libvirt test-hypervisor host file: 8 CPUs, 32 GiB, and the given domains running.
fn libvirt_host_xml(name: &str, domains: &[(String, Uuid)]) -> String {
    let mut xml = String::from(
        "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores>\
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
    let _ = name;
    xml
}

/// The lab: namespaces, daemons and files of the three hosts.
struct Group {
    lab: Lab,
    hsdb: PathBuf,
    /// Namespace of the control plane (`hactl run`), where the management links end.
    ctl_ns: String,
    /// Per host: the two monitors' namespaces.
    hm_ns: Vec<[String; 2]>,
    /// Per host: the libvirt test-hypervisor file.
    host_files: Vec<PathBuf>,
}

fn hmd_config(lab: &Lab, hsdb: &Path, h: usize, m: usize, interfaces: &[String]) -> PathBuf {
    let (host, id) = HOSTS[h];
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("{i:?}")).collect();
    lab.write(
        &format!("hmd-{h}-{m}.toml"),
        &format!(
            "monitor_uuid = \"{}\"\nhost_id = {id}\nhost_name = \"{host}\"\nhsdb = {:?}\n\
             admin_socket = {:?}\ninterfaces = [{}]\nhello_period_ms = 500\nhb_period_ms = 200\n\
             vm_miss_after_ms = 1000\nhm_heartbeat_period_ms = 500\nflush_ms = 10\n\
             synchronous = \"normal\"\nlog = \"debug\"\n",
            hm_uuid(h, m),
            hsdb.display().to_string(),
            lab.dir
                .join(format!("hmd-{h}-{m}.sock"))
                .display()
                .to_string(),
            interfaces.join(", ")
        ),
    )
}

fn build(test: &str) -> Option<Group> {
    let mut lab = Lab::new(test)?;
    if !lab.tools_built(&["hvncp-loadgen"]) {
        return None;
    }
    let hsdb = lab.dir.join("hsdb.sqlite");
    let ctl_ns = lab.netns("ctl");
    let mut hm_ns = Vec::new();
    let mut host_files = Vec::new();
    for (h, (host, _)) in HOSTS.iter().enumerate() {
        let ns = [lab.netns(&format!("h{h}m1")), lab.netns(&format!("h{h}m2"))];
        let mut ifaces: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut domains = Vec::new();
        for i in 1..=REAL_VMS {
            let vm_ns = lab.netns(&format!("h{h}v{i}"));
            for (m, hns) in ns.iter().enumerate() {
                let peer = format!("v{i}m{}", m + 1);
                lab.link(&vm_ns, &format!("ha{}", m + 1), hns, &peer);
                ifaces[m].push(peer);
            }
            // The management link, with an address: vmmd never uses it for HVNCP.
            let (vm_addr, ctl_addr) = mgmt_addrs(h, i);
            lab.link(&vm_ns, "mg", &ctl_ns, &format!("mg{h}{i}"));
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
                &format!("mg{h}{i}"),
            ]);
            domains.push((format!("vm-{h}-{i}"), uuid(&real_vm(h, i))));
        }
        let gen_ns = lab.netns(&format!("h{h}g"));
        for (m, hns) in ns.iter().enumerate() {
            let peer = format!("gm{}", m + 1);
            lab.link(&gen_ns, &format!("g{}", m + 1), hns, &peer);
            ifaces[m].push(peer);
        }
        for i in 0..LOADGEN_VMS {
            domains.push((format!("lg-{h}-{i}"), loadgen_vm(h, i)));
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
            let config = lab.write(
                &format!("vmmd-{h}-{i}.toml"),
                &format!(
                    "vm_uuid = \"{}\"\ninterfaces = [\"ha1\", \"ha2\"]\nrescan_ms = 1000\n",
                    real_vm(h, i)
                ),
            );
            let config = config.display().to_string();
            let vm_ns = ns[0].replace(&format!("-h{h}m1"), &format!("-h{h}v{i}"));
            lab.spawn(
                &format!("vmmd-{h}-{i}"),
                &vm_ns,
                "vmmd",
                &["--config", &config],
            );
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
        host_files.push(lab.write(&format!("{host}.xml"), &libvirt_host_xml(host, &domains)));
        hm_ns.push(ns);
    }
    Some(Group {
        lab,
        hsdb,
        ctl_ns,
        hm_ns,
        host_files,
    })
}

impl Group {
    fn db(&self) -> Option<Hsdb> {
        Hsdb::open(&self.hsdb, &Options::default()).ok()
    }

    /// Every VM of every host DETECTED by both monitors of its host.
    fn all_detected(&self) -> bool {
        let Some(db) = self.db() else {
            return false;
        };
        for h in 0..HOSTS.len() {
            let mut vms: Vec<Uuid> = (1..=REAL_VMS).map(|i| uuid(&real_vm(h, i))).collect();
            vms.extend((0..LOADGEN_VMS).map(|i| loadgen_vm(h, i)));
            for vm in &vms {
                for m in 1..=2 {
                    let row = db.vm_hm(vm, &uuid(&hm_uuid(h, m))).ok().flatten();
                    if row.map(|r| r.last_state) != Some(HeartbeatState::Detected) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn logs(&self) -> String {
        let mut labels = Vec::new();
        for h in 0..HOSTS.len() {
            for m in 1..=2 {
                labels.push(format!("hmd-{h}-{m}"));
            }
            for i in 1..=REAL_VMS {
                labels.push(format!("vmmd-{h}-{i}"));
            }
        }
        labels.push("hactl".to_owned());
        labels
            .iter()
            .map(|l| format!("--- {l}\n{}", self.lab.log(l)))
            .collect()
    }
}

#[test]
fn three_hosts_monitored_by_six_monitors_into_one_hsdb() {
    let Some(g) = build("loop") else {
        return;
    };
    let started = Instant::now();
    assert!(
        wait_for(Duration::from_secs(30), || g.all_detected().then_some(())).is_some(),
        "every VM DETECTED by both monitors of its host within 30 s\n{}",
        g.logs()
    );
    eprintln!("all VMs detected after {:?}", started.elapsed());
    // The management addresses answer ping from the control namespace.
    let (vm_addr, _) = mgmt_addrs(0, 1);
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &g.ctl_ns, "ping", "-c", "1", "-W", "2", &vm_addr,
        ])
        .output()
        .expect("ping");
    assert!(out.status.success(), "ping {vm_addr}: {out:?}");
    let _ = (&g.hm_ns, &g.host_files);
}
