//! The run's trace: one line per thing that happened (a fault, a monitor's transition, a
//! platform action, an event the engine recorded), folded into a hash so that two runs
//! of one seed can be compared in O(1) memory, with the last lines kept for a violation's
//! history and, on request, every line.

use std::collections::{BTreeMap, VecDeque};

use hsdb::Uuid;

/// Lines kept per VM for a violation's history.
const PER_VM: usize = 40;

/// FNV-1a, 64-bit: stable across builds and platforms (unlike `DefaultHasher`).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A run's trace.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    lines: u64,
    recent: VecDeque<String>,
    keep: usize,
    all: Option<Vec<String>>,
    per_vm: BTreeMap<Uuid, VecDeque<String>>,
}

impl Trace {
    /// A trace keeping the last `keep` lines, and every line if `full`.
    pub fn new(keep: usize, full: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            lines: 0,
            recent: VecDeque::with_capacity(keep.min(4096)),
            keep,
            all: full.then(Vec::new),
            per_vm: BTreeMap::new(),
        }
    }

    /// Add a line about `vm` (kept in its own history too).
    pub fn push_about(&mut self, vm: Option<Uuid>, line: String) {
        if let Some(vm) = vm {
            let lines = self.per_vm.entry(vm).or_default();
            if lines.len() == PER_VM {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        self.push(line);
    }

    /// The last lines about `vm`, oldest first.
    pub fn about(&self, vm: &Uuid) -> Vec<String> {
        self.per_vm
            .get(vm)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Add a line.
    pub fn push(&mut self, line: String) {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self.lines += 1;
        if let Some(all) = &mut self.all {
            all.push(line.clone());
        }
        if self.keep > 0 {
            if self.recent.len() == self.keep {
                self.recent.pop_front();
            }
            self.recent.push_back(line);
        }
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Lines so far.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// No line yet.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The last lines kept, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }

    /// Every line, if the trace was asked to keep them.
    pub fn all(&self) -> Option<&[String]> {
        self.all.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hash_depends_on_every_line_and_recent_is_bounded() {
        let mut a = Trace::new(2, true);
        let mut b = Trace::new(2, false);
        for l in ["x", "y", "z"] {
            a.push(l.into());
            b.push(l.into());
        }
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.recent(), vec!["y".to_string(), "z".to_string()]);
        assert_eq!(a.all().map(<[String]>::len), Some(3));
        assert_eq!(b.all(), None);
        b.push("w".into());
        assert_ne!(a.hash(), b.hash());
        // Line boundaries count: "ab" + "c" is not "a" + "bc".
        let mut c = Trace::new(0, false);
        let mut d = Trace::new(0, false);
        c.push("ab".into());
        c.push("c".into());
        d.push("a".into());
        d.push("bc".into());
        assert_ne!(c.hash(), d.hash());
    }
}
