//! A bounded map whose entries expire, sans IO: what the recursive resolver remembers for a
//! while (delegations, name-server addresses, failed servers, failed questions).
//!
//! Time is a [`Duration`] since any fixed origin, passed to every call. When the map is
//! full, an insertion first drops the expired entries, then, if none had expired, the
//! eighth of the entries closest to expiry (at least one), so that a map full of fresh
//! entries is not scanned at every insertion.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// At most `capacity` entries, each kept until its expiry.
#[derive(Debug, Clone)]
pub struct ExpiringMap<K, V> {
    capacity: usize,
    entries: HashMap<K, (V, Duration)>,
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    /// An empty map of at most `capacity` entries (0 keeps none).
    pub fn new(capacity: usize) -> ExpiringMap<K, V> {
        ExpiringMap {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// How many entries it holds (expired ones included until looked up or evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Keeps `value` for `key` until `expires` (replacing what was kept for `key`); nothing
    /// if it has already expired at `now`, or the capacity is 0.
    pub fn insert(&mut self, key: K, value: V, expires: Duration, now: Duration) {
        if expires <= now || self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        self.entries.insert(key, (value, expires));
    }

    /// `key`'s value if still fresh at `now`; an expired one is dropped.
    pub fn get(&mut self, key: &K, now: Duration) -> Option<&V> {
        match self.entries.get(key) {
            Some((_, expires)) if now < *expires => self.entries.get(key).map(|(v, _)| v),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// `key`'s value if still fresh at `now` (an expired one stays until evicted).
    pub fn peek(&self, key: &K, now: Duration) -> Option<&V> {
        match self.entries.get(key) {
            Some((value, expires)) if now < *expires => Some(value),
            _ => None,
        }
    }

    /// Forgets `key`; returns its value, fresh or not.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(value, _)| value)
    }

    /// Frees at least one place if the map is full: the expired entries, else the eighth
    /// closest to expiry.
    fn make_room(&mut self, now: Duration) {
        if self.entries.len() < self.capacity {
            return;
        }
        self.entries.retain(|_, (_, expires)| now < *expires);
        if self.entries.len() < self.capacity {
            return;
        }
        let count = (self.entries.len() / 8).max(1);
        let mut by_expiry: Vec<(Duration, K)> = self
            .entries
            .iter()
            .map(|(key, (_, expires))| (*expires, key.clone()))
            .collect();
        by_expiry.select_nth_unstable_by_key(count - 1, |(expires, _)| *expires);
        for (_, key) in &by_expiry[..count] {
            self.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn entries_expire() {
        let mut map = ExpiringMap::new(4);
        map.insert("a", 1, secs(10), secs(0));
        assert_eq!(map.peek(&"a", secs(9)), Some(&1));
        assert_eq!(map.get(&"a", secs(9)), Some(&1));
        assert_eq!(map.peek(&"a", secs(10)), None);
        assert_eq!(map.len(), 1, "peek keeps an expired entry");
        assert_eq!(map.get(&"a", secs(10)), None);
        assert!(map.is_empty(), "get drops it");
        // Already expired, or no room at all: not kept.
        map.insert("b", 2, secs(5), secs(5));
        assert!(map.is_empty());
        let mut none = ExpiringMap::new(0);
        none.insert("a", 1, secs(10), secs(0));
        assert!(none.is_empty());
    }

    #[test]
    fn a_full_map_drops_the_expired_then_the_soonest_to_expire() {
        let mut map = ExpiringMap::new(3);
        map.insert(1, (), secs(5), secs(0));
        map.insert(2, (), secs(50), secs(0));
        map.insert(3, (), secs(30), secs(0));
        // Replacing a key needs no room.
        map.insert(3, (), secs(40), secs(0));
        assert_eq!(map.len(), 3);
        // 1 has expired at 6: only it goes.
        map.insert(4, (), secs(60), secs(6));
        assert_eq!(map.len(), 3);
        assert!(map.peek(&1, secs(0)).is_none());
        // All fresh: 3 (until 40) goes.
        map.insert(5, (), secs(70), secs(7));
        let mut kept: Vec<i32> = [2, 3, 4, 5]
            .into_iter()
            .filter(|k| map.peek(k, secs(7)).is_some())
            .collect();
        kept.sort();
        assert_eq!(kept, [2, 4, 5]);
        assert_eq!(map.remove(&2), Some(()));
        map.clear();
        assert!(map.is_empty());
    }

    #[test]
    fn ties_do_not_empty_a_full_map() {
        let mut map = ExpiringMap::new(64);
        for i in 0..1000 {
            map.insert(i, (), secs(100), secs(0));
            assert!(map.len() <= 64);
        }
        assert!(map.len() >= 56, "{}", map.len());
        assert!(map.peek(&999, secs(0)).is_some());
    }
}
