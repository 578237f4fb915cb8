//! The recursive resolver's judgement, sans IO: what an authoritative server's reply means
//! (an answer, a referral, or a lame server), how CNAME chains are walked, and the cache
//! of delegations learned on the way. The reactor side is [`crate::recursive`].
//!
//! Iterative resolution (RFC 1034 §5.3.3) asks the servers of the closest known enclosing
//! zone, non-recursively, and either gets the answer or is referred to the servers of a
//! zone further down. Every reply is scrubbed before use, so a server can only speak for
//! its own zone:
//!
//! - answer records whose owner lies outside the zone asked are dropped;
//! - a referral must go strictly down, from the zone asked towards the question's name;
//!   one that goes up or sideways makes the server lame;
//! - glue (addresses in the additional section) is kept only for name servers inside the
//!   delegated zone itself: out-of-bailiwick glue is never trusted, those names are
//!   resolved separately;
//! - answers, NXDOMAIN and NODATA count only with the AA bit; anything else (a
//!   non-authoritative answer, an error code) makes the server lame for this question.
//!
//! Time is a [`Duration`] since any fixed origin, passed to every call.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::proto::expiring::ExpiringMap;

/// The most name servers kept from one referral (the root has 13).
pub const MAX_NS_PER_ZONE: usize = 16;

/// The most addresses kept for one name server.
pub const MAX_ADDRESSES_PER_NS: usize = 8;

/// The longest a delegation or a name server's address is kept: one day (a zone's NS TTL
/// may say more).
pub const MAX_DELEGATION_TTL: Duration = Duration::from_secs(86_400);

/// A zone cut: the zone and its name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The delegated zone.
    pub zone: Name,
    /// Its name servers, in the order the referral listed them.
    pub servers: Vec<NameServer>,
}

/// One name server of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServer {
    /// Its name (the NS record's target); the root of [`Delegation::hints`] has none worth
    /// resolving, so it is the root name there.
    pub name: Name,
    /// Its addresses known so far: in-bailiwick glue, or resolved.
    pub addresses: Vec<IpAddr>,
}

impl Delegation {
    /// The root zone served at `addresses` (the hints), as one nameless server.
    pub fn hints(addresses: &[IpAddr]) -> Delegation {
        Delegation {
            zone: Name::root(),
            servers: vec![NameServer {
                name: Name::root(),
                addresses: addresses.to_vec(),
            }],
        }
    }
}

/// What one reply from a server of `zone` means for the question asked.
#[derive(Debug)]
pub enum Step {
    /// An authoritative answer: records (possibly the start of a CNAME chain), NXDOMAIN or
    /// NODATA. The message is scrubbed: answers inside the zone only, authority reduced to
    /// the zone's SOA, no additional section.
    Answer(Box<Message>),
    /// A referral to a zone further down, with its time to live (the NS records' smallest
    /// TTL, at most [`MAX_DELEGATION_TTL`]).
    Referral(Delegation, Duration),
    /// The server cannot be used for this question; ask the next one.
    Lame(String),
}

/// Judges `response`, from a server of `zone`, to the question (`qname`, `qtype`).
pub fn classify(mut response: Message, qname: &Name, qtype: RecordType, zone: &Name) -> Step {
    let code = response.metadata.response_code;
    if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Step::Lame(format!("answered {code}"));
    }
    if response.metadata.truncation {
        return Step::Lame("a truncated reply".into());
    }
    let authoritative = response.metadata.authoritative;
    response.answers.retain(|r| zone.zone_of(&r.name));
    let answered = response.answers.iter().any(|r| {
        r.name == *qname
            && (r.record_type() == qtype
                || qtype == RecordType::ANY
                || r.record_type() == RecordType::CNAME)
    });
    let has_soa = response.authorities.iter().any(|r| {
        r.record_type() == RecordType::SOA && zone.zone_of(&r.name) && r.name.zone_of(qname)
    });
    if answered || code == ResponseCode::NXDomain || (has_soa && authoritative) {
        if !authoritative {
            return Step::Lame("a non-authoritative answer".into());
        }
        scrub_answer(&mut response, qname, zone);
        return Step::Answer(Box::new(response));
    }
    // No answer: a referral, NODATA without an SOA, or nothing of use.
    let cuts: Vec<&Name> = response
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::NS)
        .map(|r| &r.name)
        .collect();
    if cuts.is_empty() {
        if authoritative {
            scrub_answer(&mut response, qname, zone);
            return Step::Answer(Box::new(response));
        }
        return Step::Lame("neither an answer nor a referral".into());
    }
    let Some(cut) = cuts
        .iter()
        .copied()
        .filter(|cut| is_below(cut, zone) && cut.zone_of(qname))
        .max_by_key(|cut| cut.num_labels())
        .cloned()
    else {
        // The zone's own NS set alongside an authoritative empty answer is NODATA (without
        // an SOA, so not cached); anything else points up or sideways.
        if authoritative && cuts.iter().all(|cut| *cut == zone) {
            scrub_answer(&mut response, qname, zone);
            return Step::Answer(Box::new(response));
        }
        return Step::Lame(format!("a referral up or sideways from {zone}"));
    };
    referral(&response, cut)
}

