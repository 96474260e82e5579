//! Session tests over a lossless in-memory wire, frame by frame.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::wire::{DEFAULT_ETHERTYPE, Frame, MacAddr};

const AGENT: MacAddr = MacAddr([0x6a, 0x6a, 0x0f, 0xfd, 0xf7, 0x07]);
const MONITOR: MacAddr = MacAddr([0x6a, 0x6a, 0x08, 0x84, 0xee, 0x11]);
const AGENT_SYN: &[u8] =
    b"uuid=61be20f0-09a8-4753-b5e5-564f8a545ed5:ostype=AIX:verVmmLower=2.0:verVmmUpper=2.0";
const MONITOR_SYN: &[u8] = b"uuid=5c3196a3-c41f-4b5c-9861-dee6077081c6:verHmRunning=2.0";

fn pair(config: Config) -> (Session, Session) {
    let config = Arc::new(config);
    let agent = Session::new(config.clone(), AGENT_SYN.into(), AGENT, MONITOR, 1);
    let monitor = Session::new(config, MONITOR_SYN.into(), MONITOR, AGENT, 9);
    (agent, monitor)
}

/// Every frame `from` has to send now.
fn drain(from: &mut Session, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(len) = from.poll_transmit(now, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}

fn deliver(
    to: &mut Session,
    now: Instant,
    frames: &[Vec<u8>],
) -> Vec<Result<Input<'static>, Refusal>> {
    frames
        .iter()
        .map(|f| {
            let frame = Frame::parse(f, DEFAULT_ETHERTYPE).expect("we emit valid frames");
            to.handle_frame(now, &frame).map(|i| match i {
                Input::Datagram(_) => Input::Datagram(&[]),
                Input::Consumed => Input::Consumed,
                Input::Duplicate => Input::Duplicate,
                Input::Refresh => Input::Refresh,
            })
        })
        .collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn flags_of(f: &[u8]) -> Flags {
    Frame::parse(f, DEFAULT_ETHERTYPE)
        .expect("valid")
        .header
        .flags
}

/// Shuttle frames both ways until both sides are quiet; returns frames moved.
fn settle(a: &mut Session, b: &mut Session, now: Instant) -> usize {
    let mut moved = 0;
    loop {
        let ab = drain(a, now);
        let ba = drain(b, now);
        if ab.is_empty() && ba.is_empty() {
            return moved;
        }
        moved += ab.len() + ba.len();
        deliver(b, now, &ab);
        deliver(a, now, &ba);
    }
}

fn established_pair() -> (Session, Session) {
    let (mut agent, mut monitor) = pair(Config::default());
    agent.connect();
    settle(&mut agent, &mut monitor, Instant::ZERO);
    events(&mut agent);
    events(&mut monitor);
    (agent, monitor)
}

#[test]
fn handshake_in_four_frames() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    // 1. agent SYN|BEG
    let f1 = drain(&mut agent, t);
    assert_eq!(f1.len(), 1);
    assert_eq!(flags_of(&f1[0]), Flags::SYN | Flags::ACKR | Flags::BEG);
    deliver(&mut monitor, t, &f1);
    assert_eq!(
        events(&mut monitor),
        vec![Event::PeerSyn {
            payload: AGENT_SYN.to_vec(),
            reverse: true
        }]
    );
    // 2-3. monitor SYN|END first, then the ACK of the agent's SYN (seed 004 L11509-11516).
    let f2 = drain(&mut monitor, t);
    assert_eq!(f2.len(), 2);
    assert_eq!(flags_of(&f2[0]), Flags::SYN | Flags::ACKR | Flags::END);
    assert_eq!(flags_of(&f2[1]), Flags::ACK | Flags::SYN);
    deliver(&mut agent, t, &f2);
    assert!(agent.is_established());
    assert_eq!(
        events(&mut agent),
        vec![
            Event::PeerSyn {
                payload: MONITOR_SYN.to_vec(),
                reverse: false
            },
            Event::Established
        ]
    );
    // 4. the agent's ACK of the monitor's SYN.
    let f3 = drain(&mut agent, t);
    assert_eq!(f3.len(), 1);
    assert_eq!(flags_of(&f3[0]), Flags::ACK | Flags::SYN);
    deliver(&mut monitor, t, &f3);
    assert!(monitor.is_established());
    assert_eq!(events(&mut monitor), vec![Event::Established]);
    assert!(drain(&mut agent, t).is_empty() && drain(&mut monitor, t).is_empty());
    assert!(
        agent.is_idle() && monitor.is_idle(),
        "nothing left boxed once idle"
    );
    assert_eq!(agent.poll_timeout(), None);
}

