//! `vmmd ctl`, the seed's `ksysvmmgr` (seed 004 L16045-16474): configure and drive the
//! applications the running agent monitors, over a UNIX socket (root only).
//!
//! ```text
//! vmmd ctl add app app1 monitor_script=/applic/mon1.sh start_script=… stop_script=…
//! vmmd ctl modify app app1 critical=yes
//! vmmd ctl query app [app1]          vmmd ctl status [app1]
//! vmmd ctl suspend|resume|start|stop app [app1]
//! vmmd ctl add dependency dependency_type=start_sequence dependency_list=app1,app2
//! vmmd ctl query dependency          vmmd ctl query vmm          vmmd ctl sync
//! ```
//!
//! Exit codes: 0 done; 1 the agent could not carry it out (nothing changed); 2 a bad
//! request (the message names the attribute, the value and the rule); 3 the agent
//! cannot be reached; 4 no such application or dependency.
//!
//! `attrs` holds the attributes' table (shared with the applications' file), `proto`
//! the request and response, `server` the socket inside vmmd, `client` this side.

pub mod ame;
pub mod attrs;
pub mod client;
pub mod proto;
pub mod server;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use proto::{Action, Class, Code, Data, PROTOCOL_VERSION, Request, Response, StatusRow};

use crate::ame::config::AppConfig;

/// Exit code: the agent cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: a bad request.
pub const EXIT_BAD_REQUEST: u8 = 2;

/// `vmmd ctl`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct CtlArgs {
    /// The agent's ctl socket (default: `[ame] socket` of --config's file if it can be
    /// read, else /run/vmmd/ctl.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print query and status answers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Accepted for ksysvmmgr's habit: every change applies at once anyway.
    #[arg(short = 's', hide = true)]
    pub sync_now: bool,
    /// add, modify, delete, query (q), status, suspend, resume, start, stop, sync.
    #[arg(value_enum)]
    pub action: Action,
    /// app, dependency or vmm, then the application's name and key=value attributes.
    #[arg(value_name = "CLASS [NAME] [KEY=VALUE]...")]
    pub words: Vec<String>,
}

/// Turn the command line's words into a request, checking what can be checked without
/// the agent (the words' shape and each attribute's value).
pub fn request(action: Action, words: &[String]) -> Result<Request, String> {
    let mut rest = words;
    // The class may be left out where only applications make sense (`status app1`).
    let class_optional = matches!(
        action,
        Action::Status
            | Action::Suspend
            | Action::Resume
            | Action::Start
            | Action::Stop
            | Action::Sync
    );
    let class = match rest.first().map(|w| (w, Class::parse(w))) {
        Some((_, Some(c))) => {
            rest = &rest[1..];
            Some(c)
        }
        Some((w, None)) if !class_optional => {
            return Err(format!("{w:?} is not a class: give app, dependency or vmm"));
        }
        None if !class_optional => {
            return Err(format!(
                "{} what? give app, dependency or vmm",
                action.as_str()
            ));
        }
        _ => None,
    };
    // An action on every application must say `app`: a bare `vmmd ctl stop` is more
    // likely a slip than an intent to stop them all.
    if class.is_none()
        && rest.is_empty()
        && matches!(
            action,
            Action::Suspend | Action::Resume | Action::Start | Action::Stop
        )
    {
        return Err(format!(
            "{0} what? give app NAME, or app alone for every application (vmmd ctl {0} app)",
            action.as_str()
        ));
    }
    let name = match rest.first() {
        Some(w) if !w.contains('=') => {
            rest = &rest[1..];
            Some(w.clone())
        }
        _ => None,
    };
    if let Some(extra) = rest.iter().find(|w| !w.contains('=')) {
        return Err(format!(
            "{extra:?}: after the name, attributes are key=value words"
        ));
    }
    let pairs = attrs::split_words(rest).map_err(|e| e.to_string())?;
    // Check the values here too, for a message without a round trip.
    match class {
        Some(Class::App) if matches!(action, Action::Add | Action::Modify) => {
            let mut scratch = AppConfig::new("x", "/", "/", "/");
            if action == Action::Modify {
                // Probe attributes of an application whose probe the agent knows.
                scratch.probe = Some(crate::ame::probe::ProbeConfig::new(
                    crate::ame::probe::ProbeKind::Http(crate::ame::probe::HttpProbe::default()),
                ));
            }
            attrs::set_app_attributes(&mut scratch, &pairs).map_err(|e| e.to_string())?;
            if action == Action::Add
                && let Some(n) = &name
            {
                attrs::new_app(n, &pairs).map_err(|e| e.to_string())?;
            }
        }
        Some(Class::Dependency) if action == Action::Add => {
            attrs::new_dependency(&pairs).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(Request {
        v: PROTOCOL_VERSION,
        action,
        class,
        name,
        attrs: rest.to_vec(),
    })
}

/// The socket to use: `--socket`, else `[ame] socket` of the configuration file if it
/// can be read, else the default.
pub fn socket_path(explicit: Option<PathBuf>, config_file: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    std::fs::read_to_string(config_file)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("ame")?.get("socket")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CTL_SOCKET))
}

