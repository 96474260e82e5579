//! Prometheus text format 0.0.4, as `GET /metrics` and `hmd ctl metrics` serve it.
//!
//! Every metric family is written once, with `# HELP` and `# TYPE` and all its samples
//! together (the format requires it); counters end in `_total`; names start with
//! `hvha_hmd_`. Label values are escaped.

use std::fmt::Write as _;

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (restarts at 0 with the process); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A metrics page being written.
#[derive(Debug, Default)]
pub struct Page {
    out: String,
}

impl Page {
    /// Write one family: `name` without the `hvha_hmd_` prefix (and, for a counter,
    /// without `_total`), its help text, and its samples as (labels, value); labels are
    /// (name, value) pairs.
    pub fn family<'a, L>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) where
        L: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let (suffix, kind_name) = match kind {
            Kind::Counter => ("_total", "counter"),
            Kind::Gauge => ("", "gauge"),
        };
        let full = format!("hvha_hmd_{name}{suffix}");
        let help = help.trim().replace('\\', "\\\\").replace('\n', " ");
        let _ = writeln!(self.out, "# HELP {full} {help}");
        let _ = writeln!(self.out, "# TYPE {full} {kind_name}");
        for (labels, value) in samples {
            let mut text = String::new();
            for (k, v) in labels {
                let sep = if text.is_empty() { "" } else { "," };
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(text, "{sep}{k}=\"{v}\"");
            }
            if text.is_empty() {
                let _ = writeln!(self.out, "{full} {value}");
            } else {
                let _ = writeln!(self.out, "{full}{{{text}}} {value}");
            }
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_grouped_samples() {
        let mut p = Page::default();
        p.family(
            "frames_in",
            Kind::Counter,
            " Frames handed to the endpoint.",
            [([("interface", "eth1")], 3), ([("interface", "e\"2")], 4)],
        );
        p.family("vms_watched", Kind::Gauge, "VMs.", [([], 7)]);
        assert_eq!(
            p.finish(),
            "# HELP hvha_hmd_frames_in_total Frames handed to the endpoint.\n\
             # TYPE hvha_hmd_frames_in_total counter\n\
             hvha_hmd_frames_in_total{interface=\"eth1\"} 3\n\
             hvha_hmd_frames_in_total{interface=\"e\\\"2\"} 4\n\
             # HELP hvha_hmd_vms_watched VMs.\n\
             # TYPE hvha_hmd_vms_watched gauge\n\
             hvha_hmd_vms_watched 7\n"
        );
    }
}
