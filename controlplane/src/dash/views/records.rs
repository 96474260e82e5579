//! The pages about what happened: events (`/events`, `/event/<id>`), relocations
//! (`/relocations`, `/relocation/<id>`) and the discovery / verify activities
//! (`/activities`).

use std::collections::HashMap;
use std::fmt::Write as _;

use hsdb::{EventFilter, EventRow, RelocationRow, Uuid};

use super::board::{Board, vm_label};
use super::catalog::{EventClass, is_maintenance};
use super::html::{Page, action_form, esc, link, td, thead, time_el, url_part, when};
use super::pages::{Outcome, error_page, respond};
use crate::dash::{Ctx, Request};
use crate::events::severity_of;

/// Events per page unless `?limit=` says otherwise.
pub const EVENTS_PER_PAGE: u32 = 50;
/// Most events one page shows.
pub const MAX_EVENTS_PER_PAGE: u32 = 500;
/// Relocations on `/relocations`.
pub const RELOCATIONS_PER_PAGE: u32 = 100;

/// The explanation stored with a relocation (the decision's `--dry-run` text), when the
/// HSDB has it.
pub fn reasons_of(row: &RelocationRow) -> Option<String> {
    row.reasons.clone()
}

/// The cell shown for a relocation's reasons: the text, or "—" while none is stored.
fn reasons_td(row: &RelocationRow) -> String {
    match reasons_of(row) {
        Some(text) if !text.trim().is_empty() => td("reasons", &text),
        _ => "<td class=\"reasons none\">—</td>".to_owned(),
    }
}

/// A relocation table (newest first) of `rows`; with `vm`, the VM column is left out.
pub fn relocation_table(
    ctx: &Ctx<'_>,
    board: &Board,
    rows: &[RelocationRow],
    vm: Option<&Uuid>,
) -> hsdb::Result<String> {
    let mut out = String::new();
    let mut headers = vec!["Id"];
    if vm.is_none() {
        headers.push("VM");
    }
    headers.extend([
        "Kind", "Cause", "From", "To", "Phase", "Started", "Ended", "Result", "Steps", "Reasons",
    ]);
    let live = vm.map_or(String::new(), |u| format!(" data-vm-filter=\"{u}\""));
    let _ = writeln!(
        out,
        "<table class=\"relocations\">{}<tbody data-live=\"relocations\"{live}>",
        thead(&headers)
    );
    if rows.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"12\">No relocation yet.</td></tr>\n");
    }
    let names: HashMap<Uuid, String> = board.vms.iter().map(|v| (v.uuid, vm_label(v))).collect();
    for r in rows {
        let steps = ctx.db.relocation_steps(r.id)?;
        let cause = steps
            .iter()
            .find_map(|s| s.phase.strip_prefix("cause "))
            .unwrap_or("-")
            .to_owned();
        let name = names
            .get(&r.vm)
            .cloned()
            .unwrap_or_else(|| r.vm.to_string());
        let state = match (&r.ended_ms, &r.result) {
            (None, _) => "in-progress",
            (Some(_), Some(res)) if res.to_ascii_lowercase().starts_with("success") => "succeeded",
            (Some(_), _) => "failed",
        };
        let _ = write!(
            out,
            "<tr data-relocation=\"{}\" data-vm=\"{}\" data-vm-uuid=\"{}\" data-kind=\"{}\" \
             data-phase=\"{}\" data-outcome=\"{state}\"><td>{}</td>",
            r.id,
            esc(&name),
            r.vm,
            r.kind.as_str(),
            esc(&r.phase),
            link(&format!("/relocation/{}", r.id), &r.id.to_string()),
        );
        if vm.is_none() {
            let _ = write!(out, "<td>{}</td>", link(&format!("/vm/{}", r.vm), &name));
        }
        let step_text = steps
            .iter()
            .map(|s| format!("{} {}", crate::cli::table::utc(s.at_ms), s.phase))
            .collect::<Vec<_>>()
            .join("\n");
        let _ = writeln!(
            out,
            "{}{}{}{}{}<td>{}</td><td>{}</td>{}<td class=\"steps\"><details><summary>{}</summary><pre>{}</pre></details></td>{}</tr>",
            td("kind", r.kind.as_str()),
            td("cause", &cause),
            td("from", &board.host_name(r.from_host)),
            td("to", &board.host_name(r.to_host)),
            td("phase", &r.phase),
            time_el(r.started_ms),
            r.ended_ms.map_or("-".to_owned(), time_el),
            td(
                "result",
                r.result.as_deref().unwrap_or(if r.ended_ms.is_none() {
                    "in progress"
                } else {
                    "-"
                })
            ),
            steps.len(),
            esc(&step_text),
            reasons_td(r),
        );
    }
    out.push_str("</tbody></table>\n");
    Ok(out)
}

