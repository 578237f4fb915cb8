//! The server's answering logic over a catalog of zones.
//!
//! A [`Catalog`] holds [`Zone`]s and turns one request's bytes into an [`Outcome`]: a reply
//! to send, a stream of messages (a zone transfer over TCP), a NOTIFY to act on, a query to
//! hand to a recursive resolver, or nothing. It does no I/O; the server adapters feed it
//! datagrams and TCP messages and send what it returns.
//!
//! Behaviour, in the order `respond` decides:
//!
//! - Fewer than 12 bytes, or QR set (a response sent to us): [`Outcome::Drop`]. A header
//!   followed by bytes hickory cannot decode: FORMERR with the request's id.
//! - Opcodes other than QUERY and NOTIFY: NOTIMP. Not exactly one question: FORMERR.
//! - EDNS: a request with OPT gets an OPT back (our payload size 1232, DO echoed); a version
//!   above 0 gets BADVERS. UDP replies fit in max(512, the client's payload size); TCP ones
//!   in 65535 bytes. When the answer or authority section does not fit, the reply has TC set
//!   and its answer, authority and additional sections empty (question and OPT kept); the
//!   additional section is trimmed first, RRset by RRset, without TC.
//! - TSIG: a signed request is checked against the keys added with
//!   [`Catalog::add_tsig_key`] (unknown key, bad MAC or time outside the fudge: NOTAUTH with
//!   the TSIG error); the reply to a good one is signed, every message of a transfer too.
//! - The zone is the one with the longest origin containing the name (for a DS query at a
//!   zone's apex, its parent zone if held). In no zone: REFUSED,
//!   or [`Outcome::Recurse`] when recursion is on and the query asked for it (RD).
//! - Answers carry AA; CNAMEs are followed within and across the catalog's zones (at most 8,
//!   loop-safe); names at or below a zone cut get a referral (no AA, NS in authority, glue in
//!   additional); NXDOMAIN and NODATA carry the SOA with TTL min(SOA TTL, SOA minimum)
//!   (RFC 2308). A/AAAA of MX, NS and SRV targets in the zone go in the additional section.
//! - The question is echoed exactly as sent (case included); owners of the answer RRset use
//!   the query name's case.
//! - ANY (RFC 8482): one RRset of the name — the first held, NSEC and RRSIG passed over —
//!   over UDP and TCP alike.
//! - DNSSEC: with DO, each RRset returned comes with its RRSIGs, and negative answers and
//!   wildcard answers with their NSEC or NSEC3 proofs (from a pre-signed zone).
//!   Without DO, no RRSIG or NSEC is added, but a query for those types answers them.
//! - AXFR: TCP only (over UDP: REFUSED); only for a zone's apex (else NOTAUTH); only from an
//!   address in [`Catalog::allow_axfr`]'s blocks or with a valid TSIG (else REFUSED). The
//!   zone goes out as [`Outcome::Stream`], messages of at most 64 KiB, SOA first and last.
//!   IXFR over TCP is answered as a full AXFR-style transfer, or with the SOA alone when the
//!   client's serial is not older than ours; over UDP with the SOA alone (RFC 1995: the
//!   client then asks again over TCP).
//! - NOTIFY for a zone held: [`Outcome::Notified`] with the AA reply; for other names:
//!   NOTAUTH. Whether to trust the sender (its address) is the caller's decision.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
pub use ipnet::IpNet;

use super::zone::{Lookup, RrSet, Zone};

/// The UDP payload size this server advertises in its OPT record.
pub const OUR_UDP_PAYLOAD: u16 = 1232;

/// The largest message of a zone transfer.
pub const MAX_TRANSFER_MESSAGE: usize = 65_535;

/// How many CNAMEs an answer follows.
pub const MAX_CNAME_CHAIN: usize = 8;

/// How the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A datagram: the reply must fit the client's size.
    Udp,
    /// A TCP message: up to 65535 bytes, zone transfers allowed.
    Tcp,
}

/// One request as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The message's bytes (for TCP, without the two-byte length).
    pub message: &'a [u8],
    /// The sender's address.
    pub source: IpAddr,
    /// UDP or TCP.
    pub via: Via,
}

/// What to do about a request.
#[derive(Debug)]
pub enum Outcome {
    /// One message, ready to send (UDP: fits the client's size, TC set if cut).
    Reply(Vec<u8>),
    /// Several messages (AXFR over TCP), in order.
    Stream(Vec<Vec<u8>>),
    /// A NOTIFY for a zone we hold: send the reply, and refresh that zone.
    Notified {
        /// The zone's origin.
        zone: Name,
        /// The NOTIFY response.
        reply: Vec<u8>,
    },
    /// The name is in none of our zones and recursion is on: the caller answers it.
    Recurse(Message),
    /// Nothing to say (no header, or a response sent to us).
    Drop,
}

/// The zones a server answers for, and its policy.
#[derive(Default)]
pub struct Catalog {
    zones: HashMap<LowerName, Zone>,
    recursion: bool,
    axfr_allowed: Vec<IpNet>,
    tsig_keys: Vec<TSigner>,
    /// Counts the changes, for those who cache answers.
    generation: u64,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("zones", &self.zones.keys().collect::<Vec<_>>())
            .field("recursion", &self.recursion)
            .field("axfr_allowed", &self.axfr_allowed)
            .field("tsig_keys", &self.tsig_keys.len())
            .finish()
    }
}

impl Catalog {
    /// An empty catalog: no zones, no recursion, no transfers allowed.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Adds a zone, replacing one of the same origin.
    pub fn insert(&mut self, zone: Zone) {
        self.generation += 1;
        self.zones.insert(LowerName::new(zone.origin()), zone);
    }

    /// Takes a zone out.
    pub fn remove(&mut self, origin: &Name) -> Option<Zone> {
        self.generation += 1;
        self.zones.remove(&LowerName::new(origin))
    }

    /// A number that changes whenever the catalog does (zones, recursion, transfer rules,
    /// keys): an answer cached at one generation is good until the next.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The zone of exactly this origin.
    pub fn zone(&self, origin: &Name) -> Option<&Zone> {
        self.zones.get(&LowerName::new(origin))
    }

    /// Every zone.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    /// Recursion on: the RA bit is set, and queries with RD for names outside every zone
    /// come back as [`Outcome::Recurse`].
    pub fn set_recursion(&mut self, on: bool) {
        self.generation += 1;
        self.recursion = on;
    }

    /// Allows zone transfers to clients in this block (none by default, not even loopback).
    pub fn allow_axfr(&mut self, net: IpNet) {
        self.generation += 1;
        self.axfr_allowed.push(net);
    }

