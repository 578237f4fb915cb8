//! The resolver's cache: whole responses keyed by question, sans IO.
//!
//! A [`Cache`] keeps up to `capacity` responses, keyed by [`CacheKey`] (the lower-cased
//! name, the type and the class), and evicts the least recently used when full. Time is a
//! [`Duration`] since any fixed origin, passed to every call.
//!
//! How long a response is kept:
//!
//! - **Positive** (records of the type asked for): the smallest TTL in the answer section
//!   (the CNAMEs leading there included), at most [`max_ttl`](Cache::max_ttl) (a day by
//!   default).
//! - **Negative** (NXDOMAIN, or NODATA: NOERROR without records of the type asked for),
//!   RFC 2308 §5: `min(SOA TTL, SOA MINIMUM)` of the SOA in the authority section, and
//!   not at all without one; at most [`max_negative_ttl`](Cache::max_negative_ttl) (3 h),
//!   and no longer than a CNAME leading there.
//! - **SERVFAIL**: only for [`servfail_ttl`](Cache::servfail_ttl), 0 (not at all) by
//!   default; RFC 2308 §7.1 allows up to five minutes.
//! - Truncated responses, other error codes and responses without exactly one question
//!   are not kept.
//!
//! A response comes back with every TTL decreased by its age in whole seconds, its id 0
//! (the caller sets its own) and its question as the caller asked it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// The longest a positive answer is kept by default: one day.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(86_400);

/// The longest a negative answer is kept by default: three hours (RFC 2308 §5 suggests
/// one to three).
pub const DEFAULT_MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3 * 3600);

/// What a cached response answers: a question with its name lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Name,
    record_type: RecordType,
    class: DNSClass,
}

impl CacheKey {
    /// The key for `query`.
    pub fn new(query: &Query) -> CacheKey {
        let mut name = query.name().to_lowercase();
        name.set_fqdn(true);
        CacheKey {
            name,
            record_type: query.query_type(),
            class: query.query_class(),
        }
    }
}

/// A bounded cache of responses.
#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    max_ttl: Duration,
    max_negative_ttl: Duration,
    servfail_ttl: Duration,
    entries: HashMap<CacheKey, Entry>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, CacheKey>,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    response: Message,
    stored: Duration,
    expires: Duration,
    used: u64,
}

impl Cache {
    /// An empty cache holding at most `capacity` responses (0 keeps none).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            max_ttl: DEFAULT_MAX_TTL,
            max_negative_ttl: DEFAULT_MAX_NEGATIVE_TTL,
            servfail_ttl: Duration::ZERO,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    /// Keeps positive answers at most `ttl`.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Keeps negative answers at most `ttl`.
    pub fn max_negative_ttl(mut self, ttl: Duration) -> Self {
        self.max_negative_ttl = ttl;
        self
    }

    /// Keeps SERVFAIL responses for `ttl` (0, the default: not at all).
    pub fn servfail_ttl(mut self, ttl: Duration) -> Self {
        self.servfail_ttl = ttl;
        self
    }

