//! The pages about the present state: overview (`/`), hosts (`/hosts`, `/host/<name>`),
//! VMs (`/vms`, `/vm/<name-or-uuid>`) and applications (`/apps`).

use std::collections::HashMap;
use std::fmt::Write as _;

use hsdb::{HmRow, HmState, HostRecord, PolicyKind, Priority, Uuid, VmRow};

use super::board::{Board, BudgetBook, Health, find_vm, vm_label};
use super::html::{Page, action_form, age_td, esc, link, td, thead, time_el, url_part, when};
use super::records;
use crate::cli::query::cpus_text;
use crate::dash::{Ctx, Request, Response};

/// What a page function returns: the response, or the HSDB error that stopped it.
pub type Outcome = hsdb::Result<Response>;

/// The message a redirect after an action carries (`?ok=…&ref=…` / `?error=…`): a fixed
/// text per code, so a crafted link cannot put words on the page; the reference (an id
/// or a name) is shown escaped.
pub fn flash(req: &Request) -> Option<(&'static str, String)> {
    let reference = req
        .param("ref")
        .map(|r| r.chars().take(200).collect::<String>())
        .unwrap_or_default();
    if let Some(code) = req.param("ok") {
        let text = match code {
            "activity" => format!(
                "Activity {reference} requested: the controller leading the group carries it out."
            ),
            "evacuate" => format!(
                "Evacuation requested (operator request {reference}): the controller leading the group carries it out."
            ),
            "restore" => format!(
                "Restore requested (operator request {reference}): the controller leading the group carries it out."
            ),
            "move" => format!(
                "Move requested (operator request {reference}): the controller leading the group carries it out."
            ),
            "ack" => format!("Acknowledged: {reference}."),
            _ => return None,
        };
        return Some(("ok", text));
    }
    None
}

/// Render `page` for `ctx` with the request's flash message.
pub fn respond(ctx: &Ctx<'_>, req: &Request, page: Page) -> Response {
    let f = flash(req);
    Response::html(
        200,
        page.render(ctx, f.as_ref().map(|(c, t)| (*c, t.as_str()))),
    )
}

/// An error page: `status`, a title, and what went wrong (plain text).
pub fn error_page(ctx: &Ctx<'_>, status: u16, title: &str, text: &str) -> Response {
    let mut page = Page::new(title, "error");
    page.heading();
    let _ = writeln!(page.body, "<p class=\"error\">{}</p>", esc(text));
    page.push("<p><a href=\"/\">Back to the overview</a></p>\n");
    Response::html(status, page.render(ctx, None))
}

/// The parameter profile of the daemon's configuration (the base every group's
/// parameters resolve from, as the engine resolves them).
pub fn profile(ctx: &Ctx<'_>) -> crate::params::Profile {
    match ctx.config.profile {
        crate::cli::config::Profile::Default => crate::params::Profile::Standard,
        crate::cli::config::Profile::Fast => crate::params::Profile::Fast,
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn memory_text(mb: u32) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{} GiB", mb / 1024)
    } else {
        format!("{mb} MiB")
    }
}

/// `2/2 heartbeating`, `missing on 1/2`, `missing on every monitor of its host`, `-`.
pub fn heartbeat_text(board: &Board, vm: &VmRow) -> String {
    let rows = board.heartbeats(&vm.uuid);
    let total = rows.len();
    let missing = rows.iter().filter(|r| r.hb_missed_ms.is_some()).count();
    if total == 0 {
        "-".to_owned()
    } else if board.missed_since(vm).is_some() {
        format!("missing on every monitor of its host ({missing}/{total})")
    } else if missing == 0 {
        format!("{total}/{total} heartbeating")
    } else {
        format!("missing on {missing}/{total}")
    }
}

/// The VM table's header (contract B row below).
pub fn vm_thead() -> String {
    thead(&[
        "VM",
        "State",
        "Health",
        "Host",
        "Home host",
        "Priority",
        "Managed",
        "Heartbeats",
        "Restarts",
    ])
}

/// One VM row: `<tr data-vm data-uuid data-state data-health>` with `td.vm-state`,
/// `td.vm-health`, `td.vm-host` (docs/dashboard.md, "For tests and scripts").
pub fn vm_tr(board: &Board, book: &BudgetBook, vm: &VmRow, now_ms: i64) -> String {
    let h = board.health(vm);
    let budgets = book.of(vm, board.vm_group(vm), now_ms);
    let label = vm_label(vm);
    format!(
        "<tr data-vm=\"{}\" data-uuid=\"{}\" data-state=\"{}\" data-health=\"{}\">\
         <td class=\"vm-name\">{}</td><td class=\"vm-state\">{}</td>\
         <td class=\"vm-health\" title=\"{}\">{}</td><td class=\"vm-host\">{}</td>\
         {}{}{}<td class=\"vm-heartbeat\">{}</td>{}</tr>\n",
        esc(&label),
        vm.uuid,
        vm.state.as_str(),
        h.health.as_str(),
        link(&format!("/vm/{}", vm.uuid), &label),
        vm.state.as_str(),
        esc(&h.why),
        h.health.as_str(),
        esc(&board.host_name(vm.current_host)),
        td("vm-home", &board.host_name(vm.home_host)),
        td("vm-priority", vm.priority.as_str()),
        td("vm-managed", yes(vm.managed)),
        esc(&heartbeat_text(board, vm)),
        td("vm-restarts", &budgets.text()),
    )
}