    /// Adds a TSIG key: requests signed with it are verified and their replies signed, and
    /// may transfer zones whatever their address.
    pub fn add_tsig_key(&mut self, key: TSigner) {
        self.generation += 1;
        self.tsig_keys
            .retain(|k| k.signer_name() != key.signer_name());
        self.tsig_keys.push(key);
    }

    /// Answers one request, the system clock giving the time for TSIG checks.
    pub fn respond(&self, request: &Request<'_>) -> Outcome {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.respond_at(request, now)
    }

    /// Answers one request; `now` (seconds since the epoch) is used only for TSIG.
    pub fn respond_at(&self, request: &Request<'_>, now: u64) -> Outcome {
        let bytes = request.message;
        let Some(header) = bytes.get(..12) else {
            return Outcome::Drop;
        };
        if header[2] & 0x80 != 0 {
            return Outcome::Drop;
        }
        let message = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => {
                // Header only: id, opcode and RD echoed.
                let mut reply = vec![0u8; 12];
                reply[..2].copy_from_slice(&header[..2]);
                reply[2] = 0x80 | (header[2] & 0x79);
                reply[3] = ResponseCode::FormErr.low();
                return Outcome::Reply(reply);
            }
        };
        let mut tsig = None;
        if message.signature.is_some() {
            match self.check_tsig(bytes, &message, now) {
                Ok(state) => tsig = Some(state),
                Err(reply) => return Outcome::Reply(reply),
            }
        }
        let mut ctx = Ctx {
            message: &message,
            via: request.via,
            tsig,
            do_bit: message.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            recursion: self.recursion,
        };
        match message.op_code {
            OpCode::Query | OpCode::Notify => {}
            _ => return Outcome::Reply(ctx.error(ResponseCode::NotImp, true)),
        }
        if message.queries.len() != 1 {
            return Outcome::Reply(ctx.error(ResponseCode::FormErr, false));
        }
        if message.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Outcome::Reply(ctx.error(ResponseCode::BADVERS, true));
        }
        let query = &message.queries[0];
        if message.op_code == OpCode::Notify {
            return self.notify(&mut ctx, query);
        }
        match query.query_class() {
            DNSClass::IN | DNSClass::ANY => {}
            _ => return Outcome::Reply(ctx.error(ResponseCode::Refused, true)),
        }
        match query.query_type() {
            RecordType::AXFR | RecordType::IXFR => {
                return self.transfer(&mut ctx, query, request.source);
            }
            RecordType::OPT | RecordType::TSIG => {
                return Outcome::Reply(ctx.error(ResponseCode::FormErr, true));
            }
            _ => {}
        }
        let Some(mut zone) = self.find_zone(query.name()) else {
            if self.recursion && message.recursion_desired {
                return Outcome::Recurse(message);
            }
            return Outcome::Reply(ctx.error(ResponseCode::Refused, true));
        };
        if query.query_type() == RecordType::DS
            && zone.origin() == query.name()
            && !query.name().is_root()
        {
            // The DS of a zone's apex belongs to its parent: answer from the parent if we
            // hold it too (RFC 4035 3.1.4.1).
            if let Some(parent) = self.find_zone(&query.name().base_name()) {
                zone = parent;
            }
        }
        Outcome::Reply(self.answer(&mut ctx, zone, query))
    }

    /// The zone with the longest origin at or above `name`.
    fn find_zone(&self, name: &Name) -> Option<&Zone> {
        if self.zones.len() <= 4 {
            // A few zones: compare in place rather than build a lowercased key per label.
            return self
                .zones
                .values()
                .filter(|z| z.origin().zone_of(name))
                .max_by_key(|z| z.origin().num_labels());
        }
        let mut key = LowerName::new(name);
        loop {
            if let Some(z) = self.zones.get(&key) {
                return Some(z);
            }
            if key.is_root() {
                return None;
            }
            key = key.base_name();
        }
    }

    fn answer(&self, ctx: &mut Ctx<'_>, zone: &Zone, query: &Query) -> Vec<u8> {
        let qname = query.name();
        let qtype = query.query_type();
        let dnssec = ctx.do_bit;
        let mut out = Sections::default();
        let mut rcode = ResponseCode::NoError;
        let mut aa = true;
        let mut zone = zone;
        let mut name: &Name = qname;
        let mut seen: Vec<&Name> = Vec::new();
        for step in 0..=MAX_CNAME_CHAIN {
            let lookup = zone.lookup(name, qtype);
            // The answer's owner takes the query's case (and compresses to the question).
            let owner = if step == 0 { Some(qname) } else { None };
            match &lookup {
                Lookup::Answer {
                    rrsets,
                    wildcard,
                    signatures_only,
                } => {
                    let owner = if wildcard.is_some() {
                        Some(name)
                    } else {
                        owner
                    };
                    let chosen: Vec<&RrSet> = if qtype == RecordType::ANY {
                        rrsets
                            .iter()
                            .find(|s| !matches!(s.rtype, RecordType::NSEC | RecordType::RRSIG))
                            .or_else(|| rrsets.first())
                            .into_iter()
                            .copied()
                            .collect()
                    } else {
                        rrsets.clone()
                    };
                    for set in chosen {
                        if *signatures_only {
                            out.answer.push(Group::sigs_only(owner, set));
                        } else {
                            out.answer.push(Group::of(owner, set, dnssec));
                            out.additional_for(zone, set, dnssec);
                        }
                    }
                    if dnssec && wildcard.is_some() {
                        for set in zone.nsec_proof(name, &lookup) {
                            out.authority.push(Group::of(None, set, true));
                        }
                    }
                    break;
                }
                Lookup::Cname { rrset, wildcard } => {
                    let owner = if wildcard.is_some() {
                        Some(name)
                    } else {
                        owner
                    };
                    out.answer.push(Group::of(owner, rrset, dnssec));
                    if dnssec && wildcard.is_some() {
                        for set in zone.nsec_proof(name, &lookup) {
                            out.authority.push(Group::of(None, set, true));
                        }
                    }
                    let Some(RData::CNAME(target)) = rrset.records.first().map(|r| &r.data) else {
                        break;
                    };
                    seen.push(name);
                    let target = &target.0;
                    if seen.contains(&target) || step == MAX_CNAME_CHAIN {
                        break;
                    }
                    match self.find_zone(target) {
                        Some(z) => {
                            zone = z;
                            name = target;
                        }
                        None => break,
                    }
                }
                Lookup::Delegation { ns, ds, glue, .. } => {
                    if step == 0 {
                        aa = false;
                    }
                    out.authority.push(Group::of(None, ns, false));
                    if dnssec {
                        match ds {
                            Some(ds) => out.authority.push(Group::of(None, ds, true)),
                            None => {
                                for set in zone.nsec_proof(name, &lookup) {
                                    out.authority.push(Group::of(None, set, true));
                                }
                            }
                        }
                    }
                    for set in glue {
                        out.additional.push(Group::of(None, set, false));
                    }
                    break;
                }
                Lookup::NoData { .. } | Lookup::NxDomain => {
                    if matches!(lookup, Lookup::NxDomain) {
                        rcode = ResponseCode::NXDomain;
                    }
                    let soa = zone.soa_rrset();
                    let mut g = Group::of(None, soa, dnssec);
                    g.ttl = Some(zone.negative_ttl());
                    out.authority.push(g);
                    if dnssec {
                        for set in zone.nsec_proof(name, &lookup) {
                            out.authority.push(Group::of(None, set, true));
                        }
                    }
                    break;
                }
            }
        }
        let flags = Flags {
            aa,
            rcode,
            ..ctx.flags()
        };
        ctx.encode(flags, &out, ctx.limit())
    }

    fn notify(&self, ctx: &mut Ctx<'_>, query: &Query) -> Outcome {
        let Some(zone) = self.zone(query.name()) else {
            return Outcome::Reply(ctx.error(ResponseCode::NotAuth, true));
        };
        let flags = Flags {
            aa: true,
            ..ctx.flags()
        };
        let reply = ctx.encode(flags, &Sections::default(), ctx.limit());
        Outcome::Notified {
            zone: zone.origin().clone(),
            reply,
        }
    }

    fn transfer(&self, ctx: &mut Ctx<'_>, query: &Query, source: IpAddr) -> Outcome {
        let ixfr = query.query_type() == RecordType::IXFR;
        if ctx.via == Via::Udp && !ixfr {
            return Outcome::Reply(ctx.error(ResponseCode::Refused, true));
        }
        let Some(zone) = self.zone(query.name()) else {
            return Outcome::Reply(ctx.error(ResponseCode::NotAuth, true));
        };
        let allowed =
            ctx.tsig.is_some() || self.axfr_allowed.iter().any(|net| net.contains(&source));
        if !allowed {
            return Outcome::Reply(ctx.error(ResponseCode::Refused, true));
        }
        let flags = Flags {
            aa: true,
            ..ctx.flags()
        };
        // IXFR from a client whose serial (the SOA in its authority section) is not older
        // than ours (RFC 1982 arithmetic): the SOA alone says it is up to date (RFC 1995).
        let up_to_date = ixfr
            && ctx.message.authorities.iter().any(|r| match &r.data {
                RData::SOA(theirs) => (theirs.serial.wrapping_sub(zone.serial()) as i32) >= 0,
                _ => false,
            });
        if ctx.via == Via::Udp || up_to_date {
            // IXFR over UDP: the SOA alone tells the client to come back over TCP.
            let mut out = Sections::default();
            out.answer.push(Group::of(None, zone.soa_rrset(), false));
            return Outcome::Reply(ctx.encode(flags, &out, ctx.limit()));
        }
        Outcome::Stream(ctx.stream(flags, zone))
    }

    fn check_tsig(&self, bytes: &[u8], message: &Message, now: u64) -> Result<TsigState, Vec<u8>> {
        let sig = message.signature.as_ref().expect("checked by the caller");
        let id = message.id;
        let reply_with = |tsig_record: Record<TSIG>| {
            let mut reply = header_bytes(
                &Flags {
                    id,
                    opcode: message.op_code,
                    rd: message.recursion_desired,
                    rcode: ResponseCode::NotAuth,
                    ..Flags::default()
                },
                [0, 0, 0, 1],
            );
            let mut buf = Vec::new();
            let mut enc = BinEncoder::new(&mut buf);
            // A record that does not encode leaves an unsigned NOTAUTH: still an answer.
            if tsig_record.emit(&mut enc).is_ok() {
                reply.extend_from_slice(&buf);
            } else {
                reply[11] = 0;
            }
            reply
        };
        let Some(signer) = self
            .tsig_keys
            .iter()
            .find(|k| k.signer_name().eq(&sig.name) && *k.algorithm() == sig.data.algorithm)
        else {
            let mut t = TSIG::new(
                sig.data.algorithm.clone(),
                now,
                sig.data.fudge,
                Vec::new(),
                sig.data.oid,
                Some(TsigError::BadKey),
                Vec::new(),
            );
            t.time = now;
            return Err(reply_with(make_tsig_record(sig.name.clone(), t)));
        };
        let (mac, _time, range) = match signer.verify_message_byte(bytes, None, true) {
            Ok(ok) => ok,
            Err(_) => {
                let t = TSIG::new(
                    signer.algorithm().clone(),
                    now,
                    signer.fudge(),
                    Vec::new(),
                    sig.data.oid,
                    Some(TsigError::BadSig),
                    Vec::new(),
                );
                return Err(reply_with(make_tsig_record(
                    signer.signer_name().clone(),
                    t,
                )));
            }
        };
        let mut state = TsigState {
            signer: signer.clone(),
            prev_mac: mac,
            time: now,
            oid: sig.data.oid,
            first: true,
            error: None,
        };
        if !range.contains(&now) && range.end != now {
            // BADTIME is signed (RFC 8945 5.2.3), with our time in Other Data.
            state.error = Some(TsigError::BadTime);
            let mut reply = header_bytes(
                &Flags {
                    id,
                    opcode: message.op_code,
                    rd: message.recursion_desired,
                    rcode: ResponseCode::NotAuth,
                    ..Flags::default()
                },
                [0, 0, 0, 0],
            );
            state.sign(&mut reply);
            return Err(reply);
        }
        Ok(state)
    }
}

