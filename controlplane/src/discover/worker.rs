//! `hactl run`'s discovery thread (docs/controlplane.md "Discovery and activities").
//!
//! Its own thread, its own HSDB connection and its own platform driver (its own virsh
//! connections): a discovery reads every host and every VM and may wait on a slow host
//! up to the driver's timeout, and none of that may delay the Failure Detection Engine's
//! scans, which keep their 20 s rhythm on the main loop. Once a second it looks at each
//! host group this controller leads (the sole controller of an SQLite HSDB leads all):
//!
//! 1. fails the group's RUNNING activities whose runner is gone (another controller's,
//!    now that this one leads; or any runner silent for [`stale_after`]);
//! 2. carries out the oldest REQUESTED activity (the dashboard's), if any;
//! 3. else starts the scheduled one that is due: a deep discovery every
//!    `deep_interval`, a quick one every `quick_interval` (a deep one counts as a quick
//!    one), each counted from the last run of that kind in the HSDB (so a restart does
//!    not discover at once), the first one interval after this controller started.
//!
//! Every write of an activity's discovery is fenced by the group's lease term, like the
//! engine's: a controller that lost the lease mid-discovery writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hsdb::{ActivityKind, Hsdb, Options, Target};

use super::config::DiscoveryConfig;
use super::{ActivityRun, run_activity};
use crate::cli::config::PlatformConfig;
use crate::clock::{Clock, SystemClock};
use crate::daemon::leadership::{Access, Board};
use crate::params::Profile;
use crate::platform::Platform;

/// How often the thread looks for work.
pub const POLL: Duration = Duration::from_secs(1);
/// How often it fails abandoned activities.
const RECOVER_EVERY: Duration = Duration::from_secs(30);

/// A RUNNING activity silent this long is abandoned: three platform timeouts (a host's
/// inventory is bounded by one) and a minute, at least ten minutes.
pub fn stale_after(platform_timeout: Duration) -> Duration {
    (platform_timeout * 3 + Duration::from_secs(60)).max(Duration::from_secs(600))
}

/// What the thread needs.
pub struct WorkerSettings {
    /// `[discovery]`.
    pub discovery: DiscoveryConfig,
    /// `[platform]`: the thread opens its own driver.
    pub platform: PlatformConfig,
    /// The configuration's profile.
    pub profile: Option<Profile>,
    /// The HSDB.
    pub target: Target,
    /// Its options.
    pub options: Options,
    /// The groups served (`host_groups`); empty: every group of the HSDB.
    pub groups: Vec<String>,
    /// This controller's id: activities it runs name `controller:<holder>`.
    pub holder: String,
}

/// The platform's timeout (libvirt's call timeout; the sim's default).
fn platform_timeout(config: &PlatformConfig) -> Duration {
    match config {
        PlatformConfig::Libvirt(l) => l.timeout,
        PlatformConfig::Sim { .. } => Duration::from_secs(10),
    }
}

struct Worker {
    settings: WorkerSettings,
    board: Arc<Board>,
    stop: Arc<AtomicBool>,
    runner: String,
    started_ms: i64,
    db: Option<Hsdb>,
    platform: Option<Box<dyn Platform>>,
    recovered: BTreeMap<String, Instant>,
    clock: SystemClock,
}

/// Start the thread; it ends soon after `stop` is set (an activity in progress is
/// failed with "the daemon is stopping" at its next host).
pub fn spawn(
    settings: WorkerSettings,
    board: Arc<Board>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runner = format!("controller:{}", settings.holder);
    let clock = SystemClock;
    let mut w = Worker {
        started_ms: clock.now_ms(),
        settings,
        board,
        stop,
        runner,
        db: None,
        platform: None,
        recovered: BTreeMap::new(),
        clock,
    };
    std::thread::Builder::new()
        .name("discovery".into())
        .spawn(move || w.run())
}

