//! A bounded map for per-statement-shape caches (the plan cache, the access policy's
//! table readings): two generations, so memory stays bounded and recently inserted keys
//! stay in. When the newer generation fills up it becomes the older one and the older one
//! is dropped; lookups see both.

use std::collections::HashMap;

#[derive(Debug)]
pub struct Generations<V> {
    capacity: usize,
    current: HashMap<String, V>,
    previous: HashMap<String, V>,
}

impl<V> Generations<V> {
    /// A cache holding about `capacity` keys (at most twice that).
    pub fn new(capacity: usize) -> Self {
        Generations {
            capacity: capacity.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    pub fn insert(&mut self, key: String, value: V) {
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_two_generations() {
        let mut c = Generations::new(2);
        for i in 0..5 {
            c.insert(format!("k{i}"), i);
        }
        // k4 is in the new generation, k2 and k3 in the old one; k0 and k1 are gone.
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("k0"), None);
        assert_eq!(c.get("k3"), Some(&3));
        assert_eq!(c.get("k4"), Some(&4));
    }
}