/// The state of a TSIG-signed exchange: the MAC to chain on.
struct TsigState {
    signer: TSigner,
    prev_mac: Vec<u8>,
    time: u64,
    oid: u16,
    first: bool,
    error: Option<TsigError>,
}

impl TsigState {
    /// Appends a TSIG record to `msg` (whose ARCOUNT does not count it yet).
    fn sign(&mut self, msg: &mut Vec<u8>) {
        let other = match self.error {
            Some(TsigError::BadTime) => {
                let t = self.time;
                vec![
                    (t >> 40) as u8,
                    (t >> 32) as u8,
                    (t >> 24) as u8,
                    (t >> 16) as u8,
                    (t >> 8) as u8,
                    t as u8,
                ]
            }
            _ => Vec::new(),
        };
        let stub = TSIG::new(
            self.signer.algorithm().clone(),
            self.time,
            self.signer.fudge(),
            Vec::new(),
            self.oid,
            self.error,
            other,
        );
        let mut tbs = Vec::with_capacity(msg.len() + 128);
        tbs.extend_from_slice(&(self.prev_mac.len() as u16).to_be_bytes());
        tbs.extend_from_slice(&self.prev_mac);
        tbs.extend_from_slice(msg);
        {
            let mut enc = BinEncoder::new(&mut tbs);
            enc.set_offset(enc.len());
            let ok = if self.first {
                stub.emit_tsig_for_mac(&mut enc, self.signer.signer_name())
                    .is_ok()
            } else {
                enc.emit_u16((self.time >> 32) as u16).is_ok()
                    && enc.emit_u32(self.time as u32).is_ok()
                    && enc.emit_u16(self.signer.fudge()).is_ok()
            };
            if !ok {
                return;
            }
        }
        let Ok(mac) = self.signer.sign(&tbs) else {
            return;
        };
        let record = make_tsig_record(self.signer.signer_name().clone(), stub.set_mac(mac.clone()));
        let mut buf = Vec::new();
        if record.emit(&mut BinEncoder::new(&mut buf)).is_err() {
            return;
        }
        msg.extend_from_slice(&buf);
        let arcount = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
        msg[10..12].copy_from_slice(&arcount.to_be_bytes());
        self.prev_mac = mac;
        self.first = false;
    }
}