impl Worker {
    fn run(&mut self) {
        tracing::info!(
            runner = %self.runner,
            quick_interval_s = self.settings.discovery.quick_interval.as_secs(),
            deep_interval_s = self.settings.discovery.deep_interval.as_secs(),
            enabled = ?self.settings.discovery.enabled,
            "discovery thread started: requested activities of the groups this controller leads, and the schedule"
        );
        while !self.stop.load(Ordering::SeqCst) {
            if let Err(why) = self.pass() {
                tracing::warn!("discovery thread: {why}");
                // A broken connection is made again at the next pass.
                if self.db.as_ref().is_some_and(Hsdb::is_broken) {
                    self.db = None;
                }
            }
            let until = Instant::now() + POLL;
            while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        tracing::info!("discovery thread stopped");
    }

    fn groups(&self, db: &Hsdb) -> Result<Vec<String>, String> {
        if !self.settings.groups.is_empty() {
            return Ok(self.settings.groups.clone());
        }
        let mut groups: Vec<String> = db
            .hosts()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|h| h.host_group)
            .filter(|g| !g.is_empty())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    fn pass(&mut self) -> Result<(), String> {
        if self.db.is_none() {
            self.db = Some(
                Hsdb::connect(&self.settings.target, &self.settings.options)
                    .map_err(|e| format!("cannot connect to the HSDB: {e}"))?,
            );
        }
        let Some(mut db) = self.db.take() else {
            return Ok(());
        };
        let result = self.pass_with(&mut db);
        db.set_fence(None);
        self.db = Some(db);
        result
    }

    fn pass_with(&mut self, db: &mut Hsdb) -> Result<(), String> {
        if self.platform.is_none() {
            let p = crate::daemon::open_platform(&self.settings.platform, db)
                .map_err(|e| format!("cannot open the platform driver: {e}"))?;
            if !self.settings.discovery.scheduled(p.can_discover()) {
                tracing::info!(
                    platform = p.name(),
                    can_discover = p.can_discover(),
                    "scheduled discovery off ([discovery] enabled, or a platform that only \
                     mirrors the HSDB); requested activities are still carried out"
                );
            }
            self.platform = Some(p);
        }
        for group in self.groups(db)? {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let token = match self.board.access(&group) {
                Access::Sole => None,
                Access::Lead { token } => Some(token),
                Access::Follow { .. } => continue,
            };
            db.set_fence(token.map(|t| self.board.fence(&group, t)));
            let r = self.group_pass(db, &group);
            db.set_fence(None);
            r?;
        }
        Ok(())
    }

    fn group_pass(&mut self, db: &mut Hsdb, group: &str) -> Result<(), String> {
        let now = self.clock.now_ms();
        let due_recover = self
            .recovered
            .get(group)
            .is_none_or(|t| t.elapsed() >= RECOVER_EVERY);
        if due_recover {
            let stale = stale_after(platform_timeout(&self.settings.platform));
            let me = self.runner.clone();
            // Another controller's activity: this one leads now, so that one's thread
            // (if it still runs) can no longer write; SQLite has one controller at all.
            let failed = db
                .fail_abandoned_activities(
                    Some(group),
                    now - i64::try_from(stale.as_millis()).unwrap_or(i64::MAX),
                    &|runner| runner.starts_with("controller:") && runner != me,
                    now,
                )
                .map_err(|e| format!("group {group}: abandoned activities: {e}"))?;
            for id in failed {
                tracing::warn!(
                    host_group = group,
                    activity = id,
                    "activity abandoned by its runner: failed"
                );
            }
            self.recovered.insert(group.to_owned(), Instant::now());
        }
        let claimed = db
            .claim_activity(group, &self.runner, now)
            .map_err(|e| format!("group {group}: {e}"))?;
        let (id, kind) = match claimed {
            Some(row) => {
                tracing::info!(
                    host_group = group,
                    activity = row.id,
                    kind = %row.kind,
                    requested_by = %row.requested_by,
                    "activity requested: carrying it out"
                );
                (row.id, row.kind)
            }
            None => {
                let Some(kind) = self.scheduled_due(db, group, now)? else {
                    return Ok(());
                };
                let id = db
                    .begin_activity(group, kind, "schedule", &self.runner, now)
                    .map_err(|e| format!("group {group}: {e}"))?;
                tracing::info!(host_group = group, activity = id, kind = %kind, "scheduled activity due: starting it");
                (id, kind)
            }
        };
        let stop = Arc::clone(&self.stop);
        let stop_fn = move || {
            stop.load(Ordering::SeqCst)
                .then(|| "the daemon is stopping".to_owned())
        };
        let run = ActivityRun {
            id,
            kind,
            group,
            manage_new: self.settings.discovery.manage_new_in(Some(group)),
            profile: self.settings.profile,
            stop: Some(&stop_fn),
        };
        let Some(platform) = self.platform.as_mut() else {
            return Ok(());
        };
        let clock = self.clock;
        // The outcome is in the row (and the log); an error there is the activity's.
        let _ = run_activity(db, platform.as_mut(), &run, &|| clock.now_ms());
        Ok(())
    }

    /// The scheduled activity due now in `group`, deep first.
    fn scheduled_due(
        &self,
        db: &Hsdb,
        group: &str,
        now: i64,
    ) -> Result<Option<ActivityKind>, String> {
        let can = self.platform.as_ref().is_some_and(|p| p.can_discover());
        let d = &self.settings.discovery;
        if !d.scheduled(can) {
            return Ok(None);
        }
        let last = |kind| {
            db.last_activity_start(group, kind)
                .map_err(|e| format!("group {group}: {e}"))
        };
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let last_deep = last(ActivityKind::DeepDiscovery)?;
        let last_quick = last(ActivityKind::QuickDiscovery)?.max(last_deep);
        let deep_due = last_deep
            .unwrap_or(self.started_ms)
            .saturating_add(ms(d.deep_interval));
        if now >= deep_due {
            return Ok(Some(ActivityKind::DeepDiscovery));
        }
        let quick_due = last_quick
            .unwrap_or(self.started_ms)
            .saturating_add(ms(d.quick_interval));
        Ok((now >= quick_due).then_some(ActivityKind::QuickDiscovery))
    }
}
