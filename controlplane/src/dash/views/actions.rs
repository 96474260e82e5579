//! The actions (`POST /action/<verb>`): each validates its fields, writes the same HSDB
//! row the command line writes, with `requested_by = "dashboard:<user>"`, and redirects
//! back with a message (docs/dashboard.md, "Actions").
//!
//! The caller (`dash`) has checked the session, the operator role and the CSRF token;
//! the role is checked again here so no path writes for a read-only user. A field that
//! names nothing known is refused with a page naming the value (400 for a malformed
//! value, 404 for an unknown host / VM / group), and nothing is written.

use std::fmt::Write as _;

use hsdb::{ActivityKind, RequestKind};

use super::board::{find_vm, vm_label};
use super::html::url_part;
use super::pages::error_page;
use crate::dash::{Ctx, Method, Request, Response, Role};

/// Longest field value accepted.
const MAX_FIELD: usize = 512;

/// Who asks, as written in the request rows.
fn requested_by(ctx: &Ctx<'_>) -> String {
    format!("dashboard:{}", ctx.user.name)
}

/// A refusal: the page, with nothing written.
struct Refusal {
    status: u16,
    text: String,
}

fn bad(text: String) -> Refusal {
    Refusal { status: 400, text }
}

fn unknown(text: String) -> Refusal {
    Refusal { status: 404, text }
}

/// Field `name`, present, not empty, bounded, without control characters.
fn field<'r>(req: &'r Request, name: &str) -> Result<&'r str, Refusal> {
    match req.field(name) {
        None | Some("") => Err(bad(format!("The form has no {name} field (required)."))),
        Some(v) => check(name, v).map(|()| v),
    }
}

/// Field `name` if present and not empty.
fn opt_field<'r>(req: &'r Request, name: &str) -> Result<Option<&'r str>, Refusal> {
    match req.field(name) {
        None | Some("") => Ok(None),
        Some(v) => check(name, v).map(|()| Some(v)),
    }
}