/// One request being answered.
struct Ctx<'m> {
    message: &'m Message,
    via: Via,
    tsig: Option<TsigState>,
    do_bit: bool,
    /// The catalog offers recursion: RA is set.
    recursion: bool,
}

#[derive(Clone, Copy)]
struct Flags {
    id: u16,
    opcode: OpCode,
    aa: bool,
    tc: bool,
    rd: bool,
    ra: bool,
    cd: bool,
    rcode: ResponseCode,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            id: 0,
            opcode: OpCode::Query,
            aa: false,
            tc: false,
            rd: false,
            ra: false,
            cd: false,
            rcode: ResponseCode::NoError,
        }
    }
}

/// An RRset (or part of one) to write: owner and TTL overridable.
struct Group<'z> {
    owner: Option<&'z Name>,
    ttl: Option<u32>,
    records: &'z [Record],
    sigs: &'z [Record],
}

impl<'z> Group<'z> {
    fn of(owner: Option<&'z Name>, set: &'z RrSet, with_sigs: bool) -> Group<'z> {
        Group {
            owner,
            ttl: None,
            records: &set.records,
            sigs: if with_sigs { &set.rrsigs } else { &[] },
        }
    }

    fn sigs_only(owner: Option<&'z Name>, set: &'z RrSet) -> Group<'z> {
        Group {
            owner,
            ttl: None,
            records: &[],
            sigs: &set.rrsigs,
        }
    }

    fn emit(&self, enc: &mut BinEncoder<'_>) -> Option<u16> {
        let mut n = 0u16;
        for r in self.records.iter().chain(self.sigs) {
            emit_record(
                enc,
                self.owner.unwrap_or(&r.name),
                self.ttl.unwrap_or(r.ttl),
                r,
            )?;
            n += 1;
        }
        Some(n)
    }
}

#[derive(Default)]
struct Sections<'z> {
    answer: Vec<Group<'z>>,
    authority: Vec<Group<'z>>,
    additional: Vec<Group<'z>>,
}