#[test]
fn data_waits_for_the_syn_ack() {
    let (mut agent, mut monitor) = pair(Config::default());
    agent.connect();
    agent.send(Priority::Normal, b"early").expect("queued");
    let first = drain(&mut agent, Instant::ZERO);
    assert_eq!(
        first.len(),
        1,
        "only the SYN leaves before it is acknowledged"
    );
    deliver(&mut monitor, Instant::ZERO, &first);
    settle(&mut agent, &mut monitor, Instant::ZERO);
    assert!(events(&mut monitor).contains(&Event::Message {
        priority: Priority::Normal,
        payload: b"early".to_vec()
    }));
}

#[test]
fn heartbeat_is_a_datagram_never_acknowledged() {
    let (mut agent, mut monitor) = established_pair();
    let mut buf = [0u8; 64];
    let len = agent
        .emit_datagram(Priority::Normal, b"HB:", &mut buf)
        .expect("open");
    assert_eq!(len, 60);
    let frame = Frame::parse(&buf[..len], DEFAULT_ETHERTYPE).expect("valid");
    assert_eq!(frame.header.flags, Flags::BEG | Flags::END);
    assert_eq!(
        monitor.handle_frame(Instant::ZERO, &frame),
        Ok(Input::Datagram(b"HB:"))
    );
    assert!(
        drain(&mut monitor, Instant::ZERO).is_empty(),
        "no ACK for a heartbeat"
    );
    assert!(monitor.is_idle());
    // The same frame again is a duplicate, still not acknowledged.
    assert_eq!(
        monitor.handle_frame(Instant::ZERO, &frame),
        Ok(Input::Duplicate)
    );
    assert!(drain(&mut monitor, Instant::ZERO).is_empty());
}

#[test]
fn fragmented_message_and_acked_event() {
    let (mut agent, mut monitor) = established_pair();
    let msg: Vec<u8> = (0..65_536u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
    let id = monitor.send(Priority::Normal, &msg).expect("fits");
    let t = Instant::ZERO;
    let burst = drain(&mut monitor, t);
    assert_eq!(burst.len(), 32, "window of 32 packets");
    deliver(&mut agent, t, &burst);
    settle(&mut agent, &mut monitor, t);
    let got = events(&mut agent);
    assert_eq!(got.len(), 1);
    assert!(
        matches!(&got[0], Event::Message { priority: Priority::Normal, payload } if *payload == msg),
        "the 64 KiB message arrives intact"
    );
    assert_eq!(events(&mut monitor), vec![Event::Acked(id)]);
    assert!(agent.is_idle() && monitor.is_idle());
}

#[test]
fn urgent_overtakes_a_long_normal_message() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    let long = vec![b'n'; 40_000];
    monitor.send(Priority::Normal, &long).expect("fits");
    // Two normal packets leave, then an urgent message arrives.
    let mut buf = vec![0u8; 2048];
    let mut first = Vec::new();
    for _ in 0..2 {
        let len = monitor.poll_transmit(t, &mut buf).expect("fragment");
        first.push(buf[..len].to_vec());
    }
    monitor.send(Priority::Urgent, b"urgent").expect("fits");
    let next = monitor.poll_transmit(t, &mut buf).expect("urgent packet");
    let header = Frame::parse(&buf[..next], DEFAULT_ETHERTYPE)
        .expect("valid")
        .header;
    assert!(
        header.flags.contains(Flags::PRI),
        "urgent goes before normal fragment 3"
    );
    let urgent = buf[..next].to_vec();
    deliver(&mut agent, t, &first);
    deliver(&mut agent, t, &[urgent]);
    assert_eq!(
        events(&mut agent),
        vec![Event::Message {
            priority: Priority::Urgent,
            payload: b"urgent".to_vec()
        }],
        "delivered while the normal message is half received"
    );
    settle(&mut agent, &mut monitor, t);
    let got = events(&mut agent);
    assert_eq!(got.len(), 1);
    assert!(
        matches!(&got[0], Event::Message { priority: Priority::Normal, payload } if *payload == long),
        "the normal message completes after the urgent one"
    );
}