/// Run `vmmd ctl`: print the answer, return the exit code.
pub fn run(args: CtlArgs, config_file: &Path) -> ExitCode {
    let req = match request(args.action, &args.words) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmmd ctl: {e}");
            return ExitCode::from(EXIT_BAD_REQUEST);
        }
    };
    let socket = socket_path(args.socket, config_file);
    let response = match client::call(&socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmmd ctl: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    if response.code != Code::Ok {
        eprintln!("vmmd ctl: {}", response.message);
        return ExitCode::from(response.code.exit_code());
    }
    print!("{}", render(&response, args.json));
    ExitCode::SUCCESS
}

/// The text `vmmd ctl` prints for a successful response.
pub fn render(response: &Response, json: bool) -> String {
    let mut out = String::new();
    match &response.data {
        None => {
            let _ = writeln!(out, "{}", response.message);
        }
        Some(data) if json => {
            let _ = writeln!(out, "{}", json_of(data));
        }
        Some(Data::Apps(apps)) => {
            for app in apps {
                let _ = writeln!(out, "Application name={}", app.name);
                for (k, v) in &app.attributes {
                    let _ = writeln!(out, " {k}={v}");
                }
                let _ = writeln!(out, " nooftimes_restarted={}", app.restarts);
                let _ = writeln!(out, " status={}", app.status);
            }
            if apps.is_empty() {
                let _ = writeln!(out, "no application configured");
            }
        }
        Some(Data::Dependencies(deps)) => {
            for (i, d) in deps.iter().enumerate() {
                let _ = writeln!(out, "Dependency {}", i + 1);
                for (k, v) in &d.attributes {
                    let _ = writeln!(out, " {k}={v}");
                }
            }
            if deps.is_empty() {
                let _ = writeln!(out, "no dependency configured");
            }
        }
        Some(Data::Vmm(v)) => {
            let _ = writeln!(out, "VMM");
            for (k, val) in [
                ("version", v.version.clone()),
                ("vm_uuid", v.vm_uuid.clone()),
                ("ostype", v.ostype.clone()),
                ("pid", v.pid.to_string()),
                ("socket", v.socket.clone()),
                ("apps_file", v.apps_file.clone()),
                ("apps", format!("{}/{}", v.apps, v.max_apps)),
                ("dependencies", v.dependencies.to_string()),
            ] {
                let _ = writeln!(out, " {k}={val}");
            }
        }
        Some(Data::Status(rows)) => out.push_str(&status_table(rows)),
    }
    out
}

