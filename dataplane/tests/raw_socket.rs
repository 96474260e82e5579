//! `dataplane::io` on real sockets: a veth pair inside a throwaway network namespace.
//!
//! How a test runs: it creates its own namespace `hvio-<pid>-<test>` (`ip netns add`),
//! a veth pair `va`↔`vb` inside it, and runs the socket code on a thread that joined
//! the namespace with `setns(2)` (`io::enter_network_namespace`). A guard deletes the
//! namespace, and the veth pair with it, when the test ends, pass or panic.
//!
//! Why `setns` on a dedicated thread rather than re-running the test binary through
//! `ip netns exec`: `setns(CLONE_NEWNET)` changes only the calling thread, so each test
//! stays in-process, tests run in parallel without seeing each other's interfaces, a
//! failed assertion is reported by the normal test harness, and nothing depends on
//! argument filters or environment variables surviving a re-exec.
//!
//! Needs root (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_NET_RAW`) and iproute2's `ip`.
//! Without them each test prints `SKIPPED` on the terminal (not captured) and passes.

use std::io::Write as _;
use std::time::{Duration, Instant};

use dataplane::io::{
    ETH_P_ALL, Interface, InterfaceName, RawSocket, RxMode, SocketConfig, interfaces,
};
use dataplane::wire::MacAddr;
use netlab::VethEnd;

const HVNCP: u16 = 0x0600;
const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

const MODES: [RxMode; 3] = [
    RxMode::Recv,
    RxMode::Recvmmsg { batch: 16 },
    RxMode::Ring {
        block_size: 1 << 16,
        block_count: 4,
        retire_ms: 2,
    },
];

// ---------------------------------------------------------------------------------
// Namespace guard and helpers

/// A network namespace `hvio-<pid>-<test>` with a veth pair `va` (MAC_A) ↔ `vb` (MAC_B),
/// both up, no IPv4 address. Deleted on drop.
struct VethPair {
    ns: netlab::Netns,
}

impl VethPair {
    /// `None` (after printing why) when the test cannot run here. `test` is the test's
    /// function name: unique, so parallel tests never share a namespace.
    fn new(test: &str) -> Option<VethPair> {
        if let Some(why) = netlab::missing_capabilities() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED raw_socket::{test}: {why}; run as root to exercise AF_PACKET"
            );
            return None;
        }
        let ns = netlab::Netns::new("hvio", test);
        let (mac_a, mac_b) = (MAC_A.to_string(), MAC_B.to_string());
        netlab::veth(
            VethEnd::new(ns.name(), "va").with_mac(&mac_a),
            VethEnd::new(ns.name(), "vb").with_mac(&mac_b),
        );
        let pair = VethPair { ns };
        pair.wait_until_frames_pass();
        Some(pair)
    }

    /// Until the kernel's link watcher has activated the veth's transmit queues (it
    /// may take up to a second when many links change at once, as when tests run in
    /// parallel), frames sent are silently dropped. Probe both directions until they
    /// pass, with an EtherType no test uses.
    fn wait_until_frames_pass(&self) {
        const PROBE: u16 = 0x88b6;
        self.run(|| {
            let open = |n| RawSocket::open(&name(n), PROBE, RxMode::Recv).expect("open probe");
            let (mut a, mut b) = (open("va"), open("vb"));
            let deadline = Instant::now() + Duration::from_secs(3);
            let (mut a_to_b, mut b_to_a) = (false, false);
            while !(a_to_b && b_to_a) {
                assert!(Instant::now() < deadline, "veth pair never passed frames");
                a.send(&frame(MAC_B, MAC_A, PROBE, 0)).expect("probe");
                b.send(&frame(MAC_A, MAC_B, PROBE, 0)).expect("probe");
                a_to_b |= !recv_frames(&mut b, 1, Duration::from_millis(10)).is_empty();
                b_to_a |= !recv_frames(&mut a, 1, Duration::from_millis(10)).is_empty();
            }
        });
    }

    /// `ip -n <ns> args…`, panicking with its stderr on failure.
    fn ip(&self, args: &[&str]) {
        self.ns.ip(args);
    }

    /// Run `f` on a thread inside the namespace; panics propagate.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                dataplane::io::enter_network_namespace(self.ns.name()).expect("setns");
                f()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

fn name(s: &str) -> InterfaceName {
    InterfaceName::new(s).expect("valid name")
}