#[test]
fn retransmits_with_backoff_then_fails() {
    let (mut agent, mut monitor) = established_pair();
    let _ = &mut agent;
    let id = monitor.send(Priority::Normal, b"START_HB").expect("fits");
    let mut t = Instant::ZERO;
    assert_eq!(drain(&mut monitor, t).len(), 1);
    let mut gaps = Vec::new();
    loop {
        let next = monitor.poll_timeout().expect("a retransmission is pending");
        gaps.push(next.saturating_duration_since(t));
        t = next;
        monitor.handle_timeout(t);
        if !monitor.can_receive() {
            break;
        }
        assert_eq!(drain(&mut monitor, t).len(), 1, "one retransmission");
    }
    let ms: Vec<u64> = gaps
        .iter()
        .map(|d| u64::try_from(d.as_millis()).expect("small"))
        .collect();
    assert_eq!(ms, vec![200, 400, 800, 1600, 3200, 6400]);
    assert_eq!(
        events(&mut monitor),
        vec![
            Event::Lost(id),
            Event::Closed(CloseReason::RetriesExhausted {
                number: 9,
                retries: 5
            })
        ]
    );
    assert_eq!(monitor.tx_state(), TxState::Closed);
    assert!(monitor.is_idle());
}

#[test]
fn duplicate_syn_is_reacknowledged_not_replayed() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    let syn = drain(&mut agent, t);
    deliver(&mut monitor, t, &syn);
    let answer = drain(&mut monitor, t);
    deliver(&mut agent, t, &answer);
    let ack = drain(&mut agent, t);
    deliver(&mut monitor, t, &ack);
    events(&mut monitor);
    assert!(monitor.is_established());
    // The agent's SYN shows up again (a duplicate on the link).
    deliver(&mut monitor, t, &syn);
    assert!(monitor.is_established(), "not reset by a duplicate");
    assert!(events(&mut monitor).is_empty());
    let again = drain(&mut monitor, t);
    assert_eq!(again.len(), 1);
    assert_eq!(flags_of(&again[0]), Flags::ACK | Flags::SYN);
}

#[test]
fn new_syn_replaces_the_session() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    // The monitor has a message in flight when the agent starts over.
    let id = monitor.send(Priority::Normal, b"STOP_HB").expect("fits");
    assert_eq!(drain(&mut monitor, t).len(), 1);
    agent.connect();
    let syn = drain(&mut agent, t);
    deliver(&mut monitor, t, &syn);
    let ev = events(&mut monitor);
    assert!(ev.contains(&Event::Lost(id)), "{ev:?}");
    settle(&mut agent, &mut monitor, t);
    assert!(agent.is_established() && monitor.is_established());
}