fn check(name: &str, v: &str) -> Result<(), Refusal> {
    if v.len() > MAX_FIELD {
        return Err(bad(format!(
            "{name} is {} bytes long; at most {MAX_FIELD} are accepted.",
            v.len()
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(format!("{name}={v:?} holds a control character.")));
    }
    Ok(())
}

/// Carry out `POST /action/<verb>`.
pub fn action(ctx: &mut Ctx<'_>, req: &Request) -> Response {
    if req.method != Method::Post {
        return error_page(
            ctx,
            405,
            "Method not allowed",
            "Actions are sent with POST.",
        );
    }
    if ctx.user.role != Role::Operator {
        tracing::warn!(user = %ctx.user.name, path = %req.path, "dashboard: action refused: read-only user");
        return error_page(
            ctx,
            403,
            "Not allowed",
            "Your account is read-only: actions need the operator role.",
        );
    }
    let verb = req.path.strip_prefix("/action/").unwrap_or("");
    let outcome = match verb {
        "discover" => discover(ctx, req),
        "verify" => verify(ctx, req),
        "evacuate" => maintenance(ctx, req, RequestKind::Evacuate),
        "restore" => maintenance(ctx, req, RequestKind::Restore),
        "move-plan" => move_plan(ctx, req),
        "move" => move_vm(ctx, req),
        "ack" => ack(ctx, req),
        _ => Err(unknown(format!(
            "There is no action {:?}: expected discover, verify, evacuate, restore, move-plan, \
             move or ack.",
            verb
        ))),
    };
    match outcome {
        Ok(resp) => resp,
        Err(r) => {
            tracing::info!(user = %ctx.user.name, verb, status = r.status, "dashboard: action refused: {}", r.text);
            let title = if r.status == 404 {
                "Not found"
            } else {
                "Refused"
            };
            error_page(ctx, r.status, title, &r.text)
        }
    }
}

/// An HSDB error as a refusal page (500), naming it.
fn db_err(e: hsdb::Error) -> Refusal {
    Refusal {
        status: 500,
        text: format!("The HSDB refused the write: {e}"),
    }
}

/// The host group named `group`: it must have a host.
fn group_of(ctx: &Ctx<'_>, group: &str) -> Result<String, Refusal> {
    let hosts = ctx.db.hosts().map_err(db_err)?;
    if hosts.iter().any(|h| h.host_group == group) {
        Ok(group.to_owned())
    } else {
        Err(unknown(format!(
            "There is no host group {group:?} (no host belongs to it)."
        )))
    }
}

/// `discover` (`group`, `depth=quick|deep`) and `verify` (`group`): an activity for the
/// group's leader (`hactl discover` / the schedule write the same rows).
fn discover(ctx: &mut Ctx<'_>, req: &Request) -> Result<Response, Refusal> {
    let group = group_of(ctx, field(req, "group")?)?;
    let kind = match field(req, "depth")? {
        "quick" => ActivityKind::QuickDiscovery,
        "deep" => ActivityKind::DeepDiscovery,
        depth => return Err(bad(format!("depth={depth:?}: expected quick or deep."))),
    };
    request_activity(ctx, &group, kind)
}

fn verify(ctx: &mut Ctx<'_>, req: &Request) -> Result<Response, Refusal> {
    let group = group_of(ctx, field(req, "group")?)?;
    request_activity(ctx, &group, ActivityKind::Verify)
}

fn request_activity(
    ctx: &mut Ctx<'_>,
    group: &str,
    kind: ActivityKind,
) -> Result<Response, Refusal> {
    let by = requested_by(ctx);
    let id = ctx
        .db
        .request_activity(group, kind, &by, ctx.now_ms)
        .map_err(db_err)?;
    tracing::info!(
        user = %ctx.user.name, group, kind = kind.as_str(), activity = id,
        "dashboard: {} of host group {group} requested (activity {id}); the group's leader carries it out",
        super::records::activity_label(kind)
    );
    Ok(Response::redirect(&format!(
        "/activities?ok=activity&ref={id}"
    )))
}

/// `evacuate` / `restore` (`host`): the operator request `hactl host evacuate|restore`
/// writes (cli/maintenance.rs).
fn maintenance(ctx: &mut Ctx<'_>, req: &Request, kind: RequestKind) -> Result<Response, Refusal> {
    let name = field(req, "host")?;
    let hosts = ctx.db.hosts().map_err(db_err)?;
    let Some(host) = hosts.into_iter().find(|h| h.name == name) else {
        return Err(unknown(format!("There is no host named {name:?}.")));
    };
    let by = requested_by(ctx);
    let id = ctx
        .db
        .request_operation(&host.host_group, kind, host.id, &by, ctx.now_ms)
        .map_err(db_err)?;
    let verb = match kind {
        RequestKind::Evacuate => "evacuate",
        RequestKind::Restore => "restore",
        RequestKind::Move => "move",
    };
    tracing::info!(
        user = %ctx.user.name, host = %host.name, group = %host.host_group, request = id,
        "dashboard: {verb} of host {} requested (operator request {id}); the leader of group {} carries it out",
        host.name, host.host_group
    );
    Ok(Response::redirect(&format!(
        "/host/{}?ok={verb}&ref={id}",
        url_part(&host.name)
    )))
}

/// The VM of field `vm`.
fn vm_field(ctx: &Ctx<'_>, req: &Request) -> Result<hsdb::VmRow, Refusal> {
    let given = field(req, "vm")?;
    let vms = ctx.db.vms().map_err(db_err)?;
    match find_vm(&vms, given) {
        Ok(vm) => Ok(vm.clone()),
        Err(e) if e.contains("VMs are named") => Err(bad(e)),
        Err(e) => Err(unknown(e)),
    }
}

/// The optional target host of a move: a host of the VM's group other than its own.
fn target_field(
    ctx: &Ctx<'_>,
    req: &Request,
    vm: &hsdb::VmRow,
) -> Result<Option<hsdb::HostRecord>, Refusal> {
    let Some(name) = opt_field(req, "target")? else {
        return Ok(None);
    };
    let hosts = ctx.db.hosts().map_err(db_err)?;
    let Some(target) = hosts.iter().find(|h| h.name == name).cloned() else {
        return Err(unknown(format!(
            "There is no host named {name:?} to move to."
        )));
    };
    let group = vm
        .current_host
        .or(vm.home_host)
        .and_then(|h| hosts.iter().find(|x| x.id == h))
        .map(|h| h.host_group.clone());
    if group.as_deref() != Some(target.host_group.as_str()) {
        return Err(bad(format!(
            "Host {name} is in host group {}, not in the VM's ({}).",
            target.host_group,
            group.as_deref().unwrap_or("none")
        )));
    }
    if vm.current_host == Some(target.id) {
        return Err(bad(format!("VM {} runs on {name} already.", vm_label(vm))));
    }
    Ok(Some(target))
}

/// `move-plan` (`vm`, optional `target`): the plan shown before the operator confirms;
/// writes nothing.
fn move_plan(ctx: &mut Ctx<'_>, req: &Request) -> Result<Response, Refusal> {
    let vm = vm_field(ctx, req)?;
    let target = target_field(ctx, req, &vm)?;
    Ok(super::moves::plan_page(ctx, &vm, target.as_ref()))
}

/// `move` (`vm`, optional `target`): the MOVE operator request `hactl vm move` writes,
/// for the leader of the VM's group.
fn move_vm(ctx: &mut Ctx<'_>, req: &Request) -> Result<Response, Refusal> {
    let vm = vm_field(ctx, req)?;
    let target = target_field(ctx, req, &vm)?;
    let hosts = ctx.db.hosts().map_err(db_err)?;
    let Some(group) = vm
        .current_host
        .and_then(|h| hosts.iter().find(|x| x.id == h))
        .map(|h| h.host_group.clone())
    else {
        return Err(bad(format!(
            "VM {} runs on no known host: there is nothing to move it from.",
            vm_label(&vm)
        )));
    };
    let by = requested_by(ctx);
    let id = ctx
        .db
        .request_move(
            &group,
            &vm.uuid,
            target.as_ref().map(|t| t.id),
            &by,
            ctx.now_ms,
        )
        .map_err(db_err)?;
    tracing::info!(
        user = %ctx.user.name, vm = %vm.uuid, group, request = id,
        target = target.as_ref().map_or("(the planner's best)", |t| t.name.as_str()),
        "dashboard: move of VM {} requested (operator request {id}); the leader of group {group} carries it out",
        vm_label(&vm)
    );
    Ok(Response::redirect(&format!(
        "/vm/{}?ok=move&ref={id}",
        vm.uuid
    )))
}

/// `ack`: `tag` (an hsTag: the Acknowledge of `hactl ack`, hs/build.rs) or `vm` (the
/// VM's reported NeedsAttention items).
fn ack(ctx: &mut Ctx<'_>, req: &Request) -> Result<Response, Refusal> {
    if let Some(tag) = opt_field(req, "tag")? {
        let Ok(tag) = tag.parse::<i64>() else {
            return Err(bad(format!(
                "tag={tag:?} is not an hsTag (a signed 64-bit number)."
            )));
        };
        let done = crate::hs::build::acknowledge(ctx.db, tag).map_err(db_err)?;
        tracing::info!(user = %ctx.user.name, tag, items = done.items, events = done.events,
            "dashboard: hsTag {tag} acknowledged");
        let mut text = String::new();
        let _ = write!(
            text,
            "hsTag {tag}, {} items and {} monitor events",
            done.items, done.events
        );
        return Ok(Response::redirect(&format!(
            "/?ok=ack&ref={}",
            url_part(&text)
        )));
    }
    if req.field("vm").is_some_and(|v| !v.is_empty()) {
        let vm = vm_field(ctx, req)?;
        let n = ctx.db.acknowledge_vm(&vm.uuid).map_err(db_err)?;
        tracing::info!(user = %ctx.user.name, vm = %vm.uuid, items = n,
            "dashboard: reported items of VM {} acknowledged", vm_label(&vm));
        let text = format!("{n} reported items of VM {}", vm_label(&vm));
        return Ok(Response::redirect(&format!(
            "/vm/{}?ok=ack&ref={}",
            vm.uuid,
            url_part(&text)
        )));
    }
    Err(bad(
        "The form has neither a tag nor a vm field: one is required.".to_owned(),
    ))
}
