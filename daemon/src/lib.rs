//! What the two daemons (`hmd`, `vmmd`) share outside the protocol: how they log and
//! how they check a configuration file.
//!
//! - [`log`]: the `log` filter (validated: `log = "warning"` is refused instead of
//!   silencing every line), the `log_format` key (`text` or `json`), and the one
//!   set-up both daemons call: key=value fields, colour only on a terminal.
//! - [`config`]: checks and helpers for configuration values: EtherTypes that belong to
//!   other protocols, the line of a value in its file, paths relative to the file.
//! - [`docs`]: man pages and shell completions generated from a command-line
//!   definition (the hidden `gen-docs DIR` of `hmd`, `vmmd` and `hactl`).
//! - [`text`]: times (UTC), durations and untrusted text as the daemons print them for
//!   people.

pub mod config;
pub mod docs;
pub mod log;
pub mod text;
