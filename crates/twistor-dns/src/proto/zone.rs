//! One zone's records and the lookups an authoritative server makes.
//!
//! A [`Zone`] holds its records as RRsets per owner name, indexed by lowercased name (names
//! compare case-insensitively) and kept in DNSSEC canonical order, so that
//! [`lookup`](Zone::lookup) can answer with an RRset, a CNAME to chase, a delegation with
//! its glue, NXDOMAIN or NODATA — wildcards synthesized as RFC 4592 says, empty
//! non-terminals existing — and, for a pre-signed zone, find the NSEC records that prove a
//! negative answer ([`nsec_proof`](Zone::nsec_proof)).
//!
//! DNSSEC: RRSIGs are kept beside the RRset they cover ([`RrSet::rrsigs`]). Negative and
//! wildcard proofs come from the zone's NSEC chain, or from its NSEC3 chain (RFC 5155
//! closest-encloser proofs, names hashed with the NSEC3PARAM's salt and iterations) when the
//! apex has an NSEC3PARAM. Nothing is signed here: the zone must come signed.
//!
//! ```
//! use twistor_dns::proto::zone::{Lookup, Zone};
//! use twistor_dns::proto::zonefile::parse_zone_str;
//! use twistor_dns::wire::rr::{Name, RecordType};
//!
//! let text = "$ORIGIN example.com.\n$TTL 1h\n@ SOA ns hm 1 2h 1h 1w 5m\n@ NS ns\nns A 192.0.2.1\n";
//! let zone = Zone::new(parse_zone_str(text, "example", None).unwrap()).unwrap();
//! let name = Name::from_ascii("NS.example.com.").unwrap();
//! assert!(matches!(zone.lookup(&name, RecordType::A), Lookup::Answer { .. }));
//! assert_eq!(zone.serial(), 1);
//! ```

use std::collections::HashMap;

use data_encoding::BASE32HEX_NOPAD;
use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::zonefile::ZoneData;
use crate::error::Error;

/// One zone: its apex, SOA and records.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    origin_key: LowerName,
    /// Every owner name (and empty non-terminal), in canonical order.
    nodes: Vec<Node>,
    index: HashMap<LowerName, usize>,
    /// The node index of the apex.
    apex: usize,
    /// Some name below the apex has NS records: lookups must look for zone cuts.
    has_cuts: bool,
    /// Some owner name is a wildcard.
    has_wildcards: bool,
    /// The zone holds NSEC records.
    nsec: bool,
    /// The zone's NSEC3 chain, if it has an NSEC3PARAM and NSEC3 records.
    nsec3: Option<Nsec3Chain>,
    record_count: usize,
}

/// The NSEC3 records of a zone, by hash, and the parameters to hash names with.
#[derive(Debug, Clone)]
struct Nsec3Chain {
    algorithm: Nsec3HashAlgorithm,
    iterations: u16,
    salt: Vec<u8>,
    /// (raw hash of the owner, node index), sorted by hash.
    hashes: Vec<(Vec<u8>, usize)>,
}

/// The records at one owner name.
#[derive(Debug, Clone)]
pub struct Node {
    /// The owner, as first written.
    pub name: Name,
    /// Its RRsets (none for an empty non-terminal), in the order first seen.
    pub rrsets: Vec<RrSet>,
}

/// The records of one name and type, with the RRSIGs covering them.
#[derive(Debug, Clone)]
pub struct RrSet {
    /// The type.
    pub rtype: RecordType,
    /// The records (one TTL for all: the first one's, as BIND does).
    pub records: Vec<Record>,
    /// The RRSIG records whose type covered is `rtype`.
    pub rrsigs: Vec<Record>,
}

