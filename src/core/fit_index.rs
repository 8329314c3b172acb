//! First fit over thousands of nodes without looking at each: a max tree over the
//! nodes' free CPU and memory, in the order a decision tries them.
//!
//! A decision puts each pod on the first node in its order that holds it. Most nodes of
//! a large cluster are full, so a plain scan read every node's room (and its labels)
//! for every pod: at 7,000 nodes that scan was most of a consolidation pass. The tree
//! skips every run of nodes whose largest free CPU or memory is below the pod's request;
//! the caller still checks each node the tree offers (taints, labels, topology, the other
//! resources) and asks again from the next position when it does not do, so the node
//! found is the one the scan found.

/// Per position (a node in try order): its free CPU (millicores) and memory (bytes),
/// and for every subtree the largest of each.
#[derive(Clone, Debug, Default)]
pub struct FitIndex {
    /// Leaves start at `leaves`: a power of two at least the number of positions.
    leaves: usize,
    cpu: Vec<i64>,
    memory: Vec<i64>,
}

/// Below every request: an empty leaf, never offered.
const NONE: i64 = i64::MIN;

impl FitIndex {
    /// Over `rooms`, (cpu, memory) per position.
    pub fn new(rooms: impl ExactSizeIterator<Item = (i64, i64)>) -> Self {
        let leaves = rooms.len().next_power_of_two().max(1);
        let mut index = FitIndex {
            leaves,
            cpu: vec![NONE; 2 * leaves],
            memory: vec![NONE; 2 * leaves],
        };
        for (pos, (cpu, memory)) in rooms.enumerate() {
            index.cpu[leaves + pos] = cpu;
            index.memory[leaves + pos] = memory;
        }
        for v in (1..leaves).rev() {
            index.pull(v);
        }
        index
    }

    fn pull(&mut self, v: usize) {
        self.cpu[v] = self.cpu[2 * v].max(self.cpu[2 * v + 1]);
        self.memory[v] = self.memory[2 * v].max(self.memory[2 * v + 1]);
    }

    /// Position `pos` now has `cpu` and `memory` free.
    pub fn set(&mut self, pos: usize, cpu: i64, memory: i64) {
        let mut v = self.leaves + pos;
        self.cpu[v] = cpu;
        self.memory[v] = memory;
        while v > 1 {
            v /= 2;
            self.pull(v);
        }
    }

    /// The first position at or after `from` with at least `cpu` and `memory` free.
    /// The search starts at `from`'s leaf and climbs only as far as the next subtree that
    /// may hold it, so a caller that rejects a node and asks again from the next position
    /// pays for the distance, not for a descent from the root.
    pub fn first_fitting(&self, from: usize, cpu: i64, memory: i64) -> Option<usize> {
        if from >= self.leaves {
            return None;
        }
        let mut v = self.leaves + from;
        loop {
            if let Some(pos) = self.leftmost(v, cpu, memory) {
                return Some(pos);
            }
            // To the next subtree on the right: up while `v` is a right child.
            while v % 2 == 1 {
                v /= 2;
                if v == 0 {
                    return None;
                }
            }
            v += 1;
        }
    }

    /// The leftmost position in subtree `v` with `cpu` and `memory` free. The maxima
    /// are per resource, so a subtree that passes both may still hold no such leaf.
    fn leftmost(&self, v: usize, cpu: i64, memory: i64) -> Option<usize> {
        if self.cpu[v] < cpu || self.memory[v] < memory {
            return None;
        }
        if v >= self.leaves {
            return Some(v - self.leaves);
        }
        self.leftmost(2 * v, cpu, memory)
            .or_else(|| self.leftmost(2 * v + 1, cpu, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn scan(rooms: &[(i64, i64)], from: usize, cpu: i64, memory: i64) -> Option<usize> {
        (from..rooms.len()).find(|&p| rooms[p].0 >= cpu && rooms[p].1 >= memory)
    }

    /// The tree offers exactly the positions a scan in order finds, through updates.
    #[test]
    fn finds_what_a_scan_in_order_finds() {
        let mut rng = Rng::new(7);
        for _ in 0..300 {
            let n = rng.below(70);
            let mut rooms: Vec<(i64, i64)> = (0..n)
                .map(|_| (rng.below(9) as i64 - 1, rng.below(9) as i64 - 1))
                .collect();
            let mut index = FitIndex::new(rooms.iter().copied());
            for _ in 0..40 {
                if n > 0 && rng.below(2) == 0 {
                    let p = rng.below(n);
                    rooms[p] = (rng.below(9) as i64 - 1, rng.below(9) as i64 - 1);
                    index.set(p, rooms[p].0, rooms[p].1);
                }
                let from = rng.below(n + 2);
                let (cpu, memory) = (rng.below(9) as i64, rng.below(9) as i64);
                assert_eq!(
                    index.first_fitting(from, cpu, memory),
                    scan(&rooms, from, cpu, memory),
                    "rooms {rooms:?} from {from} for ({cpu}, {memory})"
                );
            }
        }
    }

    #[test]
    fn an_empty_index_offers_nothing() {
        let index = FitIndex::new(std::iter::empty());
        assert_eq!(index.first_fitting(0, 0, 0), None);
        let one = FitIndex::new([(4, 4)].into_iter());
        assert_eq!(one.first_fitting(0, 4, 4), Some(0));
        assert_eq!(one.first_fitting(0, 5, 0), None);
        assert_eq!(one.first_fitting(1, 0, 0), None);
    }
}
