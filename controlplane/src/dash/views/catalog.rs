//! The events page's filters over the event catalogue ([`crate::events`]): the seed's
//! Critical / Warning / Maintenance / Informational (seed 004 L17031-17033, figure
//! 4-27), with Error added (our catalogue has it).
//!
//! A severity filter shows the events of that severity; `maintenance` shows the events
//! of planned work — host evacuation and restore, VM moves — whatever their severity, so
//! an event such as HOST_MAINTENANCE_REFUSED (a warning) is under both. A kind not in the
//! catalogue (another writer's) is informational, as the notifiers treat it.

use crate::events::{EventKind, Severity};

/// One filter of the events page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// Severity critical.
    Critical,
    /// Severity error.
    Error,
    /// Severity warning.
    Warning,
    /// Planned work: evacuate, restore, move, host maintenance.
    Maintenance,
    /// Severity info (and kinds outside the catalogue).
    Info,
}

impl EventClass {
    /// Every filter, in the order the page lists them.
    pub const ALL: [EventClass; 5] = [
        EventClass::Critical,
        EventClass::Error,
        EventClass::Warning,
        EventClass::Maintenance,
        EventClass::Info,
    ];

    /// The word in `?severity=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventClass::Critical => "critical",
            EventClass::Error => "error",
            EventClass::Warning => "warning",
            EventClass::Maintenance => "maintenance",
            EventClass::Info => "info",
        }
    }

    /// The label on the page.
    pub const fn label(self) -> &'static str {
        match self {
            EventClass::Critical => "Critical",
            EventClass::Error => "Error",
            EventClass::Warning => "Warning",
            EventClass::Maintenance => "Maintenance",
            EventClass::Info => "Informational",
        }
    }

    /// The filter named `word`.
    pub fn parse(word: &str) -> Option<EventClass> {
        EventClass::ALL.into_iter().find(|c| c.as_str() == word)
    }

    /// The kinds this filter selects (`exclude` false) or leaves out (`exclude` true),
    /// for [`hsdb::EventFilter`].
    pub fn kinds(self) -> (Vec<String>, bool) {
        let names = |pred: &dyn Fn(EventKind) -> bool| {
            EventKind::ALL
                .iter()
                .copied()
                .filter(|k| pred(*k))
                .map(|k| k.name().to_owned())
                .collect::<Vec<_>>()
        };
        let of = |s: Severity| names(&|k: EventKind| k.severity() == s);
        match self {
            EventClass::Critical => (of(Severity::Critical), false),
            EventClass::Error => (of(Severity::Error), false),
            EventClass::Warning => (of(Severity::Warning), false),
            EventClass::Maintenance => (names(&|k: EventKind| is_maintenance(k.name())), false),
            // Info is every kind not of another severity, so unknown kinds are in.
            EventClass::Info => (names(&|k: EventKind| k.severity() != Severity::Info), true),
        }
    }
}

/// Is event kind `name` about planned work (evacuate, restore, move, maintenance)?
pub fn is_maintenance(name: &str) -> bool {
    name.starts_with("HOST_MAINTENANCE_") || name.starts_with("VM_MOVE")
}
