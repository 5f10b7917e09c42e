//! The ledger checker: after faults stop and the pipeline drains, compares what producers had
//! confirmed with the rows the database holds. Producers confirm cumulatively, so "confirmed"
//! is, per producer id, every sequence number from 1 to the highest confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the comparison found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Events confirmed to producers.
    pub confirmed: u64,
    /// Rows read.
    pub rows: u64,
    /// Confirmed events with no row, in total...
    pub lost: u64,
    /// ...of which in a run starting at sequence 1,
    pub lost_prefix: u64,
    /// ...in a run between present rows,
    pub lost_middle: u64,
    /// ...and in a run ending at the highest confirmed.
    pub lost_suffix: u64,
    /// Rows for an event already seen.
    pub duplicates: u64,
    /// Rows whose sequence number is below an earlier row's of the same producer.
    pub out_of_order: u64,
    /// Rows beyond what was confirmed (sent, never confirmed, yet delivered: allowed).
    pub unconfirmed_rows: u64,
}

impl Verdict {
    /// Nothing confirmed is missing and nothing is there twice.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "confirmed {}, rows {}, lost {} (prefix {}, middle {}, suffix {}), duplicates {}, \
             out of order {}, rows beyond the confirmed {}",
            self.confirmed,
            self.rows,
            self.lost,
            self.lost_prefix,
            self.lost_middle,
            self.lost_suffix,
            self.duplicates,
            self.out_of_order,
            self.unconfirmed_rows
        )
    }
}

/// Checks `rows` — (producer, seq) in the order they were committed — against `confirmed`,
/// the highest confirmed sequence number per producer id.
pub fn check(confirmed: &BTreeMap<u64, u64>, rows: &[(u64, u64)]) -> Verdict {
    let mut v = Verdict {
        confirmed: confirmed.values().sum(),
        rows: rows.len() as u64,
        ..Verdict::default()
    };
    let mut seen: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for &(producer, seq) in rows {
        if !seen.entry(producer).or_default().insert(seq) {
            v.duplicates += 1;
            continue;
        }
        let previous = last.entry(producer).or_default();
        if seq < *previous {
            v.out_of_order += 1;
        }
        *previous = (*previous).max(seq);
        if seq > confirmed.get(&producer).copied().unwrap_or(0) {
            v.unconfirmed_rows += 1;
        }
    }
    let empty = BTreeSet::new();
    for (&producer, &high) in confirmed {
        let present = seen.get(&producer).unwrap_or(&empty);
        let mut seq = 1;
        while seq <= high {
            if present.contains(&seq) {
                seq += 1;
                continue;
            }
            let start = seq;
            while seq <= high && !present.contains(&seq) {
                seq += 1;
            }
            let run = seq - start;
            v.lost += run;
            if start == 1 {
                v.lost_prefix += run;
            } else if seq > high {
                v.lost_suffix += run;
            } else {
                v.lost_middle += run;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_ledger_is_clean() {
        let confirmed = BTreeMap::from([(1, 3), (2, 2)]);
        let v = check(
            &confirmed,
            &[(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (1, 4)],
        );
        assert!(v.is_clean(), "{v}");
        assert_eq!((v.confirmed, v.rows, v.unconfirmed_rows), (5, 6, 1));
    }

    #[test]
    fn losses_are_placed_and_duplicates_and_reordering_counted() {
        let confirmed = BTreeMap::from([(1, 10), (2, 3)]);
        let rows = [(1, 3), (1, 5), (1, 4), (1, 8), (1, 5), (2, 2)];
        let v = check(&confirmed, &rows);
        assert_eq!(
            (v.lost_prefix, v.lost_middle, v.lost_suffix),
            (2 + 1, 2, 2 + 1),
            "{v}"
        );
        assert_eq!(v.lost, 8);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.out_of_order, 1);
        assert!(!v.is_clean());
    }
}