/// `/relocations`: newest first.
pub fn relocations(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let board = Board::load(ctx.db)?;
    let rows = ctx.db.relocations(None, RELOCATIONS_PER_PAGE)?;
    let mut page = Page::new("Relocations", "relocations");
    page.heading();
    let _ = writeln!(
        page.body,
        "<p class=\"note\">Every restart (same host), relocation (another host) and move, newest \
         first (the newest {RELOCATIONS_PER_PAGE}). Reasons: the decision's explanation as \
         <code>hactl relocate --dry-run</code> prints it — the target and why, why not each \
         other host.</p>"
    );
    page.push(&relocation_table(ctx, &board, &rows, None)?);
    Ok(respond(ctx, req, page))
}

/// `/relocation/<id>`: one relocation with its steps and reasons.
pub fn relocation(ctx: &mut Ctx<'_>, req: &Request, id: &str) -> Outcome {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(error_page(
            ctx,
            400,
            "Bad relocation id",
            &format!("{id:?} is not a relocation id (a whole number)."),
        ));
    };
    let Some(row) = ctx.db.relocation(id)? else {
        return Ok(error_page(
            ctx,
            404,
            "No such relocation",
            &format!("The HSDB has no relocation {id}."),
        ));
    };
    let board = Board::load(ctx.db)?;
    let mut page = Page::new(format!("Relocation {id}"), "relocations");
    page.heading();
    page.push(&relocation_table(
        ctx,
        &board,
        std::slice::from_ref(&row),
        None,
    )?);
    page.push("<h2>Reasons</h2>\n");
    match reasons_of(&row) {
        Some(text) => {
            let _ = writeln!(page.body, "<pre class=\"reasons\">{}</pre>", esc(&text));
        }
        None => {
            page.push("<p class=\"empty\">—: no explanation stored with this relocation.</p>\n")
        }
    }
    Ok(respond(ctx, req, page))
}