/// A table of `vms` (or a sentence when there are none).
pub fn vm_table(
    board: &Board,
    book: &BudgetBook,
    vms: &[&VmRow],
    now_ms: i64,
    none: &str,
) -> String {
    if vms.is_empty() {
        return format!("<p class=\"empty\">{}</p>\n", esc(none));
    }
    let mut out = format!("<table class=\"vms\">{}<tbody>\n", vm_thead());
    for vm in vms {
        out.push_str(&vm_tr(board, book, vm, now_ms));
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The monitor table's header.
fn hm_thead() -> String {
    thead(&[
        "Monitor",
        "Host",
        "State",
        "Response age",
        "Link",
        "Incarnation",
        "Version",
        "VMs",
    ])
}

/// One monitor row: `<tr data-hm="UUID" data-state="UP|DOWN">`.
fn hm_tr(ctx: &Ctx<'_>, board: &Board, hm: &HmRow, silent_after_ms: i64) -> hsdb::Result<String> {
    let interfaces = ctx.db.hm_interfaces(&hm.uuid)?;
    let link_text = if interfaces.is_empty() {
        "-".to_owned()
    } else {
        interfaces
            .iter()
            .map(|i| format!("{} {}", i.name, i.state.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let counts = ctx.db.vm_hm_counts(&hm.uuid)?;
    let silent = Board::silent(hm, ctx.now_ms, silent_after_ms);
    let reason = if hm.state == HmState::Down && hm.reason != 0 {
        format!(" (reason {:#x})", hm.reason)
    } else {
        String::new()
    };
    Ok(format!(
        "<tr data-hm=\"{}\" data-state=\"{}\" data-silent=\"{}\"><td class=\"hm-uuid\">{}</td>\
         <td class=\"hm-host\">{}</td><td class=\"hm-state\">{}{}</td>{}\
         <td class=\"hm-link\">{}</td>{}{}{}</tr>\n",
        hm.uuid,
        hm.state.as_str(),
        yes(silent),
        hm.uuid,
        link(
            &format!("/host/{}", url_part(&board.host_name(Some(hm.host)))),
            &board.host_name(Some(hm.host))
        ),
        hm.state.as_str(),
        esc(&reason),
        age_td("hm-age", Some(hm.last_hb_ms), ctx.now_ms),
        esc(&link_text),
        td("hm-incarnation", &hm.incarnation.to_string()),
        td("hm-version", &hm.version.to_string()),
        td(
            "hm-vms",
            &format!(
                "{} ok, {} missing, {} suspended, {} stopped",
                counts.detected, counts.missing, counts.suspended, counts.stopped
            )
        ),
    ))
}

/// A table of monitors.
fn hm_table(
    ctx: &Ctx<'_>,
    board: &Board,
    book: &BudgetBook,
    hms: &[&HmRow],
) -> hsdb::Result<String> {
    if hms.is_empty() {
        return Ok(
            "<p class=\"empty\">No monitor registered (each hmd registers when it starts).</p>\n"
                .to_owned(),
        );
    }
    let mut out = format!("<table class=\"monitors\">{}<tbody>\n", hm_thead());
    for hm in hms {
        let group = board.host(hm.host).map(|h| h.host_group.as_str());
        out.push_str(&hm_tr(
            ctx,
            board,
            hm,
            book.params(group).hm_silent_after_ms,
        )?);
    }
    out.push_str("</tbody></table>\n");
    Ok(out)
}

/// The host table's header.
fn host_thead(with_actions: bool) -> String {
    let mut h = vec![
        "Host",
        "Host group",
        "CPU",
        "Memory",
        "Monitors up",
        "VMs",
        "Maintenance",
    ];
    if with_actions {
        h.push("Actions");
    }
    thead(&h)
}

/// One host row: `<tr data-host="NAME">`.
fn host_tr(ctx: &Ctx<'_>, board: &Board, host: &HostRecord, with_actions: bool) -> String {
    let hms: Vec<&HmRow> = board.hms.iter().filter(|m| m.host == host.id).collect();
    let up = hms.iter().filter(|m| m.state == HmState::Up).count();
    let vms = board
        .vms
        .iter()
        .filter(|v| v.current_host == Some(host.id))
        .count();
    let maintenance = board.maintenance.get(&host.id);
    let mut out = format!(
        "<tr data-host=\"{}\" data-maintenance=\"{}\"><td class=\"host-name\">{}</td>{}{}{}\
         <td class=\"host-monitors\">{up}/{}</td><td class=\"host-vms\">{vms}</td>{}",
        esc(&host.name),
        yes(maintenance.is_some()),
        link(&format!("/host/{}", url_part(&host.name)), &host.name),
        td("host-group", &host.host_group),
        td("", &cpus_text(host.cpu_milli)),
        td("", &memory_text(host.memory_mb)),
        hms.len(),
        td(
            "host-maintenance",
            &maintenance.map_or("no".to_owned(), |t| format!("since {}", when(*t)))
        ),
    );
    if with_actions {
        out.push_str("<td class=\"actions\">");
        out.push_str(&host_actions(ctx, host, maintenance.is_some()));
        out.push_str("</td>");
    }
    out.push_str("</tr>\n");
    out
}

/// Evacuate / restore buttons for `host` (operators only).
fn host_actions(ctx: &Ctx<'_>, host: &HostRecord, in_maintenance: bool) -> String {
    let mut out = String::new();
    if !in_maintenance {
        out.push_str(&action_form(
            ctx,
            "evacuate",
            &[("host", &host.name)],
            "Evacuate",
        ));
    }
    out.push_str(&action_form(
        ctx,
        "restore",
        &[("host", &host.name)],
        "Restore",
    ));
    out
}

fn host_table(ctx: &Ctx<'_>, board: &Board, hosts: &[&HostRecord]) -> String {
    if hosts.is_empty() {
        return "<p class=\"empty\">No host in the HSDB (add one with <code>hactl add host</code>, or run a discovery).</p>\n".to_owned();
    }
    let with_actions = ctx.user.role == crate::dash::Role::Operator;
    let mut out = format!(
        "<table class=\"hosts\">{}<tbody>\n",
        host_thead(with_actions)
    );
    for h in hosts {
        out.push_str(&host_tr(ctx, board, h, with_actions));
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The counters shown on the overview (and updated live: `data-count`).
fn counts(board: &Board, pending: i64) -> String {
    let (up, total) = board.monitors_up();
    let mut failed = 0;
    let mut missing = 0;
    for vm in &board.vms {
        match board.health(vm).health {
            Health::Failed => failed += 1,
            Health::Missing => missing += 1,
            _ => {}
        }
    }
    let tile = |key: &str, label: &str, value: String, alert: bool| {
        format!(
            "<div class=\"tile{}\"><span class=\"value\" data-count=\"{key}\">{}</span>\
             <span class=\"label\">{}</span></div>",
            if alert { " alert" } else { "" },
            esc(&value),
            esc(label)
        )
    };
    let mut out = String::from("<div class=\"tiles\">");
    out.push_str(&tile(
        "hosts",
        "hosts",
        board.hosts.len().to_string(),
        false,
    ));
    out.push_str(&tile(
        "monitors_up",
        "monitors up",
        format!("{up}/{total}"),
        up < total,
    ));
    out.push_str(&tile("vms", "VMs", board.vms.len().to_string(), false));
    out.push_str(&tile(
        "vms_failed",
        "failed VMs",
        failed.to_string(),
        failed > 0,
    ));
    out.push_str(&tile(
        "vms_missing",
        "VMs missing heartbeats",
        missing.to_string(),
        missing > 0,
    ));
    out.push_str(&tile(
        "relocations_open",
        "relocations in progress",
        board.open.len().to_string(),
        !board.open.is_empty(),
    ));
    out.push_str(&tile(
        "pending",
        "items awaiting the controller",
        pending.to_string(),
        false,
    ));
    out.push_str("</div>\n");
    out
}

/// `/`: host groups with their parameters and policies, counts, what needs attention.
pub fn overview(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let board = Board::load(ctx.db)?;
    let book = BudgetBook::load(ctx.db, &board, profile(ctx), ctx.now_ms)?;
    let (pending, pending_total) = ctx.db.pending_head(50)?;
    let mut page = Page::new("Overview", "overview");
    page.heading();
    page.push(&counts(&board, pending_total));
    page.push(&attention(ctx, &board, &book, &pending, pending_total)?);
    let policies = ctx.db.policies(None)?;
    let exclusions = ctx.db.exclusions(None)?;
    let flexible = ctx.db.flexible_capacity(None)?;
    let names: HashMap<Uuid, String> = board.vms.iter().map(|v| (v.uuid, vm_label(v))).collect();
    let vm_name = |u: &Uuid| names.get(u).cloned().unwrap_or_else(|| u.to_string());
    let groups = board.groups();
    if groups.is_empty() {
        page.push("<p class=\"empty\">The HSDB has no host yet.</p>\n");
    }
    for (group, hosts) in &groups {
        let p = book.params(Some(group));
        let _ = writeln!(
            page.body,
            "<section class=\"group\" data-group=\"{0}\">\n<h2>Host group {0}</h2>",
            esc(group)
        );
        let mut acts = String::new();
        acts.push_str(&action_form(
            ctx,
            "discover",
            &[("group", group), ("depth", "quick")],
            "Quick discovery",
        ));
        acts.push_str(&action_form(
            ctx,
            "discover",
            &[("group", group), ("depth", "deep")],
            "Deep discovery",
        ));
        acts.push_str(&action_form(ctx, "verify", &[("group", group)], "Verify"));
        if !acts.is_empty() {
            let _ = writeln!(page.body, "<div class=\"actions\">{acts}</div>");
        }
        // Parameters.
        page.push(
            "<details class=\"params\"><summary>Parameters</summary><table class=\"params\">",
        );
        page.push(&thead(&["Parameter", "Value", "Set at"]));
        page.push("<tbody>");
        for (key, value, level) in p.entries() {
            let _ = write!(
                page.body,
                "<tr data-param=\"{}\" data-level=\"{}\">{}{}{}</tr>",
                key.as_str(),
                level.as_str(),
                td("", key.as_str()),
                td("", &value),
                td("", level.as_str())
            );
        }
        page.push("</tbody></table></details>\n");
        // Policies.
        page.push("<h3>Policies</h3>\n");
        let sets: Vec<_> = policies.iter().filter(|s| s.host_group == *group).collect();
        let in_group: Vec<&VmRow> = board
            .vms
            .iter()
            .filter(|v| board.vm_group(v) == Some(group.as_str()))
            .collect();
        let group_vms: std::collections::HashSet<Uuid> = in_group.iter().map(|v| v.uuid).collect();
        let excl: Vec<_> = exclusions
            .iter()
            .filter(|e| group_vms.contains(&e.vm))
            .collect();
        let flex: Vec<_> = flexible.iter().filter(|f| f.host_group == *group).collect();
        page.push("<table class=\"policies\">");
        page.push(&thead(&["Policy", "Name", "VMs"]));
        page.push("<tbody>");
        for s in &sets {
            let members = s.members.iter().map(vm_name).collect::<Vec<_>>().join(", ");
            let _ = write!(
                page.body,
                "<tr data-policy=\"{}\" data-kind=\"{}\">{}{}{}</tr>",
                esc(&s.name),
                s.kind.as_str(),
                td("", policy_label(s.kind)),
                td("", &s.name),
                td("", &members)
            );
        }
        for e in &excl {
            let _ = write!(
                page.body,
                "<tr data-kind=\"EXCLUSION\">{}{}{}</tr>",
                td("", "host exclusion"),
                td("", &format!("never on {}", board.host_name(Some(e.host)))),
                td("", &vm_name(&e.vm))
            );
        }
        for f in &flex {
            let _ = write!(
                page.body,
                "<tr data-kind=\"FLEXIBLE_CAPACITY\">{}{}{}</tr>",
                td("", "flexible capacity"),
                td("", &format!("priority {}", f.priority.as_str())),
                td(
                    "",
                    &format!("{} % CPU, {} % memory", f.cpu_pct, f.memory_pct)
                )
            );
        }
        let by_priority = |p: Priority| in_group.iter().filter(|v| v.priority == p).count();
        let _ = write!(
            page.body,
            "<tr data-kind=\"PRIORITY\">{}{}{}</tr>",
            td("", "priority"),
            td("", "VMs by relocation priority"),
            td(
                "",
                &format!(
                    "{} high, {} medium, {} low",
                    by_priority(Priority::High),
                    by_priority(Priority::Medium),
                    by_priority(Priority::Low)
                )
            )
        );
        page.push("</tbody></table>\n");
        let _ = writeln!(
            page.body,
            "<p class=\"note\">Restart policy {}, VM failure detection {} (VMFDT {}), restart budget {} in {}.</p>",
            esc(p.restart_policy.as_str()),
            esc(&p.detection_speed.as_str().to_ascii_lowercase()),
            esc(&crate::params::show_ms(p.vmfdt_ms(p.detection_speed))),
            p.vm_restart_limit,
            esc(&crate::fde::show_window(p.vm_restart_window_ms)),
        );
        page.push("<h3>Hosts</h3>\n");
        page.push(&host_table(ctx, &board, hosts));
        page.push("<h3>VMs</h3>\n");
        page.push(&vm_table(
            &board,
            &book,
            &in_group,
            ctx.now_ms,
            "No VM in this host group.",
        ));
        page.push("</section>\n");
    }
    let homeless: Vec<&VmRow> = board
        .vms
        .iter()
        .filter(|v| board.vm_group(v).is_none())
        .collect();
    if !homeless.is_empty() {
        page.push("<section class=\"group\" data-group=\"\">\n<h2>VMs on no known host</h2>\n");
        page.push(&vm_table(&board, &book, &homeless, ctx.now_ms, ""));
        page.push("</section>\n");
    }
    Ok(respond(ctx, req, page))
}

fn policy_label(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Collocation => "collocation",
        PolicyKind::Anticollocation => "anticollocation",
        PolicyKind::Workgroup => "workgroup",
    }
}

/// The "needs attention" list of the overview.
fn attention(
    ctx: &Ctx<'_>,
    board: &Board,
    book: &BudgetBook,
    pending: &[hsdb::PendingRow],
    pending_total: i64,
) -> hsdb::Result<String> {
    let mut items: Vec<String> = Vec::new();
    for vm in &board.vms {
        let h = board.health(vm);
        if matches!(h.health, Health::Failed | Health::Missing) {
            items.push(format!(
                "<li class=\"health-{}\" data-uuid=\"{}\">VM {} {}: {}</li>",
                h.health.as_str().to_ascii_lowercase(),
                vm.uuid,
                link(&format!("/vm/{}", vm.uuid), &vm_label(vm)),
                h.health.as_str(),
                esc(&h.why)
            ));
        }
    }
    for o in &board.open {
        let vm = board.vms.iter().find(|v| v.uuid == o.row.vm);
        items.push(format!(
            "<li class=\"relocation\">{} {} of VM {} in phase {}{}</li>",
            link(
                &format!("/relocation/{}", o.row.id),
                &format!("Relocation {}", o.row.id)
            ),
            esc(&o.row.kind.as_str().to_ascii_lowercase()),
            esc(&vm.map_or(o.row.vm.to_string(), vm_label)),
            esc(&o.row.phase),
            esc(&o
                .cause
                .as_deref()
                .map(|c| format!(" (cause {c})"))
                .unwrap_or_default()),
        ));
    }
    for hm in &board.hms {
        let group = board.host(hm.host).map(|h| h.host_group.as_str());
        let silent_after = book.params(group).hm_silent_after_ms;
        let silent = Board::silent(hm, ctx.now_ms, silent_after);
        if hm.state == HmState::Down || silent {
            let why = if hm.state == HmState::Down {
                format!("DOWN (reason {:#x})", hm.reason)
            } else {
                format!(
                    "silent for {} (hm_silent_after {})",
                    super::html::age_text(ctx.now_ms - hm.last_hb_ms),
                    crate::params::show_ms(silent_after)
                )
            };
            items.push(format!(
                "<li class=\"monitor\" data-hm=\"{}\">Monitor {} on {}: {}</li>",
                hm.uuid,
                hm.uuid,
                link(
                    &format!("/host/{}", url_part(&board.host_name(Some(hm.host)))),
                    &board.host_name(Some(hm.host))
                ),
                esc(&why)
            ));
        }
    }
    for (uuid, since) in ctx.db.vanished_vms()? {
        let name = board
            .vms
            .iter()
            .find(|v| v.uuid == uuid)
            .map_or(uuid.to_string(), vm_label);
        items.push(format!(
            "<li class=\"vanished\" data-uuid=\"{uuid}\">VM {} vanished from the platform \
             (discovery, since {})</li>",
            link(&format!("/vm/{uuid}"), &name),
            esc(&when(since))
        ));
    }
    for (group, _) in board.groups() {
        for r in ctx.db.open_operator_requests(&group)? {
            let what = match (r.kind, r.vm) {
                (hsdb::RequestKind::Move, Some(vm)) => format!(
                    "move of VM {}",
                    board
                        .vms
                        .iter()
                        .find(|v| v.uuid == vm)
                        .map_or(vm.to_string(), vm_label)
                ),
                (kind, _) => format!(
                    "{} of host {}",
                    kind.as_str().to_ascii_lowercase(),
                    board.host_name(Some(r.host))
                ),
            };
            items.push(format!(
                "<li class=\"request\" data-request=\"{}\">Operator request {} ({}): {} by {}{}</li>",
                r.id,
                r.id,
                r.state.as_str(),
                esc(&what),
                esc(&r.requested_by),
                esc(&if r.progress.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", r.progress)
                }),
            ));
        }
    }
    for (host, since) in &board.maintenance {
        items.push(format!(
            "<li class=\"maintenance\">Host {} in maintenance since {}</li>",
            link(
                &format!("/host/{}", url_part(&board.host_name(Some(*host)))),
                &board.host_name(Some(*host))
            ),
            esc(&when(*since))
        ));
    }
    let mut out = String::from("<section class=\"attention\">\n<h2>Needs attention</h2>\n");
    if items.is_empty() {
        out.push_str("<p class=\"empty ok\">Nothing needs attention.</p>\n");
    } else {
        out.push_str("<ul class=\"attention\">\n");
        for i in items {
            out.push_str(&i);
            out.push('\n');
        }
        out.push_str("</ul>\n");
    }
    if pending_total > 0 {
        let _ = writeln!(
            out,
            "<h3>NeedsAttention items awaiting the controller ({pending_total})</h3>\n\
             <p class=\"note\">The controller leading each host group reads these at its next \
             NeedsAttention and acknowledges them; items stay here while no controller runs. \
             An item a reply reported carries its hsTag.</p>\n<table class=\"pending\">{}<tbody>",
            thead(&["Item", "Kind", "VM", "What", "Since", "hsTag", ""])
        );
        let names: HashMap<Uuid, String> =
            board.vms.iter().map(|v| (v.uuid, vm_label(v))).collect();
        for p in pending {
            let vm =
                p.vm.map(|u| names.get(&u).cloned().unwrap_or_else(|| u.to_string()))
                    .unwrap_or_else(|| "-".to_owned());
            let ack = p
                .tag
                .map(|t| action_form(ctx, "ack", &[("tag", &t.to_string())], "Acknowledge"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<tr data-pending=\"{}\">{}{}{}{}<td>{}</td>{}<td>{ack}</td></tr>",
                p.id,
                td("", &p.id.to_string()),
                td("", p.kind.as_str()),
                td("", &vm),
                td("", &p.describe()),
                time_el(p.created_ms),
                td("", &p.tag.map_or("-".to_owned(), |t| t.to_string())),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
    Ok(out)
}

/// `/hosts`: every host and every monitor.
pub fn hosts(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let board = Board::load(ctx.db)?;
    let book = BudgetBook::load(ctx.db, &board, profile(ctx), ctx.now_ms)?;
    let mut page = Page::new("Hosts", "hosts");
    page.heading();
    let hosts: Vec<&HostRecord> = board.hosts.iter().collect();
    page.push(&host_table(ctx, &board, &hosts));
    page.push("<h2>Monitors</h2>\n");
    let hms: Vec<&HmRow> = board.hms.iter().collect();
    page.push(&hm_table(ctx, &board, &book, &hms)?);
    Ok(respond(ctx, req, page))
}

/// `/host/<name>`: summary, monitors, VMs, operator requests.
pub fn host(ctx: &mut Ctx<'_>, req: &Request, name: &str) -> Outcome {
    let board = Board::load(ctx.db)?;
    let Some(host) = board.hosts.iter().find(|h| h.name == name) else {
        return Ok(error_page(
            ctx,
            404,
            "No such host",
            &format!("The HSDB has no host named {name:?}."),
        ));
    };
    let book = BudgetBook::load(ctx.db, &board, profile(ctx), ctx.now_ms)?;
    let mut page = Page::new(format!("Host {}", host.name), "hosts");
    page.heading();
    let maintenance = board.maintenance.get(&host.id);
    let _ = writeln!(
        page.body,
        "<dl class=\"summary\" data-host=\"{}\">",
        esc(&host.name)
    );
    let mut dd = |k: &str, v: &str| {
        let _ = writeln!(page.body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    dd("Id", &host.id.to_string());
    dd("Host group", &host.host_group);
    dd("CPU", &cpus_text(host.cpu_milli));
    dd("Memory", &memory_text(host.memory_mb));
    dd(
        "Machine type / model / serial",
        &format!("{} / {} / {}", host.machine_type, host.model, host.serial),
    );
    dd(
        "Maintenance",
        &maintenance.map_or("no".to_owned(), |t| format!("since {}", when(*t))),
    );
    let vms_here: Vec<&VmRow> = board
        .vms
        .iter()
        .filter(|v| v.current_host == Some(host.id))
        .collect();
    let cpu_used: u64 = vms_here.iter().map(|v| u64::from(v.cpu_milli)).sum();
    let mem_used: u64 = vms_here.iter().map(|v| u64::from(v.memory_mb)).sum();
    dd(
        "VMs here use",
        &format!(
            "{} of {} CPU, {} of {} MiB memory",
            cpus_text(u32::try_from(cpu_used).unwrap_or(u32::MAX)),
            cpus_text(host.cpu_milli),
            mem_used,
            host.memory_mb
        ),
    );
    page.push("</dl>\n");
    let acts = host_actions(ctx, host, maintenance.is_some());
    if !acts.is_empty() {
        let _ = writeln!(page.body, "<div class=\"actions\">{acts}</div>");
    }
    page.push("<h2>Monitors</h2>\n");
    let hms: Vec<&HmRow> = board.hms.iter().filter(|m| m.host == host.id).collect();
    page.push(&hm_table(ctx, &board, &book, &hms)?);
    page.push("<h2>VMs on this host</h2>\n");
    page.push(&vm_table(
        &board,
        &book,
        &vms_here,
        ctx.now_ms,
        "No VM runs here.",
    ));
    let away: Vec<&VmRow> = board
        .vms
        .iter()
        .filter(|v| v.home_host == Some(host.id) && v.current_host != Some(host.id))
        .collect();
    if !away.is_empty() {
        page.push("<h2>VMs whose home is this host, running elsewhere</h2>\n");
        page.push(&vm_table(&board, &book, &away, ctx.now_ms, ""));
    }
    let requests = ctx.db.operator_requests_of(host.id, 20)?;
    page.push("<h2>Operator requests</h2>\n");
    if requests.is_empty() {
        page.push("<p class=\"empty\">No evacuation or restore was requested for this host.</p>\n");
    } else {
        page.push("<table class=\"requests\">");
        page.push(&thead(&[
            "Id",
            "Kind",
            "State",
            "Requested by",
            "Requested",
            "Progress",
            "Result",
        ]));
        page.push("<tbody>\n");
        for r in &requests {
            let _ = writeln!(
                page.body,
                "<tr data-request=\"{}\" data-state=\"{}\">{}{}{}{}<td>{}</td>{}{}</tr>",
                r.id,
                r.state.as_str(),
                td("", &r.id.to_string()),
                td("", r.kind.as_str()),
                td("", r.state.as_str()),
                td("", &r.requested_by),
                time_el(r.created_ms),
                td("", &r.progress),
                td("", r.result.as_deref().unwrap_or("-")),
            );
        }
        page.push("</tbody></table>\n");
    }
    Ok(respond(ctx, req, page))
}

/// `/vms`: every VM.
pub fn vms(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let board = Board::load(ctx.db)?;
    let book = BudgetBook::load(ctx.db, &board, profile(ctx), ctx.now_ms)?;
    let mut page = Page::new("VMs", "vms");
    page.heading();
    let all: Vec<&VmRow> = board.vms.iter().collect();
    page.push(&vm_table(
        &board,
        &book,
        &all,
        ctx.now_ms,
        "No VM in the HSDB yet (agents appear when a monitor discovers them).",
    ));
    Ok(respond(ctx, req, page))
}

/// `/vm/<name-or-uuid>`: everything about one VM.
pub fn vm(ctx: &mut Ctx<'_>, req: &Request, given: &str) -> Outcome {
    let board = Board::load(ctx.db)?;
    let vm = match find_vm(&board.vms, given) {
        Ok(vm) => vm.clone(),
        Err(e) => {
            let status = if e.contains("VMs are named") {
                400
            } else {
                404
            };
            return Ok(error_page(ctx, status, "No such VM", &e));
        }
    };
    let book = BudgetBook::load(ctx.db, &board, profile(ctx), ctx.now_ms)?;
    let label = vm_label(&vm);
    let h = board.health(&vm);
    let group = board.vm_group(&vm).map(str::to_owned);
    let p = book.params(group.as_deref());
    let vp = p.for_vm(&vm);
    let budgets = book.of(&vm, group.as_deref(), ctx.now_ms);
    let mut page = Page::new(format!("VM {label}"), "vms");
    page.heading();
    // The contract-B row first, so the live script finds it here too.
    page.push(&vm_table(&board, &book, &[&vm], ctx.now_ms, ""));
    page.push("<dl class=\"summary\">\n");
    let mut dd = |k: &str, v: &str| {
        let _ = writeln!(page.body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    dd("UUID", &vm.uuid.to_string());
    dd("Name", if vm.name.is_empty() { "-" } else { &vm.name });
    dd("State", vm.state.as_str());
    dd("Health", &format!("{}: {}", h.health.as_str(), h.why));
    dd("Host", &board.host_name(vm.current_host));
    dd("Home host", &board.host_name(vm.home_host));
    dd("Host group", group.as_deref().unwrap_or("-"));
    dd("Managed", yes(vm.managed));
    dd(
        "Heartbeat monitoring",
        if vp.ha_monitor { "enabled" } else { "disabled" },
    );
    dd("Priority", vm.priority.as_str());
    dd(
        "Failure detection",
        &format!(
            "{} (VMFDT {})",
            vp.detection_speed.as_str().to_ascii_lowercase(),
            crate::params::show_ms(vp.vmfdt_ms)
        ),
    );
    dd("CPU", &cpus_text(vm.cpu_milli));
    dd("Memory", &memory_text(vm.memory_mb));
    dd("OS", vm.ostype.as_deref().unwrap_or("-"));
    dd(
        "Restart budget",
        &format!("{} (vm_restart_limit, vm_restart_window)", budgets.text()),
    );
    dd(
        "Application restarts on its host",
        &format!(
            "{}/{} (same-host restarts since its last relocation, within 24 h; then it is relocated)",
            budgets.ladder, budgets.ladder_limit
        ),
    );
    dd("Doorbells pending", &format!("{:#x}", vm.short_msg));
    dd("Updated", &when(vm.updated_ms));
    page.push("</dl>\n");
    // What discovery last found on the platform.
    page.push("<h2>On the platform (discovery)</h2>\n");
    match ctx.db.vm_discovery(&vm.uuid)? {
        None => page
            .push("<p class=\"empty\">No discovery has found this VM on the platform yet.</p>\n"),
        Some(d) => {
            let _ = writeln!(
                page.body,
                "<dl class=\"summary\" data-vanished=\"{}\">",
                yes(d.vanished_ms.is_some())
            );
            let mut dd = |k: &str, v: &str| {
                let _ = writeln!(page.body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
            };
            dd("Platform name", &d.name);
            dd("Power state", &d.power);
            dd("Found on", &board.host_name(d.host));
            dd(
                "Size",
                &format!(
                    "{} CPU, {}",
                    cpus_text(d.cpu_milli),
                    memory_text(d.memory_mb)
                ),
            );
            dd("First found", &d.first_seen_ms.map_or("-".to_owned(), when));
            dd("Last found", &d.last_seen_ms.map_or("-".to_owned(), when));
            dd(
                "Vanished",
                &d.vanished_ms.map_or("no".to_owned(), |t| {
                    format!("since {} (the platform no longer lists it)", when(t))
                }),
            );
            page.push("</dl>\n");
        }
    }
    // Actions.
    if ctx.user.role == crate::dash::Role::Operator && vm.current_host.is_none() {
        let _ = writeln!(
            page.body,
            "<div class=\"actions\">{}</div>",
            action_form(
                ctx,
                "ack",
                &[("vm", &vm.uuid.to_string())],
                "Acknowledge its reported items"
            ),
        );
    } else if ctx.user.role == crate::dash::Role::Operator {
        let mut targets = String::from("<option value=\"\">the control plane chooses</option>");
        if let Some(g) = &group {
            for host in board.hosts.iter().filter(|x| &x.host_group == g) {
                if Some(host.id) != vm.current_host {
                    let _ = write!(
                        targets,
                        "<option value=\"{0}\">{0}</option>",
                        esc(&host.name)
                    );
                }
            }
        }
        let _ = writeln!(
            page.body,
            "<div class=\"actions\"><form class=\"action\" method=\"post\" action=\"/action/move-plan\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"vm\" value=\"{}\">\
             <label>Move to <select name=\"target\">{targets}</select></label> \
             <button type=\"submit\" data-action=\"move-plan\">Plan the move…</button></form>{}</div>",
            esc(ctx.csrf),
            vm.uuid,
            action_form(
                ctx,
                "ack",
                &[("vm", &vm.uuid.to_string())],
                "Acknowledge its reported items"
            ),
        );
    }
    // Heartbeats per monitor.
    page.push("<h2>Heartbeats per monitor</h2>\n");
    let rows = board.heartbeats(&vm.uuid);
    if rows.is_empty() {
        page.push("<p class=\"empty\">No monitor has seen this VM.</p>\n");
    } else {
        page.push("<table class=\"heartbeats\">");
        page.push(&thead(&[
            "Monitor",
            "On host",
            "Heartbeats",
            "Missed for",
            "Last change",
            "MAC",
        ]));
        page.push("<tbody>\n");
        for r in rows {
            let _ = writeln!(
                page.body,
                "<tr data-hm=\"{}\" data-vm-hb=\"{}\" data-state=\"{}\">{}{}{}{}<td>{}</td>{}</tr>",
                r.hm,
                vm.uuid,
                r.last_state.as_str(),
                td("", &r.hm.to_string()),
                td("", &board.host_name(board.hm_host(&r.hm))),
                td("hb-state", r.last_state.as_str()),
                age_td("hb-missed", r.hb_missed_ms, ctx.now_ms),
                time_el(r.updated_ms),
                td("", &r.mac.map_or("-".to_owned(), |m| m.to_string())),
            );
        }
        page.push("</tbody></table>\n");
    }
    // Policies.
    page.push("<h2>Policies</h2>\n");
    let sets = ctx.db.policies(None)?;
    let mine = crate::cli::policy::sets_of(&sets, &vm.uuid);
    let excluded: Vec<String> = ctx
        .db
        .exclusions(Some(&vm.uuid))?
        .into_iter()
        .map(|e| board.host_name(Some(e.host)))
        .collect();
    page.push("<ul class=\"policies\">\n");
    let _ = writeln!(
        page.body,
        "<li>Policies: {}</li>\n<li>Never relocated to: {}</li>\n<li>Relocation priority: {}</li>",
        esc(&if mine.is_empty() {
            "none".to_owned()
        } else {
            mine.join(", ")
        }),
        esc(&if excluded.is_empty() {
            "no host excluded".to_owned()
        } else {
            excluded.join(", ")
        }),
        vm.priority.as_str(),
    );
    page.push("</ul>\n");
    // Applications.
    page.push("<h2>Applications</h2>\n");
    let apps = ctx.db.apps(&vm.uuid)?;
    page.push(&app_table(&apps, &HashMap::new(), false, ctx.now_ms));
    // Moves an operator asked for.
    let moves = ctx.db.move_requests_of(&vm.uuid, 10)?;
    if !moves.is_empty() {
        page.push("<h2>Move requests</h2>\n<table class=\"requests\">");
        page.push(&thead(&[
            "Id",
            "To",
            "State",
            "Requested by",
            "Requested",
            "Progress",
            "Result",
        ]));
        page.push("<tbody>\n");
        for r in &moves {
            let _ = writeln!(
                page.body,
                "<tr data-request=\"{}\" data-state=\"{}\">{}{}{}{}<td>{}</td>{}{}</tr>",
                r.id,
                r.state.as_str(),
                td("", &r.id.to_string()),
                td(
                    "",
                    &r.target_host
                        .map_or("the planner's best host".to_owned(), |h| board
                            .host_name(Some(h)))
                ),
                td("", r.state.as_str()),
                td("", &r.requested_by),
                time_el(r.created_ms),
                td("", &r.progress),
                td("", r.result.as_deref().unwrap_or("-")),
            );
        }
        page.push("</tbody></table>\n");
    }
    // Relocations.
    page.push("<h2>Relocations</h2>\n");
    let rels = ctx.db.relocations(Some(&vm.uuid), 20)?;
    page.push(&records::relocation_table(
        ctx,
        &board,
        &rels,
        Some(&vm.uuid),
    )?);
    // Events.
    page.push("<h2>Events</h2>\n");
    let events = ctx.db.events_newest(&hsdb::EventFilter {
        vm: Some(vm.uuid),
        limit: 20,
        ..hsdb::EventFilter::default()
    })?;
    page.push(&records::event_table(&board, &events, None));
    let _ = writeln!(
        page.body,
        "<p><a href=\"/events?vm={}\">All events of this VM</a></p>",
        vm.uuid
    );
    Ok(respond(ctx, req, page))
}

/// An application table (`with_vm`: a VM column first, from `names`).
fn app_table(
    apps: &[hsdb::AppRow],
    names: &HashMap<Uuid, String>,
    with_vm: bool,
    now_ms: i64,
) -> String {
    if apps.is_empty() {
        return "<p class=\"empty\">No application reported (the agent's report lists none, or none was fetched yet).</p>\n".to_owned();
    }
    let mut headers = Vec::new();
    if with_vm {
        headers.push("VM");
    }
    headers.extend([
        "Application",
        "State",
        "Colour",
        "Critical",
        "Monitored",
        "Restarts",
        "Monitor",
        "Since",
        "Detail",
    ]);
    let mut out = format!("<table class=\"apps\">{}<tbody>\n", thead(&headers));
    for a in apps {
        let _ = write!(
            out,
            "<tr data-app=\"{}\" data-vm-uuid=\"{}\" data-colour=\"{}\" data-state=\"{}\">",
            esc(&a.name),
            a.vm,
            a.colour.as_str(),
            a.state.as_str()
        );
        if with_vm {
            let n = names
                .get(&a.vm)
                .cloned()
                .unwrap_or_else(|| a.vm.to_string());
            let _ = write!(out, "<td>{}</td>", link(&format!("/vm/{}", a.vm), &n));
        }
        let _ = writeln!(
            out,
            "{}{}<td class=\"colour\"><span class=\"swatch {}\"></span>{}</td>{}{}{}{}{}{}</tr>",
            td("", &a.name),
            td("app-state", a.state.as_str()),
            a.colour.as_str().to_ascii_lowercase(),
            a.colour.as_str(),
            td("", yes(a.critical)),
            td("", yes(a.monitored)),
            td("", &format!("{}/{}", a.restarts, a.max_restart)),
            td("", a.monitor.as_str()),
            age_td("app-since", a.since_ms, now_ms),
            td("", &a.detail),
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// `/apps`: the applications of every VM.
pub fn apps(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let vms = ctx.db.vms()?;
    let names: HashMap<Uuid, String> = vms.iter().map(|v| (v.uuid, vm_label(v))).collect();
    let mut apps = ctx.db.all_apps()?;
    apps.sort_by(|a, b| {
        names
            .get(&a.vm)
            .cmp(&names.get(&b.vm))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut page = Page::new("Applications", "apps");
    page.heading();
    page.push("<p class=\"note\">What each VM's agent last reported about its applications (a critical application in FAILURE is escalated: restart on its host, then relocation).</p>\n");
    page.push(&app_table(&apps, &names, true, ctx.now_ms));
    Ok(respond(ctx, req, page))
}