#[test]
fn data_before_syn_is_refused_and_stale_numbers_dropped() {
    let (mut agent, mut monitor) = pair(Config::default());
    let (mut agent2, _) = established_pair();
    let mut buf = [0u8; 64];
    let len = agent2
        .emit_datagram(Priority::Normal, b"HB:", &mut buf)
        .expect("open");
    let frame = Frame::parse(&buf[..len], DEFAULT_ETHERTYPE).expect("valid");
    assert_eq!(
        monitor.handle_frame(Instant::ZERO, &frame),
        Err(Refusal::NotOpen)
    );
    agent.connect();
    settle(&mut agent, &mut monitor, Instant::ZERO);
    // 64 heartbeats later, the first one is too old to judge.
    let mut frames = Vec::new();
    for _ in 0..65 {
        let len = agent
            .emit_datagram(Priority::Normal, b"HB:", &mut buf)
            .expect("open");
        frames.push(buf[..len].to_vec());
    }
    let results = deliver(&mut monitor, Instant::ZERO, &frames[1..]);
    assert!(results.iter().all(|r| *r == Ok(Input::Datagram(&[]))));
    assert_eq!(
        deliver(&mut monitor, Instant::ZERO, &frames[..1]),
        vec![Err(Refusal::Stale)]
    );
}

#[test]
fn send_limits() {
    let (mut agent, _) = pair(Config::default());
    assert_eq!(
        agent.send(Priority::Normal, &vec![0; 70_000]),
        Err(SendError::TooLarge {
            len: 70_000,
            max: 65_536
        })
    );
    for _ in 0..4 {
        agent
            .send(Priority::Normal, &vec![0; 65_536])
            .expect("fits");
    }
    assert!(matches!(
        agent.send(Priority::Normal, b"x"),
        Err(SendError::QueueFull { .. })
    ));
    let mut buf = [0u8; 64];
    assert_eq!(
        agent.emit_datagram(Priority::Normal, b"HB:", &mut buf),
        Err(SendError::NotOpen)
    );
}

#[test]
fn stalled_partial_message_poisons_until_next_syn() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    monitor
        .send(Priority::Normal, &vec![1u8; 3000])
        .expect("fits");
    let frags = drain(&mut monitor, t);
    assert_eq!(frags.len(), 3);
    // Only the first fragment arrives; the rest come after the reassembly timeout.
    deliver(&mut agent, t, &frags[..1]);
    assert_eq!(drain(&mut agent, t).len(), 1, "first fragment acknowledged");
    let later = t + Duration::from_secs(14);
    assert_eq!(agent.handle_timeout(later), 1, "partial message discarded");
    let res = deliver(&mut agent, later, &frags[1..]);
    assert!(
        res.iter().all(|r| *r == Err(Refusal::Reassembly)),
        "{res:?}"
    );
    let acks = drain(&mut agent, later);
    assert!(acks.is_empty(), "refused fragments are not acknowledged");
    assert!(events(&mut agent).is_empty(), "nothing half-delivered");
}

#[test]
fn packets_of_a_replaced_session_are_not_delivered_again() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    agent.send(Priority::Normal, b"DBELL:1").expect("fits");
    let old = drain(&mut agent, t);
    deliver(&mut monitor, t, &old);
    settle(&mut agent, &mut monitor, t);
    assert_eq!(events(&mut monitor).len(), 1, "delivered once");
    agent.connect();
    settle(&mut agent, &mut monitor, t);
    events(&mut monitor);
    // A delayed copy of the old packet arrives in the new session.
    assert_eq!(deliver(&mut monitor, t, &old), vec![Ok(Input::Duplicate)]);
    assert!(
        events(&mut monitor).is_empty(),
        "not delivered into the new session"
    );
}

#[test]
fn an_older_syn_overtaken_on_the_link_does_not_reset_the_session() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    let syn1 = drain(&mut agent, t);
    agent.connect();
    let syn2 = drain(&mut agent, t);
    deliver(&mut monitor, t, &syn2);
    settle(&mut agent, &mut monitor, t);
    assert!(agent.is_established() && monitor.is_established());
    agent.send(Priority::Normal, b"GMSG:x").expect("fits");
    settle(&mut agent, &mut monitor, t);
    events(&mut monitor);
    // The first SYN, delayed on the link, arrives now.
    deliver(&mut monitor, t + Duration::from_millis(5), &syn1);
    assert!(events(&mut monitor).is_empty(), "no PeerSyn, no reset");
    assert!(drain(&mut monitor, t).is_empty(), "nothing answered");
    assert!(monitor.is_established());
}

