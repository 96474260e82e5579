//! `hactl`, the operator's command line and the control plane daemon (`hactl run`), in
//! the spirit of the seed's `ksysmgr` (seed 004 L2470-2471, L4540-4546, L15463-15600).
//!
//! This module is the command line only: it parses arguments, opens what a command needs
//! and prints the result. The work is done by library functions (the HSDB's reads and
//! writes, [`crate::hs`], [`crate::daemon`]), so every command is testable without the
//! binary, and the binary (`src/bin/hactl.rs`) is one call to [`main`].
//!
//! Exit codes ([`Exit`]): 0 done, 1 the operation failed, 2 bad usage / value /
//! configuration, 3 the daemon is not running, 4 no such VM / host / monitor / group,
//! 5 refused by the control plane (`host evacuate`), 6 not finished in time, 7 `verify`
//! found a host whose loss leaves VMs without a place, 8 `discover` done in part (some
//! hosts did not answer).

pub mod config;
pub mod discover;
pub mod error;
pub mod maintenance;
pub mod modify;
pub mod notifier;
pub mod policy;
pub mod query;
pub mod relocate;
pub mod replies;
pub mod table;
pub mod values;
pub mod vm_move;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, Parser, Subcommand};
use hsdb::{Hsdb, Options, Target};

use self::config::{Config, HACTL_CONFIG, HsdbLocation};
pub use self::error::{CliError, Exit};
use crate::clock::{Clock, SystemClock};
use crate::daemon::admin;
use crate::daemon::status::DaemonStatus;

/// How long `hactl status` waits for the daemon's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

const EXAMPLES: &str = "\
Examples:
  hactl add host host-a group=hg1 cpu=32 memory=256G machine_type=8408 model=E8E serial=212424W
  hactl modify host_group hg1 host_failure_detection_time=120 restart_policy=auto
  hactl modify vm web1 managed=yes priority=High vm_failure_detection_speed=fast
  hactl add collocation db vm=db1,db2            # policies: docs/operators.md, Policies
  hactl add anticollocation web vm=web1,web2
  hactl modify workgroup batch vm=b3 policy=add
  hactl modify vm web1 blacklist_hosts=host-c policy=add
  hactl modify vm web1 homehost=host-b
  hactl modify host_group hg1 memory_capacity=50 cpu_capacity=80 priority=low
  hactl query collocation                       # or: hactl query policy --host-group hg1
  hactl delete anticollocation web
  hactl --config /etc/hvha/hactl.toml check-config
  hactl run                                   # the FDE daemon (SIGTERM: finish the scan, exit 0)
  hactl status                                # ask the running daemon
  hactl status --json
  hactl qq                                    # QuickQuery: every monitor of every host
  hactl na                                    # NeedsAttention, a look that tags nothing
  hactl na --consume --xml                    # the real request, in the seed's XML
  hactl ack -- -6630805255682309212           # acknowledge an hsTag
  hactl query vm                              # every VM; `hactl q vm NAME` for one
  hactl query host
  hactl query hm
  hactl query app                             # the applications the agents report
  hactl query event --limit 20
  hactl query notifier                        # each notifier's offset and backlog
  hactl notifier forget pager                 # a notifier removed from the configuration
  hactl query relocation --vm web1
  hactl query params --host-group hg1
  hactl relocate --dry-run host-a               # where host-a's VMs would go, and why
  hactl relocate --dry-run web1 --json          # where VM web1 would be restarted
  hactl verify hg1                              # can hg1 absorb the loss of any one host?
  hactl discover hg1                            # the platform's hosts and VMs into the HSDB
  hactl discover hg1 --deep --json              # also every VM's details, then verify
  hactl host evacuate host-a                  # planned maintenance; --no-wait to return at once
  hactl host restore host-a
  hactl dashboard user add alice --role operator   # the password from stdin, never an argument
  hactl dashboard user list