/// What a zone says about a name and type.
#[derive(Debug)]
pub enum Lookup<'z> {
    /// The answer: for most types one RRset; for ANY every RRset at the name.
    Answer {
        /// The RRsets. With `signatures_only` (a query for type RRSIG), every RRset at the
        /// name that has signatures, of which only the `rrsigs` answer.
        rrsets: Vec<&'z RrSet>,
        /// Synthesized from this wildcard: the owner of each record is the query name.
        wildcard: Option<&'z Name>,
        /// The query was for type RRSIG.
        signatures_only: bool,
    },
    /// The name is an alias: answer with the CNAME, then look its target up.
    Cname {
        /// The CNAME RRset (one record).
        rrset: &'z RrSet,
        /// Synthesized from this wildcard.
        wildcard: Option<&'z Name>,
    },
    /// The name is at or below a zone cut: refer to the child's servers.
    Delegation {
        /// The owner of the NS records (the cut).
        cut: &'z Name,
        /// The NS RRset.
        ns: &'z RrSet,
        /// The DS RRset at the cut, if the zone has one.
        ds: Option<&'z RrSet>,
        /// A and AAAA RRsets of NS targets inside this zone.
        glue: Vec<&'z RrSet>,
    },
    /// The name exists but has no record of the type (or is an empty non-terminal).
    NoData {
        /// Matched through this wildcard.
        wildcard: Option<&'z Name>,
    },
    /// The name does not exist.
    NxDomain,
}

impl Zone {
    /// Builds a zone from parsed zone-file data.
    pub fn new(data: ZoneData) -> Result<Zone, Error> {
        Zone::from_records(data.origin, data.records)
    }