#[test]
fn a_late_sender_fails_instead_of_retransmitting_a_forgotten_number() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    monitor.send(Priority::Normal, b"STOP_HB").expect("fits");
    let sent = drain(&mut monitor, t);
    deliver(&mut agent, t, &sent);
    let _lost_ack = drain(&mut agent, t);
    // The monitor's process was paused for 20 s: longer than the 12.6 s span.
    let late = t + Duration::from_secs(20);
    assert!(drain(&mut monitor, late).is_empty(), "no retransmission");
    monitor.handle_timeout(late);
    assert!(!monitor.can_receive(), "the session failed");
    assert!(
        events(&mut monitor)
            .iter()
            .any(|e| matches!(e, Event::Closed(CloseReason::RetriesExhausted { .. })))
    );
}

/// `frame` with its flags replaced by `flags` (checksum recomputed).
fn with_flags(frame: &[u8], flags: Flags) -> Vec<u8> {
    let f = Frame::parse(frame, DEFAULT_ETHERTYPE).expect("valid");
    let header = HvncpRepr { flags, ..f.header };
    let mut buf = vec![0u8; 2048];
    let len = FrameBuilder {
        dst: f.dst,
        src: f.src,
        ethertype: DEFAULT_ETHERTYPE,
    }
    .emit(&mut buf, &header, f.payload)
    .expect("fits");
    buf.truncate(len);
    buf
}

fn number_of(f: &[u8]) -> u8 {
    Frame::parse(f, DEFAULT_ETHERTYPE)
        .expect("valid")
        .header
        .number
}

/// HVNCP.md §2 lets a peer acknowledge our SYN with a plain `ACK n`; both roles take it.
#[test]
fn a_plain_ack_of_our_syn_opens_our_direction() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    let syn = drain(&mut agent, t);
    deliver(&mut monitor, t, &syn);
    events(&mut monitor);
    let answer = drain(&mut monitor, t);
    assert_eq!(answer.len(), 2, "SYN|END, then ACK|SYN");
    // The monitor's SYN acknowledgement arrives as a plain ACK: the agent's side opens.
    let plain = with_flags(&answer[1], Flags::ACK);
    deliver(&mut agent, t, &answer[..1]);
    assert_eq!(deliver(&mut agent, t, &[plain]), vec![Ok(Input::Consumed)]);
    assert!(agent.is_established(), "agent role");
    let ack = drain(&mut agent, t);
    assert_eq!(
        flags_of(&ack[0]),
        Flags::ACK | Flags::SYN,
        "we keep ACK|SYN"
    );
    // The agent acknowledges the monitor's SYN with a plain ACK too: the monitor opens.
    let monitor_syn = number_of(&answer[0]);
    let plain = with_flags(&ack[0], Flags::ACK);
    assert_eq!(
        deliver(&mut monitor, t, std::slice::from_ref(&plain)),
        vec![Ok(Input::Consumed)]
    );
    assert!(monitor.is_established(), "monitor role");
    assert_eq!(events(&mut monitor), vec![Event::Established]);
    // The number a plain ACK of our SYN names is not reused by the next packet, so a
    // second copy of that ACK clears nothing.
    let id = monitor.send(Priority::Normal, b"START_HB").expect("fits");
    let start = drain(&mut monitor, t);
    assert_eq!(number_of(&start[0]), monitor_syn.wrapping_add(1));
    assert_eq!(
        deliver(&mut monitor, t, &[plain]),
        vec![Err(Refusal::UnexpectedAck)]
    );
    assert!(
        events(&mut monitor).is_empty(),
        "START_HB not taken as acked"
    );
    deliver(&mut agent, t, &start);
    assert_eq!(
        events(&mut agent),
        vec![
            Event::PeerSyn {
                payload: MONITOR_SYN.to_vec(),
                reverse: false
            },
            Event::Established,
            Event::Message {
                priority: Priority::Normal,
                payload: b"START_HB".to_vec()
            }
        ],
        "a skipped number is no gap to wait for"
    );
    settle(&mut agent, &mut monitor, t);
    assert_eq!(events(&mut monitor), vec![Event::Acked(id)]);
    // With ACK|SYN nothing is skipped: the first packet carries the SYN's number.
    let (_, mut monitor) = established_pair();
    monitor.send(Priority::Normal, b"x").expect("fits");
    let next = drain(&mut monitor, t);
    assert_eq!(number_of(&next[0]), 9, "the monitor's SYN was number 9");
}