/// An event table; `live` names the filter the live script applies to new rows (`None`:
/// no live insertion, e.g. an older page).
pub fn event_table(board: &Board, rows: &[EventRow], live: Option<&str>) -> String {
    let names: HashMap<Uuid, String> = board.vms.iter().map(|v| (v.uuid, vm_label(v))).collect();
    let live = live.map_or(String::new(), |f| {
        format!(" data-live=\"events\" data-filter=\"{}\"", esc(f))
    });
    let mut out = format!(
        "<table class=\"events\">{}<tbody{live}>\n",
        thead(&["Id", "Time", "Severity", "Event", "VM", "Host", "Text"])
    );
    if rows.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"7\">No event.</td></tr>\n");
    }
    for e in rows {
        let severity = severity_of(&e.kind);
        let vm =
            e.vm.map(|u| {
                link(
                    &format!("/vm/{u}"),
                    &names.get(&u).cloned().unwrap_or_else(|| u.to_string()),
                )
            })
            .unwrap_or_else(|| "-".to_owned());
        // The host of the event's monitor. An event without one names no host: the
        // VM's host now may not be where it was when the event happened (a VM failure
        // event would show the relocation's target).
        let host =
            e.hm.and_then(|hm| board.hm_host(&hm))
                .map(|h| board.host_name(Some(h)));
        let host = host.map_or("-".to_owned(), |h| {
            link(&format!("/host/{}", url_part(&h)), &h)
        });
        let _ = writeln!(
            out,
            "<tr data-event=\"{0}\" data-severity=\"{1}\" data-kind=\"{2}\" data-maintenance=\"{3}\" \
             data-href=\"/event/{0}\"><td>{4}</td><td>{5}</td><td class=\"severity\">{1}</td>\
             <td class=\"kind\">{2}</td><td>{vm}</td><td>{host}</td>{6}</tr>",
            e.id,
            severity.as_str(),
            esc(&e.kind),
            if is_maintenance(&e.kind) { "yes" } else { "no" },
            link(&format!("/event/{}", e.id), &e.id.to_string()),
            time_el(e.created_ms),
            td("text", &e.text),
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// `/events?severity=…&vm=…&before=…&limit=…`: newest first, filtered, paged.
pub fn events(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let class = match req.param("severity").filter(|s| !s.is_empty()) {
        None | Some("all") => None,
        Some(word) => match EventClass::parse(word) {
            Some(c) => Some(c),
            None => {
                return Ok(error_page(
                    ctx,
                    400,
                    "Bad filter",
                    &format!(
                        "severity={word:?} is not a filter: expected critical, error, warning, \
                         maintenance, info or all."
                    ),
                ));
            }
        },
    };
    let before = match req.param("before").filter(|s| !s.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Ok(error_page(
                    ctx,
                    400,
                    "Bad page",
                    &format!("before={b:?} is not an event id (a whole number above 0)."),
                ));
            }
        },
    };
    let limit = match req.param("limit").filter(|s| !s.is_empty()) {
        None => EVENTS_PER_PAGE,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_EVENTS_PER_PAGE).contains(&n) => n,
            _ => {
                return Ok(error_page(
                    ctx,
                    400,
                    "Bad page size",
                    &format!(
                        "limit={l:?} is not a page size: expected 1 to {MAX_EVENTS_PER_PAGE}."
                    ),
                ));
            }
        },
    };
    let board = Board::load(ctx.db)?;
    let vm = match req.param("vm").filter(|s| !s.is_empty()) {
        None => None,
        Some(given) => match super::board::find_vm(&board.vms, given) {
            Ok(vm) => Some(vm.uuid),
            Err(e) => return Ok(error_page(ctx, 404, "No such VM", &e)),
        },
    };
    let (kinds, exclude) = match class {
        Some(c) => {
            let (k, x) = c.kinds();
            (Some(k), x)
        }
        None => (None, false),
    };
    // One more than shown tells whether an older page exists.
    let mut rows = ctx.db.events_newest(&EventFilter {
        before,
        kinds,
        exclude,
        vm,
        limit: limit + 1,
    })?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut page = Page::new("Events", "events");
    page.heading();
    let keep = |extra: &str| {
        let mut q = Vec::new();
        if let Some(u) = vm {
            q.push(format!("vm={u}"));
        }
        if limit != EVENTS_PER_PAGE {
            q.push(format!("limit={limit}"));
        }
        if !extra.is_empty() {
            q.push(extra.to_owned());
        }
        q.join("&")
    };
    page.push("<nav class=\"filters\" aria-label=\"severity\">");
    let all_q = keep("");
    let _ = write!(
        page.body,
        "<a href=\"/events{}{}\" data-filter=\"all\"{}>All</a>",
        if all_q.is_empty() { "" } else { "?" },
        esc(&all_q),
        if class.is_none() {
            " aria-current=\"page\""
        } else {
            ""
        }
    );
    for c in EventClass::ALL {
        let _ = write!(
            page.body,
            "<a href=\"/events?{}\" data-filter=\"{}\" class=\"sev-{}\"{}>{}</a>",
            esc(&keep(&format!("severity={}", c.as_str()))),
            c.as_str(),
            c.as_str(),
            if class == Some(c) {
                " aria-current=\"page\""
            } else {
                ""
            },
            c.label()
        );
    }
    page.push("</nav>\n");
    if let Some(u) = vm {
        let _ = writeln!(
            page.body,
            "<p class=\"note\">Events of VM {}.</p>",
            link(&format!("/vm/{u}"), &u.to_string())
        );
    }
    // New events are inserted live only on the first page (the newest).
    let live = if before.is_none() && vm.is_none() {
        Some(class.map_or("all", EventClass::as_str))
    } else {
        None
    };
    page.push(&event_table(&board, &rows, live));
    if more && let Some(last) = rows.last() {
        let sev = class
            .map(|c| format!("severity={}&", c.as_str()))
            .unwrap_or_default();
        let _ = writeln!(
            page.body,
            "<p class=\"paging\"><a rel=\"next\" href=\"/events?{}\">Older events →</a></p>",
            esc(&format!("{sev}{}", keep(&format!("before={}", last.id))))
        );
    }
    if before.is_some() {
        let sev = class
            .map(|c| format!("?severity={}", c.as_str()))
            .unwrap_or_default();
        let _ = writeln!(
            page.body,
            "<p class=\"paging\"><a href=\"/events{}\">← Newest events</a></p>",
            esc(&sev)
        );
    }
    Ok(respond(ctx, req, page))
}

