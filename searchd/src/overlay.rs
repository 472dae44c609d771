//! Live seat counts that replace the snapshot's availability (filled by bookd's
//! invalidations). Keys are the snapshot's own: (flight, leg, base-day index, class).
//! Reading an empty overlay costs one relaxed atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// Seats per `format::model::avail_key`, plus the last applied sequence number.
#[derive(Default)]
pub struct Overlay {
    len: AtomicUsize,
    seats: RwLock<HashMap<u64, u16>>,
}

impl Overlay {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live seat count, if the overlay has one for this key.
    #[inline]
    pub fn seats(&self, key: u64) -> Option<u16> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.seats.read() {
            Ok(map) => map.get(&key).copied(),
            Err(poisoned) => poisoned.into_inner().get(&key).copied(),
        }
    }

    /// Sets absolute values (applying the same update twice changes nothing).
    pub fn apply(&self, updates: &[(u64, u16)]) {
        let mut map = match self.seats.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        for &(k, s) in updates {
            map.insert(k, s);
        }
        self.len.store(map.len(), Ordering::Relaxed);
    }

    /// Replaces every entry at once: a reader sees the old set or the new one, never a mix
    /// (and never an empty overlay in between, which would resurrect sold seats).
    pub fn replace(&self, entries: HashMap<u64, u16>) {
        let old = {
            let mut map = match self.seats.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            let old = std::mem::replace(&mut *map, entries);
            self.len.store(map.len(), Ordering::Relaxed);
            old
        };
        // The old map is freed outside the lock.
        drop(old);
    }

    pub fn clear(&self) {
        let mut map = match self.seats.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.clear();
        self.len.store(0, Ordering::Relaxed);
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
    }
}