/// A SYN without ACKR (and without properties) on an open session is a refresh (seed
/// 004 L10419-10442): accepted, nothing answered, nothing reset.
#[test]
fn a_syn_without_ackr_refreshes_an_open_session() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    let mut buf = [0u8; 64];
    let len = agent
        .emit_datagram(Priority::Normal, b"HB:", &mut buf)
        .expect("open");
    let hb = buf[..len].to_vec();
    let number = number_of(&hb);
    assert_eq!(
        deliver(&mut monitor, t, &[hb]),
        vec![Ok(Input::Datagram(&[]))]
    );
    for (flags, payload) in [
        (Flags::SYN, &b""[..]),
        (Flags::SYN | Flags::BEG, b""),
        (Flags::SYN | Flags::END, b"ignored=1"),
    ] {
        let refresh = {
            let header = HvncpRepr {
                version: VERSION,
                number: number.wrapping_add(1),
                flags,
                frag_index: 0,
                payload_len: u16::try_from(payload.len()).expect("short"),
            };
            let mut buf = vec![0u8; 128];
            let len = FrameBuilder {
                dst: MONITOR,
                src: AGENT,
                ethertype: DEFAULT_ETHERTYPE,
            }
            .emit(&mut buf, &header, payload)
            .expect("fits");
            buf.truncate(len);
            buf
        };
        assert_eq!(
            deliver(&mut monitor, t, std::slice::from_ref(&refresh)),
            vec![Ok(Input::Refresh)],
            "{flags}"
        );
        assert!(monitor.is_established());
        assert!(events(&mut monitor).is_empty(), "no PeerSyn, no reset");
        assert!(drain(&mut monitor, t).is_empty(), "nothing to acknowledge");
        // Before the peer's SYN is held, a refresh cannot open anything.
        let (_, mut fresh) = pair(Config::default());
        assert_eq!(
            deliver(&mut fresh, t, &[refresh]),
            vec![Err(Refusal::NotOpen)]
        );
    }
    // The session carries on: the next heartbeat is new.
    let len = agent
        .emit_datagram(Priority::Normal, b"HB:", &mut buf)
        .expect("open");
    assert_eq!(
        deliver(&mut monitor, t, &[buf[..len].to_vec()]),
        vec![Ok(Input::Datagram(&[]))]
    );
}

/// Without ACKR a packet is a whole message, whatever its BEG/END bits and index.
#[test]
fn a_packet_without_ackr_is_a_whole_message() {
    let (mut agent, mut monitor) = established_pair();
    let t = Instant::ZERO;
    let mut buf = [0u8; 64];
    for (flags, index) in [
        (Flags::EMPTY, 0u8),
        (Flags::BEG, 0),
        (Flags::END, 3),
        (Flags::BEG | Flags::END, 9),
        (Flags::PRI, 1),
    ] {
        let len = agent
            .emit_datagram(Priority::Normal, b"HB:", &mut buf)
            .expect("open");
        let f = Frame::parse(&buf[..len], DEFAULT_ETHERTYPE).expect("valid");
        let header = HvncpRepr {
            flags,
            frag_index: index,
            ..f.header
        };
        let mut out = vec![0u8; 64];
        let len = FrameBuilder {
            dst: MONITOR,
            src: AGENT,
            ethertype: DEFAULT_ETHERTYPE,
        }
        .emit(&mut out, &header, b"HB:")
        .expect("fits");
        let frame = Frame::parse(&out[..len], DEFAULT_ETHERTYPE).expect("the wire accepts it");
        assert_eq!(
            monitor.handle_frame(t, &frame),
            Ok(Input::Datagram(b"HB:")),
            "{flags} index {index}"
        );
    }
    assert!(drain(&mut monitor, t).is_empty());
}

