//! Live seat counts that replace the snapshot's availability (filled by bookd's
//! invalidations). Keys are the snapshot's own: (flight, leg, base-day index, class).
//! Reading an empty overlay costs one relaxed atomic load.
//!
//! The map is split into [`SHARDS`] independently locked shards (chosen by the key's hash),
//! so a search's seat lookups only wait for a writer that is changing that very shard, for
//! the few entries of one batch that fall into it, instead of for a whole frame of
//! thousands of entries; the keys are hashed with a cheap multiplicative hash instead of
//! SipHash (they come from the snapshot and bookd, not from a client). Semantics:
//! - values are absolute; [`Overlay::apply`] applies a batch in order (the last value of a
//!   key repeated in one batch wins); callers serialise their applies (the subscriber holds
//!   its state lock), so per key the values move in seq order;
//! - a reader may see part of a batch applied (other keys of it a moment later): each
//!   entry is a leg class's absolute seats, so no reader can be inconsistent about one key;
//! - [`Overlay::replace`] holds every shard's lock while it swaps them all: a lookup sees
//!   the old set or the new one, never an empty overlay in between (which would resurrect
//!   sold seats).
//! - a filter of the (flight, base day)s that may have entries lets a search read the
//!   seats of every other dated flight straight from the snapshot, as fast as with an
//!   empty overlay ([`Overlay::may_have`]): a bit is set (under the shard lock, before the
//!   entry is inserted) for every key ever applied, and the filter is made exact again,
//!   under every shard lock, by [`Overlay::replace`] and [`Overlay::clear`]. A set bit may
//!   be a stray (a hash collision, an entry since replaced): that only costs a map probe.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of shards (a power of two: the shard is the top bits of a hash).
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// A cheap hasher for the overlay's u64 keys (a multiply and a xor-shift: both the low bits
/// the table indexes by and the high bits it tags with depend on every key bit).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write_u64(&mut self, k: u64) {
        let h = (self.0 ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by u64 keys; kept correct for any other use.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<u64, u16, BuildHasherDefault<KeyHasher>>;

/// One shard on its own cache lines, so that locking one does not bounce its neighbours.
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<Map>);