/// `/event/<id>`: every field of one event and the JSON document the notifiers send.
pub fn event(ctx: &mut Ctx<'_>, req: &Request, id: &str) -> Outcome {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(error_page(
            ctx,
            400,
            "Bad event id",
            &format!("{id:?} is not an event id (a whole number)."),
        ));
    };
    let Some(e) = ctx.db.event(id)? else {
        return Ok(error_page(
            ctx,
            404,
            "No such event",
            &format!("The HSDB has no event {id} (never written, or pruned by the retention)."),
        ));
    };
    let board = Board::load(ctx.db)?;
    let doc = crate::notify::EventDoc::of_row_in(&e, ctx.db);
    let json =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|err| format!("cannot encode: {err}"));
    let severity = severity_of(&e.kind);
    let kind_doc = crate::events::EventKind::by_name(&e.kind).map_or(
        "not in the catalogue (written by another writer)",
        |_| "in the catalogue",
    );
    let mut page = Page::new(format!("Event {id}"), "events");
    page.heading();
    let _ = writeln!(
        page.body,
        "<dl class=\"summary event\" data-event=\"{id}\" data-severity=\"{}\" data-kind=\"{}\">",
        severity.as_str(),
        esc(&e.kind)
    );
    let mut dd = |k: &str, v: String| {
        let _ = writeln!(page.body, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    dd("Id", id.to_string());
    dd("Time", esc(&when(e.created_ms)));
    dd("Event", format!("{} ({})", esc(&e.kind), esc(kind_doc)));
    dd(
        "Severity",
        format!(
            "<span class=\"severity sev-{0}\">{0}</span>",
            severity.as_str()
        ),
    );
    dd(
        "Maintenance",
        if is_maintenance(&e.kind) {
            "yes: planned work"
        } else {
            "no"
        }
        .to_owned(),
    );
    dd(
        "VM",
        e.vm.map_or("-".to_owned(), |u| {
            let name = board
                .vms
                .iter()
                .find(|v| v.uuid == u)
                .map_or(u.to_string(), vm_label);
            link(&format!("/vm/{u}"), &format!("{name} ({u})"))
        }),
    );
    dd(
        "Monitor",
        e.hm.map_or("-".to_owned(), |u| {
            let host = board.host_name(board.hm_host(&u));
            format!(
                "{} on {}",
                esc(&u.to_string()),
                link(&format!("/host/{}", url_part(&host)), &host)
            )
        }),
    );
    dd(
        "Text",
        format!("<span class=\"text\">{}</span>", esc(&e.text)),
    );
    page.push("</dl>\n<h2>JSON document (as the notifiers deliver it)</h2>\n");
    let _ = writeln!(page.body, "<pre class=\"json\">{}</pre>", esc(&json));
    let _ = writeln!(
        page.body,
        "<p><a href=\"/events?severity={}\">More {} events</a></p>",
        severity.as_str(),
        severity.as_str()
    );
    Ok(respond(ctx, req, page))
}

/// `/activities`: discovery and verify activities, and the actions to start them.
pub fn activities(ctx: &mut Ctx<'_>, req: &Request) -> Outcome {
    let board = Board::load(ctx.db)?;
    let mut page = Page::new("Discovery & verify", "activities");
    page.heading();
    page.push(
        "<p class=\"note\">Quick discovery asks the platform for its hosts and VMs; deep \
         discovery also reads each VM's size and definition; verify checks that the group can \
         absorb the loss of any one host. The controller leading the group carries them out \
         (and runs them on its schedule: quick hourly, deep daily — seed 004 L4475, L4607-4608).</p>\n",
    );
    for (group, _) in board.groups() {
        let mut acts = String::new();
        acts.push_str(&action_form(
            ctx,
            "discover",
            &[("group", &group), ("depth", "quick")],
            "Quick discovery",
        ));
        acts.push_str(&action_form(
            ctx,
            "discover",
            &[("group", &group), ("depth", "deep")],
            "Deep discovery",
        ));
        acts.push_str(&action_form(ctx, "verify", &[("group", &group)], "Verify"));
        if !acts.is_empty() {
            let _ = writeln!(
                page.body,
                "<div class=\"actions\" data-group=\"{0}\"><span class=\"group\">Host group {0}</span>{acts}</div>",
                esc(&group)
            );
        }
    }
    let rows = ctx.db.activities(None, ACTIVITIES_PER_PAGE)?;
    page.push(&activity_table(&rows));
    Ok(respond(ctx, req, page))
}

/// Activities on `/activities` (the newest).
pub const ACTIVITIES_PER_PAGE: usize = 100;

/// The activity table (newest first): `<tr data-activity data-kind data-state>`.
pub fn activity_table(rows: &[hsdb::ActivityRow]) -> String {
    let mut out = format!(
        "<table class=\"activities\">{}<tbody data-live=\"activities\">\n",
        thead(&[
            "Id",
            "Host group",
            "Activity",
            "State",
            "Requested by",
            "Requested",
            "Started",
            "Ended",
            "Progress",
            "Summary",
        ])
    );
    if rows.is_empty() {
        out.push_str("<tr class=\"empty\"><td colspan=\"10\">No activity yet.</td></tr>\n");
    }
    for a in rows {
        let _ = writeln!(
            out,
            "<tr data-activity=\"{}\" data-kind=\"{}\" data-state=\"{}\">{}{}{}{}{}<td>{}</td>\
             <td class=\"started\">{}</td><td class=\"ended\">{}</td>{}{}</tr>",
            a.id,
            a.kind.as_str(),
            a.state.as_str(),
            td("", &a.id.to_string()),
            td("group", &a.host_group),
            td("kind", activity_label(a.kind)),
            td("state", a.state.as_str()),
            td("by", &a.requested_by),
            time_el(a.created_ms),
            a.started_ms.map_or("-".to_owned(), time_el),
            a.ended_ms.map_or("-".to_owned(), time_el),
            td(
                "progress",
                if a.ended_ms.is_some() {
                    "-"
                } else {
                    &a.progress
                }
            ),
            td("summary", a.summary.as_deref().unwrap_or("-")),
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// `quick discovery`, `deep discovery`, `verify`.
pub fn activity_label(kind: hsdb::ActivityKind) -> &'static str {
    match kind {
        hsdb::ActivityKind::QuickDiscovery => "quick discovery",
        hsdb::ActivityKind::DeepDiscovery => "deep discovery",
        hsdb::ActivityKind::Verify => "verify",
    }
}
