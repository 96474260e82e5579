//! Moving one VM: the plan page `move-plan` answers with (the target, live or restart,
//! each reason), and the confirm form that sends `move` (docs/dashboard.md, "Moving a
//! VM"). The seed's GUI offers the same: choose a host or let the product decide, then
//! watch the move (seed 004 L17102-17107, L17138).

use std::fmt::Write as _;

use hsdb::{HostRecord, VmRow};

use super::board::vm_label;
use super::html::{Page, esc};
use crate::dash::{Ctx, Response};

/// A move's plan as the page shows it.
pub struct ShownPlan {
    /// The host it would go to; `None`: no host can take it.
    pub to: Option<String>,
    /// A live migration (`true`) or a restart on the target.
    pub live: bool,
    /// The explanation, one line per reason (the `--dry-run` text).
    pub explanation: Vec<String>,
}

/// The plan of moving `vm` to `target` (the planner's best host when `None`), when this
/// build can make one.
fn plan(
    _ctx: &mut Ctx<'_>,
    _vm: &VmRow,
    _target: Option<&HostRecord>,
) -> Result<Option<ShownPlan>, String> {
    Ok(None)
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
        Err("it runs on no known host (no monitor has placed it yet): there is nothing to move it from.".to_owned())
    } else {
        plan(ctx, vm, target)
    };
    match planned {
        Ok(Some(p)) => {
            match &p.to {
                Some(to) => {
                    let _ = writeln!(
                        page.body,
                        "<p class=\"verdict\" data-plan-target=\"{0}\" data-plan-live=\"{1}\">\
                         To <strong>{0}</strong>, by {2}.</p>",
                        esc(to),
                        if p.live { "yes" } else { "no" },
                        if p.live {
                            "<span class=\"live\">live migration</span> (the VM keeps running)"
                        } else {
                            "<span class=\"restart\">restart</span> on the target (the VM stops, then starts there)"
                        }
                    );
                }
                None => {
                    movable = false;
                    page.push(
                        "<p class=\"error\" data-plan-target=\"\">No host can take this VM now: \
                         nothing would move.</p>\n",
                    );
                }
            }
            page.push("<ol class=\"explanation\">\n");
            for line in &p.explanation {
                let _ = writeln!(page.body, "<li>{}</li>", esc(line));
            }
            page.push("</ol>\n");
        }
        Ok(None) => page.push(
            "<p class=\"unavailable\">The plan is not available in this build. The controller \
             leading the group plans the move when it carries out the request, and refuses \
             it, saying why, if no host can take the VM.</p>\n",
        ),
        Err(e) => {
            let _ = writeln!(
                page.body,
                "<p class=\"error\">The move cannot be planned: {}</p>",
                esc(&e)
            );
            movable = false;
        }
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
