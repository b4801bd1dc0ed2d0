//! An index from actions to the statements that name them, built when a document is parsed.
//!
//! Evaluating statement by statement compares the request's action with every action pattern of
//! every statement: thirty comparisons for ten statements of three actions, most of the cost of a
//! decision. With the index, a literal action (`kms:Encrypt`) is one table lookup, and each
//! distinct wildcard pattern (`kms:List*`, written in five statements) is tried once; the result
//! is the set of statements whose action matches, and only those are looked at further.

use super::document::Statement;
use super::wildcard::Pattern;

/// A set of statements, one bit per statement index.
pub(super) type StatementSet = u64;

/// Documents with more statements than a [`StatementSet`] holds are evaluated statement by
/// statement instead.
pub(super) const MAX_INDEXED_STATEMENTS: usize = StatementSet::BITS as usize;

#[derive(Clone, Debug)]
pub(super) struct ActionIndex {
    literals: LiteralTable,
    /// Each distinct wildcard pattern once, with the statements that list it.
    wildcards: Box<[(Pattern, StatementSet)]>,
    /// The statements written with NotAction, which apply when none of their patterns matches.
    complemented: StatementSet,
}

impl ActionIndex {
    /// The index of `statements`; `None` when there are too many to index.
    pub(super) fn build(statements: &[Statement]) -> Option<ActionIndex> {
        if statements.len() > MAX_INDEXED_STATEMENTS {
            return None;
        }
        let mut literals: Vec<LiteralEntry> = Vec::new();
        let mut wildcards: Vec<(Pattern, StatementSet)> = Vec::new();
        let mut complemented = 0;
        for (i, statement) in statements.iter().enumerate() {
            let bit = 1 << i;
            if statement.actions.complement {
                complemented |= bit;
            }
            for pattern in &statement.actions.patterns {
                match pattern.literal() {
                    Some(text) => match literals.iter_mut().find(|(known, _)| **known == *text) {
                        Some((_, set)) => *set |= bit,
                        None => literals.push((text.into(), bit)),
                    },
                    None => match wildcards.iter_mut().find(|(known, _)| known == pattern) {
                        Some((_, set)) => *set |= bit,
                        None => wildcards.push((pattern.clone(), bit)),
                    },
                }
            }
        }
        Some(ActionIndex {
            literals: LiteralTable::new(literals),
            wildcards: wildcards.into(),
            complemented,
        })
    }

    /// The statements whose Action (or NotAction) lets `action` through.
    pub(super) fn statements_for(&self, action: &str) -> StatementSet {
        let mut matched = self.literals.get(action.as_bytes());
        for (pattern, statements) in &self.wildcards {
            // A pattern whose statements all matched already cannot add anything.
            if matched & statements != *statements && pattern.matches(action) {
                matched |= statements;
            }
        }
        matched ^ self.complemented
    }
}

/// A literal action, lowercased, and the statements that name it.
type LiteralEntry = (Box<[u8]>, StatementSet);

/// An open-addressing table from lowercased literal actions to statement sets, looked up with
/// an action in any case and without folding it into a new string.
#[derive(Clone, Debug)]
struct LiteralTable {
    /// A power-of-two number of slots, at most half of them full, so a probe always ends.
    slots: Box<[Option<LiteralEntry>]>,
}

impl LiteralTable {
    fn new(entries: Vec<LiteralEntry>) -> Self {
        let mut slots = vec![None; (entries.len() * 2).max(1).next_power_of_two()].into_boxed_slice();
        let mask = slots.len() - 1;
        for (text, set) in entries {
            let mut at = slot_of(&text, slots.len());
            while slots[at].is_some() {
                at = (at + 1) & mask;
            }
            slots[at] = Some((text, set));
        }
        LiteralTable { slots }
    }

    fn get(&self, action: &[u8]) -> StatementSet {
        let mask = self.slots.len() - 1;
        let mut at = slot_of(action, self.slots.len());
        while let Some(Some((text, set))) = self.slots.get(at) {
            if text.eq_ignore_ascii_case(action) {
                return *set;
            }
            at = (at + 1) & mask;
        }
        0
    }
}

/// The home slot of `text` among `slots` (a power of two), ignoring ASCII case.
///
/// It samples only a few bytes: actions share their `kms:` start and differ in length and in
/// their first, middle and last letters, and a full-length hash would cost as much as the
/// comparisons the table saves. Fibonacci hashing then spreads the sample into the top bits,
/// which pick the slot.
fn slot_of(text: &[u8], slots: usize) -> usize {
    let n = text.len();
    let at = |i: usize| u64::from(text.get(i).map_or(0, u8::to_ascii_lowercase));
    let sample = n as u64
        ^ at(n.wrapping_sub(1)) << 8
        ^ at(n.wrapping_sub(2)) << 16
        ^ at(n / 2) << 24
        ^ at(4) << 32
        ^ at(5) << 40;
    let spread = sample.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // log2(slots) top bits; a one-slot table shifts everything out.
    spread.checked_shr(64 - slots.trailing_zeros()).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_literal_table_ignores_case_and_finds_every_entry() {
        let names = [
            "kms:encrypt",
            "kms:decrypt",
            "kms:generatedatakey",
            "kms:generatedatakeywithoutplaintext",
            "kms:describekey",
            "kms:listkeys",
            "kms:createkey",
            "kms:asymmetricsign",
            "kms:asymmetricverify",
        ];
        let table = LiteralTable::new(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_bytes().into(), 1 << i))
                .collect(),
        );
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.get(name.as_bytes()), 1 << i, "{name}");
            assert_eq!(table.get(name.to_ascii_uppercase().as_bytes()), 1 << i, "{name}");
        }
        for absent in ["", "kms:", "kms:encryp", "kms:encrypts", "kms:reencrypt"] {
            assert_eq!(table.get(absent.as_bytes()), 0, "{absent}");
        }
        assert_eq!(LiteralTable::new(Vec::new()).get(b"kms:encrypt"), 0);
    }
}