Exit codes:
  0  done (run: stopped cleanly on SIGTERM/SIGINT)
  1  the operation failed (HSDB, platform or daemon error)
  2  bad usage, value or configuration file (the message names the value and the range)
  3  no `hactl run` answers on the admin socket
  4  no such VM, host, monitor or host group
  5  refused by the control plane (host evacuate: the plan is incomplete; each VM's reason)
  6  host evacuate / restore not finished within --timeout (the request stays queued)
  7  verify: the loss of some host would leave VMs without a place (the report is printed)
  8  discover: some hosts did not answer; what the others have was written (report printed)

Configuration: /etc/hvha/hactl.toml unless --config is given; docs/operators.md describes
every key.";

/// The control plane of hvha: QuickQuery / NeedsAttention over the HSDB the host monitors
/// write, the Failure Detection Engine (`hactl run`), and the operator's commands.
#[derive(Debug, Parser)]
#[command(name = "hactl", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file (TOML). Default /etc/hvha/hactl.toml; read-side commands run
    /// without one when --hsdb is given.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The HSDB: an SQLite file or a postgres://USER@HOST:PORT/DBNAME URL (never with a
    /// password: that comes from `hsdb_password_file` or HVHA_HSDB_PASSWORD); overrides
    /// the configuration's `hsdb`.
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub hsdb: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true, conflicts_with = "xml")]
    pub json: bool,
    /// Print the seed's XML (qq and na only).
    #[arg(long, global = true)]
    pub xml: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane daemon: one Failure Detection Engine per host group.
    ///
    /// SIGTERM or SIGINT: the scan in progress completes, the HSDB is closed, exit 0.
    /// `hactl status` asks it through the admin socket.
    Run,
    /// Check the configuration file and print the effective configuration as TOML.
    #[command(name = "check-config")]
    CheckConfig,
    /// QuickQuery: every host with every monitor (read-only).
    Qq {
        /// Only this host group's hosts.
        #[arg(long, value_name = "NAME")]
        host_group: Option<String>,
    },
    /// NeedsAttention: VMs and monitors needing attention.
    ///
    /// By default a look that tags nothing (read-only). --consume makes the real request:
    /// the items reported are tagged with an hsTag to acknowledge with `hactl ack`.
    Na {
        /// Only this host group's hosts.
        #[arg(long, value_name = "NAME")]
        host_group: Option<String>,
        /// Tag the items reported (the engine's request); acknowledge with `hactl ack`.
        #[arg(long)]
        consume: bool,
        /// With --consume: even while `hactl run` answers on the admin socket.
        #[arg(long, requires = "consume")]
        force: bool,
        /// Most pending items in the reply (default: the parameter na_max_items).
        #[arg(long, value_name = "N")]
        max_items: Option<u32>,
    },
    /// Acknowledge an hsTag: its VM items and monitor events are cleared.
    Ack {
        /// The hsTag, as printed (`hactl ack -- -6630805255682309212` for a negative one).
        #[arg(value_name = "TAG", allow_hyphen_values = true)]
        tag: String,
    },
    /// Change settings: `modify system|host_group NAME|host NAME|vm UUID|NAME key=value…`.
    #[command(subcommand)]
    Modify(Modify),
    /// Add a host (`add host NAME group=G cpu=N memory=M …`) or a VM (`add vm UUID …`).
    #[command(subcommand)]
    Add(Add),
    /// Delete a collocation, anticollocation or workgroup: `delete collocation NAME`.
    #[command(subcommand)]
    Delete(Delete),
    /// Retire a host monitor (decommissioned or replaced): `remove hm UUID`.
    #[command(subcommand)]
    Remove(Remove),
    /// Plan, against the current state, the failure of hosts or the restart of VMs
    /// elsewhere, and print per VM the target and why, and why not each other host.
    ///
    /// `--dry-run` is required: nothing is moved (a failed host's VMs are restarted by
    /// `hactl run`; `hactl host evacuate` moves VMs off a host for maintenance).
    Relocate {
        /// Plan and print only (required: relocate moves nothing).
        #[arg(long)]
        dry_run: bool,
        /// Hosts (the failure of each: all its managed VMs) and VMs (their restart on
        /// another host), by name, id or UUID; host:NAME / vm:NAME when a host and a VM
        /// share a name. All of one host group.
        #[arg(value_name = "HOST|VM")]
        names: Vec<String>,
    },
    /// Plan the loss of each host of a group in turn and list every VM that would find
    /// no place, and why (the seed's verification; vSphere's admission control).
    ///
    /// Exit 0 when every group can absorb the loss of any one host, 7 when not (the
    /// report is printed either way).
    Verify {
        /// The host group; default: every group of the HSDB.
        #[arg(value_name = "HOST_GROUP")]
        group: Option<String>,
    },
    /// Discovery: ask the platform driver for its hosts (CPU, memory) and VMs (size,
    /// state, host) and write them into the HSDB.
    ///
    /// New VMs are unmanaged unless `[discovery] manage_new` (or `manage_new_groups`)
    /// says otherwise; a known VM's host and size follow the platform, never a value an
    /// operator set; a VM no longer found is reported (VM_VANISHED), never deleted or
    /// relocated. Recorded as an activity. Exit 0 done, 8 some hosts did not answer
    /// (the others' findings written), 1 nothing written (no host answered, HSDB), 2 the
    /// configured platform cannot be discovered, 4 no such host group.
    Discover {
        /// The host group; default: every host the platform driver serves.
        #[arg(value_name = "HOST_GROUP")]
        group: Option<String>,
        /// Also read every VM's details and then verify the group (the seed's Deep
        /// Discovery); default: the quick inventory.
        #[arg(long)]
        deep: bool,
    },
    /// Ask the running `hactl run` for its status.
    ///
    /// Scans, the last QuickQuery and NeedsAttention, relocations in flight, the last
    /// decisions, and whether the parameters are below the seed's ranges. Exit 3 when no
    /// daemon answers.
    Status {
        /// Admin socket; default: the one named in the configuration file.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Show VMs, hosts, monitors, events, relocations or parameters (read-only).
    #[command(visible_alias = "q", subcommand)]
    Query(Query),
    /// The event outbox's notifiers: `notifier forget NAME`.
    #[command(subcommand)]
    Notifier(NotifierCmd),
    /// Planned maintenance: `host evacuate HOST`, `host restore HOST` (carried out by
    /// the `hactl run` leading the host's group). Exit 5 refused, 6 not finished in time.
    #[command(subcommand)]
    Host(HostOp),
    /// The web dashboard's accounts: `dashboard user add|passwd|remove|list`.
    #[command(subcommand)]
    Dashboard(DashboardCmd),
    /// One VM: `vm move VM [--to HOST] [--dry-run] [--wait SECONDS]` (carried out by the
    /// `hactl run` leading the VM's group). Exit 5 refused, 6 not finished in time.
    #[command(subcommand)]
    Vm(VmOp),
}

/// `hactl dashboard …`.
#[derive(Debug, Subcommand)]
pub enum DashboardCmd {
    /// The users file (`[dashboard] users_file`): accounts and roles.
    #[command(subcommand)]
    User(DashboardUser),
}

/// `hactl dashboard user …`: the password is read from standard input (a line; asked
/// twice without echo on a terminal) or --password-file, never from the command line.
#[derive(Debug, Subcommand)]
pub enum DashboardUser {
    /// Add an account.
    Add {
        /// Its name (letters, digits, '.', '_', '-', '@').
        name: String,
        /// read-only (every page, no action) or operator (pages and actions).
        #[arg(long, value_parser = ["read-only", "operator"])]
        role: String,
        /// Read the password from the first line of this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The users file; default: the configuration's `[dashboard] users_file`.
        #[arg(long, value_name = "FILE")]
        users_file: Option<PathBuf>,
    },
    /// Change an account's password (and its role with --role).
    Passwd {
        /// Its name.
        name: String,
        /// A new role.
        #[arg(long, value_parser = ["read-only", "operator"])]
        role: Option<String>,
        /// Read the password from the first line of this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The users file; default: the configuration's `[dashboard] users_file`.
        #[arg(long, value_name = "FILE")]
        users_file: Option<PathBuf>,
    },
    /// Remove an account (its sessions end at their next request).
    Remove {
        /// Its name.
        name: String,
        /// The users file; default: the configuration's `[dashboard] users_file`.
        #[arg(long, value_name = "FILE")]
        users_file: Option<PathBuf>,
    },
    /// List the accounts and their roles.
    List {
        /// The users file; default: the configuration's `[dashboard] users_file`.
        #[arg(long, value_name = "FILE")]
        users_file: Option<PathBuf>,
    },
}

