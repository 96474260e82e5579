//! Start-up: open the HSDB and every interface, register the monitor, start the writer.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dataplane::auth::{self, Authenticator, RefusalLog};
use dataplane::endpoint::{Endpoint, EndpointConfig, Role};
use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::HelloId;
use dataplane::time::MonotonicClock;
use dataplane::wire::MacAddr;
use hsdb::{Hsdb, Options, Transition};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::health::{self, LINK_CHECK, interface_state};
use super::registration::{Awaited, Registered, Registration};
use super::rewatch::Rewatch;
use super::{Interface, Monitor, RunError, TX_BUF_LEN, WAKER, epoch_ms, hello_id};
use crate::config::Config;
use crate::quiet::{TransitionLog, Warnings};
use crate::supervise::Supervisor;
use crate::writer::{CommandPoll, HsdbConnector, OnConnect, Writer, WriterSettings};
use dataplane::heartbeat::HeartbeatTable;

impl<'a> Monitor<'a> {
    /// Open the HSDB and every interface, register this monitor and start the HSDB
    /// writer; `waker_slot` receives the waker the admin socket uses.
    pub(super) fn start(
        config: &'a Config,
        waker_slot: &Mutex<Option<Arc<Waker>>>,
    ) -> Result<Monitor<'a>, RunError> {
        let clock = MonotonicClock::new();
        let hello = hello_id();
        // Keys first: a key file others may read stops the start before anything opens.
        let keys = config.auth.keyring()?;
        if let Some(k) = &keys {
            tracing::info!(
                "authenticated frames: auth = {}, sending with key {}{}",
                config.auth.mode,
                k.primary().id(),
                k.second().map_or(String::new(), |s| format!(
                    ", also accepting key {}",
                    s.id()
                ))
            );
        }
        let options = Options {
            synchronous: config.synchronous,
            ..Options::default()
        };
        // Interfaces first: a failure there leaves no HSDB file behind.
        let poll = Poll::new().map_err(RunError::Poll)?;
        let mut interfaces = Vec::new();
        for (i, name) in config.interfaces.iter().enumerate() {
            let auth = Authenticator::new(
                config.auth.mode,
                keys.clone(),
                auth::initial_counter(SystemTime::now()),
                auth::DEFAULT_MAX_SENDERS,
            )
            .map_err(dataplane::auth::AuthSetupError::from)?;
            interfaces.push(open_interface(config, &clock, hello, &poll, i, name, auth)?);
        }
        let target = config
            .hsdb_target()
            .map_err(|e| RunError::Config(format!("hsdb = \"{}\": {e}", config.hsdb)))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(RunError::Poll)?);
        if let Ok(mut slot) = waker_slot.lock() {
            *slot = Some(Arc::clone(&waker));
        }

        let first_mac = interfaces
            .first()
            .map_or(MacAddr::default(), |i| i.endpoint.config().local_mac);
        let registration = Registration::new(
            config,
            hello,
            first_mac,
            interfaces.iter().map(|i| i.name.clone()).collect(),
        );
        // The HSDB last: a start that fails before leaves no file behind. PostgreSQL
        // unreachable: monitor anyway, register when it answers (registration.rs).
        let at = epoch_ms(&clock, clock.now());
        let opened = Hsdb::connect(&target, &options)
            .and_then(|mut db| registration.register(&mut db, at).map(|r| (db, r)));
        let (store, found) = match opened {
            Ok((db, found)) => (Some(db), Some(found)),
            Err(e) if target.is_postgres() && e.is_unavailable() => {
                tracing::warn!(
                    hsdb = %target,
                    "HSDB unavailable at start ({e}): monitoring anyway; the monitor registers, \
                     and what it saw meanwhile is committed, once the HSDB answers"
                );
                (None, None)
            }
            Err(source) => {
                return Err(RunError::Hsdb {
                    path: target.to_string(),
                    source,
                });
            }
        };
        let registered = found.is_some();
        let (registration_tx, registration_rx) = crossbeam_channel::bounded(1);
        let on_connect: OnConnect = if registered {
            Box::new(|_: &mut Hsdb| Ok(()))
        } else {
            Box::new(registration.on_first_connect(registration_tx, Arc::clone(&waker)))
        };
        let Registered {
            known_macs,
            detected: previous,
            stopped,
        } = found.unwrap_or_default();

        // Commands from the control plane: read by the writer, acted on by this thread.
        let (commands_tx, commands) = crossbeam_channel::bounded(16);
        let command_poll = CommandPoll {
            hm: config.monitor_uuid,
            period: config.command_poll,
            tx: commands_tx,
            waker: Arc::clone(&waker),
            after: 0,
        };
        let connector = HsdbConnector::new(target, options, on_connect);
        let settings = WriterSettings {
            backlog_limit: config.hsdb_backlog_limit,
            ..WriterSettings::new(config.flush)
        };
        let writer = Writer::spawn(connector, store, settings, Some(command_poll))
            .map_err(RunError::Poll)?;
        // Each interface's carrier as the monitor starts (`hm_interface`; an `HM_EVENT`
        // for a change since the previous run or one starting DOWN): the writer's first
        // transitions, after the registration.
        let now_ms = epoch_ms(&clock, clock.now());
        writer.send_batch(crate::writer::Batch {
            transitions: interfaces
                .iter()
                .map(|i| Transition::HmInterface {
                    hm: config.monitor_uuid,
                    interface: i.name.clone(),
                    state: interface_state(i.carrier),
                    at: now_ms,
                })
                .collect(),
            completions: Vec::new(),
        });
        let mut table = HeartbeatTable::new(interfaces.len(), config.vm_miss_after);
        let next_hm_heartbeat = clock.now();
        // The previous run's DETECTED VMs: MISSING unless they re-pair within a Hello
        // period plus vm_miss_after (seed 004 L8365-8367, vioHmRestartVMs).
        let rewatch_deadline = clock.now() + config.hello_period + config.vm_miss_after;
        let mut rewatch = Rewatch::new(previous, rewatch_deadline);
        // VMs a START_MONITORING finds without a session (none yet).
        let mut awaited = Rewatch::default();
        // An interface without carrier from the start is deaf from the start.
        for (i, iface) in interfaces.iter().enumerate() {
            if !iface.carrier {
                table.set_hearing(u16::try_from(i).unwrap_or(u16::MAX), false, clock.now());
                rewatch.hold();
                awaited.hold();
                tracing::warn!(
                    iface = %iface.name,
                    "interface has no carrier: the monitor hears none of its VMs until it has"
                );
            }
        }
        if rewatch.len() > 0 {
            tracing::info!(
                count = rewatch.len(),
                within_ms = (config.hello_period + config.vm_miss_after).as_millis(),
                "re-watching the VMs the previous run left DETECTED: MISSING unless they re-pair"
            );
        }
        // Interfaces open, monitor registered (or the HSDB awaited), writer running: tell
        // the service manager.
        let supervisor = Supervisor::from_env();
        supervisor.ready(&format!(
            "monitoring {} interface(s), HSDB {}{}",
            interfaces.len(),
            config.hsdb,
            if registered {
                ""
            } else {
                " (unavailable: registering when it answers)"
            }
        ));
        let transitions = TransitionLog::new(interfaces.iter().map(|i| i.name.clone()).collect());
        Ok(Monitor {
            config,
            clock,
            hello,
            poll,
            events: Events::with_capacity(64),
            interfaces,
            writer,
            table,
            known_macs,
            syn_facts: HashMap::new(),
            refusals: Default::default(),
            rewatch,
            commands,
            // The stops of earlier runs (STOPPED rows): not watched until a START.
            stopped,
            awaited,
            completions: Vec::new(),
            command_counts: Default::default(),
            reports: Default::default(),
            changes: Vec::new(),
            pending: Vec::new(),
            next_hm_heartbeat,
            next_link_check: clock.now() + LINK_CHECK,
            tx: vec![0u8; TX_BUF_LEN],
            busy: false,
            supervisor,
            transitions,
            warnings: Warnings::default(),
            registration: (!registered).then_some(Awaited {
                rx: registration_rx,
                rewatch_deadline,
            }),
        })
    }
}

