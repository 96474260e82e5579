//! Moving one VM: the plan page `move-plan` answers with (the target, live or restart,
//! each reason), and the confirm form that sends `move` (docs/dashboard.md, "Moving a
//! VM"). The seed's GUI offers the same: choose a host or let the product decide, then
//! watch the move (seed 004 L17102-17107, L17138).

use std::fmt::Write as _;

use hsdb::{HostRecord, VmRow};

use super::board::vm_label;
use super::html::{Page, esc};
use crate::dash::{Ctx, Response};
use crate::relocate::MoveError;

/// What the planner says of a move, as the page shows it.
enum Planned {
    /// The move can be done: to `to`, live or by a restart, for these reasons.
    Plan {
        to: String,
        live: bool,
        explanation: Vec<String>,
    },
    /// It cannot be done now: why, and the planner's lines when it was asked.
    Refused {
        why: String,
        explanation: Vec<String>,
    },
}

/// Plan moving `vm` to `target` (the planner's best host when `None`) with the same
/// planner `hactl vm move --dry-run` uses (contract D, `relocate::plan_move`).
fn plan(ctx: &mut Ctx<'_>, vm: &VmRow, target: Option<&HostRecord>) -> Result<Planned, String> {
    match crate::relocate::plan_move(
        ctx.db,
        ctx.config,
        &vm.uuid,
        target.map(|t| t.id),
        ctx.now_ms,
    ) {
        Ok(p) => Ok(Planned::Plan {
            to: p
                .to_name
                .or_else(|| p.to.map(|h| format!("#{h}")))
                .unwrap_or_else(|| "-".to_owned()),
            live: p.live,
            explanation: p.explanation,
        }),
        Err(MoveError::Refused { why, explanation }) => Ok(Planned::Refused { why, explanation }),
        Err(e) => Err(e.to_string()),
    }
}

/// The page: what would happen, and the confirm form (operators only reach it).
pub fn plan_page(ctx: &mut Ctx<'_>, vm: &VmRow, target: Option<&HostRecord>) -> Response {
    let label = vm_label(vm);
    let from = vm
        .current_host
        .and_then(|h| ctx.db.host(h).ok().flatten())
        .map_or("-".to_owned(), |h| h.name);
    let mut page = Page::new(format!("Move VM {label}"), "vms");
    page.heading();
    let _ = writeln!(
        page.body,
        "<div class=\"plan\" data-vm=\"{}\" data-uuid=\"{}\" data-target=\"{}\">",
        esc(&label),
        vm.uuid,
        esc(target.map_or("", |t| t.name.as_str()))
    );
    let _ = writeln!(
        page.body,
        "<dl class=\"summary\"><dt>VM</dt><dd>{} ({})</dd><dt>Now on</dt><dd>{}</dd>\
         <dt>Asked for</dt><dd>{}</dd></dl>",
        esc(&label),
        vm.uuid,
        esc(&from),
        esc(
            &target.map_or("the host the control plane chooses".to_owned(), |t| {
                format!("host {}", t.name)
            })
        )
    );
    page.push("<h2>Plan</h2>\n");
    let mut movable = true;
    let planned = if vm.current_host.is_none() {
        Err(
            "it runs on no known host (no monitor has placed it yet): there is nothing to move \
             it from."
                .to_owned(),
        )
    } else {
        plan(ctx, vm, target)
    };
    let lines = match planned {
        Ok(Planned::Plan {
            to,
            live,
            explanation,
        }) => {
            let _ = writeln!(
                page.body,
                "<p class=\"verdict\" data-plan-target=\"{0}\" data-plan-live=\"{1}\">\
                 To <strong>{0}</strong>, by {2}.</p>",
                esc(&to),
                if live { "yes" } else { "no" },
                if live {
                    "<span class=\"live\">live migration</span> (the VM keeps running)"
                } else {
                    "<span class=\"restart\">restart</span> on the target (the VM stops, then starts there)"
                }
            );
            explanation
        }
        Ok(Planned::Refused { why, explanation }) => {
            movable = false;
            let _ = writeln!(
                page.body,
                "<p class=\"error\" data-plan-target=\"\">The move cannot be done now: {}</p>",
                esc(&why)
            );
            explanation
        }
        Err(e) => {
            movable = false;
            let _ = writeln!(
                page.body,
                "<p class=\"error\">The move cannot be planned: {}</p>",
                esc(&e)
            );
            Vec::new()
        }
    };
    if !lines.is_empty() {
        page.push("<h3>Reasons</h3>\n<ol class=\"explanation\">\n");
        for line in &lines {
            let _ = writeln!(page.body, "<li>{}</li>", esc(line));
        }
        page.push("</ol>\n");
    }
    if movable {
        let _ = writeln!(
            page.body,
            "<form class=\"confirm\" method=\"post\" action=\"/action/move\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"vm\" value=\"{}\">\
             <input type=\"hidden\" name=\"target\" value=\"{}\">\
             <button type=\"submit\" data-action=\"move\">Move {} now</button> \
             <a href=\"/vm/{}\">Cancel</a></form>",
            esc(ctx.csrf),
            vm.uuid,
            esc(target.map_or("", |t| t.name.as_str())),
            esc(&label),
            vm.uuid
        );
    } else {
        let _ = writeln!(
            page.body,
            "<p><a href=\"/vm/{}\">Back to the VM</a></p>",
            vm.uuid
        );
    }
    page.push("</div>\n");
    Response::html(200, page.render(ctx, None))
}