/// `hactl host …`.
#[derive(Debug, Subcommand)]
pub enum HostOp {
    /// Move every VM off the host (live migration where the platform can, else stop and
    /// start) and put it in maintenance; refused, with each VM's reason, if the plan is
    /// incomplete.
    Evacuate {
        /// The host's name.
        name: String,
        /// Write the request and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the end.
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
    },
    /// End the host's maintenance and return the VMs whose home host it is.
    Restore {
        /// The host's name.
        name: String,
        /// Write the request and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the end.
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
    },
}

/// `hactl vm …`.
#[derive(Debug, Subcommand)]
pub enum VmOp {
    /// Move a running managed VM to another host (live migration where the platform can,
    /// else stop and start): prints the plan first (the target and why, why not each
    /// other host); `--dry-run` stops there, else a MOVE request is written for the
    /// group's leader, which plans again and refuses with the reason if the VM can no
    /// longer go there.
    Move {
        /// The VM's name or UUID.
        #[arg(value_name = "VM")]
        vm: String,
        /// The target host (name or id); default: the planner's best host.
        #[arg(long, value_name = "HOST")]
        to: Option<String>,
        /// Print the plan only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Follow the request up to SECONDS to DONE, REFUSED or FAILED (default: return
        /// once it is written).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
}

/// `hactl notifier …`.
#[derive(Debug, Subcommand)]
pub enum NotifierCmd {
    /// Forget a notifier's offset (one removed from the configuration): it no longer
    /// holds events back from pruning. Configured again, it starts anew.
    Forget {
        /// The notifier's name (its consumer is `notifier:NAME`).
        name: String,
    },
}

/// `hactl modify …`.
#[derive(Debug, Subcommand)]
pub enum Modify {
    /// System-wide parameters (host_failure_detection_time=90..600, vm_failure_detection_speed=fast|normal|slow, restart_policy=auto|advisory_mode, ha_monitor=enable|disable, profile, scan_interval, …; KEY=default removes a setting).
    System {
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// A host group's parameters (the same keys as `system`; the group's win).
    #[command(name = "host_group", alias = "host-group", alias = "hg")]
    HostGroup {
        /// The host group.
        name: String,
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// A host: host_group=G, cpu=CPUS, memory=MIB, machine_type, model, serial, ha_monitor.
    Host {
        /// The host's name.
        name: String,
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// A VM: managed=yes|no, ha_monitor=enable|disable, priority=High|Medium|Low, vm_failure_detection_speed=fast|normal|slow, cpu, memory, name, homehost; or its host exclusions: blacklist_hosts=H1,H2 policy=add|delete.
    Vm {
        /// The VM's UUID, or its name when unique.
        #[arg(value_name = "UUID|NAME")]
        vm: String,
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
        /// With blacklist_hosts: store exclusions that leave the VM no backup host.
        #[arg(long)]
        force: bool,
    },
    /// A collocation's VMs: vm=A,B,… replaces them; with policy=add|delete adds or removes those.
    Collocation {
        /// The collocation's name.
        name: String,
        /// vm=… [policy=add|delete].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// An anticollocation's VMs (as `modify collocation`).
    Anticollocation {
        /// The anticollocation's name.
        name: String,
        /// vm=… [policy=add|delete].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// A workgroup's VMs (as `modify collocation`).
    Workgroup {
        /// The workgroup's name.
        name: String,
        /// vm=… [policy=add|delete].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
}

/// `hactl add …`.
#[derive(Debug, Subcommand)]
pub enum Add {
    /// A host: group=G cpu=CPUS memory=MIB (required), machine_type, model, serial, id.
    Host {
        /// The host's name (as the platform knows it).
        name: String,
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// A VM before any monitor saw it, with the settings of `modify vm`.
    Vm {
        /// The VM's UUID.
        uuid: String,
        /// key=value settings.
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// VMs always restarted on one host, together or not at all: `vm=A,B,…` (names or UUIDs) [host_group=G].
    Collocation {
        /// Its name (unique among collocations).
        name: String,
        /// vm=A,B,… [host_group=G].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// VMs never restarted onto one host: `vm=A,B,…` [host_group=G].
    Anticollocation {
        /// Its name (unique among anticollocations).
        name: String,
        /// vm=A,B,… [host_group=G].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// VMs restarted as one unit of work: `vm=A,B,…` [host_group=G].
    Workgroup {
        /// Its name (unique among workgroups).
        name: String,
        /// vm=A,B,… [host_group=G].
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
}

/// `hactl delete …`.
#[derive(Debug, Subcommand)]
pub enum Delete {
    /// A collocation.
    Collocation {
        /// Its name.
        name: String,
    },
    /// An anticollocation.
    Anticollocation {
        /// Its name.
        name: String,
    },
    /// A workgroup.
    Workgroup {
        /// Its name.
        name: String,
    },
}

/// `hactl remove …`.
#[derive(Debug, Subcommand)]
pub enum Remove {
    /// A host monitor: its row, its view of each VM, its interfaces, commands and
    /// undelivered events go; the VM items it wrote stay pending. A monitor that starts
    /// again registers anew.
    Hm {
        /// The monitor's UUID.
        uuid: String,
    },
}

/// `hactl query …`: reads through a read-only connection.
#[derive(Debug, Subcommand)]
pub enum Query {
    /// Every VM, or one VM in detail (by UUID, or by name when the name is unique).
    Vm {
        /// A VM's UUID or name.
        #[arg(value_name = "UUID|NAME")]
        vm: Option<String>,
    },
    /// Every host, or one host.
    Host {
        /// A host's name.
        name: Option<String>,
    },
    /// Every host monitor (hmd), or one.
    Hm {
        /// A monitor's UUID.
        uuid: Option<String>,
    },
    /// The applications the VMs' agents reported (name, VM, state, colour, critical,
    /// restarts, monitor, since, detail): of every VM, or of one.
    App {
        /// A VM's UUID or name.
        #[arg(value_name = "UUID|NAME")]
        vm: Option<String>,
    },
    /// Events of the durable outbox: the newest --limit, or from --after onwards.
    Event {
        /// Only events with an id above this, oldest first (page with the last id shown).
        #[arg(long, value_name = "ID", allow_negative_numbers = true)]
        after: Option<i64>,
        /// Most events shown.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
    },
    /// Discoveries and verifications (activities), newest first: kind, state, who asked,
    /// when, the last progress and the summary.
    Activity {
        /// Only this host group's.
        #[arg(long, value_name = "NAME")]
        host_group: Option<String>,
        /// Most activities shown.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
    },
    /// Restarts and relocations, newest first; one in detail with its phases.
    Relocation {
        /// A relocation's id.
        id: Option<i64>,
        /// Only the relocations of this VM (UUID or name).
        #[arg(long, value_name = "UUID|NAME")]
        vm: Option<String>,
        /// Most relocations shown.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
    },
    /// Collocations, or one with its members and problems.
    Collocation {
        /// Its name.
        name: Option<String>,
    },
    /// Anticollocations, or one.
    Anticollocation {
        /// Its name.
        name: Option<String>,
    },
    /// Workgroups, or one.
    Workgroup {
        /// Its name.
        name: Option<String>,
    },
    /// Every policy: sets, host exclusions, flexible capacity, and their problems.
    #[command(alias = "policies")]
    Policy {
        /// Only this host group's.
        #[arg(long, value_name = "NAME")]
        host_group: Option<String>,
    },
    /// Every consumer of the event outbox (the notifiers, the log): its offset, how
    /// many events it has not handled, the oldest one's age.
    Notifier,
    /// The parameters each host group's engine runs with, and where each comes from.
    Params {
        /// Only this host group.
        #[arg(long, value_name = "NAME")]
        host_group: Option<String>,
        /// What this VM is judged with (ha_monitor, detection speed, VMFDT).
        #[arg(long, value_name = "UUID|NAME", conflicts_with = "host_group")]
        vm: Option<String>,
    },
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human tables.
    Table,
    /// JSON.
    Json,
    /// The seed's XML.
    Xml,
}

impl Cli {
    /// The output format the flags ask for.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.xml {
            Format::Xml
        } else {
            Format::Table
        }
    }
}

/// Parse the process's arguments, run the command, print its output or error, and
/// return the exit code.
pub fn main() -> ExitCode {
    // Packaging: man pages and completions (docs/install.md), outside clap's grammar.
    if let Some(dir) = hvha_daemon::docs::requested() {
        return hvha_daemon::docs::main(Cli::command(), &dir);
    }
    // clap exits by itself: 0 for --help / --version, 2 for a usage error.
    let cli = Cli::parse();
    match run(&cli) {
        Ok(text) => {
            print!("{text}");
            Exit::Ok.code()
        }
        Err(CliError::Findings { report, summary }) => {
            print!("{report}");
            eprintln!("hactl: {summary}");
            Exit::Short.code()
        }
        Err(CliError::Incomplete { report, summary }) => {
            print!("{report}");
            eprintln!("hactl: {summary}");
            Exit::Incomplete.code()
        }
        Err(e) => {
            eprintln!("hactl: {e}");
            e.exit().code()
        }
    }
}

/// `hactl dashboard user …`.
fn dashboard_user(cli: &Cli, cmd: &DashboardUser) -> Result<String, CliError> {
    use crate::dash::Role;
    use crate::dash::accounts::{self, AccountError, PasswordSource};
    let given = match cmd {
        DashboardUser::Add { users_file, .. }
        | DashboardUser::Passwd { users_file, .. }
        | DashboardUser::Remove { users_file, .. }
        | DashboardUser::List { users_file } => users_file.clone(),
    };
    let path = match given {
        Some(p) => std::path::absolute(&p).unwrap_or(p),
        None => {
            let found = config(cli).or_else(|e| match e {
                CliError::Config(config::ConfigError::Read { .. }) if cli.config.is_none() => {
                    Ok(None)
                }
                e => Err(e),
            })?;
            found
                .and_then(|c| c.dashboard)
                .map(|d| d.users_file)
                .unwrap_or_else(|| crate::dash::config::DEFAULT_USERS_FILE.into())
        }
    };
    let role = |r: &str| Role::parse(r).unwrap_or(Role::ReadOnly);
    fn source(f: &Option<PathBuf>) -> PasswordSource<'_> {
        match f {
            Some(p) => PasswordSource::File(p.as_path()),
            None => PasswordSource::Stdin,
        }
    }
    let result = match cmd {
        DashboardUser::Add {
            name,
            role: r,
            password_file,
            ..
        } => accounts::read_password(&source(password_file), name)
            .and_then(|pw| accounts::add(&path, name, role(r), &pw)),
        DashboardUser::Passwd {
            name,
            role: r,
            password_file,
            ..
        } => accounts::read_password(&source(password_file), name)
            .and_then(|pw| accounts::passwd(&path, name, r.as_deref().map(role), &pw)),
        DashboardUser::Remove { name, .. } => accounts::remove(&path, name),
        DashboardUser::List { .. } => accounts::list(&path, cli.format() == Format::Json),
    };
    result.map_err(|e| match e {
        AccountError::Value(v) => CliError::Usage(v),
        AccountError::NotFound { .. } => CliError::Failed(e.to_string()),
        other => CliError::Failed(other.to_string()),
    })
}

/// The platform driver of the configuration (`sim` without a configuration file, as
/// `hactl run` would have).
fn platform_config(cli: &Cli) -> Result<config::PlatformConfig, CliError> {
    let found = config(cli).or_else(|e| match e {
        // Without --config, a missing default file is no file.
        CliError::Config(config::ConfigError::Read { .. }) if cli.config.is_none() => Ok(None),
        e => Err(e),
    })?;
    Ok(found.map_or(config::PlatformConfig::Sim { seed: 1 }, |c| c.platform))
}

/// Run one command; `Ok` is what to print.
pub fn run(cli: &Cli) -> Result<String, CliError> {
    let format = cli.format();
    match &cli.command {
        Command::Run => {
            refuse_format(format, "run")?;
            let path = cli.config.clone().unwrap_or_else(|| HACTL_CONFIG.into());
            let mut config = Config::load(&path)?;
            override_hsdb(cli, &mut config)?;
            hvha_daemon::log::init(&config.log, config.log_format);
            match crate::daemon::run(&config) {
                Ok(()) => Ok(String::new()),
                Err(e) => {
                    tracing::error!("{e}");
                    // The dashboard's users file or certificate is configuration: exit 2,
                    // which the service does not restart on (a port in use may free up).
                    use crate::dash::DashError;
                    match e {
                        crate::daemon::DaemonError::Dashboard(
                            DashError::Users(_) | DashError::Tls(_),
                        ) => Err(CliError::Usage(e.to_string())),
                        e => Err(CliError::Failed(e.to_string())),
                    }
                }
            }
        }
        Command::Qq { host_group } => {
            let db = open_read(cli)?;
            let na = na_config(cli, &db, host_group.as_deref(), None)?;
            self::replies::quick_query(&db, &na, SystemClock.now_ms(), format)
        }
        Command::Na {
            host_group,
            consume,
            force,
            max_items,
        } => {
            if *consume {
                if !force {
                    refuse_if_running(cli)?;
                }
                let mut db = open_write(cli)?;
                let na = na_config(cli, &db, host_group.as_deref(), *max_items)?;
                let tag = crate::hs::random_tag();
                self::replies::consume(&mut db, &na, SystemClock.now_ms(), tag, format)
            } else {
                let db = open_read(cli)?;
                let na = na_config(cli, &db, host_group.as_deref(), *max_items)?;
                self::replies::peek(&db, &na, SystemClock.now_ms(), format)
            }
        }
        Command::Ack { tag } => {
            refuse_xml(format, "ack")?;
            let tag = values::tag("TAG", tag)?;
            let mut db = open_write(cli)?;
            self::replies::acknowledge(&mut db, tag, format)
        }
        Command::Modify(what) => {
            refuse_format(format, "modify")?;
            let profile = config_profile(cli)?;
            let mut db = open_write(cli)?;
            let now = SystemClock.now_ms();
            let (target, settings) = match what {
                Modify::System { settings } => (self::modify::Target::System, settings),
                Modify::HostGroup { name, settings } => {
                    if let Some(flex) = self::policy::own_keys(
                        settings,
                        self::policy::FLEX_KEYS,
                        "memory_capacity, cpu_capacity and priority",
                    )? {
                        return self::policy::modify_flexible(&mut db, name, &flex, now);
                    }
                    (self::modify::Target::HostGroup(name.clone()), settings)
                }
                Modify::Host { name, settings } => {
                    (self::modify::Target::Host(name.clone()), settings)
                }
                Modify::Vm {
                    vm,
                    settings,
                    force,
                } => {
                    if let Some(ex) = self::policy::own_keys(
                        settings,
                        self::policy::EXCLUSION_KEYS,
                        "blacklist_hosts and policy",
                    )? {
                        return self::policy::modify_exclusions(&mut db, vm, &ex, *force, now);
                    }
                    if *force {
                        return Err(CliError::Usage(
                            "--force goes with blacklist_hosts=… policy=add".into(),
                        ));
                    }
                    (self::modify::Target::Vm(vm.clone()), settings)
                }
                Modify::Collocation { name, settings } => {
                    return self::policy::modify_set(
                        &mut db,
                        hsdb::PolicyKind::Collocation,
                        name,
                        settings,
                        now,
                    );
                }
                Modify::Anticollocation { name, settings } => {
                    return self::policy::modify_set(
                        &mut db,
                        hsdb::PolicyKind::Anticollocation,
                        name,
                        settings,
                        now,
                    );
                }
                Modify::Workgroup { name, settings } => {
                    return self::policy::modify_set(
                        &mut db,
                        hsdb::PolicyKind::Workgroup,
                        name,
                        settings,
                        now,
                    );
                }
            };
            let mut text = self::modify::modify(&mut db, &target, settings, profile, now)?;
            if let self::modify::Target::Vm(given) = &target {
                // A VM's priority, size or home host may break a policy it is in: said.
                text.push_str(&self::policy::vm_warnings(&db, given)?);
            }
            Ok(text)
        }
        Command::Add(what) => {
            refuse_format(format, "add")?;
            match what {
                Add::Host { name, settings } => {
                    let mut db = open_create(cli)?;
                    self::modify::add_host(&mut db, name, settings)
                }
                Add::Vm { uuid, settings } => {
                    let profile = config_profile(cli)?;
                    let mut db = open_write(cli)?;
                    self::modify::add_vm(&mut db, uuid, settings, profile, SystemClock.now_ms())
                }
                Add::Collocation { name, settings }
                | Add::Anticollocation { name, settings }
                | Add::Workgroup { name, settings } => {
                    let kind = match what {
                        Add::Collocation { .. } => hsdb::PolicyKind::Collocation,
                        Add::Anticollocation { .. } => hsdb::PolicyKind::Anticollocation,
                        _ => hsdb::PolicyKind::Workgroup,
                    };
                    let mut db = open_write(cli)?;
                    self::policy::add_set(&mut db, kind, name, settings, SystemClock.now_ms())
                }
            }
        }
        Command::Delete(what) => {
            refuse_format(format, "delete")?;
            let (kind, name) = match what {
                Delete::Collocation { name } => (hsdb::PolicyKind::Collocation, name),
                Delete::Anticollocation { name } => (hsdb::PolicyKind::Anticollocation, name),
                Delete::Workgroup { name } => (hsdb::PolicyKind::Workgroup, name),
            };
            let mut db = open_write(cli)?;
            self::policy::delete_set(&mut db, kind, name, SystemClock.now_ms())
        }
        Command::Remove(Remove::Hm { uuid }) => {
            refuse_format(format, "remove")?;
            let hm = values::uuid("UUID", uuid)?;
            let mut db = open_write(cli)?;
            let Some(row) = db.hm(&hm)? else {
                return Err(CliError::NotFound {
                    what: "monitor",
                    name: uuid.clone(),
                    hsdb: db.path().to_owned(),
                });
            };
            db.retire_hm(&hm)?;
            Ok(format!(
                "monitor {hm} (host {}) retired; stop its hmd, or it registers again at its \
                 next start\n",
                row.host
            ))
        }
        Command::Notifier(NotifierCmd::Forget { name }) => {
            refuse_format(format, "notifier")?;
            let mut db = open_write(cli)?;
            self::notifier::forget(&mut db, name)
        }
        Command::Dashboard(DashboardCmd::User(cmd)) => dashboard_user(cli, cmd),
        Command::CheckConfig => {
            refuse_xml(format, "check-config")?;
            let path = cli.config.clone().unwrap_or_else(|| HACTL_CONFIG.into());
            let mut config = Config::load(&path)?;
            override_hsdb(cli, &mut config)?;
            // The dashboard's certificate and users file, as `hactl run` would load them.
            if let Some(d) = &config.dashboard {
                crate::dash::server::check(d).map_err(|e| CliError::Usage(e.to_string()))?;
            }
            let mut out = format!(
                "# effective configuration of {}, defaults included\n{config}",
                path.display()
            );
            out.push_str("# this machine:\n");
            for note in machine_notes(&config) {
                out.push_str(&format!("#   {note}\n"));
            }
            Ok(out)
        }
        Command::Query(Query::Activity { host_group, limit }) => {
            refuse_xml(format, "query")?;
            let mut db = open_read(cli)?;
            self::discover::activities(&mut db, host_group.as_deref(), *limit, format)
        }
        Command::Query(query) => {
            refuse_xml(format, "query")?;
            let db = open_read(cli)?;
            let now = SystemClock.now_ms();
            match query {
                Query::Vm { vm } => self::query::vms(&db, vm.as_deref(), format, now),
                Query::Host { name } => self::query::hosts(&db, name.as_deref(), format),
                Query::Hm { uuid } => self::query::hms(&db, uuid.as_deref(), format, now),
                Query::App { vm } => self::query::apps(&db, vm.as_deref(), format),
                Query::Event { after, limit } => self::query::events(&db, *after, *limit, format),
                Query::Relocation { id, vm, limit } => {
                    self::query::relocations(&db, *id, vm.as_deref(), *limit, format)
                }
                Query::Activity { .. } => Err(CliError::Usage("query activity".into())),
                Query::Collocation { name } => self::policy::query_sets(
                    &db,
                    hsdb::PolicyKind::Collocation,
                    name.as_deref(),
                    format,
                ),
                Query::Anticollocation { name } => self::policy::query_sets(
                    &db,
                    hsdb::PolicyKind::Anticollocation,
                    name.as_deref(),
                    format,
                ),
                Query::Workgroup { name } => self::policy::query_sets(
                    &db,
                    hsdb::PolicyKind::Workgroup,
                    name.as_deref(),
                    format,
                ),
                Query::Policy { host_group } => {
                    self::policy::query_overview(&db, host_group.as_deref(), format)
                }
                Query::Notifier => {
                    self::notifier::query(&db, config(cli).ok().flatten().as_ref(), format, now)
                }
                Query::Params { host_group, vm } => self::query::params(
                    &db,
                    host_group.as_deref(),
                    vm.as_deref(),
                    config_profile(cli)?,
                    format,
                ),
            }
        }
        Command::Host(op) => {
            refuse_format(format, "host")?;
            let (kind, name, no_wait, timeout) = match op {
                HostOp::Evacuate {
                    name,
                    no_wait,
                    timeout,
                } => (hsdb::RequestKind::Evacuate, name, *no_wait, *timeout),
                HostOp::Restore {
                    name,
                    no_wait,
                    timeout,
                } => (hsdb::RequestKind::Restore, name, *no_wait, *timeout),
            };
            if timeout > 86_400 {
                return Err(CliError::bad_value(
                    "--timeout",
                    timeout.to_string(),
                    "0..=86400 seconds",
                ));
            }
            let mut db = open_write(cli)?;
            self::maintenance::request(
                &mut db,
                kind,
                name,
                no_wait,
                std::time::Duration::from_secs(timeout),
                SystemClock.now_ms(),
                &mut |line| println!("{line}"),
            )
        }
        Command::Vm(VmOp::Move {
            vm,
            to,
            dry_run,
            wait,
        }) => {
            refuse_xml(format, "vm move")?;
            if let Some(w) = wait
                && *w > 86_400
            {
                return Err(CliError::bad_value(
                    "--wait",
                    w.to_string(),
                    "0..=86400 seconds",
                ));
            }
            if *dry_run && wait.is_some() {
                return Err(CliError::Usage(
                    "--dry-run writes nothing: there is nothing to --wait for".into(),
                ));
            }
            let mut db = if *dry_run {
                open_read(cli)?
            } else {
                open_write(cli)?
            };
            let platform = platform_config(cli)?;
            self::vm_move::run(
                &mut db,
                &self::vm_move::MoveArgs {
                    vm,
                    to: to.as_deref(),
                    dry_run: *dry_run,
                    wait: wait.map(std::time::Duration::from_secs),
                },
                &platform,
                config_profile(cli)?,
                SystemClock.now_ms(),
                format,
                &mut |line| println!("{line}"),
            )
        }
        Command::Relocate { dry_run, names } => {
            refuse_xml(format, "relocate")?;
            if !dry_run {
                return Err(CliError::Usage(
                    "hactl relocate only plans: add --dry-run to see where VMs would go and \
                     why. Nothing here moves a VM — a failed host's or VM's restart is done by \
                     `hactl run`; to move the VMs off a host for maintenance use `hactl host \
                     evacuate HOST`"
                        .into(),
                ));
            }
            let db = open_read(cli)?;
            let platform = platform_config(cli)?;
            self::relocate::dry_run(
                &db,
                names,
                &platform,
                config_profile(cli)?,
                SystemClock.now_ms(),
                format,
            )
        }
        Command::Verify { group } => {
            refuse_xml(format, "verify")?;
            let db = open_read(cli)?;
            let platform = platform_config(cli)?;
            self::relocate::verify(
                &db,
                group.as_deref(),
                &platform,
                config_profile(cli)?,
                SystemClock.now_ms(),
                format,
            )
        }
        Command::Discover { group, deep } => {
            refuse_xml(format, "discover")?;
            let mut cfg = config(cli)?.ok_or_else(|| {
                CliError::Usage(
                    "discover needs the configuration file's [platform]: give --config FILE \
                     (without one, hactl's platform is the sim built from the HSDB itself)"
                        .into(),
                )
            })?;
            override_hsdb(cli, &mut cfg)?;
            let mut db = open_write(cli)?;
            self::discover::discover(&mut db, &cfg, group.as_deref(), *deep, format)
        }
        Command::Status { socket } => {
            refuse_xml(format, "status")?;
            let socket = match socket {
                Some(s) => s.clone(),
                None => admin_socket(cli.config.as_deref())?,
            };
            let text = admin::request(&socket, "status", STATUS_TIMEOUT)?;
            let status: DaemonStatus = serde_json::from_str(&text).map_err(|e| {
                CliError::Failed(format!(
                    "the daemon on {} answered something that is not its status: {e}",
                    socket.display()
                ))
            })?;
            Ok(match format {
                Format::Json => json(&status)?,
                _ => crate::daemon::render::status(&status),
            })
        }
    }
}

/// The configuration a command uses: `--config FILE` when given; else the default file
/// unless `--hsdb` is given (a read with `--hsdb` needs no file, and a broken default
/// file must not stop it). `None`: no file.
fn config(cli: &Cli) -> Result<Option<Config>, CliError> {
    let path = match (&cli.config, &cli.hsdb) {
        (Some(path), _) => path.clone(),
        (None, Some(_)) => return Ok(None),
        (None, None) => PathBuf::from(HACTL_CONFIG),
    };
    Ok(Some(Config::load(&path)?))
}

/// `--hsdb` in place of the configuration's `hsdb` (its password file kept for a
/// PostgreSQL URL).
fn override_hsdb(cli: &Cli, config: &mut Config) -> Result<(), CliError> {
    if let Some(text) = &cli.hsdb {
        config.hsdb = HsdbLocation::parse(text, None)?;
        if config.hsdb.sqlite_path().is_some() {
            config.hsdb_password_file = None;
        }
    }
    Ok(())
}

/// The HSDB to connect to: `--hsdb`, else the configuration's, with its password (the
/// configuration's `hsdb_password_file`, else HVHA_HSDB_PASSWORD).
fn target(cli: &Cli) -> Result<Target, CliError> {
    let (location, password_file) = hsdb_location(cli)?;
    Ok(location.target(password_file.as_deref())?)
}

/// The HSDB setting and its password file: `--hsdb`, else the configuration's.
fn hsdb_location(cli: &Cli) -> Result<(HsdbLocation, Option<PathBuf>), CliError> {
    match &cli.hsdb {
        Some(text) => {
            let location = HsdbLocation::parse(text, None)?;
            // The configuration's password file, when there is a file and the URL is
            // PostgreSQL's.
            let password_file = match (&location, &cli.config) {
                (HsdbLocation::Postgres(_), Some(_)) => {
                    config(cli)?.and_then(|c| c.hsdb_password_file)
                }
                _ => None,
            };
            Ok((location, password_file))
        }
        None => match config(cli) {
            Ok(Some(c)) => Ok((c.hsdb, c.hsdb_password_file)),
            Ok(None) => Err(CliError::Usage(
                "no HSDB: give --hsdb PATH|URL or --config FILE".into(),
            )),
            Err(CliError::Config(config::ConfigError::Read { path, .. }))
                if cli.config.is_none() =>
            {
                Err(CliError::Usage(format!(
                    "no HSDB: give --hsdb PATH or --config FILE (the default {} cannot be read)",
                    path.display()
                )))
            }
            Err(e) => Err(e),
        },
    }
}

/// An SQLite HSDB must exist: a typo must not create an empty database.
fn must_exist(target: &Target) -> Result<(), CliError> {
    match target.sqlite_path() {
        Some(path) if !path.exists() => Err(CliError::NoHsdb {
            path: path.to_owned(),
            hint: "hmd creates it at start, `hactl add host` too",
        }),
        _ => Ok(()),
    }
}

/// A read-only connection to the HSDB (SQLite: it never takes the write lock and never
/// creates the file; PostgreSQL: a read-only session).
fn open_read(cli: &Cli) -> Result<Hsdb, CliError> {
    let target = target(cli)?;
    must_exist(&target)?;
    Ok(Hsdb::connect_read_only(&target, &Options::default())?)
}

/// What `check-config` finds on this machine, one line each: the HSDB (its schema, its
/// host groups), the admin socket (a daemon answers?), the platform programs. Nothing is
/// created or changed.
fn machine_notes(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let hsdb = config.hsdb.to_string();
    let absent = config.hsdb.sqlite_path().is_some_and(|p| !p.exists());
    if absent {
        notes.push(format!(
            "hsdb {hsdb}: absent (the monitors create it, `hactl add host` too; \
             `hactl run` refuses to start without it)"
        ));
    } else {
        let opened = config
            .hsdb
            .target(config.hsdb_password_file.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|t| {
                Hsdb::connect_read_only(&t, &Options::default()).map_err(|e| e.to_string())
            });
        match opened {
            Ok(db) => match self::query::groups(&db) {
                Ok(groups) => {
                    let names: Vec<String> = groups
                        .iter()
                        .map(|(g, hosts)| {
                            let g = if g.is_empty() { "(no group)" } else { g };
                            format!("{g}: {} hosts", hosts.len())
                        })
                        .collect();
                    notes.push(format!(
                        "hsdb {hsdb}: readable; {}",
                        if names.is_empty() {
                            "no host yet".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ));
                    for g in &config.host_groups {
                        if !groups.contains_key(g) {
                            notes.push(format!(
                                "host_groups: {g:?} has no host in the HSDB yet (served once it has)"
                            ));
                        }
                    }
                    notes.extend(lease_notes(&db));
                }
                Err(e) => notes.push(format!("hsdb {hsdb}: {e}")),
            },
            Err(e) => notes.push(format!("hsdb {hsdb}: {e}")),
        }
    }
    let socket = config.admin_socket.display();
    notes.push(
        match admin::request(&config.admin_socket, "ping", Duration::from_secs(2)) {
            Ok(_) => format!("admin_socket {socket}: a running hactl run answers on it"),
            Err(admin::AdminError::NotRunning { .. }) => {
                format!("admin_socket {socket}: free (created at start)")
            }
            Err(e) => format!("admin_socket {socket}: {e}"),
        },
    );
    if let config::PlatformConfig::Libvirt(l) = &config.platform {
        let found = crate::platform::libvirt::program_exists(&l.virsh);
        notes.push(format!(
            "platform.virsh {}: {}",
            l.virsh.display(),
            if found {
                "found"
            } else {
                "NOT FOUND (Debian package libvirt-clients)"
            }
        ));
        if !l.ping.is_empty() {
            let found = crate::platform::libvirt::program_exists(Path::new("ping"));
            notes.push(format!(
                "ping: {}",
                if found {
                    "found"
                } else {
                    "NOT FOUND (Debian package iputils-ping): every VM reads not pingable"
                }
            ));
        }
    }
    notes.extend(crate::notify::config::machine_notes(&config.notifiers));
    notes
}

/// Who holds each leader lease (PostgreSQL), one line each.
fn lease_notes(db: &Hsdb) -> Vec<String> {
    if db.backend() != hsdb::Backend::Postgres {
        return vec!["leader lease: none (SQLite: one controller)".to_owned()];
    }
    let (leases, now) = match (db.leases(), db.db_now_ms()) {
        (Ok(l), Ok(n)) => (l, n),
        (Err(e), _) | (_, Err(e)) => return vec![format!("leader leases: {e}")],
    };
    if leases.is_empty() {
        return vec!["leader leases: none held yet".to_owned()];
    }
    leases
        .iter()
        .map(|l| {
            let left = l.expires_ms - now;
            format!(
                "lease {}: {} {}, token {}, {}",
                crate::lease::lease_name(&l.host_group),
                if left > 0 { "held by" } else { "last held by" },
                l.holder,
                l.token,
                if left > 0 {
                    format!("expires in {} ms", left)
                } else {
                    format!("expired {} ms ago", -left)
                }
            )
        })
        .collect()
}

/// A connection that may write; an SQLite file must exist.
fn open_write(cli: &Cli) -> Result<Hsdb, CliError> {
    let target = target(cli)?;
    must_exist(&target)?;
    Ok(Hsdb::connect(&target, &Options::default())?)
}

/// A connection that may write, creating the SQLite file or the schema (`add host`: the
/// first step of setting up a host group).
fn open_create(cli: &Cli) -> Result<Hsdb, CliError> {
    Ok(Hsdb::connect(&target(cli)?, &Options::default())?)
}

/// The configuration file's profile, when there is a file (it is the system-level
/// default of the parameters).
fn config_profile(cli: &Cli) -> Result<Option<crate::params::Profile>, CliError> {
    Ok(config(cli)
        .or_else(|e| match e {
            // Without --config, a missing default file is no file.
            CliError::Config(config::ConfigError::Read { .. }) if cli.config.is_none() => Ok(None),
            e => Err(e),
        })?
        .map(|c| crate::daemon::profile(&c)))
}

/// QuickQuery / NeedsAttention bounds: the group's parameters (the system's without a
/// group), `--max-items` when given.
fn na_config(
    cli: &Cli,
    db: &Hsdb,
    group: Option<&str>,
    max_items: Option<u32>,
) -> Result<crate::hs::build::NaConfig, CliError> {
    if let Some(g) = group
        && !self::query::groups(db)?.contains_key(g)
    {
        return Err(CliError::NotFound {
            what: "host group",
            name: format!("{g:?}"),
            hsdb: db.path().to_owned(),
        });
    }
    let profile = config_profile(cli)?;
    let params = self::modify::resolve(db, group.unwrap_or(""), profile)?;
    let max = match max_items {
        None => params.na_max_items,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => {
            return Err(CliError::bad_value(
                "--max-items",
                n.to_string(),
                "1..=100000",
            ));
        }
    };
    Ok(crate::hs::build::NaConfig {
        group: group.map(str::to_owned),
        max_items: usize::try_from(max).unwrap_or(usize::MAX),
        hm_silent_after_ms: params.hm_silent_after_ms,
    })
}

/// `na --consume` while a daemon answers: refused (exit 2).
fn refuse_if_running(cli: &Cli) -> Result<(), CliError> {
    let Ok(socket) = admin_socket(cli.config.as_deref()) else {
        return Ok(());
    };
    if admin::request(&socket, "ping", Duration::from_secs(2)).is_ok() {
        return Err(CliError::Usage(format!(
            "hactl run answers on {}: --consume would tag items away from its engine's \
             NeedsAttention (it sees them again only under its next tag); use `hactl na` to \
             look, or add --force",
            socket.display()
        )));
    }
    Ok(())
}

/// The admin socket: the one named in the configuration file (`FILE` or the default
/// file), or the default socket when there is no file.
fn admin_socket(config: Option<&Path>) -> Result<PathBuf, CliError> {
    match config {
        Some(file) => Ok(Config::admin_socket_of(file)?),
        None if Path::new(HACTL_CONFIG).exists() => {
            Ok(Config::admin_socket_of(Path::new(HACTL_CONFIG))?)
        }
        None => Ok(PathBuf::from(config::DEFAULT_ADMIN_SOCKET)),
    }
}

/// `--xml` on a command that has no XML form.
fn refuse_xml(format: Format, command: &str) -> Result<(), CliError> {
    if format == Format::Xml {
        return Err(CliError::Usage(format!(
            "--xml is for qq and na (the seed's XML); `hactl {command}` prints a table or --json"
        )));
    }
    Ok(())
}

/// `--json` / `--xml` on a command that prints neither.
fn refuse_format(format: Format, command: &str) -> Result<(), CliError> {
    if format != Format::Table {
        return Err(CliError::Usage(format!(
            "`hactl {command}` prints plain text: --json and --xml do not apply"
        )));
    }
    Ok(())
}

/// `value` as pretty JSON with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}