/// Open interface number `i`'s socket and endpoint and watch the socket.
fn open_interface(
    config: &Config,
    clock: &MonotonicClock,
    hello: HelloId,
    poll: &Poll,
    i: usize,
    name: &InterfaceName,
    auth: Authenticator,
) -> Result<Interface, RunError> {
    let socket = RawSocket::open(name, config.ethertype, RxMode::DAEMON_RING)?;
    let mac = dataplane::io::Interface::by_name(name)?.mac();
    let mut ep_config = EndpointConfig::monitor(mac, config.monitor_uuid, hello);
    ep_config.role = Role::Monitor {
        hello,
        hello_period: config.hello_period,
        hb_period: config.hb_period,
    };
    ep_config.session.ethertype = config.ethertype;
    ep_config.max_peers = config.max_peers;
    ep_config.max_half_open = config.max_half_open;
    ep_config.half_open_grace = config.half_open_grace;
    // Room for the authentication trailer within the MTU (docs/hvncp.md §7.1).
    ep_config.session.max_payload -= u16::try_from(auth.overhead()).unwrap_or(0);
    let endpoint = Endpoint::new(ep_config, clock.now())?;
    poll.registry()
        .register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(i),
            Interest::READABLE,
        )
        .map_err(RunError::Poll)?;
    tracing::info!(
        iface = %name,
        %mac,
        hello_period_ms = config.hello_period.as_millis(),
        "listening for agents"
    );
    Ok(Interface {
        socket,
        auth,
        auth_log: RefusalLog::new(Duration::from_secs(60)),
        endpoint,
        name: name.as_str().to_owned(),
        down: false,
        carrier: health::carrier(name),
    })
}