/// A 60-byte frame from `src` to `dst` whose payload starts with `marker`.
fn frame(dst: MacAddr, src: MacAddr, ethertype: u16, marker: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    f[14..18].copy_from_slice(&marker.to_be_bytes());
    f
}

fn marker(f: &[u8]) -> u32 {
    f.get(14..18)
        .and_then(|b| b.try_into().ok())
        .map_or(u32::MAX, u32::from_be_bytes)
}

/// Receive until `want` frames came or `within` passed; returns what came.
fn recv_frames(sock: &mut RawSocket, want: usize, within: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.wait_readable(Some(left.min(Duration::from_millis(20))))
            .expect("poll");
        sock.recv(|f| got.push(f.to_vec())).expect("recv");
    }
    got
}

/// Everything that arrives within `quiet`.
fn drain_for(sock: &mut RawSocket, quiet: Duration) -> Vec<Vec<u8>> {
    recv_frames(sock, usize::MAX, quiet)
}

// ---------------------------------------------------------------------------------
// Tests

/// Frames sent on `va` arrive on `vb` complete and in order, in each receive mode.
fn frames_cross_the_veth(test: &str, mode: RxMode) {
    let Some(ns) = VethPair::new(test) else {
        return;
    };
    ns.run(|| {
        let tx = RawSocket::open(&name("va"), HVNCP, RxMode::Recv).expect("open va");
        let mut rx = RawSocket::open(&name("vb"), HVNCP, mode).expect("open vb");
        let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(MAC_B, MAC_A, HVNCP, i)).collect();
        tx.send(&frames[0]).expect("send");
        let rest: Vec<&[u8]> = frames[1..].iter().map(Vec::as_slice).collect();
        let mut sent = 1;
        while sent < frames.len() {
            sent += tx.send_batch(&rest[sent - 1..]).expect("send_batch");
        }
        let got = recv_frames(&mut rx, frames.len(), Duration::from_secs(1));
        assert_eq!(got.len(), frames.len(), "{mode:?}");
        assert!(got == frames, "{mode:?}: frames differ or out of order");
        let stats = rx.stats().expect("stats");
        assert_eq!(stats.delivered, 200);
        assert_eq!(stats.kernel_packets, 200, "{stats:?}");
        assert_eq!(stats.kernel_drops, 0, "{stats:?}");
    });
}

#[test]
fn recv_mode_receives_what_the_peer_sends() {
    frames_cross_the_veth("recv_mode_receives_what_the_peer_sends", RxMode::Recv);
}

#[test]
fn recvmmsg_mode_receives_what_the_peer_sends() {
    frames_cross_the_veth(
        "recvmmsg_mode_receives_what_the_peer_sends",
        RxMode::Recvmmsg { batch: 16 },
    );
}

#[test]
fn ring_mode_receives_what_the_peer_sends() {
    frames_cross_the_veth(
        "ring",
        RxMode::Ring {
            block_size: 1 << 16,
            block_count: 4,
            retire_ms: 2,
        },
    );
}

#[test]
fn other_ethertypes_are_not_received() {
    let Some(ns) = VethPair::new("other_ethertypes_are_not_received") else {
        return;
    };
    ns.run(|| {
        let tx = RawSocket::open(&name("va"), ETH_P_ALL, RxMode::Recv).expect("open va");
        for mode in MODES {
            let mut rx = RawSocket::open(&name("vb"), HVNCP, mode).expect("open vb");
            // The stranger goes first: when ours has arrived, the stranger had its
            // chance (a veth delivers in order).
            tx.send(&frame(MAC_B, MAC_A, 0x0601, 1))
                .expect("send 0x0601");
            tx.send(&frame(MAC_B, MAC_A, 0x88b5, 2))
                .expect("send 0x88b5");
            tx.send(&frame(MAC_B, MAC_A, HVNCP, 3))
                .expect("send 0x0600");
            let got = recv_frames(&mut rx, 1, Duration::from_secs(1));
            let got: Vec<u32> = got
                .iter()
                .chain(&drain_for(&mut rx, Duration::from_millis(20)))
                .map(|f| marker(f))
                .collect();
            assert_eq!(got, [3], "{mode:?}");
        }
    });
}

