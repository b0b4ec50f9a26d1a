//! A cheap hasher for maps keyed by ids that no peer chooses: request ids
//! (random UUIDs the client generates) and connection numbers (a counter the
//! server keeps). SipHash would guard against keys chosen to collide; these
//! keys cannot be chosen, and the maps are looked up on every frame.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing's multiplier (2^64 / φ).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hashes an integer id with one multiplication. Consecutive ids spread over
/// the high bits (which hashbrown's control bytes use) while the low bits
/// stay distinct.
///
/// ```
/// use volt_protocol::id_hash::IdMap;
/// let mut map: IdMap<u128, &str> = IdMap::default();
/// map.insert(0x1234_5678_9abc_def0_1234_5678_9abc_def0, "waiter");
/// assert_eq!(map.len(), 1);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(GOLDEN);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64((n as u64) ^ ((n >> 64) as u64));
    }
}

/// A `HashMap` keyed by ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash(key: impl Hash) -> u64 {
        let mut h = IdHasher::default();
        key.hash(&mut h);
        h.finish()
    }

    #[test]
    fn consecutive_ids_differ_in_their_high_bits() {
        let tops: std::collections::HashSet<u64> = (0u64..64).map(|n| hash(n) >> 57).collect();
        assert!(
            tops.len() > 32,
            "only {} distinct top-7-bit values",
            tops.len()
        );
    }

    #[test]
    fn uuid_halves_both_count() {
        assert_ne!(hash(1u128), hash(1u128 << 64 | 2));
    }
}
