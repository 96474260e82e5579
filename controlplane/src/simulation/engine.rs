//! The real engine in the simulation: [`Fde`] behind the [`Engine`] trait, with its
//! store wrapped ([`LosingAcks`]) so that acknowledgements can be lost on purpose.

use hsdb::{Hsdb, Uuid};

use super::run::{Engine, Turn};
use crate::fde::{Fde, LosingAcks, ScanReport, Subject, Verdict};
use crate::platform::Platform;

/// One scan the engine ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    /// When the tick that ran it began, ms since the epoch.
    pub at_ms: i64,
    /// What it did.
    pub report: ScanReport,
}

/// Most scans kept in [`FdeEngine::scans`] (the oldest go first).
pub const SCAN_LOG: usize = 100_000;

/// The Failure Detection Engine under test.
pub struct FdeEngine {
    /// The engine.
    pub fde: Fde,
    /// The scans it ran, oldest first (at most [`SCAN_LOG`]).
    pub scans: std::collections::VecDeque<ScanEntry>,
    /// Acknowledgements still to lose.
    lose: u32,
    /// Acknowledgements lost so far.
    pub acks_lost: u64,
    /// The last decision traced.
    last_seq: u64,
    /// Take over the restarts left unfinished at the first turn (a new term).
    take_over: bool,
}

impl FdeEngine {
    /// Drive `fde`.
    pub fn new(fde: Fde) -> FdeEngine {
        FdeEngine {
            fde,
            scans: std::collections::VecDeque::new(),
            lose: 0,
            acks_lost: 0,
            last_seq: 0,
            take_over: false,
        }
    }

    /// Drive `fde` as a new term's engine: at its first turn it takes over the restarts
    /// the engine before it left unfinished in the HSDB ([`Fde::take_over`]), as the
    /// daemon's engine does when it gains the lease or starts.
    pub fn taking_over(fde: Fde) -> FdeEngine {
        FdeEngine {
            take_over: true,
            ..FdeEngine::new(fde)
        }
    }
}

impl Engine for FdeEngine {
    fn turn(
        &mut self,
        now: i64,
        hsdb: &mut Hsdb,
        platform: &mut dyn Platform,
    ) -> Result<Turn, String> {
        let before = self.lose;
        let mut store = LosingAcks {
            store: hsdb,
            lose: &mut self.lose,
        };
        if std::mem::take(&mut self.take_over) {
            self.fde
                .take_over(now, &mut store, platform)
                .map_err(|e| e.to_string())?;
        }
        let tick = self
            .fde
            .tick(now, &mut store, platform)
            .map_err(|e| e.to_string())?;
        self.acks_lost += u64::from(before - self.lose);
        if let Some(report) = tick.scan {
            if self.scans.len() == SCAN_LOG {
                self.scans.pop_front();
            }
            self.scans.push_back(ScanEntry { at_ms: now, report });
        }
        // The decisions of this turn, oldest first (the log is bounded: take them from
        // its end).
        let last = self.last_seq;
        let mut fresh: Vec<(Option<Uuid>, String)> = self
            .fde
            .decisions()
            .iter()
            .rev()
            .take_while(|d| d.seq > last)
            .filter(|d| d.verdict != Verdict::NoAction)
            .map(|d| {
                let vm = match d.subject {
                    Subject::Vm { uuid, .. } => Some(uuid),
                    _ => None,
                };
                let line = format!("scan {} {} {}: {}", d.scan, d.subject, d.verdict, d.reason);
                (vm, line)
            })
            .collect();
        fresh.reverse();
        self.last_seq = self.fde.decisions().total();
        Ok(Turn {
            next_ms: tick.next_wake_ms,
            notes: fresh,
        })
    }

    fn lose_acks(&mut self, count: u32) -> bool {
        self.lose = self.lose.saturating_add(count);
        true
    }
}