#[test]
fn own_transmissions_are_not_received() {
    let Some(ns) = VethPair::new("own_transmissions_are_not_received") else {
        return;
    };
    ns.run(|| {
        // Only sockets bound to every EtherType see outgoing frames at all, so this is
        // where the filter matters.
        let va = name("va");
        let mut kernel = RawSocket::open(&va, ETH_P_ALL, RxMode::Recvmmsg { batch: 8 })
            .expect("open kernel-filtered");
        assert!(kernel.kernel_ignores_outgoing(), "Linux ≥ 4.20 accepts it");
        let mut user_sockets: Vec<RawSocket> = [RxMode::Recv, MODES[2]]
            .into_iter()
            .map(|rx| {
                let config = SocketConfig {
                    kernel_ignore_outgoing: false,
                    ..SocketConfig::new(ETH_P_ALL, rx)
                };
                RawSocket::open_with(&va, &config).expect("open user-filtered")
            })
            .collect();
        let mut peer = RawSocket::open(&name("vb"), ETH_P_ALL, RxMode::Recv).expect("open vb");

        let ours = frame(MAC_B, MAC_A, HVNCP, 0x5e1f);
        kernel.send(&ours).expect("send");
        let seen_by_peer = recv_frames(&mut peer, usize::MAX, Duration::from_millis(100));
        assert!(seen_by_peer.contains(&ours), "the frame did leave va");

        let is_ours = |f: &Vec<u8>| f == &ours;
        assert!(
            !drain_for(&mut kernel, Duration::from_millis(20))
                .iter()
                .any(is_ours)
        );
        for sock in &mut user_sockets {
            let got = drain_for(sock, Duration::from_millis(20));
            assert!(!got.iter().any(is_ours), "{:?}", sock.config().rx);
            let stats = sock.stats().expect("stats");
            assert!(
                stats.outgoing_skipped >= 1,
                "the frame was seen and skipped in user space: {stats:?}"
            );
        }
    });
}

#[test]
fn unknown_interface_is_named_in_the_error() {
    // No privilege needed: the name is checked before any socket is opened.
    let err = RawSocket::open(&name("hvnope0"), HVNCP, RxMode::Recv).expect_err("no such");
    assert_eq!(err.to_string(), "interface hvnope0 not found");

    // Inside a namespace, the host's interfaces do not exist.
    let Some(ns) = VethPair::new("unknown_interface_is_named_in_the_error") else {
        return;
    };
    let host_ifaces = interfaces().expect("list");
    let host_only = host_ifaces
        .iter()
        .find(|i| !i.is_loopback() && !["va", "vb"].contains(&i.name().as_str()));
    ns.run(|| {
        if let Some(host) = host_only {
            let err = RawSocket::open(&host.name(), HVNCP, MODES[2]).expect_err("isolated");
            assert_eq!(
                err.to_string(),
                format!("interface {} not found", host.name())
            );
        }
        let sock = RawSocket::open(&name("va"), HVNCP, MODES[2]).expect("va exists here");
        assert_eq!(sock.interface(), name("va"));
    });
}

#[test]
fn packet_statistics_count_drops_and_accumulate() {
    let Some(ns) = VethPair::new("packet_statistics_count_drops_and_accumulate") else {
        return;
    };
    ns.run(|| {
        let tx = RawSocket::open(&name("va"), HVNCP, RxMode::Recv).expect("open va");
        // Small buffers so that 2000 unread frames overflow them.
        let small_buffer = SocketConfig {
            rcvbuf_bytes: 64 << 10,
            ..SocketConfig::new(HVNCP, RxMode::Recvmmsg { batch: 64 })
        };
        let small_ring = SocketConfig::new(
            HVNCP,
            RxMode::Ring {
                block_size: 4096,
                block_count: 2,
                retire_ms: 1,
            },
        );
        for config in [small_buffer, small_ring] {
            let mut rx = RawSocket::open_with(&name("vb"), &config).expect("open vb");
            let frames: Vec<Vec<u8>> = (0..2000).map(|i| frame(MAC_B, MAC_A, HVNCP, i)).collect();
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < refs.len() {
                sent += tx.send_batch(&refs[sent..]).expect("send_batch");
            }
            std::thread::sleep(Duration::from_millis(10));
            let first = rx.stats().expect("stats");
            assert_eq!(first.kernel_packets, 2000, "{:?}: {first:?}", config.rx);
            assert!(first.kernel_drops > 0, "{:?}: {first:?}", config.rx);
            // The kernel resets its counters when read; ours must not.
            let again = rx.stats().expect("stats");
            assert_eq!(again.kernel_packets, first.kernel_packets);
            assert_eq!(again.kernel_drops, first.kernel_drops);
            // Everything not dropped is still there to read.
            let got = drain_for(&mut rx, Duration::from_millis(30));
            let after = rx.stats().expect("stats");
            assert_eq!(got.len() as u64, after.delivered);
            assert_eq!(
                after.delivered + after.kernel_drops,
                2000,
                "{:?}: {after:?}",
                config.rx
            );
            if matches!(config.rx, RxMode::Ring { .. }) {
                assert!(after.kernel_freezes > 0, "{after:?}");
            }
        }
    });
}