    /// Builds a zone from its records (any order; for example those of a zone transfer).
    ///
    /// Exactly one SOA, at `origin`; every record at or below `origin`. Duplicate records
    /// are dropped; the records of one RRset take the first one's TTL.
    pub fn from_records(mut origin: Name, records: Vec<Record>) -> Result<Zone, Error> {
        origin.set_fqdn(true);
        let origin_key = LowerName::new(&origin);
        let mut zone = Zone {
            origin: origin.clone(),
            origin_key: origin_key.clone(),
            nodes: Vec::new(),
            index: HashMap::new(),
            apex: 0,
            has_cuts: false,
            has_wildcards: false,
            nsec: false,
            nsec3: None,
            record_count: 0,
        };
        // Gather nodes (unsorted first), then sort and index.
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<LowerName, usize> = HashMap::new();
        // The node of a name, made if new (and then `true`).
        let mut node_of = |name: &Name, nodes: &mut Vec<Node>| -> (usize, bool) {
            let key = LowerName::new(name);
            let mut made = false;
            let i = *index.entry(key).or_insert_with(|| {
                made = true;
                nodes.push(Node {
                    name: name.clone(),
                    rrsets: Vec::new(),
                });
                nodes.len() - 1
            });
            (i, made)
        };
        node_of(&origin, &mut nodes);
        let mut sigs = Vec::new();
        for record in records {
            if !origin.zone_of(&record.name) {
                return Err(Error::Invalid(format!(
                    "{} is outside the zone {origin}",
                    record.name
                )));
            }
            if record.record_type() == RecordType::SOA && record.name != origin {
                return Err(Error::Invalid(format!(
                    "SOA at {}, not at the apex",
                    record.name
                )));
            }
            let (n, made) = node_of(&record.name, &mut nodes);
            if made {
                // Empty non-terminals between a new owner and the apex, up to the first
                // name already known (whose own ancestors are then known too).
                let mut up = record.name.base_name();
                while up.num_labels() > origin.num_labels() && node_of(&up, &mut nodes).1 {
                    up = up.base_name();
                }
            }
            if record.record_type() == RecordType::RRSIG {
                sigs.push(record);
                continue;
            }
            let rtype = record.record_type();
            let node = &mut nodes[n];
            match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
                Some(set) => {
                    if !set.records.iter().any(|r| r.data == record.data) {
                        let mut record = record;
                        record.ttl = set.records[0].ttl;
                        set.records.push(record);
                    }
                }
                None => node.rrsets.push(RrSet {
                    rtype,
                    records: vec![record],
                    rrsigs: Vec::new(),
                }),
            }
        }
        // Identical SOAs (a transfer's first and last) count once.
        let soas = nodes[0]
            .rrsets
            .iter()
            .find(|s| s.rtype == RecordType::SOA)
            .map_or(0, |s| s.records.len());
        if soas != 1 {
            return Err(Error::Invalid(format!(
                "{soas} SOA records at {origin}: a zone needs exactly one"
            )));
        }
        for sig in sigs {
            let covered = match &sig.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s)) => s.input().type_covered,
                _ => continue,
            };
            let (n, _) = node_of(&sig.name, &mut nodes);
            let node = &mut nodes[n];
            let set = match node.rrsets.iter().position(|s| s.rtype == covered) {
                Some(i) => &mut node.rrsets[i],
                None => {
                    // A signature over nothing we hold: keep it, under its covered type.
                    node.rrsets.push(RrSet {
                        rtype: covered,
                        records: Vec::new(),
                        rrsigs: Vec::new(),
                    });
                    let last = node.rrsets.len() - 1;
                    &mut node.rrsets[last]
                }
            };
            if !set.rrsigs.iter().any(|r| r.data == sig.data) {
                set.rrsigs.push(sig);
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for (i, node) in nodes.iter().enumerate() {
            let key = LowerName::new(&node.name);
            if key == origin_key {
                zone.apex = i;
            } else if node.rrsets.iter().any(|s| s.rtype == RecordType::NS) {
                zone.has_cuts = true;
            }
            if node.name.is_wildcard() {
                zone.has_wildcards = true;
            }
            for set in &node.rrsets {
                zone.record_count += set.records.len() + set.rrsigs.len();
                if set.rtype == RecordType::NSEC && !set.records.is_empty() {
                    zone.nsec = true;
                }
            }
            zone.index.insert(key, i);
        }
        zone.nodes = nodes;
        zone.nsec3 = zone.nsec3_chain();
        Ok(zone)
    }

    /// The apex.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA record.
    pub fn soa_record(&self) -> &Record {
        let apex = &self.nodes[self.apex];
        apex.rrsets
            .iter()
            .find(|s| s.rtype == RecordType::SOA)
            .and_then(|s| s.records.first())
            .expect("a zone is built with one SOA")
    }

    /// The SOA RRset, with its signatures.
    pub fn soa_rrset(&self) -> &RrSet {
        self.nodes[self.apex]
            .rrsets
            .iter()
            .find(|s| s.rtype == RecordType::SOA)
            .expect("a zone is built with one SOA")
    }

    /// The SOA's data.
    pub fn soa(&self) -> &SOA {
        match &self.soa_record().data {
            RData::SOA(soa) => soa,
            _ => unreachable!("the SOA RRset holds SOA data"),
        }
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.soa().serial
    }

    /// SOA refresh, in seconds.
    pub fn refresh(&self) -> u32 {
        self.soa().refresh.max(0) as u32
    }

    /// SOA retry, in seconds.
    pub fn retry(&self) -> u32 {
        self.soa().retry.max(0) as u32
    }

    /// SOA expire, in seconds.
    pub fn expire(&self) -> u32 {
        self.soa().expire.max(0) as u32
    }

    /// SOA minimum (the negative-caching TTL's upper bound).
    pub fn minimum(&self) -> u32 {
        self.soa().minimum
    }

    /// The TTL for the SOA in a negative answer: min(SOA TTL, SOA minimum) (RFC 2308).
    pub fn negative_ttl(&self) -> u32 {
        self.soa_record().ttl.min(self.minimum())
    }

    /// How many records (signatures included) the zone holds.
    pub fn len(&self) -> usize {
        self.record_count
    }

    /// Never true: a zone has at least its SOA.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The zone holds NSEC records (it is signed with NSEC).
    pub fn is_nsec_signed(&self) -> bool {
        self.nsec
    }

    /// The zone holds an NSEC3PARAM and NSEC3 records (it is signed with NSEC3).
    pub fn is_nsec3_signed(&self) -> bool {
        self.nsec3.is_some()
    }

    /// The node at exactly this name (any case).
    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.index
            .get(&LowerName::new(name))
            .map(|&i| &self.nodes[i])
    }

    /// The RRset of this name and type, if any (no wildcard, no zone-cut logic).
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&RrSet> {
        self.node(name)?.rrset(rtype)
    }

    /// Every record in AXFR order: the SOA first, every other record (signatures included)
    /// in canonical name order, and the SOA again last.
    pub fn axfr_records(&self) -> impl Iterator<Item = &Record> {
        let soa = self.soa_record();
        let body = self.nodes.iter().flat_map(move |node| {
            node.rrsets.iter().flat_map(move |set| {
                set.records
                    .iter()
                    .filter(move |r| !std::ptr::eq(*r, soa))
                    .chain(set.rrsigs.iter())
            })
        });
        std::iter::once(soa).chain(body).chain(std::iter::once(soa))
    }

    /// Looks `qname` up for type `qtype` (ANY: every RRset; RRSIG: every signature).
    ///
    /// `qname` must be at or below the apex; a name outside gives `NxDomain`.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup<'_> {
        let key = LowerName::new(qname);
        if !self.origin_key.zone_of(&key) {
            return Lookup::NxDomain;
        }
        if self.has_cuts
            && let Some(d) = self.find_cut(qname, qtype)
        {
            return d;
        }
        if let Some(&i) = self.index.get(&key) {
            return self.at_node(&self.nodes[i], qtype, None);
        }
        if self.has_wildcards {
            // RFC 4592: the closest encloser, then its wildcard child.
            let mut up = qname.base_name();
            while up.num_labels() >= self.origin.num_labels() {
                if self.index.contains_key(&LowerName::new(&up)) {
                    let Ok(source) = up.prepend_label("*") else {
                        break;
                    };
                    if let Some(&w) = self.index.get(&LowerName::new(&source)) {
                        let node = &self.nodes[w];
                        return self.at_node(node, qtype, Some(&node.name));
                    }
                    break;
                }
                if up.num_labels() == 0 {
                    break;
                }
                up = up.base_name();
            }
        }
        Lookup::NxDomain
    }

    /// The A and AAAA RRsets at `name`, for the additional section and glue.
    pub fn addresses(&self, name: &Name) -> impl Iterator<Item = &RrSet> {
        self.node(name).into_iter().flat_map(|n| {
            n.rrsets.iter().filter(|s| {
                matches!(s.rtype, RecordType::A | RecordType::AAAA) && !s.records.is_empty()
            })
        })
    }

    /// The NSEC or NSEC3 RRsets proving a negative or wildcard answer (empty for an unsigned
    /// zone). NSEC3 zones get RFC 5155's proofs; NSEC zones:
    ///
    /// - NODATA at an existing name: the NSEC at that name;
    /// - NODATA at an empty non-terminal: the NSEC covering it;
    /// - NODATA through a wildcard: the NSEC covering the query name and the wildcard's own;
    /// - NXDOMAIN: the NSEC covering the name and the one covering the wildcard at its
    ///   closest encloser;
    /// - a wildcard answer: the NSEC covering the query name.
    pub fn nsec_proof(&self, qname: &Name, lookup: &Lookup<'_>) -> Vec<&RrSet> {
        if let Some(chain) = &self.nsec3 {
            return self.nsec3_proof(chain, qname, lookup);
        }
        if !self.nsec {
            return Vec::new();
        }
        let mut out: Vec<&RrSet> = Vec::new();
        match lookup {
            Lookup::NoData { wildcard: None } => {
                let exact = self.rrset(qname, RecordType::NSEC);
                let set = exact.or_else(|| self.covering_nsec(qname));
                add(set, &mut out);
            }
            Lookup::NoData {
                wildcard: Some(w), ..
            } => {
                add(self.covering_nsec(qname), &mut out);
                add(self.rrset(w, RecordType::NSEC), &mut out);
            }
            Lookup::Answer {
                wildcard: Some(_), ..
            }
            | Lookup::Cname {
                wildcard: Some(_), ..
            } => add(self.covering_nsec(qname), &mut out),
            Lookup::NxDomain => {
                add(self.covering_nsec(qname), &mut out);
                let encloser = self.closest_encloser(qname);
                if let Ok(wild) = encloser.prepend_label("*") {
                    add(self.covering_nsec(&wild), &mut out);
                }
            }
            Lookup::Delegation { cut, ds: None, .. } => {
                add(self.rrset(cut, RecordType::NSEC), &mut out);
            }
            _ => {}
        }
        out
    }

    /// NSEC3 proofs (RFC 5155 section 7.2): the closest encloser's matching NSEC3 and the
    /// one covering the next closer name, plus the wildcard's (covering for NXDOMAIN,
    /// matching for a wildcard NODATA); NODATA at a name: its matching NSEC3.
    fn nsec3_proof<'z>(
        &'z self,
        chain: &Nsec3Chain,
        qname: &Name,
        lookup: &Lookup<'_>,
    ) -> Vec<&'z RrSet> {
        let mut out: Vec<&RrSet> = Vec::new();
        let closest_proof = |name: &Name, out: &mut Vec<&'z RrSet>| {
            let encloser = self.closest_encloser(name);
            add(self.nsec3_for(chain, &encloser, true), out);
            let next_closer = name.trim_to(usize::from(encloser.num_labels()) + 1);
            add(self.nsec3_for(chain, &next_closer, false), out);
            encloser
        };
        match lookup {
            Lookup::NoData { wildcard: None } => {
                match self.nsec3_for(chain, qname, true) {
                    Some(set) => add(Some(set), &mut out),
                    // No NSEC3 at the name (opt-out): prove the closest encloser instead.
                    None => {
                        closest_proof(qname, &mut out);
                    }
                }
            }
            Lookup::NoData { wildcard: Some(w) } => {
                closest_proof(qname, &mut out);
                add(self.nsec3_for(chain, w, true), &mut out);
            }
            Lookup::Answer {
                wildcard: Some(w), ..
            }
            | Lookup::Cname {
                wildcard: Some(w), ..
            } => {
                let encloser = w.base_name();
                let next_closer = qname.trim_to(usize::from(encloser.num_labels()) + 1);
                add(self.nsec3_for(chain, &next_closer, false), &mut out);
            }
            Lookup::NxDomain => {
                let encloser = closest_proof(qname, &mut out);
                if let Ok(wild) = encloser.prepend_label("*") {
                    add(self.nsec3_for(chain, &wild, false), &mut out);
                }
            }
            Lookup::Delegation { cut, ds: None, .. } => match self.nsec3_for(chain, cut, true) {
                Some(set) => add(Some(set), &mut out),
                None => {
                    closest_proof(cut, &mut out);
                }
            },
            _ => {}
        }
        out
    }

    /// The NSEC3 RRset matching `name` (`matching`), or covering its hash.
    fn nsec3_for(&self, chain: &Nsec3Chain, name: &Name, matching: bool) -> Option<&RrSet> {
        let hash = chain
            .algorithm
            .hash(&chain.salt, name, chain.iterations)
            .ok()?;
        let hash = hash.as_ref();
        let at = match chain
            .hashes
            .binary_search_by(|(h, _)| h.as_slice().cmp(hash))
        {
            Ok(i) => i,
            Err(_) if matching => return None,
            // The greatest hash below, or the last one (the chain wraps around).
            Err(0) => chain.hashes.len().checked_sub(1)?,
            Err(i) => i - 1,
        };
        self.nodes[chain.hashes[at].1].rrset(RecordType::NSEC3)
    }

    /// The NSEC3 chain, from the apex's NSEC3PARAM and the NSEC3 owners.
    fn nsec3_chain(&self) -> Option<Nsec3Chain> {
        let param = self.nodes[self.apex].rrset(RecordType::NSEC3PARAM)?;
        let RData::DNSSEC(DNSSECRData::NSEC3PARAM(param)) = &param.records.first()?.data else {
            return None;
        };
        let mut hashes = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.rrset(RecordType::NSEC3).is_none() || node.name.num_labels() == 0 {
                continue;
            }
            let Some(label) = node.name.iter().next() else {
                continue;
            };
            let upper = label.to_ascii_uppercase();
            if let Ok(hash) = BASE32HEX_NOPAD.decode(&upper) {
                hashes.push((hash, i));
            }
        }
        if hashes.is_empty() {
            return None;
        }
        hashes.sort();
        Some(Nsec3Chain {
            algorithm: param.hash_algorithm(),
            iterations: param.iterations(),
            salt: param.salt().to_vec(),
            hashes,
        })
    }

    /// The NSEC RRset whose owner is the greatest at or before `name` in canonical order.
    fn covering_nsec(&self, name: &Name) -> Option<&RrSet> {
        let pos = match self.nodes.binary_search_by(|n| n.name.cmp(name)) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.nodes[..pos]
            .iter()
            .rev()
            .find_map(|n| n.rrset(RecordType::NSEC))
            .or_else(|| {
                // Before the apex cannot happen for in-zone names; wrap to the last NSEC.
                self.nodes
                    .iter()
                    .rev()
                    .find_map(|n| n.rrset(RecordType::NSEC))
            })
    }

    /// The longest existing ancestor of a name that does not exist.
    fn closest_encloser(&self, name: &Name) -> Name {
        let mut up = name.base_name();
        while up.num_labels() > self.origin.num_labels() {
            if self.index.contains_key(&LowerName::new(&up)) {
                return up;
            }
            up = up.base_name();
        }
        self.origin.clone()
    }

    /// The highest zone cut at or above `qname` (below the apex), as a delegation.
    fn find_cut(&self, qname: &Name, qtype: RecordType) -> Option<Lookup<'_>> {
        let apex_labels = self.origin.num_labels();
        let labels = qname.num_labels();
        for k in apex_labels + 1..=labels {
            let name = qname.trim_to(k as usize);
            let Some(&i) = self.index.get(&LowerName::new(&name)) else {
                // Nothing below a name that does not exist.
                return None;
            };
            let node = &self.nodes[i];
            let Some(ns) = node.rrset(RecordType::NS) else {
                continue;
            };
            if k == labels && qtype == RecordType::DS {
                // The DS at a cut is the parent's: answer it here.
                return None;
            }
            let mut glue: Vec<&RrSet> = Vec::new();
            for r in &ns.records {
                if let RData::NS(target) = &r.data
                    && self.origin.zone_of(&target.0)
                {
                    for set in self.addresses(&target.0) {
                        if !glue.iter().any(|g| std::ptr::eq(*g, set)) {
                            glue.push(set);
                        }
                    }
                }
            }
            return Some(Lookup::Delegation {
                cut: &node.name,
                ns,
                ds: node.rrset(RecordType::DS),
                glue,
            });
        }
        None
    }

    fn at_node<'z>(
        &'z self,
        node: &'z Node,
        qtype: RecordType,
        wildcard: Option<&'z Name>,
    ) -> Lookup<'z> {
        match qtype {
            RecordType::ANY | RecordType::RRSIG => {
                // ANY: every RRset of the node; RRSIG: the signatures of every RRset.
                let signatures_only = qtype == RecordType::RRSIG;
                let rrsets: Vec<&RrSet> = node
                    .rrsets
                    .iter()
                    .filter(|s| {
                        if signatures_only {
                            !s.rrsigs.is_empty()
                        } else {
                            !s.records.is_empty()
                        }
                    })
                    .collect();
                if rrsets.is_empty() {
                    Lookup::NoData { wildcard }
                } else {
                    Lookup::Answer {
                        rrsets,
                        wildcard,
                        signatures_only,
                    }
                }
            }
            _ => {
                if let Some(set) = node.rrset(qtype) {
                    return Lookup::Answer {
                        rrsets: vec![set],
                        wildcard,
                        signatures_only: false,
                    };
                }
                if let Some(cname) = node.rrset(RecordType::CNAME) {
                    return Lookup::Cname {
                        rrset: cname,
                        wildcard,
                    };
                }
                Lookup::NoData { wildcard }
            }
        }
    }
}

