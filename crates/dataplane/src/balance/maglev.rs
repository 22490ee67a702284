//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table in
//! which every target owns a share of slots proportional to its weight, and
//! adding or removing one target moves about 1/n of the keys.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Prime, and large enough for hundreds of targets with even shares.
pub const TABLE_SIZE: usize = 65_537;

/// Slot → target index.
#[derive(Debug, Clone)]
pub struct MaglevTable {
    slots: Box<[u32]>,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl MaglevTable {
    /// `ids` are stable target identities (the same on every node), `weights` ≥ 1.
    pub fn new(ids: &[u64], weights: &[u32]) -> Self {
        let m = TABLE_SIZE as u64;
        let n = ids.len();
        if n == 0 {
            return Self { slots: Box::new([]) };
        }
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let turns: Vec<u32> = weights.iter().map(|w| (w / g).max(1)).collect();
        let offset: Vec<u64> = ids.iter().map(|id| xxh3_64_with_seed(&id.to_le_bytes(), 0x6d61676c) % m).collect();
        let skip: Vec<u64> =
            ids.iter().map(|id| xxh3_64_with_seed(&id.to_le_bytes(), 0x736b6970) % (m - 1) + 1).collect();
        let mut next = vec![0u64; n];
        let mut slots = vec![u32::MAX; TABLE_SIZE];
        let mut filled = 0usize;
        'fill: loop {
            for i in 0..n {
                for _ in 0..turns[i] {
                    let mut c = (offset[i] + next[i] * skip[i]) % m;
                    while slots[c as usize] != u32::MAX {
                        next[i] += 1;
                        c = (offset[i] + next[i] * skip[i]) % m;
                    }
                    slots[c as usize] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == TABLE_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Self { slots: slots.into_boxed_slice() }
    }

    /// The first target from the key's slot onward that `usable` accepts.
    /// Keys of a target that is down go to the next slots' owners, so they
    /// spread over the others and come back when it recovers.
    pub fn lookup(&self, key: u64, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let start = (key % TABLE_SIZE as u64) as usize;
        (0..TABLE_SIZE).map(|step| self.slots[(start + step) % TABLE_SIZE] as usize).find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owners(t: &MaglevTable, keys: u64) -> Vec<usize> {
        (0..keys)
            .map(|k| t.lookup(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes()), |_| true).unwrap_or(usize::MAX))
            .collect()
    }

    #[test]
    fn shares_follow_weights() {
        let t = MaglevTable::new(&[1, 2, 3], &[1, 1, 2]);
        let mut count = [0usize; 3];
        for s in t.slots.iter() {
            count[*s as usize] += 1;
        }
        let share = |i: usize| count[i] as f64 / TABLE_SIZE as f64;
        assert!((share(0) - 0.25).abs() < 0.01, "{count:?}");
        assert!((share(2) - 0.5).abs() < 0.01, "{count:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Adding one target to a pool of n moves about 1/(n+1) of the keys: the
        /// ones the new target takes, plus a little Maglev churn.
        #[test]
        fn adding_a_target_moves_about_one_nth(n in 2usize..40, seed in any::<u64>()) {
            let ids: Vec<u64> = (0..=n as u64).map(|i| xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed)).collect();
            let before = MaglevTable::new(&ids[..n], &vec![1; n]);
            let after = MaglevTable::new(&ids, &vec![1; n + 1]);
            let keys = 20_000;
            let a = owners(&before, keys);
            let b = owners(&after, keys);
            let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / keys as f64;
            let ideal = 1.0 / (n as f64 + 1.0);
            prop_assert!(moved <= ideal * 1.25 + 0.01, "n={} moved={:.4} ideal={:.4}", n, moved, ideal);
            // And every moved key went to the new target or stayed put.
            let stray = a.iter().zip(&b).filter(|(x, y)| x != y && **y != n).count() as f64 / keys as f64;
            prop_assert!(stray <= ideal * 0.25 + 0.01, "n={} stray={:.4}", n, stray);
        }
    }
}
