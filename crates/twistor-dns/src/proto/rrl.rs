//! Response rate limiting (RRL), as NSD and Knot do it: a reflection attack sends queries
//! with a victim's address as the source, so a server that answers every query floods the
//! victim. Each UDP response is counted against its client's network (an IPv4 /24, an IPv6
//! /56) and the kind of answer (answers per name and type, NXDOMAINs, errors); beyond the
//! limit per second the response is dropped, except every `slip`-th one, which goes out
//! truncated and empty (TC set), so a real client behind that network retries over TCP,
//! which cannot be spoofed.
//!
//! The table has a fixed number of slots, indexed by a hash of the key: a flood of distinct
//! keys overwrites slots instead of growing memory (NSD does the same). Time is passed in.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// NSD's default limit (`rrl-ratelimit: 200`): responses per second per client network and
/// kind of answer.
pub const DEFAULT_RATE: u32 = 200;

/// NSD's and Knot's default slip: every second limited response goes out truncated.
pub const DEFAULT_SLIP: u32 = 2;

/// Slots in the table by default (NSD's `rrl-size` default is 1,000,000; a server with
/// fewer clients needs fewer).
pub const DEFAULT_TABLE_SIZE: usize = 65_536;

/// What kind of response is being counted: responses of different kinds to one network are
/// counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// A positive answer (or NODATA), counted per query name and type.
    Answer,
    /// NXDOMAIN, counted per zone: a random-subdomain flood is one key.
    NxDomain,
    /// A referral, counted per delegation.
    Referral,
    /// An error (REFUSED, FORMERR, SERVFAIL…), counted per network.
    Error,
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated and empty (TC set), so that the client retries over TCP.
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u64,
    /// The second the count is for.
    second: u64,
    /// Responses counted in `second`, plus half of the previous second's (a smoothed
    /// rate, as NSD keeps).
    count: u32,
    /// Limited responses so far, for the slip.
    limited: u32,
}

/// A response rate limiter; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: u32,
    slip: u32,
    slots: Vec<Slot>,
}

impl RateLimiter {
    /// A limiter allowing `rate` responses per second per client network and kind (0: no
    /// limit), sending every `slip`-th limited response truncated (0: none, drop them all;
    /// 1: all), with `table_size` slots (at least 1).
    pub fn new(rate: u32, slip: u32, table_size: usize) -> RateLimiter {
        RateLimiter {
            rate,
            slip,
            slots: vec![Slot::default(); table_size.max(1)],
        }
    }

    /// Whether the limiter limits at all.
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// Counts one UDP response to `client` and says what to do with it. `name` is what the
    /// response is about (the query name for answers, the zone for NXDOMAIN and referrals;
    /// ignored for errors), in any case (it is compared case-insensitively); `now` is the
    /// current time in whole seconds.
    pub fn check(&mut self, client: IpAddr, kind: ResponseKind, name: &[u8], now: u64) -> Verdict {
        if self.rate == 0 {
            return Verdict::Send;
        }
        let key = key_of(client, kind, name);
        let index = (key % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[index];
        if slot.key != key {
            *slot = Slot {
                key,
                second: now,
                count: 0,
                limited: 0,
            };
        }
        if slot.second != now {
            let elapsed = now.saturating_sub(slot.second).min(31) as u32;
            slot.count >>= elapsed;
            slot.second = now;
        }
        slot.count = slot.count.saturating_add(1);
        if slot.count <= self.rate {
            return Verdict::Send;
        }
        slot.limited = slot.limited.wrapping_add(1);
        if self.slip > 0 && slot.limited.is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

fn key_of(client: IpAddr, kind: ResponseKind, name: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    match client {
        IpAddr::V4(a) => (u32::from(a) & 0xffff_ff00).hash(&mut h),
        IpAddr::V6(a) => (u128::from(a) >> 72).hash(&mut h),
    }
    kind.hash(&mut h);
    if kind != ResponseKind::Error {
        for b in name {
            b.to_ascii_lowercase().hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn under_the_rate_everything_is_sent() {
        let mut rrl = RateLimiter::new(5, 2, 64);
        for _ in 0..5 {
            assert_eq!(
                rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 10),
                Verdict::Send
            );
        }
    }

    #[test]
    fn beyond_the_rate_every_second_response_slips_and_the_rest_drop() {
        let mut rrl = RateLimiter::new(3, 2, 64);
        let verdicts: Vec<Verdict> = (0..7)
            .map(|_| rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 10))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Send, Send, Drop, Slip, Drop, Slip]);
    }

    #[test]
    fn one_network_is_one_key_and_other_networks_are_apart() {
        let mut rrl = RateLimiter::new(2, 0, 1024);
        assert_eq!(
            rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check(ip("192.0.2.200"), ResponseKind::Answer, b"A", 1),
            Verdict::Send
        );
        // Same /24, same name in another case: the third response is over.
        assert_eq!(
            rrl.check(ip("192.0.2.9"), ResponseKind::Answer, b"a", 1),
            Verdict::Drop
        );
        // Another /24, another name, another kind: counted apart.
        assert_eq!(
            rrl.check(ip("192.0.3.1"), ResponseKind::Answer, b"a", 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"b", 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check(ip("192.0.2.1"), ResponseKind::NxDomain, b"a", 1),
            Verdict::Send
        );
        // IPv6: one /56.
        assert_eq!(
            rrl.check(ip("2001:db8:0:1::1"), ResponseKind::Error, b"", 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check(ip("2001:db8:0:2::1"), ResponseKind::Error, b"x", 1),
            Verdict::Send
        );
        assert_eq!(
            rrl.check(ip("2001:db8:0:3::1"), ResponseKind::Error, b"y", 1),
            Verdict::Drop
        );
        assert_eq!(
            rrl.check(ip("2001:db8:1:0::1"), ResponseKind::Error, b"", 1),
            Verdict::Send
        );
    }

    #[test]
    fn the_count_decays_by_half_each_second() {
        let mut rrl = RateLimiter::new(4, 0, 64);
        for _ in 0..8 {
            rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 100);
        }
        // 8 counted; one second later 4 remain and the next is over…
        assert_eq!(
            rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 101),
            Verdict::Drop
        );
        // …two seconds on, 5 >> 2 = 1 remains: room again.
        assert_eq!(
            rrl.check(ip("192.0.2.1"), ResponseKind::Answer, b"a", 103),
            Verdict::Send
        );
    }

    #[test]
    fn a_rate_of_zero_limits_nothing_and_the_table_stays_its_size() {
        let mut rrl = RateLimiter::new(0, 2, 16);
        assert!(!rrl.enabled());
        for i in 0..1000u32 {
            let client = IpAddr::from(i.to_be_bytes());
            assert_eq!(
                rrl.check(client, ResponseKind::Answer, b"a", 1),
                Verdict::Send
            );
        }
        let mut rrl = RateLimiter::new(1, 1, 16);
        for i in 0..10_000u32 {
            let client = IpAddr::from((i << 8).to_be_bytes());
            rrl.check(client, ResponseKind::Answer, &i.to_be_bytes(), 1);
        }
        assert_eq!(rrl.slots.len(), 16);
    }
}