/// JSON for `--json`: the data as the protocol carries it, attributes as objects.
fn json_of(data: &Data) -> String {
    let pairs = |attrs: &[(String, String)]| {
        serde_json::Value::Object(
            attrs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    };
    let value = match data {
        Data::Apps(apps) => serde_json::Value::Array(
            apps.iter()
                .map(|a| {
                    serde_json::json!({"name": a.name, "attributes": pairs(&a.attributes), "nooftimes_restarted": a.restarts, "status": a.status})
                })
                .collect(),
        ),
        Data::Dependencies(deps) => {
            serde_json::Value::Array(deps.iter().map(|d| pairs(&d.attributes)).collect())
        }
        Data::Status(rows) => serde_json::to_value(rows).unwrap_or_default(),
        Data::Vmm(v) => serde_json::to_value(v).unwrap_or_default(),
    };
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// The seed's status table (seed 004 L9477-9481): name, state, colour, result, the
/// counters cur/max, how it is monitored, and why.
pub fn status_table(rows: &[StatusRow]) -> String {
    let counter = |c: Option<proto::Counter>| {
        c.map_or_else(|| "-".to_owned(), |c| format!("{}/{}", c.cur, c.max))
    };
    let mut lines = vec![
        [
            "NAME", "STATE", "COLOUR", "RESULT", "MON", "CRIT", "FAIL", "STOP", "START", "RESTART",
            "MONITOR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in rows {
        lines.push(vec![
            r.name.clone(),
            r.state.clone(),
            r.colour.clone(),
            r.result.clone().unwrap_or_else(|| "-".to_owned()),
            if r.monitored { "yes" } else { "no" }.to_owned(),
            if r.critical { "yes" } else { "no" }.to_owned(),
            counter(r.fail),
            counter(r.stop),
            counter(r.start),
            counter(Some(r.restart)),
            r.monitor.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = write!(out, "{}", cells.join("  ").trim_end());
        if i > 0 && !rows[i - 1].detail.is_empty() {
            let _ = write!(out, "  {}", rows[i - 1].detail);
        }
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("no application configured\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(action: Action, words: &str) -> Result<Request, String> {
        let words: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        request(action, &words)
    }

    #[test]
    fn words_become_requests() {
        let r = parse(
            Action::Add,
            "app app1 monitor_script=/m start_script=/s stop_script=/t",
        )
        .unwrap();
        assert_eq!(r.class, Some(Class::App));
        assert_eq!(r.name.as_deref(), Some("app1"));
        assert_eq!(
            r.attrs,
            ["monitor_script=/m", "start_script=/s", "stop_script=/t"]
        );
        let r = parse(Action::Status, "").unwrap();
        assert_eq!((r.class, r.name), (None, None));
        let r = parse(Action::Status, "app1").unwrap();
        assert_eq!((r.class, r.name.as_deref()), (None, Some("app1")));
        let r = parse(Action::Stop, "app app1").unwrap();
        assert_eq!(
            (r.class, r.name.as_deref()),
            (Some(Class::App), Some("app1"))
        );
        let r = parse(Action::Query, "vmm").unwrap();
        assert_eq!(r.class, Some(Class::Vmm));
        let r = parse(
            Action::Add,
            "dependency dependency_type=parent_child dependency_list=a,b",
        )
        .unwrap();
        assert_eq!((r.class, r.name), (Some(Class::Dependency), None));
        // JSON on the wire, as documented.
        let line = serde_json::to_string(&parse(Action::Modify, "app app1 critical=yes").unwrap())
            .unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"action":"modify","class":"app","name":"app1","attrs":["critical=yes"]}"#
        );
    }

    #[test]
    fn bad_words_are_refused_before_asking_the_agent() {
        let cases = [
            (
                Action::Add,
                "application? app1",
                "\"application?\" is not a class",
            ),
            (Action::Query, "", "query what? give app, dependency or vmm"),
            (
                Action::Stop,
                "",
                "stop what? give app NAME, or app alone for every application",
            ),
            (
                Action::Add,
                "app app1 monitor_script=/m",
                "start_script=(missing) is invalid: mandatory",
            ),
            (
                Action::Modify,
                "app app1 monitor_period=0",
                "monitor_period=0 is invalid: 1..=86400 (whole seconds)",
            ),
            (
                Action::Modify,
                "app app1 critical=maybe",
                "critical=maybe is invalid: yes or no",
            ),
            (
                Action::Modify,
                "app app1 critical=yes extra",
                "\"extra\": after the name, attributes are key=value words",
            ),
            (
                Action::Modify,
                "app app1 critical=yes critical=no",
                "critical=no is invalid: each attribute once",
            ),
            (
                Action::Add,
                "dependency dependency_type=chain dependency_list=a,b",
                "dependency_type=chain is invalid",
            ),
        ];
        for (action, words, want) in cases {
            let got = parse(action, words).unwrap_err();
            assert!(got.starts_with(want), "{words}: {got}");
        }
    }

    #[test]
    fn the_socket_comes_from_the_flag_the_config_file_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vmmd.toml");
        assert_eq!(socket_path(None, &file), Path::new("/run/vmmd/ctl.sock"));
        std::fs::write(
            &file,
            "vm_uuid = \"x\"\n[ame]\nsocket = \"/run/other/ctl.sock\"\n",
        )
        .unwrap();
        assert_eq!(socket_path(None, &file), Path::new("/run/other/ctl.sock"));
        assert_eq!(socket_path(Some("/a/b".into()), &file), Path::new("/a/b"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            [Code::Ok, Code::Failed, Code::BadRequest, Code::Unknown].map(Code::exit_code),
            [0, 1, 2, 4]
        );
    }
}
