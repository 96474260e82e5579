//! The web dashboard `hactl run` serves on an opt-in address (`[dashboard] listen`): the
//! operator's view of host groups, hosts, monitors, VMs, events and relocations, updated
//! live, and the actions (discovery, evacuate, move, acknowledge) as requests written
//! into the HSDB for the leading controller to carry out. The seed's GUI is a separate
//! server at `https://…:3000/login` (seed 004 L16844); ours is part of the controller.
//!
//! This module owns the transport and the security; [`views`] owns what is shown:
//!
//! - [`config`]: the `[dashboard]` section.
//! - [`http`]: the bounded HTTP/1.1 request parser, urlencoded forms, [`Response`].
//! - [`tls`]: HTTPS with the operator's certificate (rustls, ring).
//! - [`accounts`]: `hactl dashboard user add|passwd|remove|list`.
//! - [`users`]: the users file (`name:role:$argon2id$…`), its hashes, its reloading.
//! - [`auth`]: login (constant work for unknown users, throttling), sessions, CSRF.
//! - [`login`]: the login page.
//! - [`server`]: the listener, connection threads and their limits, the router.
//! - [`sse`]: `/stream`, the live snapshot pushed to every open page.
//!
//! It must never let a request reach [`views`] without a session, an action without the
//! operator role and the session's CSRF token, or a response leave without the security
//! headers; and never panic or grow without bound on what a client sends.

pub mod accounts;
pub mod auth;
pub mod config;
pub mod http;
pub mod login;
pub mod server;
pub mod sse;
pub mod tls;
pub mod users;
pub mod views;

pub use self::http::{Method, Request, Response};
pub use self::server::{DashError, Dashboard};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Look only: every page, no action.
    ReadOnly,
    /// Look and act (`/action/*`).
    Operator,
}

impl Role {
    /// As in the users file and `data-role`: `read-only` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }

    /// From the users file's text.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read-only" => Some(Role::ReadOnly),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user a request is made by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// What a page or an action is given besides the request.
pub struct Ctx<'a> {
    /// The logged-in user.
    pub user: &'a User,
    /// The session's CSRF token: every form carries it as the hidden field `csrf`.
    pub csrf: &'a str,
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
    /// A connection to the HSDB.
    pub db: &'a mut hsdb::Hsdb,
    /// The controller's configuration.
    pub config: &'a crate::cli::config::Config,
}