#[test]
fn interface_facts_inside_a_namespace() {
    let Some(ns) = VethPair::new("interface_facts_inside_a_namespace") else {
        return;
    };
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "va"]);
    ns.ip(&["addr", "add", "fe80::b/64", "dev", "vb"]);
    ns.run(|| {
        let all = interfaces().expect("list");
        let mut names: Vec<String> = all.iter().map(|i| i.name().to_string()).collect();
        names.sort();
        assert_eq!(names, ["lo", "va", "vb"]);

        let va = Interface::by_name(&name("va")).expect("va");
        assert_eq!(va.mac(), MAC_A);
        assert!(va.is_ethernet() && va.is_up() && va.is_running());
        assert!(va.has_ip(), "IPv4 address: {:?}", va.addresses());
        let listed = all.iter().find(|i| i.name() == name("va")).expect("listed");
        assert_eq!((listed.index(), listed.mac()), (va.index(), va.mac()));
        assert!(listed.has_ip());

        let vb = Interface::by_name(&name("vb")).expect("vb");
        assert_eq!(vb.mac(), MAC_B);
        assert!(
            vb.addresses().iter().any(|a| a.to_string() == "fe80::b"),
            "{:?}",
            vb.addresses()
        );
        assert!(!vb.has_ip(), "a link-local address is not an IP for HVNCP");

        let lo = all.iter().find(|i| i.name() == name("lo")).expect("lo");
        assert!(lo.is_loopback() && !lo.is_ethernet() && !lo.is_up());
    });
    ns.ip(&["link", "set", "vb", "down"]);
    ns.run(|| {
        let vb = Interface::by_name(&name("vb")).expect("vb");
        assert!(!vb.is_up() && !vb.is_running());
        // va is still up, but without a peer it has no carrier.
        let va = Interface::by_name(&name("va")).expect("va");
        assert!(va.is_up() && !va.is_running());
    });
}

#[test]
fn wait_readable_times_out_then_wakes_on_a_frame() {
    let Some(ns) = VethPair::new("wait_readable_times_out_then_wakes_on_a_frame") else {
        return;
    };
    ns.run(|| {
        let tx = RawSocket::open(&name("va"), ETH_P_ALL, RxMode::Recv).expect("open va");
        for mode in MODES {
            let mut rx = RawSocket::open(&name("vb"), HVNCP, mode).expect("open vb");
            let start = Instant::now();
            assert!(
                !rx.wait_readable(Some(Duration::from_millis(30)))
                    .expect("poll")
            );
            assert!(start.elapsed() >= Duration::from_millis(25), "{mode:?}");
            assert_eq!(rx.recv(|_| panic!("nothing was sent")).expect("recv"), 0);

            tx.send(&frame(MAC_B, MAC_A, HVNCP, 7)).expect("send");
            let start = Instant::now();
            assert!(
                rx.wait_readable(Some(Duration::from_secs(1)))
                    .expect("poll")
            );
            // Well before the 1 s timeout (ring: a lone frame waits for its block's 2 ms
            // retire timeout).
            assert!(start.elapsed() < Duration::from_millis(500), "{mode:?}");
            let mut got = Vec::new();
            assert_eq!(rx.recv(|f| got.push(marker(f))).expect("recv"), 1);
            assert_eq!(got, [7]);
        }
    });
}

#[test]
fn interface_going_down_is_reported_by_recv() {
    let Some(ns) = VethPair::new("interface_going_down_is_reported_by_recv") else {
        return;
    };
    let mut sockets = ns.run(|| {
        MODES
            .iter()
            .map(|&mode| RawSocket::open(&name("vb"), HVNCP, mode).expect("open vb"))
            .collect::<Vec<_>>()
    });
    ns.ip(&["link", "set", "vb", "down"]);
    for sock in &mut sockets {
        // The socket's fd is namespace-independent; no need to re-enter.
        assert!(
            sock.wait_readable(Some(Duration::from_secs(1)))
                .expect("poll")
        );
        let err = sock.recv(|_| {}).expect_err("ENETDOWN");
        assert_eq!(
            err.to_string(),
            "receive on vb failed: Network is down",
            "{:?}",
            sock.config().rx
        );
    }
}