impl<'z> Sections<'z> {
    /// A/AAAA of the targets of MX, NS and SRV records, from the same zone.
    fn additional_for(&mut self, zone: &'z Zone, set: &'z RrSet, dnssec: bool) {
        for r in &set.records {
            let target = match &r.data {
                RData::MX(mx) => &mx.exchange,
                RData::NS(ns) => &ns.0,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            for addr in zone.addresses(target) {
                if !self
                    .additional
                    .iter()
                    .any(|g| std::ptr::eq(g.records.as_ptr(), addr.records.as_ptr()))
                {
                    self.additional.push(Group::of(None, addr, dnssec));
                }
            }
        }
    }
}

fn emit_record(enc: &mut BinEncoder<'_>, owner: &Name, ttl: u32, r: &Record) -> Option<()> {
    owner.emit(enc).ok()?;
    enc.emit_u16(u16::from(r.record_type())).ok()?;
    enc.emit_u16(u16::from(r.dns_class)).ok()?;
    enc.emit_u32(ttl).ok()?;
    let place = enc.place::<u16>().ok()?;
    r.data.emit(enc).ok()?;
    let len = enc.len_since_place(&place);
    place.replace(enc, u16::try_from(len).ok()?).ok()?;
    Some(())
}

fn header_bytes(f: &Flags, counts: [u16; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(&f.id.to_be_bytes());
    h.push(
        0x80 | (u8::from(f.opcode) << 3)
            | (u8::from(f.aa) << 2)
            | (u8::from(f.tc) << 1)
            | u8::from(f.rd),
    );
    h.push((u8::from(f.ra) << 7) | (u8::from(f.cd) << 4) | f.rcode.low());
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

impl Ctx<'_> {
    fn flags(&self) -> Flags {
        Flags {
            id: self.message.id,
            opcode: self.message.op_code,
            aa: false,
            tc: false,
            rd: self.message.recursion_desired,
            ra: self.recursion,
            cd: self.message.checking_disabled,
            rcode: ResponseCode::NoError,
        }
    }

    /// The size a reply must fit in.
    fn limit(&self) -> usize {
        match self.via {
            Via::Tcp => 65_535,
            Via::Udp => {
                let client = self.message.edns.as_ref().map_or(512, Edns::max_payload);
                usize::from(client.max(512))
            }
        }
    }

    /// An error reply: the question echoed if `with_question`.
    fn error(&mut self, rcode: ResponseCode, with_question: bool) -> Vec<u8> {
        let flags = Flags {
            rcode,
            ..self.flags()
        };
        if with_question {
            self.encode(flags, &Sections::default(), 65_535)
        } else {
            let mut reply = header_bytes(&flags, [0; 4]);
            self.finish(&mut reply, rcode, 0);
            reply
        }
    }

    /// The OPT record of the reply, if the request had one (RFC 6891 6.1.2: root owner,
    /// our payload size as class, extended rcode, version 0 and DO in the TTL, no options).
    fn opt(&self, rcode: ResponseCode) -> Option<[u8; 11]> {
        let theirs = self.message.edns.as_ref()?;
        let mut opt = [0u8; 11];
        opt[1..3].copy_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
        opt[3..5].copy_from_slice(&OUR_UDP_PAYLOAD.to_be_bytes());
        opt[5] = rcode.high();
        opt[6] = 0;
        opt[7] = if theirs.flags().dnssec_ok { 0x80 } else { 0 };
        Some(opt)
    }

    /// Appends the OPT and TSIG records to a message whose ARCOUNT is `additional` so far.
    fn finish(&mut self, msg: &mut Vec<u8>, rcode: ResponseCode, additional: u16) {
        let mut arcount = additional;
        if let Some(opt) = self.opt(rcode) {
            msg.extend_from_slice(&opt);
            arcount += 1;
        }
        msg[10..12].copy_from_slice(&arcount.to_be_bytes());
        if let Some(tsig) = &mut self.tsig {
            tsig.sign(msg);
        }
    }

    /// Room kept at the end of a message for OPT and TSIG.
    fn reserve(&self) -> usize {
        let opt = if self.message.edns.is_some() { 11 } else { 0 };
        let tsig = self.tsig.as_ref().map_or(0, |t| {
            // name + fixed fields + algorithm name + MAC (at most 64 bytes) + other data.
            t.signer.signer_name().len() + 2 + 10 + 1 + 40 + 16 + 64 + 12
        });
        opt + tsig
    }

    /// Encodes a reply: header, question, sections as fit in `limit`, then OPT and TSIG.
    fn encode(&mut self, mut flags: Flags, out: &Sections<'_>, limit: usize) -> Vec<u8> {
        let limit = limit.saturating_sub(self.reserve()).max(12);
        let mut buf = header_bytes(&flags, [0; 4]);
        let mut counts = [0u16; 4];
        {
            let mut enc = BinEncoder::new(&mut buf);
            enc.set_offset(12);
            let mut ok = true;
            for q in &self.message.queries {
                ok &= q.emit(&mut enc).is_ok();
                counts[0] += 1;
            }
            let after_question = enc.offset();
            if !ok || after_question > limit {
                // Even the question does not fit: a bare header with TC.
                flags.tc = true;
                enc.set_offset(12);
                enc.trim();
                counts[0] = 0;
            } else {
                let mut fits = true;
                'sections: for (section, groups) in [(1, &out.answer), (2, &out.authority)] {
                    for g in groups {
                        match g.emit(&mut enc) {
                            Some(n) if enc.offset() <= limit => counts[section] += n,
                            _ => {
                                fits = false;
                                break 'sections;
                            }
                        }
                    }
                }
                if !fits {
                    flags.tc = true;
                    counts[1] = 0;
                    counts[2] = 0;
                    enc.set_offset(after_question);
                    enc.trim();
                } else {
                    for g in &out.additional {
                        let mark = enc.offset();
                        match g.emit(&mut enc) {
                            Some(n) if enc.offset() <= limit => counts[3] += n,
                            _ => {
                                enc.set_offset(mark);
                                enc.trim();
                            }
                        }
                    }
                }
            }
        }
        let head = header_bytes(&flags, counts);
        buf[..12].copy_from_slice(&head[..12]);
        self.finish(&mut buf, flags.rcode, counts[3]);
        buf
    }

    /// A zone transfer: messages of at most 64 KiB, SOA first and last.
    fn stream(&mut self, flags: Flags, zone: &Zone) -> Vec<Vec<u8>> {
        let limit = MAX_TRANSFER_MESSAGE - self.reserve();
        let mut messages = Vec::new();
        let mut records = zone.axfr_records().peekable();
        let mut first = true;
        while records.peek().is_some() {
            let mut buf = header_bytes(&flags, [0; 4]);
            let mut counts = [0u16; 4];
            {
                let mut enc = BinEncoder::new(&mut buf);
                enc.set_offset(12);
                if first {
                    for q in &self.message.queries {
                        if q.emit(&mut enc).is_ok() {
                            counts[0] += 1;
                        }
                    }
                }
                while let Some(r) = records.peek() {
                    let mark = enc.offset();
                    let ok = emit_record(&mut enc, &r.name, r.ttl, r).is_some();
                    if ok && enc.offset() <= limit {
                        counts[1] += 1;
                        records.next();
                        continue;
                    }
                    enc.set_offset(mark);
                    enc.trim();
                    if counts[1] == 0 {
                        // A record that fits in no message: skip it rather than loop.
                        records.next();
                    }
                    break;
                }
            }
            let head = header_bytes(&flags, counts);
            buf[..12].copy_from_slice(&head[..12]);
            self.finish(&mut buf, flags.rcode, 0);
            messages.push(buf);
            first = false;
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::zonefile::parse_zone_str;
    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use std::net::Ipv4Addr;

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
        @ SOA ns hostmaster 42 3600 600 86400 60\n@ NS ns\n@ MX 10 mail\nns A 192.0.2.1\n\
        mail A 192.0.2.2\nmail AAAA 2001:db8::2\nwww A 192.0.2.3\nalias CNAME www\n\
        loop1 CNAME loop2\nloop2 CNAME loop1\nout CNAME www.example.org.\nchain CNAME alias\n\
        *.wild A 192.0.2.9\nsub NS ns.sub\nns.sub A 192.0.2.10\nother CNAME host.example.net.\n\
        _sip._tcp SRV 0 0 5060 mail\na.b.c TXT \"deep\"\n";

    const OTHER: &str =
        "$ORIGIN example.net.\n$TTL 300\n@ SOA ns hm 1 1 1 1 1\n@ NS ns\nhost A 198.51.100.1\n";

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        c.insert(Zone::new(parse_zone_str(ZONE, "example.com", None).unwrap()).unwrap());
        c.insert(Zone::new(parse_zone_str(OTHER, "example.net", None).unwrap()).unwrap());
        c
    }

    fn query(qname: &str, qtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.add_query(Query::query(name(qname), qtype));
        m
    }

    fn with_edns(mut m: Message, size: u16, dnssec: bool) -> Message {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(dnssec);
        m.set_edns(e);
        m
    }

    fn ask_via(c: &Catalog, m: &Message, via: Via) -> Outcome {
        let bytes = m.to_vec().unwrap();
        c.respond(&Request {
            message: &bytes,
            source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)),
            via,
        })
    }