/// The delegation to `cut` that `response`'s authority and additional sections describe.
fn referral(response: &Message, mut cut: Name) -> Step {
    cut.set_fqdn(true);
    let mut servers: Vec<NameServer> = Vec::new();
    let mut ttl = MAX_DELEGATION_TTL;
    for record in &response.authorities {
        let RData::NS(ns) = &record.data else {
            continue;
        };
        if record.name != cut || servers.iter().any(|s| s.name == ns.0) {
            continue;
        }
        if servers.len() >= MAX_NS_PER_ZONE {
            break;
        }
        ttl = ttl.min(Duration::from_secs(u64::from(record.ttl)));
        servers.push(NameServer {
            name: ns.0.clone(),
            addresses: Vec::new(),
        });
    }
    for record in &response.additionals {
        let address = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        // Glue only for names inside the delegated zone: anything else is the parent
        // vouching for data it does not own.
        if !cut.zone_of(&record.name) {
            continue;
        }
        if let Some(server) = servers.iter_mut().find(|s| s.name == record.name)
            && server.addresses.len() < MAX_ADDRESSES_PER_NS
            && !server.addresses.contains(&address)
        {
            server.addresses.push(address);
        }
    }
    Step::Referral(Delegation { zone: cut, servers }, ttl)
}

/// Keeps what an authoritative answer may say: answers inside `zone`, the zone's SOA in
/// the authority section (for negative answers), nothing additional.
fn scrub_answer(response: &mut Message, qname: &Name, zone: &Name) {
    response.authorities.retain(|r| {
        r.record_type() == RecordType::SOA && zone.zone_of(&r.name) && r.name.zone_of(qname)
    });
    response.additionals.clear();
    response.edns = None;
    response.signature = None;
}

/// Whether `name` is strictly below `zone`.
fn is_below(name: &Name, zone: &Name) -> bool {
    zone.zone_of(name) && name.num_labels() > zone.num_labels()
}

/// The name to ask `zone`'s servers about instead of `qname` under QNAME minimisation:
/// `qname` cut to `extra` labels below `zone`; `None` when that is `qname` itself (or
/// `qname` is not under `zone`), so the whole question is asked.
pub fn minimised(qname: &Name, zone: &Name, extra: usize) -> Option<Name> {
    if !zone.zone_of(qname) {
        return None;
    }
    let labels = qname.iter().count();
    let keep = zone.iter().count().saturating_add(extra);
    if keep >= labels {
        return None;
    }
    let mut name = qname.trim_to(keep);
    name.set_fqdn(true);
    Some(name)
}

/// What an answer section says about one name, following CNAMEs within it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// The CNAME records passed through, in chain order.
    pub aliases: Vec<Record>,
    /// The records of the type asked for at the end of the chain (empty if none).
    pub records: Vec<Record>,
    /// The name the chain ends at (the name asked if no alias).
    pub end: Name,
    /// The chain came back to a name already visited.
    pub looped: bool,
}

/// Walks `answers` from `start` for `qtype`, through CNAMEs; an alias to a name in
/// `visited` (the aliases passed in earlier responses) is a loop. Adds the aliases it
/// passes to `visited`.
pub fn walk(answers: &[Record], start: &Name, qtype: RecordType, visited: &mut Vec<Name>) -> Walk {
    let mut walk = Walk {
        end: start.clone(),
        ..Walk::default()
    };
    // A chain cannot be longer than the section without looping.
    for _ in 0..=answers.len() {
        let current = walk.end.clone();
        walk.records = answers
            .iter()
            .filter(|r| r.name == current && (r.record_type() == qtype || qtype == RecordType::ANY))
            .cloned()
            .collect();
        if !walk.records.is_empty() || qtype == RecordType::CNAME {
            return walk;
        }
        let Some((alias, target)) = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == current => Some((r, target.0.clone())),
            _ => None,
        }) else {
            return walk;
        };
        visited.push(current);
        if visited.contains(&target) {
            walk.looped = true;
            return walk;
        }
        walk.end = target;
        walk.aliases.push(alias.clone());
    }
    walk.looped = true;
    walk
}