/// Adds an RRset to a proof once.
fn add<'a>(set: Option<&'a RrSet>, out: &mut Vec<&'a RrSet>) {
    if let Some(set) = set
        && !out.iter().any(|s| std::ptr::eq(*s, set))
    {
        out.push(set);
    }
}

impl Node {
    /// The non-empty RRset of this type here.
    pub fn rrset(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets
            .iter()
            .find(|s| s.rtype == rtype && !s.records.is_empty())
    }
}

impl RrSet {
    /// The TTL of the RRset.
    pub fn ttl(&self) -> u32 {
        self.records.first().map_or(0, |r| r.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::zonefile::parse_zone_str;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone(extra: &str) -> Zone {
        let text = format!(
            "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hm 7 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n\
             www A 192.0.2.2\nwww A 192.0.2.3\nalias CNAME www\nmail MX 10 mx\nmx AAAA 2001:db8::1\n\
             a.b.c A 192.0.2.4\n*.wild TXT \"w\"\nsub NS ns.sub\nsub NS ns.other.net.\nns.sub A 192.0.2.5\n{extra}"
        );
        Zone::new(parse_zone_str(&text, "t", None).unwrap()).unwrap()
    }

    #[test]
    fn answers_case_insensitively() {
        let z = zone("");
        let Lookup::Answer {
            rrsets, wildcard, ..
        } = z.lookup(&n("WWW.Example.COM."), RecordType::A)
        else {
            panic!()
        };
        assert!(wildcard.is_none());
        assert_eq!(rrsets[0].records.len(), 2);
        assert_eq!(z.serial(), 7);
        assert_eq!(z.negative_ttl(), 60);
    }

    #[test]
    fn cname_nodata_nxdomain_and_empty_non_terminals() {
        let z = zone("");
        assert!(matches!(
            z.lookup(&n("alias.example.com."), RecordType::A),
            Lookup::Cname { .. }
        ));
        assert!(matches!(
            z.lookup(&n("alias.example.com."), RecordType::CNAME),
            Lookup::Answer { .. }
        ));
        assert!(matches!(
            z.lookup(&n("www.example.com."), RecordType::MX),
            Lookup::NoData { wildcard: None }
        ));
        assert!(matches!(
            z.lookup(&n("b.c.example.com."), RecordType::A),
            Lookup::NoData { wildcard: None }
        ));
        assert!(matches!(
            z.lookup(&n("nope.example.com."), RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            z.lookup(&n("x.www.example.com."), RecordType::A),
            Lookup::NxDomain
        ));
    }

    #[test]
    fn wildcards() {
        let z = zone("");
        match z.lookup(&n("anything.wild.example.com."), RecordType::TXT) {
            Lookup::Answer {
                wildcard: Some(w), ..
            } => assert_eq!(*w, n("*.wild.example.com.")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            z.lookup(&n("x.y.wild.example.com."), RecordType::TXT),
            Lookup::Answer {
                wildcard: Some(_),
                ..
            }
        ));
        assert!(matches!(
            z.lookup(&n("anything.wild.example.com."), RecordType::A),
            Lookup::NoData { wildcard: Some(_) }
        ));
    }

    #[test]
    fn delegations_with_glue() {
        let z = zone("");
        for q in [
            "sub.example.com.",
            "deep.host.sub.example.com.",
            "ns.sub.example.com.",
        ] {
            match z.lookup(&n(q), RecordType::A) {
                Lookup::Delegation { cut, ns, glue, ds } => {
                    assert_eq!(*cut, n("sub.example.com."));
                    assert_eq!(ns.records.len(), 2);
                    assert_eq!(glue.len(), 1);
                    assert!(ds.is_none());
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        // The DS of a cut is answered by the parent (here: NODATA).
        assert!(matches!(
            z.lookup(&n("sub.example.com."), RecordType::DS),
            Lookup::NoData { .. }
        ));
    }

    #[test]
    fn axfr_order() {
        let z = zone("");
        let all: Vec<&Record> = z.axfr_records().collect();
        assert_eq!(all.first().unwrap().record_type(), RecordType::SOA);
        assert_eq!(all.last().unwrap().record_type(), RecordType::SOA);
        assert_eq!(all.len(), z.len() + 1);
        assert_eq!(
            all.iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .count(),
            2
        );
    }

    #[test]
    fn from_records_checks() {
        let mut soa = zone("").soa_record().clone();
        assert!(Zone::from_records(n("example.com."), vec![]).is_err());
        assert!(Zone::from_records(n("example.com."), vec![soa.clone(), soa.clone()]).is_ok());
        soa.name = n("other.org.");
        assert!(Zone::from_records(n("example.com."), vec![soa]).is_err());
    }

    #[test]
    fn nsec_proofs() {
        let text = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\n\
                    @ NSEC a NS SOA RRSIG NSEC\n@ RRSIG NSEC 13 2 300 20300101000000 20200101000000 1 example.com. dGVzdA==\n\
                    a A 192.0.2.1\na NSEC c.d A RRSIG NSEC\nc.d A 192.0.2.2\nc.d NSEC ns A RRSIG NSEC\n\
                    ns A 192.0.2.3\nns NSEC example.com. A RRSIG NSEC\n";
        let z = Zone::new(parse_zone_str(text, "t", None).unwrap()).unwrap();
        assert!(z.is_nsec_signed());
        // NODATA at a.
        let l = z.lookup(&n("a.example.com."), RecordType::MX);
        let p = z.nsec_proof(&n("a.example.com."), &l);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].records[0].name, n("a.example.com."));
        // NXDOMAIN b: covered by a's NSEC; wildcard *.example.com covered by the apex NSEC.
        let l = z.lookup(&n("b.example.com."), RecordType::A);
        assert!(matches!(l, Lookup::NxDomain));
        let p = z.nsec_proof(&n("b.example.com."), &l);
        let owners: Vec<Name> = p.iter().map(|s| s.records[0].name.clone()).collect();
        assert_eq!(owners, vec![n("a.example.com."), n("example.com.")]);
        assert_eq!(
            z.rrset(&n("example.com."), RecordType::NSEC)
                .unwrap()
                .rrsigs
                .len(),
            1
        );
        // Empty non-terminal d: covered by a's NSEC.
        let l = z.lookup(&n("d.example.com."), RecordType::A);
        let p = z.nsec_proof(&n("d.example.com."), &l);
        assert_eq!(p[0].records[0].name, n("a.example.com."));
        // After the last name: wraps to the last NSEC.
        let l = z.lookup(&n("zzz.example.com."), RecordType::A);
        let p = z.nsec_proof(&n("zzz.example.com."), &l);
        assert_eq!(p[0].records[0].name, n("ns.example.com."));
    }
}
