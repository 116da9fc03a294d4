//! Placing a header in the uuid rings of a pool set being rebuilt or reshaped.

use crate::header::{PoolHeader, Uuid};
use std::collections::BTreeMap;

/// The uuid every part with a header will have, by (replica, part).
pub(crate) type UuidMap = BTreeMap<(usize, usize), Uuid>;

/// `template` made the header of part `part` of replica `replica`: its uuid from `uuids`,
/// its part links to its neighbours in `ring` (the replica's parts that carry a header, in
/// order; a lone one links to itself), its replica links to part 0 of the neighbouring
/// replicas of `replicas`. The checksum is left to [`PoolHeader::encode`].
pub(crate) fn relinked(
    template: &PoolHeader,
    uuids: &UuidMap,
    ring: &[usize],
    replicas: usize,
    replica: usize,
    part: usize,
) -> PoolHeader {
    let get = |r: usize, p: usize| uuids.get(&(r, p)).copied().unwrap_or_default();
    let n = ring.len().max(1);
    let at = ring.iter().position(|&x| x == part).unwrap_or(0);
    let replicas = replicas.max(1);
    let mut h = template.clone();
    h.uuid = get(replica, part);
    h.prev_part_uuid = get(replica, ring.get((at + n - 1) % n).copied().unwrap_or(part));
    h.next_part_uuid = get(replica, ring.get((at + 1) % n).copied().unwrap_or(part));
    h.prev_repl_uuid = get((replica + replicas - 1) % replicas, 0);
    h.next_repl_uuid = get((replica + 1) % replicas, 0);
    h
}
