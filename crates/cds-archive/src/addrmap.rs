//! A small open-addressing hash map keyed by non-zero addresses: the one map used on the hot
//! paths of loading (externals by dumped address, interned strings by archived address, external
//! kinds by address). A general-purpose map costs more than the work it is meant to save there.

#[derive(Debug, Clone)]
pub struct AddrMap<V: Copy> {
    keys: Vec<u64>,
    values: Vec<V>,
    mask: usize,
    len: usize,
}

impl<V: Copy + Default> AddrMap<V> {
    /// A map for up to `n` keys (it refuses inserts beyond three quarters of its table).
    pub fn with_capacity(n: usize) -> Self {
        let size = (n + n / 3 + 1).next_power_of_two().max(16);
        AddrMap { keys: vec![0; size], values: vec![V::default(); size], mask: size - 1, len: 0 }
    }

    fn home(&self, key: u64) -> usize {
        ((key >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    pub fn get(&self, key: u64) -> Option<V> {
        if key == 0 {
            return None;
        }
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                0 => return None,
                k if k == key => return Some(self.values[i]),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// Inserts or replaces. Returns false (and stores nothing) for key 0 or when the table is
    /// three quarters full, so lookups always end.
    pub fn insert(&mut self, key: u64, value: V) -> bool {
        if key == 0 {
            return false;
        }
        let mut i = self.home(key);
        while self.keys[i] != 0 && self.keys[i] != key {
            i = (i + 1) & self.mask;
        }
        if self.keys[i] == 0 {
            if (self.len + 1) * 4 > self.keys.len() * 3 {
                return false;
            }
            self.len += 1;
            self.keys[i] = key;
        }
        self.values[i] = value;
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.keys.iter().zip(&self.values).filter(|(k, _)| **k != 0).map(|(&k, &v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::AddrMap;

    #[test]
    fn insert_get_and_refuse_when_full() {
        let mut m = AddrMap::with_capacity(100);
        for k in 1..=100u64 {
            assert!(m.insert(k * 16, k));
        }
        for k in 1..=100u64 {
            assert_eq!(m.get(k * 16), Some(k));
        }
        assert_eq!(m.get(8), None);
        assert_eq!(m.get(0), None);
        let mut filled = 0;
        for k in 1000..100_000u64 {
            if !m.insert(k * 16, k) {
                break;
            }
            filled += 1;
        }
        assert!(filled < 100_000 - 1000, "never refused");
        assert_eq!(m.get(1000 * 16), Some(1000));
    }
}