impl Shard {
    fn read(&self) -> RwLockReadGuard<'_, Map> {
        match self.0.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[inline]
fn shard_of(key: u64) -> usize {
    // A different multiplier than KeyHasher's, so a shard's keys still spread in its table.
    (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> (64 - SHARD_BITS)) as usize
}

/// Bits of the (flight, base day) filter: 2^24 (2 MiB), a few percent full when the
/// overlay holds ~10^6 leg classes of ~10^5 dated flights.
const FILTER_BITS: u32 = 24;
const FILTER_WORDS: usize = (1 << FILTER_BITS) / 64;

/// The filter bit of the dated flight of availability key `key`.
#[inline]
fn filter_bit(key: u64) -> usize {
    filter_bit_of((key >> 32) as u32, ((key >> 8) & 0xffff) as u16)
}

#[inline]
fn filter_bit_of(flight: u32, day: u16) -> usize {
    let fd = (u64::from(flight) << 16) | u64::from(day);
    (fd.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

/// Seats per `format::model::avail_key`.
pub struct Overlay {
    len: AtomicUsize,
    shards: Box<[Shard]>,
    /// See the module doc: bit [`filter_bit`] of every key that may have an entry.
    filter: Box<[AtomicU64]>,
}

impl Default for Overlay {
    fn default() -> Self {
        Self {
            len: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            filter: (0..FILTER_WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Overlay {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live seat count, if the overlay has one for this key.
    #[inline]
    pub fn seats(&self, key: u64) -> Option<u16> {
        if self.len.load(Ordering::Relaxed) == 0 || !self.filter_has(filter_bit(key)) {
            return None;
        }
        self.shards[shard_of(key)].read().get(&key).copied()
    }

    /// Whether the overlay may have entries for some leg and class of `flight` on base-day
    /// index `day`; false means it has none (the snapshot's seats are the live ones).
    #[inline]
    pub fn may_have(&self, flight: u32, day: u16) -> bool {
        self.len.load(Ordering::Relaxed) != 0 && self.filter_has(filter_bit_of(flight, day))
    }

    #[inline]
    fn filter_has(&self, bit: usize) -> bool {
        self.filter
            .get(bit / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (bit % 64)) != 0)
    }

    fn filter_set(&self, key: u64) {
        let bit = filter_bit(key);
        if let Some(w) = self.filter.get(bit / 64) {
            w.fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// Sets the filter to exactly the bits of `words` (with every shard locked).
    fn filter_store(&self, words: &[u64]) {
        debug_assert_eq!(words.len(), self.filter.len());
        for (w, &v) in self.filter.iter().zip(words) {
            w.store(v, Ordering::Release);
        }
    }

    /// Sets absolute values (applying the same update twice changes nothing). Updates are
    /// applied in order within each shard, so a key repeated in `updates` ends at its last
    /// value.
    pub fn apply(&self, updates: &[(u64, u16)]) {
        if updates.is_empty() {
            return;
        }
        // Group by shard, keeping each shard's updates in their order (a stable sort).
        let mut order: Vec<(usize, usize)> = updates
            .iter()
            .enumerate()
            .map(|(i, &(k, _))| (shard_of(k), i))
            .collect();
        order.sort_by_key(|&(s, _)| s);
        let mut i = 0;
        while i < order.len() {
            let s = order[i].0;
            let mut map = self.shards[s].write();
            let before = map.len();
            while i < order.len() && order[i].0 == s {
                let (k, v) = updates[order[i].1];
                // Before the entry: a reader that finds the entry finds its bit.
                self.filter_set(k);
                map.insert(k, v);
                i += 1;
            }
            let grown = map.len() - before;
            // Counted while the shard is still locked: `len` is never below the entries
            // a reader could find.
            if grown > 0 {
                self.len.fetch_add(grown, Ordering::Relaxed);
            }
        }
    }

    /// Replaces every entry at once: a lookup sees the old set or the new one, never a mix
    /// of an emptied and a filled shard (and never an empty overlay in between, which
    /// would resurrect sold seats).
    pub fn replace(&self, entries: HashMap<u64, u16>) {
        let total = entries.len();
        // Built outside every lock.
        let mut fresh: Vec<Map> = (0..SHARDS).map(|_| Map::default()).collect();
        let mut bits = vec![0u64; FILTER_WORDS];
        for (k, v) in entries {
            let b = filter_bit(k);
            bits[b / 64] |= 1 << (b % 64);
            fresh[shard_of(k)].insert(k, v);
        }
        // The new entries' bits first, so that a reader between the swap and the exact
        // filter below still finds them.
        for (w, &v) in self.filter.iter().zip(&bits) {
            if v != 0 {
                w.fetch_or(v, Ordering::Release);
            }
        }
        let old: Vec<Map> = {
            // Always in shard order (the only place holding several shard locks).
            let mut guards: Vec<RwLockWriteGuard<'_, Map>> =
                self.shards.iter().map(Shard::write).collect();
            let old = guards
                .iter_mut()
                .zip(fresh)
                .map(|(g, f)| std::mem::replace(&mut **g, f))
                .collect();
            self.len.store(total, Ordering::Relaxed);
            self.filter_store(&bits);
            old
        };
        // The old maps are freed outside the locks.
        drop(old);
    }

    pub fn clear(&self) {
        let mut guards: Vec<RwLockWriteGuard<'_, Map>> =
            self.shards.iter().map(Shard::write).collect();
        for g in &mut guards {
            g.clear();
        }
        self.len.store(0, Ordering::Relaxed);
        for w in self.filter.iter() {
            w.store(0, Ordering::Release);
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_updates_are_idempotent() {
        let o = Overlay::new();
        assert_eq!(o.seats(7), None);
        o.apply(&[(7, 3)]);
        o.apply(&[(7, 3)]);
        assert_eq!(o.seats(7), Some(3));
        assert_eq!(o.len(), 1);
        o.clear();
        assert!(o.is_empty());
        assert_eq!(o.seats(7), None);
    }

    #[test]
    fn the_last_value_of_a_key_repeated_in_one_batch_wins_across_shards() {
        let o = Overlay::new();
        // Enough keys to land in every shard, each written twice in one batch.
        let mut batch = Vec::new();
        for k in 0..10_000u64 {
            batch.push((k, 1));
        }
        for k in 0..10_000u64 {
            batch.push((k, (k % 100) as u16 + 2));
        }
        o.apply(&batch);
        assert_eq!(o.len(), 10_000);
        for k in 0..10_000u64 {
            assert_eq!(o.seats(k), Some((k % 100) as u16 + 2), "key {k}");
        }
        let used: std::collections::HashSet<usize> = (0..10_000u64).map(shard_of).collect();
        assert_eq!(used.len(), SHARDS, "keys spread over every shard");
    }

    #[test]
    fn the_filter_admits_every_dated_flight_with_entries_and_few_others() {
        use format::model::avail_key;
        let o = Overlay::new();
        assert!(!o.may_have(1, 1));
        let keys: Vec<u64> = (0..2_000u32)
            .map(|f| avail_key(f * 7, (f % 3) as u8, (f % 365) as u16, b'Y'))
            .collect();
        o.apply(&keys.iter().map(|&k| (k, 4)).collect::<Vec<_>>());
        for f in 0..2_000u32 {
            assert!(o.may_have(f * 7, (f % 365) as u16), "flight {f}");
        }
        let strays = (0..20_000u32)
            .filter(|&f| o.may_have(1_000_000 + f, 9))
            .count();
        assert!(
            strays < 100,
            "{strays} of 20,000 absent dated flights admitted"
        );
        // Made exact by a replace: the flights it leaves out are no longer admitted.
        let kept: HashMap<u64, u16> = [(keys[0], 1)].into_iter().collect();
        o.replace(kept);
        assert!(o.may_have(0, 0));
        assert!(!o.may_have(7, 1));
        assert_eq!(o.seats(keys[1]), None);
        o.clear();
        assert!(!o.may_have(0, 0));
    }

    #[test]
    fn replace_swaps_the_whole_set_and_counts_it() {
        let o = Overlay::new();
        o.apply(&[(1, 1), (2, 2), (3, 3)]);
        let fresh: HashMap<u64, u16> = [(3, 30), (4, 40)].into_iter().collect();
        o.replace(fresh);
        assert_eq!(o.len(), 2);
        assert_eq!(o.seats(1), None);
        assert_eq!(o.seats(2), None);
        assert_eq!(o.seats(3), Some(30));
        assert_eq!(o.seats(4), Some(40));
        o.replace(HashMap::new());
        assert!(o.is_empty());
        assert_eq!(o.seats(3), None);
    }

    #[test]
    fn readers_never_see_an_empty_overlay_while_it_is_replaced() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let o = Arc::new(Overlay::new());
        let full: HashMap<u64, u16> = (0..20_000u64).map(|k| (k, 5)).collect();
        o.replace(full.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut misses = 0u64;
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if o.seats(k % 20_000).is_none() {
                        misses += 1;
                    }
                    k = k.wrapping_add(7919);
                }
                misses
            })
        };
        for round in 0..50u16 {
            let next: HashMap<u64, u16> = (0..20_000u64).map(|k| (k, round)).collect();
            o.replace(next);
        }
        stop.store(true, Ordering::Relaxed);
        let misses = reader.join().unwrap_or(u64::MAX);
        assert_eq!(misses, 0, "a lookup found no entry during a replace");
        assert_eq!(o.len(), full.len());
    }
}
