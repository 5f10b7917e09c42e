//! What the topic holds or has promised, kept as tallies whose arithmetic refuses to go wrong.
//! [`Credit`]'s own arithmetic saturates, because in a window `u64::MAX` means unbounded; a
//! tally of events held has no such meaning, so going below zero or past `u64::MAX` can only
//! be a bug in the topic's books, and it is reported ([`BooksError`]), in the spirit of h2's
//! flow-control `Window`, instead of being rounded away.

use std::fmt;

use crate::credit::Credit;

/// An amount in events and bytes, named for the error it would report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tally {
    name: &'static str,
    held: Credit,
}

impl Tally {
    /// An empty tally called `name` ("ready", "unacked", ...).
    pub(super) const fn new(name: &'static str) -> Tally {
        Tally {
            name,
            held: Credit::ZERO,
        }
    }

    /// What it holds.
    pub(super) fn get(&self) -> Credit {
        self.held
    }

    /// Adds `c`; past `u64::MAX` in either dimension it changes nothing and says so.
    pub(super) fn add(&mut self, c: Credit) -> Result<(), BooksError> {
        match (
            self.held.events.checked_add(c.events),
            self.held.bytes.checked_add(c.bytes),
        ) {
            (Some(events), Some(bytes)) => {
                self.held = Credit::new(events, bytes);
                Ok(())
            }
            _ => Err(self.error("add", c)),
        }
    }

    /// Takes `c` away; more than it holds in either dimension changes nothing and says so.
    pub(super) fn take(&mut self, c: Credit) -> Result<(), BooksError> {
        match self.held.checked_sub(c) {
            Some(left) => {
                self.held = left;
                Ok(())
            }
            None => Err(self.error("take", c)),
        }
    }

    fn error(&self, op: &'static str, change: Credit) -> BooksError {
        BooksError {
            tally: self.name,
            op,
            held: self.held,
            change,
        }
    }
}

/// The topic's books do not add up: a tally would have gone below zero or past its limit. A
/// bug in the topic (or in what a store handed back), reported instead of hidden; the topic
/// takes no more work after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BooksError {
    /// Which tally.
    pub tally: &'static str,
    /// `add` or `take`.
    pub op: &'static str,
    /// What it held.
    pub held: Credit,
    /// What was to be added or taken.
    pub change: Credit,
}

impl fmt::Display for BooksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the topic's books do not add up: cannot {} {} {} the {} tally, which holds {}",
            self.op,
            self.change,
            if self.op == "take" { "from" } else { "to" },
            self.tally,
            self.held
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_refuses_to_go_below_zero_or_past_the_maximum_and_changes_nothing() {
        let mut t = Tally::new("ready");
        t.add(Credit::new(2, 20)).unwrap();
        let err = t.take(Credit::new(3, 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the topic's books do not add up: cannot take 3 events / 10 bytes from the ready tally, which holds 2 events / 20 bytes"
        );
        assert_eq!(t.get(), Credit::new(2, 20), "unchanged");
        assert!(t.add(Credit::new(1, u64::MAX)).is_err());
        assert_eq!(t.get(), Credit::new(2, 20));
        t.take(Credit::new(2, 20)).unwrap();
        assert_eq!(t.get(), Credit::ZERO);
    }
}
