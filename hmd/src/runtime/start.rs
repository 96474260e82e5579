//! Start-up: open the HSDB and every interface, register the monitor, start the writer.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dataplane::auth::{self, Authenticator, RefusalLog};
use dataplane::endpoint::{Endpoint, EndpointConfig, Role};
use dataplane::io::{InterfaceName, RawSocket, RxMode};
use dataplane::message::{HelloId, Uuid};
use dataplane::time::MonotonicClock;
use dataplane::wire::{MacAddr, VERSION};
use hsdb::{HeartbeatState, HmRecord, HostRecord, Hsdb, Options, Transition};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::health::{self, LINK_CHECK, interface_state};
use super::rewatch::Rewatch;
use super::{Interface, Monitor, RunError, TX_BUF_LEN, WAKER, epoch_ms, hello_id};
use crate::config::Config;
use crate::quiet::{TransitionLog, Warnings};
use crate::supervise::Supervisor;
use crate::writer::{CommandPoll, HsdbConnector, Writer, WriterSettings};
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
        let mut hsdb = Hsdb::open(&config.hsdb, &options).map_err(hsdb_error(config))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(RunError::Poll)?);
        if let Ok(mut slot) = waker_slot.lock() {
            *slot = Some(Arc::clone(&waker));
        }

        let first_mac = interfaces
            .first()
            .map_or(MacAddr::default(), |i| i.endpoint.config().local_mac);
        let Registered {
            known_macs,
            detected: previous,
            stopped,
        } = register(&mut hsdb, config, &clock, hello, first_mac)?;
        report_interfaces(&mut hsdb, config, &clock, &interfaces)?;

        // Commands from the control plane: read by the writer, acted on by this thread.
        let (commands_tx, commands) = crossbeam_channel::bounded(16);
        let command_poll = CommandPoll {
            hm: config.monitor_uuid,
            period: config.command_poll,
            tx: commands_tx,
            waker: Arc::clone(&waker),
            after: 0,
        };
        let connector =
            HsdbConnector::new(hsdb::Target::Sqlite(config.hsdb.clone()), options, |_| {
                Ok(())
            });
        let settings = WriterSettings {
            backlog_limit: config.hsdb_backlog_limit,
            ..WriterSettings::new(config.flush)
        };
        let writer = Writer::spawn(connector, Some(hsdb), settings, Some(command_poll))
            .map_err(RunError::Poll)?;
        let mut table = HeartbeatTable::new(interfaces.len(), config.vm_miss_after);
        let next_hm_heartbeat = clock.now();
        // The previous run's DETECTED VMs: MISSING unless they re-pair within a Hello
        // period plus vm_miss_after (seed 004 L8365-8367, vioHmRestartVMs).
        let mut rewatch = Rewatch::new(
            previous,
            clock.now() + config.hello_period + config.vm_miss_after,
        );
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
        // Interfaces open, monitor registered, writer running: tell the service manager.
        let supervisor = Supervisor::from_env();
        supervisor.ready(&format!(
            "monitoring {} interface(s), HSDB {}",
            interfaces.len(),
            config.hsdb.display()
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
            changes: Vec::new(),
            pending: Vec::new(),
            next_hm_heartbeat,
            next_link_check: clock.now() + LINK_CHECK,
            tx: vec![0u8; TX_BUF_LEN],
            busy: false,
            supervisor,
            transitions,
            warnings: Warnings::default(),
        })
    }
}

/// The error of an HSDB call at start-up, naming the file.
fn hsdb_error(config: &Config) -> impl Fn(hsdb::Error) -> RunError + '_ {
    |source| RunError::Hsdb {
        path: config.hsdb.display().to_string(),
        source,
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

/// What the HSDB says about this monitor's VMs at start-up.
struct Registered {
    /// The MAC of every VM as recorded for this monitor.
    known_macs: HashMap<Uuid, MacAddr>,
    /// The VMs the previous run left DETECTED.
    detected: Vec<Uuid>,
    /// The VMs whose monitoring the control plane stopped (STOPPED rows).
    stopped: HashSet<Uuid>,
}

/// Register the host and this monitor's incarnation (seed: the HM is known to the HSDB
/// before it runs), and read what the HSDB holds about its VMs.
fn register(
    hsdb: &mut Hsdb,
    config: &Config,
    clock: &MonotonicClock,
    hello: HelloId,
    first_mac: MacAddr,
) -> Result<Registered, RunError> {
    let hsdb_err = hsdb_error(config);
    let at = epoch_ms(clock, clock.now());
    if hsdb.host(config.host_id).map_err(&hsdb_err)?.is_none() {
        hsdb.upsert_host(&HostRecord {
            id: config.host_id,
            name: config.host_name.clone(),
            machine_type: String::new(),
            model: String::new(),
            serial: String::new(),
            cpu_milli: 0,
            memory_mb: 0,
            host_group: String::new(),
        })
        .map_err(&hsdb_err)?;
    }
    hsdb.register_hm(&HmRecord {
        uuid: config.monitor_uuid,
        host: config.host_id,
        mac: first_mac,
        incarnation: hello,
        version: VERSION,
        at,
    })
    .map_err(&hsdb_err)?;
    // One read of this monitor's rows (docs/hsdb.md: `vm_hms_of`): MACs and states.
    let mut known_macs = HashMap::new();
    let mut detected = Vec::new();
    let mut stopped = HashSet::new();
    for row in hsdb.vm_hms_of(&config.monitor_uuid).map_err(&hsdb_err)? {
        if let Some(mac) = row.mac {
            known_macs.insert(row.vm, mac);
        }
        match row.last_state {
            HeartbeatState::Detected => detected.push(row.vm),
            // Stopped by the control plane: not watched, not re-watched, until a START.
            HeartbeatState::Stopped => {
                stopped.insert(row.vm);
            }
            HeartbeatState::Missing | HeartbeatState::Suspended => {}
        }
    }
    tracing::info!(
        monitor = %config.monitor_uuid,
        incarnation = %hello,
        hsdb = %config.hsdb.display(),
        known_vms = known_macs.len(),
        detected_by_previous_run = detected.len(),
        stopped_by_control_plane = stopped.len(),
        "monitor registered in the HSDB"
    );
    Ok(Registered {
        known_macs,
        detected,
        stopped,
    })
}

/// Write each interface's carrier as the monitor starts (`hm_interface`; an `HM_EVENT` for
/// a change since the previous run or one starting DOWN) and forget interfaces no longer
/// configured.
fn report_interfaces(
    hsdb: &mut Hsdb,
    config: &Config,
    clock: &MonotonicClock,
    interfaces: &[Interface],
) -> Result<(), RunError> {
    let hsdb_err = hsdb_error(config);
    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    hsdb.retain_hm_interfaces(&config.monitor_uuid, &names)
        .map_err(&hsdb_err)?;
    let at = epoch_ms(clock, clock.now());
    let batch: Vec<Transition> = interfaces
        .iter()
        .map(|i| Transition::HmInterface {
            hm: config.monitor_uuid,
            interface: i.name.clone(),
            state: interface_state(i.carrier),
            at,
        })
        .collect();
    hsdb.apply(&batch).map_err(&hsdb_err)?;
    Ok(())
}