/// A SYN with both BEG and END is taken as BEG: the receiver opens its side too.
#[test]
fn a_syn_with_beg_and_end_asks_for_the_reverse_direction() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    let syn = drain(&mut agent, t);
    let both = with_flags(&syn[0], Flags::SYN | Flags::ACKR | Flags::BEG | Flags::END);
    deliver(&mut monitor, t, &[both]);
    assert_eq!(
        events(&mut monitor),
        vec![Event::PeerSyn {
            payload: AGENT_SYN.to_vec(),
            reverse: true
        }]
    );
    let answer = drain(&mut monitor, t);
    assert_eq!(flags_of(&answer[0]), Flags::SYN | Flags::ACKR | Flags::END);
    deliver(&mut agent, t, &answer);
    settle(&mut agent, &mut monitor, t);
    assert!(agent.is_established() && monitor.is_established());
}

/// A SYN never acknowledged closes the session with a handshake reason.
#[test]
fn an_unacknowledged_syn_is_a_failed_handshake() {
    let (mut agent, _monitor) = pair(Config::default());
    let mut t = Instant::ZERO;
    agent.connect();
    drain(&mut agent, t);
    while let Some(next) = agent.poll_timeout() {
        t = next;
        agent.handle_timeout(t);
        drain(&mut agent, t);
    }
    let closed = events(&mut agent);
    assert_eq!(
        closed,
        vec![Event::Closed(CloseReason::SynUnacknowledged {
            number: 2,
            retries: 5
        })]
    );
    assert!(
        CloseReason::SynUnacknowledged {
            number: 2,
            retries: 5
        }
        .is_handshake()
    );
    assert!(CloseReason::HandshakeTimeout.is_handshake());
    assert!(
        !CloseReason::RetriesExhausted {
            number: 2,
            retries: 5
        }
        .is_handshake()
    );
}

/// A SYN identical to the one held (number and properties) is a retransmission only
/// within the sender's retransmission span: later it is a restarted peer that opens with
/// the same number (the seed's agent starts at 1), and it reopens the session.
#[test]
fn the_same_syn_much_later_is_a_restarted_peer() {
    let (mut agent, mut monitor) = pair(Config::default());
    let t = Instant::ZERO;
    agent.connect();
    let syn = drain(&mut agent, t);
    deliver(&mut monitor, t, &syn);
    settle(&mut agent, &mut monitor, t);
    events(&mut monitor);
    let span = Config::default().retransmission_span();
    // Within the span: our ACK was lost, acknowledge again, nothing else.
    deliver(&mut monitor, t + span, &syn);
    assert!(events(&mut monitor).is_empty());
    let again = drain(&mut monitor, t + span);
    assert_eq!(again.len(), 1);
    assert_eq!(flags_of(&again[0]), Flags::ACK | Flags::SYN);
    // Later: a new SYN asking for the reverse direction; the monitor answers with its
    // own SYN first.
    let later = t + span + Duration::from_millis(1);
    deliver(&mut monitor, later, &syn);
    assert_eq!(
        events(&mut monitor),
        vec![Event::PeerSyn {
            payload: AGENT_SYN.to_vec(),
            reverse: true
        }]
    );
    let answer = drain(&mut monitor, later);
    assert_eq!(flags_of(&answer[0]), Flags::SYN | Flags::ACKR | Flags::END);
}