/// Delegations and name-server addresses learned during resolutions, for their TTLs (at
/// most [`MAX_DELEGATION_TTL`]), at most `capacity` of each; when full, the expired
/// entries go first, then those closest to expiry ([`ExpiringMap`]).
#[derive(Debug)]
pub struct DelegationCache {
    zones: ExpiringMap<Name, Delegation>,
    addresses: ExpiringMap<Name, Vec<IpAddr>>,
}

impl DelegationCache {
    /// An empty cache of at most `capacity` delegations and `capacity` server addresses.
    pub fn new(capacity: usize) -> DelegationCache {
        DelegationCache {
            zones: ExpiringMap::new(capacity),
            addresses: ExpiringMap::new(capacity),
        }
    }

    /// How many delegations it holds (expired ones included until looked up or evicted).
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether it holds no delegation.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.zones.clear();
        self.addresses.clear();
    }

    /// Keeps `delegation` for `ttl` from `now` (replacing what was known of its zone).
    pub fn insert(&mut self, delegation: Delegation, ttl: Duration, now: Duration) {
        let expires = now.saturating_add(ttl.min(MAX_DELEGATION_TTL));
        let key = delegation.zone.to_lowercase();
        self.zones.insert(key, delegation, expires, now);
    }

    /// Forgets the delegation of `zone`.
    pub fn remove(&mut self, zone: &Name) {
        let mut key = zone.to_lowercase();
        key.set_fqdn(true);
        self.zones.remove(&key);
    }

    /// Keeps the addresses of the name server `name` for `ttl` from `now`.
    pub fn insert_addresses(
        &mut self,
        name: &Name,
        addresses: &[IpAddr],
        ttl: Duration,
        now: Duration,
    ) {
        if addresses.is_empty() {
            return;
        }
        let expires = now.saturating_add(ttl.min(MAX_DELEGATION_TTL));
        let kept: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .take(MAX_ADDRESSES_PER_NS)
            .collect();
        self.addresses
            .insert(name.to_lowercase(), kept, expires, now);
    }

    /// The known addresses of the name server `name`, if still fresh.
    pub fn addresses(&mut self, name: &Name, now: Duration) -> Option<Vec<IpAddr>> {
        self.addresses.get(&name.to_lowercase(), now).cloned()
    }

    /// The fresh delegation closest to `name` (its own zone, else its parent's, up to the
    /// root), with the addresses learned since for servers the referral gave none.
    pub fn closest(&mut self, name: &Name, now: Duration) -> Option<Delegation> {
        let mut zone = name.to_lowercase();
        zone.set_fqdn(true);
        loop {
            if let Some(delegation) = self.zones.get(&zone, now) {
                let mut delegation = delegation.clone();
                for server in &mut delegation.servers {
                    if server.addresses.is_empty()
                        && let Some(addresses) = self.addresses(&server.name, now)
                    {
                        server.addresses = addresses;
                    }
                }
                return Some(delegation);
            }
            if zone.is_root() {
                return None;
            }
            zone = zone.base_name();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn reply(qname: &str, qtype: RecordType, aa: bool, code: ResponseCode) -> Message {
        let mut m = Message::response(7, OpCode::Query);
        m.metadata.authoritative = aa;
        m.metadata.response_code = code;
        m.add_query(Query::query(name(qname), qtype));
        m
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    }

    fn aaaa(owner: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)))
    }

    fn ns(owner: &str, target: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::NS(NS(name(target))))
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
    }

    fn soa(owner: &str) -> Record {
        Record::from_rdata(
            name(owner),
            300,
            RData::SOA(SOA::new(
                name("ns.example."),
                name("host.example."),
                1,
                3600,
                600,
                86400,
                30,
            )),
        )
    }

    #[test]
    fn referral_keeps_only_glue_inside_the_delegated_zone() {
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_authority(ns("example.test.", "ns1.example.test.", 3600));
        m.add_authority(ns("example.test.", "ns.elsewhere.", 600));
        m.add_authority(ns("example.test.", "ns.test.", 7200));
        m.add_additional(a("ns1.example.test.", 1));
        m.add_additional(aaaa("ns1.example.test."));
        // Out of bailiwick of example.test. (though inside test.): not trusted.
        m.add_additional(a("ns.test.", 2));
        m.add_additional(a("ns.elsewhere.", 3));
        // Glue for a name that is not one of the servers.
        m.add_additional(a("www.example.test.", 4));
        let Step::Referral(d, ttl) =
            classify(m, &name("www.example.test."), RecordType::A, &name("test."))
        else {
            panic!("not a referral");
        };
        assert_eq!(d.zone, name("example.test."));
        assert_eq!(ttl, secs(600));
        let servers: Vec<(String, usize)> = d
            .servers
            .iter()
            .map(|s| (s.name.to_ascii(), s.addresses.len()))
            .collect();
        assert_eq!(
            servers,
            [
                ("ns1.example.test.".to_string(), 2),
                ("ns.elsewhere.".to_string(), 0),
                ("ns.test.".to_string(), 0)
            ]
        );
    }

    #[test]
    fn referrals_up_or_sideways_are_lame() {
        let q = name("www.example.test.");
        // Upward: from test. back to the root.
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_authority(ns(".", "a.root.", 3600));
        assert!(matches!(
            classify(m, &q, RecordType::A, &name("test.")),
            Step::Lame(_)
        ));
        // To itself.
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_authority(ns("test.", "ns.test.", 3600));
        assert!(matches!(
            classify(m, &q, RecordType::A, &name("test.")),
            Step::Lame(_)
        ));
        // Unless authoritative: an empty answer with the zone's NS set is NODATA.
        let mut m = reply("test.", RecordType::MX, true, ResponseCode::NoError);
        m.add_authority(ns("test.", "ns.test.", 3600));
        let Step::Answer(m) = classify(m, &name("test."), RecordType::MX, &name("test.")) else {
            panic!("not NODATA");
        };
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        // Sideways: a zone that does not contain the name.
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_authority(ns("other.test.", "ns.other.test.", 3600));
        assert!(matches!(
            classify(m, &q, RecordType::A, &name("test.")),
            Step::Lame(_)
        ));
        // Outside the zone asked altogether.
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_authority(ns("example.test.", "ns.example.test.", 3600));
        assert!(matches!(
            classify(m, &q, RecordType::A, &name("org.")),
            Step::Lame(_)
        ));
    }

    #[test]
    fn answers_need_the_aa_bit_and_are_scrubbed() {
        let q = name("www.example.test.");
        let zone = name("example.test.");
        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            false,
            ResponseCode::NoError,
        );
        m.add_answer(a("www.example.test.", 1));
        assert!(matches!(
            classify(m, &q, RecordType::A, &zone),
            Step::Lame(_)
        ));

        let mut m = reply(
            "www.example.test.",
            RecordType::A,
            true,
            ResponseCode::NoError,
        );
        m.add_answer(a("www.example.test.", 1));
        m.add_answer(a("victim.bank.", 6));
        m.add_authority(ns("example.test.", "ns.example.test.", 300));
        m.add_additional(a("ns.example.test.", 9));
        let Step::Answer(m) = classify(m, &q, RecordType::A, &zone) else {
            panic!("no answer");
        };
        assert_eq!(m.answers.len(), 1);
        assert!(m.authorities.is_empty() && m.additionals.is_empty());

        // NXDOMAIN and NODATA keep the zone's SOA, and only that.
        let mut m = reply(
            "nx.example.test.",
            RecordType::A,
            true,
            ResponseCode::NXDomain,
        );
        m.add_authority(soa("example.test."));
        m.add_authority(soa("bank."));
        let Step::Answer(m) = classify(m, &name("nx.example.test."), RecordType::A, &zone) else {
            panic!("no answer");
        };
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        let mut m = reply(
            "www.example.test.",
            RecordType::MX,
            true,
            ResponseCode::NoError,
        );
        m.add_authority(soa("example.test."));
        assert!(matches!(
            classify(m, &q, RecordType::MX, &zone),
            Step::Answer(_)
        ));
        // Without AA it is nothing.
        let m = reply(
            "nx.example.test.",
            RecordType::A,
            false,
            ResponseCode::NXDomain,
        );
        assert!(matches!(
            classify(m, &q, RecordType::A, &zone),
            Step::Lame(_)
        ));
        for code in [
            ResponseCode::Refused,
            ResponseCode::ServFail,
            ResponseCode::YXDomain,
        ] {
            let m = reply("www.example.test.", RecordType::A, true, code);
            assert!(matches!(
                classify(m, &q, RecordType::A, &zone),
                Step::Lame(_)
            ));
        }
    }

    #[test]
    fn minimised_names_go_one_label_at_a_time() {
        let q = name("a.b.example.test.");
        let got = |zone: &str, extra| minimised(&q, &name(zone), extra).map(|n| n.to_ascii());
        assert_eq!(got(".", 1).as_deref(), Some("test."));
        assert_eq!(got("test.", 1).as_deref(), Some("example.test."));
        assert_eq!(got("test.", 2).as_deref(), Some("b.example.test."));
        assert_eq!(got("test.", 3), None);
        assert_eq!(got("example.test.", 2), None);
        assert_eq!(got("other.test.", 1), None);
        // Wildcard labels count like any other.
        let star = name("*.example.test.");
        assert_eq!(minimised(&star, &name("example.test."), 1), None);
        assert!(minimised(&Name::root(), &Name::root(), 1).is_none());
    }

    #[test]
    fn walk_follows_aliases_and_stops_at_loops() {
        let answers = vec![
            cname("www.example.", "web.example."),
            cname("web.example.", "host.other."),
            a("host.other.", 1),
        ];
        let mut visited = Vec::new();
        let w = walk(&answers, &name("www.example."), RecordType::A, &mut visited);
        assert_eq!(w.aliases.len(), 2);
        assert_eq!(w.records.len(), 1);
        assert_eq!(w.end, name("host.other."));
        assert!(!w.looped);
        // Without the target's records: the chain ends at a name to ask about.
        let w = walk(
            &answers[..2],
            &name("www.example."),
            RecordType::A,
            &mut Vec::new(),
        );
        assert_eq!(w.end, name("host.other."));
        assert!(w.records.is_empty());
        // Asking for the CNAME itself does not follow it.
        let w = walk(
            &answers,
            &name("www.example."),
            RecordType::CNAME,
            &mut Vec::new(),
        );
        assert_eq!(w.records.len(), 1);
        assert!(w.aliases.is_empty());
        // Loops, within one response or across responses.
        let looping = vec![
            cname("a.example.", "b.example."),
            cname("b.example.", "a.example."),
        ];
        assert!(
            walk(
                &looping,
                &name("a.example."),
                RecordType::A,
                &mut Vec::new()
            )
            .looped
        );
        let mut visited = vec![name("host.other.")];
        assert!(walk(&answers, &name("www.example."), RecordType::A, &mut visited).looped);
    }

    #[test]
    fn delegation_cache_finds_the_closest_zone_and_expires() {
        let mut cache = DelegationCache::new(10);
        let ip: IpAddr = "192.0.2.53".parse().unwrap();
        let test = Delegation {
            zone: name("TEST."),
            servers: vec![NameServer {
                name: name("ns.test."),
                addresses: vec![ip],
            }],
        };
        let example = Delegation {
            zone: name("example.test."),
            servers: vec![NameServer {
                name: name("ns.elsewhere."),
                addresses: vec![],
            }],
        };
        cache.insert(test.clone(), secs(100), secs(0));
        cache.insert(example.clone(), secs(10), secs(0));
        assert_eq!(
            cache.closest(&name("a.b.example.test."), secs(5)),
            Some(example.clone())
        );
        assert_eq!(
            cache.closest(&name("other.test."), secs(5)),
            Some(test.clone())
        );
        assert_eq!(cache.closest(&name("org."), secs(5)), None);
        // Addresses learned later fill the servers the referral gave none for.
        cache.insert_addresses(&name("NS.elsewhere."), &[ip], secs(5), secs(5));
        let found = cache.closest(&name("www.example.test."), secs(6)).unwrap();
        assert_eq!(found.servers[0].addresses, [ip]);
        assert_eq!(cache.addresses(&name("ns.elsewhere."), secs(10)), None);
        // Forgotten or expired: the parent's.
        cache.remove(&name("EXAMPLE.test."));
        assert_eq!(
            cache.closest(&name("www.example.test."), secs(6)),
            Some(test.clone())
        );
        cache.insert(example.clone(), secs(10), secs(0));
        assert_eq!(
            cache.closest(&name("www.example.test."), secs(10)),
            Some(test)
        );
        assert_eq!(cache.closest(&name("www.example.test."), secs(100)), None);
        assert!(cache.is_empty());
        // A zero TTL keeps nothing.
        cache.insert(example, Duration::ZERO, secs(0));
        assert!(cache.is_empty());
    }

    #[test]
    fn delegation_cache_stays_bounded() {
        let mut cache = DelegationCache::new(3);
        for i in 0..50u64 {
            let zone = name(&format!("z{i}.test."));
            cache.insert(
                Delegation {
                    zone: zone.clone(),
                    servers: vec![],
                },
                secs(100 + i),
                secs(0),
            );
            cache.insert_addresses(
                &zone,
                &["192.0.2.1".parse().unwrap()],
                secs(100 + i),
                secs(0),
            );
            assert!(cache.len() <= 3);
            assert!(cache.addresses.len() <= 3);
        }
        // The longest-lived survive.
        assert!(cache.closest(&name("z49.test."), secs(1)).is_some());
        assert!(cache.closest(&name("z0.test."), secs(1)).is_none());
    }
}
