//! Hybrid logical clock: a stamp that follows the wall clock but never goes backwards.
//!
//! A stamp packs milliseconds and a counter into one `i64` (`physical_ms << 16 | counter`), so
//! stamps compare as integers, in SQLite and in Postgres alike. A device's clock moves past every
//! stamp it has seen (its own and pulled ones), so an edit made after seeing another always
//! carries a larger stamp, whatever the wall clocks of the two devices say.

/// Bits of the logical counter.
const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: i64 = (1 << COUNTER_BITS) - 1;

/// The milliseconds part of a stamp.
pub fn physical_ms(stamp: i64) -> i64 {
    stamp >> COUNTER_BITS
}

/// The counter part of a stamp.
pub fn counter(stamp: i64) -> i64 {
    stamp & COUNTER_MASK
}

/// The stamp for a local event, given the last stamp issued or seen and the wall clock.
///
/// If the wall clock is ahead of `last`, the stamp is the wall clock with counter 0; otherwise
/// (same millisecond, or a wall clock that went backwards) it is `last` plus one.
pub fn tick(last: i64, wall_ms: i64) -> i64 {
    let wall = wall_ms.max(0) << COUNTER_BITS;
    if wall > last {
        wall
    } else {
        // The counter may carry into the milliseconds: still monotonic, still unique.
        last + 1
    }
}

/// The clock after seeing a remote stamp: never behind it, so the next local tick beats it.
pub fn observe(last: i64, remote: i64) -> i64 {
    last.max(remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock() {
        let a = tick(0, 1_000);
        assert_eq!(physical_ms(a), 1_000);
        assert_eq!(counter(a), 0);
        let b = tick(a, 1_001);
        assert_eq!(physical_ms(b), 1_001);
    }

    #[test]
    fn never_goes_backwards_when_the_wall_clock_does() {
        let a = tick(0, 5_000);
        let b = tick(a, 4_000);
        let c = tick(b, 4_500);
        assert!(a < b && b < c);
        assert_eq!(physical_ms(c), 5_000);
        assert_eq!(counter(c), 2);
    }

    #[test]
    fn a_local_edit_after_a_remote_one_wins() {
        // The remote device's clock is an hour ahead of ours.
        let remote = tick(0, 3_600_000 + 10);
        let last = observe(tick(0, 10), remote);
        assert!(tick(last, 20) > remote);
    }
}
