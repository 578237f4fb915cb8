//! The failed-login throttle: how long a failing login waits before it is answered, from
//! how often that peer failed recently.
//!
//! A failure waits `first_delay`, doubled for each other failure of the same peer within
//! `forget_after`, up to `max_delay` (0.25 s, 0.5 s, 1 s, 2 s, 2 s... by default). It is a
//! cost, never a lockout: the right password is answered at once, whoever failed before
//! from the same address, so users behind one NAT cannot be locked out by an attacker
//! there. A success does not clear the record (a peer holding one valid account could
//! otherwise reset it between guesses at others); old failures simply age out.
//!
//! Peers are IPv4 addresses, and IPv6 /64 prefixes (one host commonly holds a whole /64).
//! The table remembers at most `max_peers` of them, forgetting the one whose last failure
//! is oldest when full, so its memory is bounded whatever peers do.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// How the failed-login throttle of a [`Portal`](crate::Portal) behaves. Change fields of
/// `ThrottleConfig::default()`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// The delay of a peer's first recent failure (0.25 s).
    pub first_delay: Duration,
    /// The longest delay (2 s).
    pub max_delay: Duration,
    /// How long a failure counts against its peer (5 minutes).
    pub forget_after: Duration,
    /// How many peers are remembered at most (4096).
    pub max_peers: usize,
    /// The delay of a failure whose peer address is not known (a Unix socket, say): fixed,
    /// since there is no peer to count against (0.5 s).
    pub unknown_peer_delay: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            forget_after: Duration::from_secs(300),
            max_peers: 4096,
            unknown_peer_delay: Duration::from_millis(500),
        }
    }
}

/// A peer as the throttle counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(u32),
    V6Prefix(u64),
}

impl PeerKey {
    fn of(ip: IpAddr) -> PeerKey {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4.into()),
                None => PeerKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The per-peer record of recent failures.
pub(crate) struct Throttle {
    config: ThrottleConfig,
    /// How many failures reach `max_delay`: older ones need not be kept.
    steps: usize,
    /// Times (in the portal clock's seconds) of each peer's latest failures, oldest first.
    peers: HashMap<PeerKey, VecDeque<f64>>,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Throttle {
        let mut steps = 1;
        while steps < 32 && delay_for(&config, steps) < config.max_delay {
            steps += 1;
        }
        Throttle {
            config,
            steps,
            peers: HashMap::new(),
        }
    }

    /// Records a failure of `peer` at `now` and says how long its answer waits.
    pub(crate) fn failure(&mut self, peer: Option<IpAddr>, now: f64) -> Duration {
        let Some(ip) = peer else {
            return self.config.unknown_peer_delay;
        };
        let key = PeerKey::of(ip);
        if !self.peers.contains_key(&key) {
            self.make_room(now);
        }
        let horizon = now - self.config.forget_after.as_secs_f64();
        let times = self.peers.entry(key).or_default();
        while times.front().is_some_and(|&t| t <= horizon) {
            times.pop_front();
        }
        if times.len() == self.steps {
            times.pop_front();
        }
        times.push_back(now);
        delay_for(&self.config, times.len())
    }

    /// How many peers are remembered now.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Makes room for one more peer: forgets peers whose failures have all aged out, and if
    /// that is not enough, the one whose last failure is oldest. O(peers), and only when a
    /// new peer fails while the table is full.
    fn make_room(&mut self, now: f64) {
        if self.peers.len() < self.config.max_peers.max(1) {
            return;
        }
        let horizon = now - self.config.forget_after.as_secs_f64();
        self.peers
            .retain(|_, times| times.back().is_some_and(|&t| t > horizon));
        if self.peers.len() < self.config.max_peers.max(1) {
            return;
        }
        let oldest = self
            .peers
            .iter()
            .min_by(|a, b| {
                a.1.back()
                    .partial_cmp(&b.1.back())
                    .expect("times are finite")
            })
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.peers.remove(&key);
        }
    }
}

/// The delay of a peer's `n`th recent failure (`n` ≥ 1).
fn delay_for(config: &ThrottleConfig, n: usize) -> Duration {
    let doublings = u32::try_from(n.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(31);
    config
        .first_delay
        .saturating_mul(1 << doublings)
        .min(config.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let peer = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let delays: Vec<u128> = (0..6).map(|i| ms(t.failure(peer, f64::from(i)))).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(t.steps, 4);
    }

    #[test]
    fn ipv6_peers_count_by_slash_64_and_mapped_v4_as_v4() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(ms(t.failure(Some(a.into()), 0.0)), 250);
        assert_eq!(ms(t.failure(Some(b.into()), 0.0)), 500);
        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(ms(t.failure(Some(v4.into()), 0.0)), 250);
        assert_eq!(ms(t.failure(Some(v4.to_ipv6_mapped().into()), 0.0)), 500);
        assert_eq!(t.len(), 2);
    }
}