    /// How many responses it holds (expired ones included until they are looked up or
    /// evicted).
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
        self.order.clear();
    }

    /// Keeps `response` (to its own question) if it may be cached, for as long as it may;
    /// returns whether it was kept.
    pub fn insert(&mut self, response: &Message, now: Duration) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let [query] = response.queries.as_slice() else {
            return false;
        };
        let Some(ttl) = self.ttl_of(query, response) else {
            return false;
        };
        if ttl.is_zero() {
            return false;
        }
        let key = CacheKey::new(query);
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let mut stored = response.clone();
        stored.metadata.id = 0;
        stored.edns = None;
        stored.signature = None;
        self.clock += 1;
        self.order.insert(self.clock, key.clone());
        self.entries.insert(
            key,
            Entry {
                response: stored,
                stored: now,
                expires: now.saturating_add(ttl),
                used: self.clock,
            },
        );
        true
    }

    /// The cached response to `query`, its TTLs aged, if there is one still fresh.
    pub fn get(&mut self, query: &Query, now: Duration) -> Option<Message> {
        let key = CacheKey::new(query);
        let entry = self.entries.get_mut(&key)?;
        if now >= entry.expires {
            self.remove(&key);
            return None;
        }
        self.order.remove(&entry.used);
        self.clock += 1;
        entry.used = self.clock;
        self.order.insert(self.clock, key);
        let age = u32::try_from(now.saturating_sub(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut response = entry.response.clone();
        for record in response
            .answers
            .iter_mut()
            .chain(response.authorities.iter_mut())
            .chain(response.additionals.iter_mut())
        {
            record.ttl = record.ttl.saturating_sub(age);
        }
        response.queries = vec![query.clone()];
        Some(response)
    }

    /// Drops the response to `key`, if any.
    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.entries.remove(key) {
            self.order.remove(&old.used);
        }
    }

    /// How long `response` to `query` may be kept, `None` if not at all.
    fn ttl_of(&self, query: &Query, response: &Message) -> Option<Duration> {
        if response.metadata.truncation {
            return None;
        }
        let code = response.metadata.response_code;
        let qtype = query.query_type();
        let answered = response
            .answers
            .iter()
            .any(|r| r.record_type() == qtype || qtype == RecordType::ANY);
        let answers_ttl = response.answers.iter().map(|r| r.ttl).min();
        let secs = |ttl: u32| Duration::from_secs(u64::from(ttl));
        match code {
            ResponseCode::NoError if answered => {
                Some(secs(answers_ttl.unwrap_or(0)).min(self.max_ttl))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let soa = response.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                })?;
                let ttl = answers_ttl.map_or(soa, |a| a.min(soa));
                Some(secs(ttl).min(self.max_negative_ttl))
            }
            ResponseCode::ServFail => Some(self.servfail_ttl),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn q(n: &str, t: RecordType) -> Query {
        Query::query(name(n), t)
    }

    fn response(query: &Query, code: ResponseCode) -> Message {
        let mut m = Message::response(99, OpCode::Query);
        m.metadata.response_code = code;
        m.add_query(query.clone());
        m
    }

    fn a(n: &str, ttl: u32, last: u8) -> Record {
        Record::from_rdata(name(n), ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        Record::from_rdata(
            name("example."),
            ttl,
            RData::SOA(SOA::new(
                name("ns.example."),
                name("host.example."),
                1,
                3600,
                600,
                86400,
                minimum,
            )),
        )
    }

    #[test]
    fn positive_answers_age_and_expire_at_the_smallest_ttl() {
        let mut cache = Cache::new(10);
        let query = q("www.example.", RecordType::A);
        let mut r = response(&query, ResponseCode::NoError);
        r.add_answer(a("www.example.", 300, 1));
        r.add_answer(a("www.example.", 100, 2));
        assert!(cache.insert(&r, secs(1000)));
        let hit = cache.get(&query, secs(1030)).unwrap();
        assert_eq!(hit.metadata.id, 0);
        let ttls: Vec<u32> = hit.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [270, 70]);
        assert!(cache.get(&query, secs(1099)).is_some());
        assert!(cache.get(&query, secs(1100)).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn keys_ignore_case_and_answers_carry_the_askers_question() {
        let mut cache = Cache::new(10);
        let query = q("WWW.Example.", RecordType::A);
        let mut r = response(&query, ResponseCode::NoError);
        r.add_answer(a("www.example.", 300, 1));
        cache.insert(&r, secs(0));
        let asked = q("www.EXAMPLE.", RecordType::A);
        let hit = cache.get(&asked, secs(1)).unwrap();
        assert_eq!(hit.queries[0].name().to_ascii(), "www.EXAMPLE.");
        // Another type or class is another key.
        assert!(
            cache
                .get(&q("www.example.", RecordType::AAAA), secs(1))
                .is_none()
        );
        let mut chaos = asked.clone();
        chaos.set_query_class(DNSClass::CH);
        assert!(cache.get(&chaos, secs(1)).is_none());
    }

    #[test]
    fn ttls_are_capped() {
        let mut cache = Cache::new(10).max_ttl(secs(60));
        let query = q("long.example.", RecordType::A);
        let mut r = response(&query, ResponseCode::NoError);
        r.add_answer(a("long.example.", 1_000_000, 1));
        cache.insert(&r, secs(0));
        assert!(cache.get(&query, secs(59)).is_some());
        assert!(cache.get(&query, secs(60)).is_none());
    }

    #[test]
    fn nxdomain_and_nodata_are_kept_for_the_soa_minimum() {
        let mut cache = Cache::new(10);
        // NXDOMAIN: min(SOA TTL 600, MINIMUM 30) = 30 s.
        let nx = q("nope.example.", RecordType::A);
        let mut r = response(&nx, ResponseCode::NXDomain);
        r.add_authority(soa(600, 30));
        assert!(cache.insert(&r, secs(0)));
        let hit = cache.get(&nx, secs(10)).unwrap();
        assert_eq!(hit.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(hit.authorities[0].ttl, 590);
        assert!(cache.get(&nx, secs(30)).is_none());
        // NODATA: min(SOA TTL 20, MINIMUM 3600) = 20 s.
        let nodata = q("www.example.", RecordType::AAAA);
        let mut r = response(&nodata, ResponseCode::NoError);
        r.add_authority(soa(20, 3600));
        assert!(cache.insert(&r, secs(0)));
        assert!(cache.get(&nodata, secs(19)).is_some());
        assert!(cache.get(&nodata, secs(20)).is_none());
    }

    #[test]
    fn negative_answers_without_soa_are_not_kept_and_are_capped() {
        let mut cache = Cache::new(10).max_negative_ttl(secs(100));
        let nx = q("nope.example.", RecordType::A);
        assert!(!cache.insert(&response(&nx, ResponseCode::NXDomain), secs(0)));
        let mut r = response(&nx, ResponseCode::NXDomain);
        r.add_authority(soa(86400, 86400));
        cache.insert(&r, secs(0));
        assert!(cache.get(&nx, secs(99)).is_some());
        assert!(cache.get(&nx, secs(100)).is_none());
    }

    #[test]
    fn a_cname_to_nodata_is_kept_no_longer_than_the_cname() {
        let mut cache = Cache::new(10);
        let query = q("alias.example.", RecordType::A);
        let mut r = response(&query, ResponseCode::NoError);
        r.add_answer(Record::from_rdata(
            name("alias.example."),
            5,
            RData::CNAME(CNAME(name("target.example."))),
        ));
        r.add_authority(soa(600, 600));
        cache.insert(&r, secs(0));
        assert!(cache.get(&query, secs(4)).is_some());
        assert!(cache.get(&query, secs(5)).is_none());
    }

    #[test]
    fn servfail_truncated_and_refused_are_not_kept_by_default() {
        let mut cache = Cache::new(10);
        let query = q("x.example.", RecordType::A);
        assert!(!cache.insert(&response(&query, ResponseCode::ServFail), secs(0)));
        assert!(!cache.insert(&response(&query, ResponseCode::Refused), secs(0)));
        let mut tc = response(&query, ResponseCode::NoError);
        tc.add_answer(a("x.example.", 300, 1));
        tc.metadata.truncation = true;
        assert!(!cache.insert(&tc, secs(0)));
        let mut zero = response(&query, ResponseCode::NoError);
        zero.add_answer(a("x.example.", 0, 1));
        assert!(!cache.insert(&zero, secs(0)));
        assert!(cache.is_empty());
        // A short SERVFAIL cache when asked for.
        let mut cache = Cache::new(10).servfail_ttl(secs(5));
        assert!(cache.insert(&response(&query, ResponseCode::ServFail), secs(0)));
        assert!(cache.get(&query, secs(4)).is_some());
        assert!(cache.get(&query, secs(5)).is_none());
    }

    #[test]
    fn the_least_recently_used_is_evicted_when_full() {
        let mut cache = Cache::new(2);
        let put = |cache: &mut Cache, n: &str| {
            let query = q(n, RecordType::A);
            let mut r = response(&query, ResponseCode::NoError);
            r.add_answer(a(n, 300, 1));
            cache.insert(&r, secs(0));
        };
        put(&mut cache, "one.example.");
        put(&mut cache, "two.example.");
        // Using "one" makes "two" the oldest.
        assert!(
            cache
                .get(&q("one.example.", RecordType::A), secs(1))
                .is_some()
        );
        put(&mut cache, "three.example.");
        assert_eq!(cache.len(), 2);
        assert!(
            cache
                .get(&q("two.example.", RecordType::A), secs(1))
                .is_none()
        );
        assert!(
            cache
                .get(&q("one.example.", RecordType::A), secs(1))
                .is_some()
        );
        assert!(
            cache
                .get(&q("three.example.", RecordType::A), secs(1))
                .is_some()
        );
        // Replacing a key does not grow the cache.
        put(&mut cache, "three.example.");
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.order.len(), 2);
        let mut none = Cache::new(0);
        put(&mut none, "one.example.");
        assert!(none.is_empty());
    }

    #[test]
    fn random_use_keeps_the_bounds() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(2308);
        let mut cache = Cache::new(16);
        let mut now = 0;
        for _ in 0..5000 {
            let n = format!("n{}.example.", rng.random_range(0..40));
            let query = q(&n, RecordType::A);
            if rng.random_bool(0.5) {
                let mut r = response(&query, ResponseCode::NoError);
                r.add_answer(a(&n, rng.random_range(0..100), 1));
                cache.insert(&r, secs(now));
            } else if let Some(hit) = cache.get(&query, secs(now)) {
                assert!(hit.answers[0].ttl < 100);
                assert_eq!(hit.queries[0], query);
            }
            now += rng.random_range(0..3);
            assert!(cache.len() <= 16);
            assert_eq!(cache.order.len(), cache.entries.len());
        }
    }
}