    fn ask(c: &Catalog, m: &Message) -> Message {
        match ask_via(c, m, Via::Udp) {
            Outcome::Reply(r) => Message::from_vec(&r).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(Record::record_type).collect()
    }

    #[test]
    fn plain_answer_with_aa_and_question_case() {
        let c = catalog();
        let r = ask(&c, &query("WwW.ExAmPle.CoM.", RecordType::A));
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.message_type, MessageType::Response);
        assert!(r.authoritative);
        assert_eq!(r.response_code, ResponseCode::NoError);
        assert_eq!(r.queries[0].name().to_string(), "WwW.ExAmPle.CoM.");
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name.to_string(), "WwW.ExAmPle.CoM.");
        assert!(r.edns.is_none());
    }

    #[test]
    fn mx_and_srv_get_additional_addresses() {
        let c = catalog();
        let r = ask(&c, &query("example.com.", RecordType::MX));
        assert_eq!(types(&r.answers), vec![RecordType::MX]);
        assert_eq!(types(&r.additionals), vec![RecordType::A, RecordType::AAAA]);
        let r = ask(&c, &query("_sip._tcp.example.com.", RecordType::SRV));
        assert_eq!(r.additionals.len(), 2);
    }

    #[test]
    fn cname_chains_within_and_across_zones() {
        let c = catalog();
        let r = ask(&c, &query("chain.example.com.", RecordType::A));
        assert_eq!(
            types(&r.answers),
            vec![RecordType::CNAME, RecordType::CNAME, RecordType::A]
        );
        let r = ask(&c, &query("other.example.com.", RecordType::A));
        assert_eq!(types(&r.answers), vec![RecordType::CNAME, RecordType::A]);
        let r = ask(&c, &query("out.example.com.", RecordType::A));
        assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
        assert_eq!(r.response_code, ResponseCode::NoError);
        let r = ask(&c, &query("loop1.example.com.", RecordType::A));
        assert_eq!(r.answers.len(), 2);
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let c = catalog();
        let r = ask(&c, &query("nope.example.com.", RecordType::A));
        assert_eq!(r.response_code, ResponseCode::NXDomain);
        assert!(r.authoritative);
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
        assert_eq!(r.authorities[0].ttl, 60);
        let r = ask(&c, &query("www.example.com.", RecordType::AAAA));
        assert_eq!(r.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
        // Empty non-terminal.
        let r = ask(&c, &query("b.c.example.com.", RecordType::A));
        assert_eq!(r.response_code, ResponseCode::NoError);
    }

    #[test]
    fn referral() {
        let c = catalog();
        let r = ask(&c, &query("host.sub.example.com.", RecordType::A));
        assert!(!r.authoritative);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::NS]);
        assert_eq!(types(&r.additionals), vec![RecordType::A]);
    }

    #[test]
    fn wildcard_synthesis() {
        let c = catalog();
        let r = ask(&c, &query("Foo.wild.example.com.", RecordType::A));
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name.to_string(), "Foo.wild.example.com.");
    }

    #[test]
    fn refused_or_recurse_outside_zones() {
        let mut c = catalog();
        let r = ask(&c, &query("www.example.org.", RecordType::A));
        assert_eq!(r.response_code, ResponseCode::Refused);
        assert!(!r.recursion_available);
        c.set_recursion(true);
        let mut q = query("www.example.org.", RecordType::A);
        q.metadata.recursion_desired = true;
        assert!(matches!(ask_via(&c, &q, Via::Udp), Outcome::Recurse(_)));
        let r = ask(&c, &query("www.example.com.", RecordType::A));
        assert!(r.answers.len() == 1 && r.recursion_available);
        let mut q = query("www.example.org.", RecordType::A);
        q.metadata.recursion_desired = false;
        assert_eq!(ask(&c, &q).response_code, ResponseCode::Refused);
    }

    #[test]
    fn the_longest_origin_wins() {
        let child = "$ORIGIN deep.example.com.\n$TTL 300\n@ SOA ns hm 9 1 1 1 1\n@ NS ns\nwww A 192.0.2.99\n";
        let mut c = catalog();
        c.insert(Zone::new(parse_zone_str(child, "deep", None).unwrap()).unwrap());
        for round in 0..2 {
            let r = ask(&c, &query("www.DEEP.example.com.", RecordType::A));
            assert_eq!(r.answers.len(), 1, "round {round}");
            assert_eq!(r.answers[0].data.to_string(), "192.0.2.99");
            let r = ask(&c, &query("www.example.com.", RecordType::A));
            assert_eq!(r.answers[0].data.to_string(), "192.0.2.3");
            // Second round: more zones than the linear scan handles.
            for i in 0..5 {
                let text = format!("$ORIGIN z{i}.test.\n$TTL 1\n@ SOA ns hm 1 1 1 1 1\n");
                c.insert(Zone::new(parse_zone_str(&text, "z", None).unwrap()).unwrap());
            }
        }
        // The child apex's DS is the parent's to answer (here: NODATA from example.com).
        let r = ask(&c, &query("deep.example.com.", RecordType::DS));
        assert_eq!(r.authorities[0].name, name("example.com."));
        let r = ask(&c, &query("deep.example.com.", RecordType::SOA));
        assert_eq!(r.answers[0].name, name("deep.example.com."));
        assert!(c.remove(&name("DEEP.example.com.")).is_some());
        let r = ask(&c, &query("www.deep.example.com.", RecordType::A));
        assert_eq!(r.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn edns_echo_badvers_and_do() {
        let c = catalog();
        let r = ask(
            &c,
            &with_edns(query("www.example.com.", RecordType::A), 4096, true),
        );
        let e = r.edns.as_ref().unwrap();
        assert_eq!(e.max_payload(), OUR_UDP_PAYLOAD);
        assert!(e.flags().dnssec_ok);
        let mut q = with_edns(query("www.example.com.", RecordType::A), 4096, false);
        q.edns.as_mut().unwrap().set_version(1);
        let r = ask(&c, &q);
        // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
        assert_eq!(u16::from(r.response_code), 16);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn any_is_minimal() {
        let c = catalog();
        let r = ask(&c, &query("example.com.", RecordType::ANY));
        assert_eq!(types(&r.answers), vec![RecordType::SOA]);
    }

    #[test]
    fn truncation_over_udp_and_not_over_tcp() {
        let mut text = String::from(ZONE);
        for i in 0..60 {
            text.push_str(&format!(
                "big TXT \"{i:03} padding padding padding padding padding\"\n"
            ));
        }
        let mut c = Catalog::new();
        c.insert(Zone::new(parse_zone_str(&text, "z", None).unwrap()).unwrap());
        let q = query("big.example.com.", RecordType::TXT);
        let r = ask(&c, &q);
        assert!(r.truncation);
        assert!(r.answers.is_empty());
        let Outcome::Reply(bytes) = ask_via(&c, &q, Via::Tcp) else {
            panic!()
        };
        let r = Message::from_vec(&bytes).unwrap();
        assert!(!r.truncation);
        assert_eq!(r.answers.len(), 60);
        // A bigger advertised size lets it through over UDP.
        let r = ask(&c, &with_edns(q, 4096, false));
        assert!(!r.truncation && r.answers.len() == 60);
    }

    #[test]
    fn malformed_requests() {
        let c = catalog();
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let drop = |b: &[u8]| {
            matches!(
                c.respond(&Request {
                    message: b,
                    source: src,
                    via: Via::Udp
                }),
                Outcome::Drop
            )
        };
        assert!(drop(&[]));
        assert!(drop(&[0x12, 0x34, 0x01]));
        // A response sent to us.
        let mut resp = query("www.example.com.", RecordType::A).to_vec().unwrap();
        resp[2] |= 0x80;
        assert!(drop(&resp));
        // Header with huge counts and nothing after: FORMERR with the id.
        let garbage = [0xab, 0xcd, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        let Outcome::Reply(r) = c.respond(&Request {
            message: &garbage,
            source: src,
            via: Via::Udp,
        }) else {
            panic!()
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.id, 0xabcd);
        assert_eq!(r.response_code, ResponseCode::FormErr);
        // Two questions.
        let mut two = query("www.example.com.", RecordType::A);
        two.add_query(Query::query(name("example.com."), RecordType::A));
        assert_eq!(ask(&c, &two).response_code, ResponseCode::FormErr);
        // No question.
        let none = Message::query();
        assert_eq!(ask(&c, &none).response_code, ResponseCode::FormErr);
        // Other opcodes.
        let mut upd = query("example.com.", RecordType::SOA);
        upd.metadata.op_code = OpCode::Update;
        assert_eq!(ask(&c, &upd).response_code, ResponseCode::NotImp);
    }

    #[test]
    fn random_bytes_never_panic() {
        let c = catalog();
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let base = with_edns(query("www.example.com.", RecordType::A), 1232, true)
            .to_vec()
            .unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            let msg: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // A valid query with a few bytes flipped.
                let mut m = base.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % m.len();
                    m[at] = next() as u8;
                }
                m
            };
            let via = if i % 3 == 0 { Via::Tcp } else { Via::Udp };
            let limit = match (via, Message::from_vec(&msg)) {
                (Via::Tcp, _) => 65_535,
                (Via::Udp, Ok(m)) => {
                    usize::from(m.edns.as_ref().map_or(512, Edns::max_payload).max(512))
                }
                (Via::Udp, Err(_)) => 512,
            };
            match c.respond(&Request {
                message: &msg,
                source: src,
                via,
            }) {
                Outcome::Reply(r) => {
                    assert!(r.len() <= limit);
                    Message::from_vec(&r).expect("every reply decodes");
                }
                Outcome::Stream(msgs) => {
                    for m in msgs {
                        Message::from_vec(&m).expect("every transfer message decodes");
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn notify() {
        let c = catalog();
        let mut n = query("example.com.", RecordType::SOA);
        n.metadata.op_code = OpCode::Notify;
        n.metadata.authoritative = true;
        match ask_via(&c, &n, Via::Udp) {
            Outcome::Notified { zone, reply } => {
                assert_eq!(zone, name("example.com."));
                let r = Message::from_vec(&reply).unwrap();
                assert_eq!(r.op_code, OpCode::Notify);
                assert!(r.authoritative);
                assert_eq!(r.response_code, ResponseCode::NoError);
            }
            other => panic!("{other:?}"),
        }
        let mut n = query("example.org.", RecordType::SOA);
        n.metadata.op_code = OpCode::Notify;
        assert_eq!(ask(&c, &n).response_code, ResponseCode::NotAuth);
    }

    fn transfer(c: &Catalog, m: &Message, source: IpAddr) -> Outcome {
        let bytes = m.to_vec().unwrap();
        c.respond(&Request {
            message: &bytes,
            source,
            via: Via::Tcp,
        })
    }

    #[test]
    fn axfr_acl_and_stream() {
        let mut c = catalog();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let q = query("example.com.", RecordType::AXFR);
        let Outcome::Reply(r) = transfer(&c, &q, local) else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::Refused
        );
        c.allow_axfr("127.0.0.0/8".parse().unwrap());
        let Outcome::Stream(msgs) = transfer(&c, &q, local) else {
            panic!()
        };
        let records: Vec<Record> = msgs
            .iter()
            .flat_map(|m| Message::from_vec(m).unwrap().answers)
            .collect();
        let zone = c.zone(&name("example.com.")).unwrap();
        assert_eq!(records.len(), zone.len() + 1);
        assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
        assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
        // Over UDP: refused.
        let Outcome::Reply(r) = ask_via(&c, &q, Via::Udp) else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::Refused
        );
        // Not an apex: NOTAUTH.
        let Outcome::Reply(r) = transfer(&c, &query("www.example.com.", RecordType::AXFR), local)
        else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::NotAuth
        );
        // IXFR over TCP: a full transfer.
        assert!(matches!(
            transfer(&c, &query("example.com.", RecordType::IXFR), local),
            Outcome::Stream(_)
        ));
        // IXFR from a client already at our serial: the SOA alone.
        let mut ixfr = query("example.com.", RecordType::IXFR);
        ixfr.add_authority(zone.soa_record().clone());
        let Outcome::Reply(r) = transfer(&c, &ixfr, local) else {
            panic!()
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(types(&r.answers), vec![RecordType::SOA]);
    }

    #[test]
    fn big_axfr_is_split_under_64k() {
        let mut text = String::from(ZONE);
        for i in 0..5000 {
            text.push_str(&format!("h{i} A 10.0.{}.{}\n", i / 256, i % 256));
        }
        let mut c = Catalog::new();
        c.insert(Zone::new(parse_zone_str(&text, "z", None).unwrap()).unwrap());
        c.allow_axfr("127.0.0.1/32".parse().unwrap());
        let Outcome::Stream(msgs) = transfer(
            &c,
            &query("example.com.", RecordType::AXFR),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ) else {
            panic!()
        };
        assert!(msgs.len() > 1);
        assert!(msgs.iter().all(|m| m.len() <= MAX_TRANSFER_MESSAGE));
        let total: usize = msgs
            .iter()
            .map(|m| Message::from_vec(m).unwrap().answers.len())
            .sum();
        assert_eq!(total, c.zone(&name("example.com.")).unwrap().len() + 1);
    }

    fn key() -> TSigner {
        TSigner::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            TsigAlgorithm::HmacSha256,
            name("xfr-key."),
            300,
        )
        .unwrap()
    }

    #[test]
    fn tsig_signed_axfr_is_verified_and_signed() {
        let mut c = catalog();
        c.add_tsig_key(key());
        let now = 1_700_000_000;
        let mut q = query("example.com.", RecordType::AXFR);
        let mut verifier = q.finalize(&key(), now).unwrap().unwrap();
        let bytes = q.to_vec().unwrap();
        let out = c.respond_at(
            &Request {
                message: &bytes,
                source: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
                via: Via::Tcp,
            },
            now,
        );
        let Outcome::Stream(msgs) = out else {
            panic!("{out:?}")
        };
        for m in &msgs {
            let resp = verifier.verify(m).expect("a valid TSIG on every message");
            assert!(!resp.answers.is_empty());
        }
        // A wrong key: NOTAUTH.
        let other = TSigner::new(
            b"wrong".to_vec(),
            TsigAlgorithm::HmacSha256,
            name("xfr-key."),
            300,
        )
        .unwrap();
        let mut q = query("example.com.", RecordType::AXFR);
        q.finalize(&other, now).unwrap();
        let bytes = q.to_vec().unwrap();
        let Outcome::Reply(r) = c.respond_at(
            &Request {
                message: &bytes,
                source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                via: Via::Tcp,
            },
            now,
        ) else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::NotAuth
        );
        // An unknown key: NOTAUTH.
        let stranger =
            TSigner::new(b"k".to_vec(), TsigAlgorithm::HmacSha256, name("who."), 300).unwrap();
        let mut q = query("example.com.", RecordType::AXFR);
        q.finalize(&stranger, now).unwrap();
        let bytes = q.to_vec().unwrap();
        let Outcome::Reply(r) = c.respond_at(
            &Request {
                message: &bytes,
                source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                via: Via::Tcp,
            },
            now,
        ) else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::NotAuth
        );
        // Too old: NOTAUTH (BADTIME).
        let mut q = query("example.com.", RecordType::AXFR);
        q.finalize(&key(), now - 3600).unwrap();
        let bytes = q.to_vec().unwrap();
        let Outcome::Reply(r) = c.respond_at(
            &Request {
                message: &bytes,
                source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                via: Via::Tcp,
            },
            now,
        ) else {
            panic!()
        };
        assert_eq!(
            Message::from_vec(&r).unwrap().response_code,
            ResponseCode::NotAuth
        );
    }

    #[test]
    fn tsig_signed_query_gets_signed_reply() {
        let mut c = catalog();
        c.add_tsig_key(key());
        let now = 1_700_000_000;
        let mut q = query("www.example.com.", RecordType::A);
        let mut verifier = q.finalize(&key(), now).unwrap().unwrap();
        let bytes = q.to_vec().unwrap();
        let Outcome::Reply(r) = c.respond_at(
            &Request {
                message: &bytes,
                source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                via: Via::Udp,
            },
            now,
        ) else {
            panic!()
        };
        let resp = verifier.verify(&r).unwrap();
        assert_eq!(resp.answers.len(), 1);
    }

    const SIGNED: &str = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hm 1 3600 600 86400 60\n\
        @ RRSIG SOA 13 2 300 20300101000000 20200101000000 1 example.com. c29h\n\
        @ NS ns\n@ RRSIG NS 13 2 300 20300101000000 20200101000000 1 example.com. bnM=\n\
        @ NSEC a NS SOA RRSIG NSEC\n@ RRSIG NSEC 13 2 300 20300101000000 20200101000000 1 example.com. bnNlYw==\n\
        a A 192.0.2.1\na RRSIG A 13 3 300 20300101000000 20200101000000 1 example.com. YQ==\n\
        a NSEC ns A RRSIG NSEC\na RRSIG NSEC 13 3 300 20300101000000 20200101000000 1 example.com. YW5zZWM=\n\
        ns A 192.0.2.2\nns RRSIG A 13 3 300 20300101000000 20200101000000 1 example.com. bnNh\n\
        ns NSEC example.com. A RRSIG NSEC\nns RRSIG NSEC 13 3 300 20300101000000 20200101000000 1 example.com. bnNuc2Vj\n";

    #[test]
    fn dnssec_signatures_and_proofs_only_with_do() {
        let mut c = Catalog::new();
        c.insert(Zone::new(parse_zone_str(SIGNED, "signed", None).unwrap()).unwrap());
        let r = ask(
            &c,
            &with_edns(query("a.example.com.", RecordType::A), 1232, true),
        );
        assert_eq!(types(&r.answers), vec![RecordType::A, RecordType::RRSIG]);
        let r = ask(
            &c,
            &with_edns(query("a.example.com.", RecordType::A), 1232, false),
        );
        assert_eq!(types(&r.answers), vec![RecordType::A]);
        let r = ask(&c, &query("a.example.com.", RecordType::A));
        assert_eq!(types(&r.answers), vec![RecordType::A]);
        // NXDOMAIN with DO: SOA, its RRSIG, the covering NSECs and theirs.
        let r = ask(
            &c,
            &with_edns(query("b.example.com.", RecordType::A), 1232, true),
        );
        assert_eq!(r.response_code, ResponseCode::NXDomain);
        let t = types(&r.authorities);
        assert_eq!(t.iter().filter(|t| **t == RecordType::NSEC).count(), 2);
        assert_eq!(t.iter().filter(|t| **t == RecordType::RRSIG).count(), 3);
        // NODATA with DO: the NSEC at the name.
        let r = ask(
            &c,
            &with_edns(query("a.example.com.", RecordType::MX), 1232, true),
        );
        let nsec: Vec<&Record> = r
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::NSEC)
            .collect();
        assert_eq!(nsec.len(), 1);
        assert_eq!(nsec[0].name, name("a.example.com."));
        // Without DO: the SOA only.
        let r = ask(&c, &query("b.example.com.", RecordType::A));
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
        // Direct queries for RRSIG and NSEC answer them.
        let r = ask(&c, &query("a.example.com.", RecordType::RRSIG));
        assert_eq!(
            types(&r.answers),
            vec![RecordType::RRSIG, RecordType::RRSIG]
        );
        let r = ask(&c, &query("a.example.com.", RecordType::NSEC));
        assert_eq!(types(&r.answers), vec![RecordType::NSEC]);
    }
}
