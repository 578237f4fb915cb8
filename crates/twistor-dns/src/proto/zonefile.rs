//! BIND-format zone files (RFC 1035 section 5), with file and line in every error.
//!
//! The outer syntax — comments, parentheses, quoted strings, escapes, `@`, relative names,
//! `$ORIGIN`, `$TTL`, `$INCLUDE`, owner/TTL/class inheritance — is parsed here, because
//! hickory-proto's own zone parser cannot say where an error is. Record data is turned into
//! hickory's [`RData`]: the common types (A, AAAA, NS, CNAME, PTR, MX, SOA, SRV, TXT) are
//! built directly; the others, DNSSEC types included (DS, DNSKEY, RRSIG, NSEC, NSEC3,
//! NSEC3PARAM), are encoded to wire form here and decoded by hickory; RFC 3597's generic
//! `\# length hex` form works for every type, known or not. Types this module has no text
//! form for (SVCB, HTTPS, CERT, CSYNC, …) go through hickory's text parser.
//!
//! After parsing, the zone is checked as BIND checks it: exactly one SOA, at the apex; no
//! record outside the zone; no CNAME beside other data (RRSIG and NSEC excepted).
//!
//! ```
//! use twistor_dns::proto::zonefile::parse_zone_str;
//!
//! let zone = parse_zone_str(
//!     "$ORIGIN example.com.\n$TTL 1h\n@ IN SOA ns hostmaster 1 2h 1h 1w 5m\n  NS ns\nns A 192.0.2.1\n",
//!     "example.com.zone",
//!     None,
//! )
//! .unwrap();
//! assert_eq!(zone.records.len(), 3);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use data_encoding::{BASE32HEX_NOPAD, BASE64, HEXLOWER_PERMISSIVE};
use hickory_proto::rr::rdata::{CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use crate::error::Error;

/// How deep `$INCLUDE` may nest (a file including a file … ).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// The records of one zone, as read from a zone file, in file order.
#[derive(Debug, Clone)]
pub struct ZoneData {
    /// The zone's apex: the origin given, or else the owner of the SOA.
    pub origin: Name,
    /// Every record, in the order of the file (includes expanded in place).
    pub records: Vec<Record>,
}

/// Reads and checks the zone file at `path`.
///
/// `origin` is the zone's apex and the initial origin for relative names; without it, the
/// apex is the SOA's owner and relative names need a `$ORIGIN` first. `$INCLUDE` paths are
/// relative to the including file's directory.
pub fn parse_zone_file(path: &Path, origin: Option<&Name>) -> Result<ZoneData, Error> {
    let text = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut parser = FileParser::new(origin, true);
    parser.parse_file(&text, path.display().to_string(), Some(path), 0)?;
    parser.finish()
}

/// Parses zone-file text; `name_for_errors` names it in errors. `$INCLUDE` is refused (there
/// is no directory to resolve it against, and a string from elsewhere must not read files).
pub fn parse_zone_str(
    text: &str,
    name_for_errors: &str,
    origin: Option<&Name>,
) -> Result<ZoneData, Error> {
    let mut parser = FileParser::new(origin, false);
    parser.parse_file(text.as_bytes(), name_for_errors.to_string(), None, 0)?;
    parser.finish()
}

/// Parses the text form of one record's data (`rdata`, e.g. `10 mail`), relative names taken
/// against `origin`.
pub fn parse_rdata(rtype: RecordType, rdata: &str, origin: &Name) -> Result<RData, Error> {
    let mut lexer = Lexer::new(rdata.as_bytes());
    let mut tokens = Vec::new();
    while let Some(entry) = lexer.next_entry().map_err(|(_, why)| Error::Invalid(why))? {
        tokens.extend(entry.tokens);
    }
    rdata_from_tokens(rtype, &tokens, origin).map_err(Error::Invalid)
}

// ---------------------------------------------------------------------------------------
// The lexer: entries (logical lines) of tokens.

#[derive(Debug, Clone)]
struct Token {
    /// The token's bytes as written, escapes kept (the consumer knows whether it is a name
    /// or a character string); for a quoted token, the bytes between the quotes.
    text: Vec<u8>,
    quoted: bool,
}

impl Token {
    fn is(&self, word: &str) -> bool {
        !self.quoted && self.text.eq_ignore_ascii_case(word.as_bytes())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or("")
    }
}

struct Entry {
    /// The line the entry starts on.
    line: usize,
    /// The entry starts with white space: the owner is the previous one.
    blank_owner: bool,
    tokens: Vec<Token>,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

type LexResult<T> = Result<T, (usize, String)>;

impl<'a> Lexer<'a> {
    fn new(src: &'a [u8]) -> Lexer<'a> {
        Lexer {
            src,
            pos: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// The next entry with at least one token, or None at the end.
    fn next_entry(&mut self) -> LexResult<Option<Entry>> {
        loop {
            if self.pos >= self.src.len() {
                return Ok(None);
            }
            let line = self.line;
            let blank_owner = matches!(self.peek(), Some(b' ' | b'\t'));
            let mut tokens = Vec::new();
            let mut depth = 0usize;
            let mut open_line = line;
            loop {
                let Some(c) = self.peek() else {
                    if depth > 0 {
                        return Err((open_line, "unclosed parenthesis".into()));
                    }
                    break;
                };
                match c {
                    b'\n' => {
                        self.pos += 1;
                        self.line += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b';' => {
                        while let Some(c) = self.peek() {
                            if c == b'\n' {
                                break;
                            }
                            self.pos += 1;
                        }
                    }
                    b'(' => {
                        if depth == 0 {
                            open_line = self.line;
                        }
                        depth += 1;
                        self.pos += 1;
                    }
                    b')' => {
                        if depth == 0 {
                            return Err((self.line, "')' without '('".into()));
                        }
                        depth -= 1;
                        self.pos += 1;
                    }
                    b'"' => {
                        let start_line = self.line;
                        self.pos += 1;
                        let mut text = Vec::new();
                        loop {
                            match self.peek() {
                                None => {
                                    return Err((start_line, "unterminated quoted string".into()));
                                }
                                Some(b'"') => {
                                    self.pos += 1;
                                    break;
                                }
                                Some(b'\\') => {
                                    text.push(b'\\');
                                    self.pos += 1;
                                    match self.peek() {
                                        Some(c) => {
                                            if c == b'\n' {
                                                self.line += 1;
                                            }
                                            text.push(c);
                                            self.pos += 1;
                                        }
                                        None => {
                                            return Err((
                                                start_line,
                                                "unterminated quoted string".into(),
                                            ));
                                        }
                                    }
                                }
                                Some(c) => {
                                    if c == b'\n' {
                                        self.line += 1;
                                    }
                                    text.push(c);
                                    self.pos += 1;
                                }
                            }
                        }
                        tokens.push(Token { text, quoted: true });
                    }
                    _ => {
                        let mut text = Vec::new();
                        while let Some(c) = self.peek() {
                            match c {
                                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                                b'\\' => {
                                    text.push(c);
                                    self.pos += 1;
                                    match self.peek() {
                                        Some(b'\n') | None => {
                                            return Err((self.line, "'\\' at end of line".into()));
                                        }
                                        Some(c) => {
                                            text.push(c);
                                            self.pos += 1;
                                        }
                                    }
                                }
                                _ => {
                                    text.push(c);
                                    self.pos += 1;
                                }
                            }
                        }
                        tokens.push(Token {
                            text,
                            quoted: false,
                        });
                    }
                }
            }
            if !tokens.is_empty() {
                return Ok(Some(Entry {
                    line,
                    blank_owner,
                    tokens,
                }));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file parser: directives, owners, TTLs, classes, and the zone checks at the end.

struct FileParser {
    /// The zone's apex if given.
    apex: Option<Name>,
    allow_include: bool,
    records: Vec<Record>,
    /// (file, line) of each record, for the checks at the end.
    places: Vec<(usize, usize)>,
    files: Vec<String>,
    /// Canonical paths of the files being read, to refuse include loops.
    open: Vec<PathBuf>,
}

struct FileState {
    origin: Option<Name>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    /// The SOA's minimum, once read: the default TTL when there is no `$TTL`.
    soa_minimum: Option<u32>,
    owner: Option<Name>,
}

impl FileParser {
    fn new(origin: Option<&Name>, allow_include: bool) -> FileParser {
        FileParser {
            apex: origin.map(|o| {
                let mut o = o.clone();
                o.set_fqdn(true);
                o
            }),
            allow_include,
            records: Vec::new(),
            places: Vec::new(),
            files: Vec::new(),
            open: Vec::new(),
        }
    }

    fn parse_file(
        &mut self,
        text: &[u8],
        name: String,
        path: Option<&Path>,
        depth: usize,
    ) -> Result<(), Error> {
        let state = FileState {
            origin: self.apex.clone(),
            default_ttl: None,
            last_ttl: None,
            soa_minimum: None,
            owner: None,
        };
        self.parse_with(text, name, path, depth, state).map(drop)
    }

    fn parse_with(
        &mut self,
        text: &[u8],
        name: String,
        path: Option<&Path>,
        depth: usize,
        mut st: FileState,
    ) -> Result<FileState, Error> {
        let file_index = self.files.len();
        self.files.push(name.clone());
        if let Some(p) = path {
            self.open
                .push(p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        }
        let fail = |line: usize, reason: String| Error::File {
            path: name.clone(),
            line,
            reason,
        };
        let mut lexer = Lexer::new(text);
        while let Some(entry) = lexer.next_entry().map_err(|(l, r)| fail(l, r))? {
            let line = entry.line;
            let toks = &entry.tokens;
            let first = &toks[0];
            if !entry.blank_owner && !first.quoted && first.text.first() == Some(&b'$') {
                if first.is("$ORIGIN") {
                    let [_, n] = &toks[..] else {
                        return Err(fail(line, "$ORIGIN takes one name".into()));
                    };
                    st.origin = Some(parse_name(n, st.origin.as_ref()).map_err(|r| fail(line, r))?);
                } else if first.is("$TTL") {
                    let [_, t] = &toks[..] else {
                        return Err(fail(line, "$TTL takes one TTL".into()));
                    };
                    st.default_ttl = Some(ttl_value(t).map_err(|r| fail(line, r))?);
                } else if first.is("$INCLUDE") {
                    if toks.len() < 2 || toks.len() > 3 {
                        return Err(fail(
                            line,
                            "$INCLUDE takes a file and an optional origin".into(),
                        ));
                    }
                    self.include(&toks[1..], path, depth, &mut st, line, &name)?;
                } else {
                    return Err(fail(line, format!("unknown directive {}", first.as_str())));
                }
                continue;
            }
            let record = self.record(&entry, &mut st).map_err(|r| fail(line, r))?;
            self.records.push(record);
            self.places.push((file_index, line));
        }
        if path.is_some() {
            self.open.pop();
        }
        Ok(st)
    }

    fn include(
        &mut self,
        args: &[Token],
        path: Option<&Path>,
        depth: usize,
        st: &mut FileState,
        line: usize,
        name: &str,
    ) -> Result<(), Error> {
        let fail = |reason: String| Error::File {
            path: name.to_string(),
            line,
            reason,
        };
        if !self.allow_include {
            return Err(fail("$INCLUDE is only allowed in zone files".into()));
        }
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(fail(format!(
                "$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}"
            )));
        }
        let file = decode_text(&args[0]).map_err(fail)?;
        let file = PathBuf::from(String::from_utf8_lossy(&file).into_owned());
        let file = match path.and_then(Path::parent) {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        };
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if self.open.contains(&canonical) {
            return Err(fail(format!(
                "$INCLUDE loop: {} is already being read",
                file.display()
            )));
        }
        let origin = match args.get(1) {
            Some(o) => Some(parse_name(o, st.origin.as_ref()).map_err(fail)?),
            None => st.origin.clone(),
        };
        let text =
            std::fs::read(&file).map_err(|e| fail(format!("$INCLUDE {}: {e}", file.display())))?;
        // The included file starts with the includer's origin and TTLs. Its origin does not
        // come back (RFC 1035: "a $INCLUDE entry never changes the relative origin of the
        // parent file"); its $TTL does, as in BIND.
        let inner = FileState {
            origin,
            default_ttl: st.default_ttl,
            last_ttl: st.last_ttl,
            soa_minimum: st.soa_minimum,
            owner: st.owner.clone(),
        };
        let after = self.parse_with(
            &text,
            file.display().to_string(),
            Some(&file),
            depth + 1,
            inner,
        )?;
        st.default_ttl = after.default_ttl;
        st.last_ttl = after.last_ttl;
        st.soa_minimum = after.soa_minimum;
        Ok(())
    }

    /// One resource record entry.
    fn record(&mut self, entry: &Entry, st: &mut FileState) -> Result<Record, String> {
        let toks = &entry.tokens;
        let mut i = 0;
        if !entry.blank_owner {
            st.owner = Some(parse_name(&toks[0], st.origin.as_ref())?);
            i = 1;
        }
        let owner = st
            .owner
            .clone()
            .ok_or_else(|| "no owner name (the first record starts with a blank)".to_string())?;
        let mut ttl = None;
        let mut class = None;
        let rtype = loop {
            let t = toks
                .get(i)
                .ok_or_else(|| "missing record type".to_string())?;
            i += 1;
            if t.quoted {
                return Err(format!("unexpected quoted string \"{}\"", t.as_str()));
            }
            if t.text.first().is_some_and(u8::is_ascii_digit) {
                if ttl.is_some() {
                    return Err(format!("a second TTL {}", t.as_str()));
                }
                ttl = Some(ttl_value(t)?);
                continue;
            }
            if let Some(c) = class_value(t) {
                if class.is_some() {
                    return Err(format!("a second class {}", t.as_str()));
                }
                class = Some(c);
                continue;
            }
            break type_value(t)?;
        };
        if let Some(c) = class
            && c != DNSClass::IN
        {
            return Err(format!("class {c} is not supported (only IN)"));
        }
        let origin = st.origin.clone().unwrap_or_else(Name::root);
        let rdata = rdata_from_tokens(rtype, &toks[i..], &origin)?;
        // As BIND: an explicit TTL, else $TTL, else (RFC 2308's old rule) the SOA's minimum,
        // else the previous record's TTL (RFC 1035).
        let ttl = match ttl {
            Some(t) => {
                st.last_ttl = Some(t);
                t
            }
            None => match (st.default_ttl, st.soa_minimum, st.last_ttl, &rdata) {
                (Some(t), _, _, _) | (None, Some(t), _, _) | (None, None, Some(t), _) => t,
                (None, None, None, RData::SOA(soa)) => soa.minimum,
                _ => return Err("no TTL given and no $TTL before".into()),
            },
        };
        if let RData::SOA(soa) = &rdata {
            st.soa_minimum = Some(soa.minimum);
        }
        let mut record = Record::from_rdata(owner, ttl, rdata);
        record.dns_class = DNSClass::IN;
        Ok(record)
    }

    /// The checks BIND makes on a loaded zone.
    fn finish(self) -> Result<ZoneData, Error> {
        let place = |i: usize| {
            let (f, l) = self.places[i];
            (self.files[f].clone(), l)
        };
        let fail = |i: usize, reason: String| {
            let (path, line) = place(i);
            Error::File { path, line, reason }
        };
        let soas: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].record_type() == RecordType::SOA)
            .collect();
        let origin = match (&self.apex, soas.first()) {
            (Some(a), _) => a.clone(),
            (None, Some(&i)) => self.records[i].name.clone(),
            (None, None) => {
                return Err(Error::File {
                    path: self.files.first().cloned().unwrap_or_default(),
                    line: 1,
                    reason: "no SOA record".into(),
                });
            }
        };
        match soas.as_slice() {
            [] => {
                return Err(Error::File {
                    path: self.files.first().cloned().unwrap_or_default(),
                    line: 1,
                    reason: format!("no SOA record at {origin}"),
                });
            }
            [one] => {
                if self.records[*one].name != origin {
                    return Err(fail(*one, format!("SOA not at the zone apex {origin}")));
                }
            }
            [_, second, ..] => {
                return Err(fail(*second, "a second SOA record".into()));
            }
        }
        // Out-of-zone records, and CNAME beside other data.
        let mut by_name: std::collections::HashMap<Name, (Option<usize>, Option<usize>)> =
            std::collections::HashMap::new();
        for (i, r) in self.records.iter().enumerate() {
            if !origin.zone_of(&r.name) {
                return Err(fail(i, format!("{} is outside the zone {origin}", r.name)));
            }
            let key = r.name.to_lowercase();
            let slot = by_name.entry(key).or_default();
            match r.record_type() {
                RecordType::CNAME => {
                    if let Some(prev) = slot.0 {
                        let same = self.records[prev].data == r.data;
                        if !same {
                            return Err(fail(i, format!("a second CNAME at {}", r.name)));
                        }
                    }
                    if slot.1.is_some() {
                        return Err(fail(i, format!("CNAME and other data at {}", r.name)));
                    }
                    slot.0 = Some(i);
                }
                RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3 => {}
                _ => {
                    if slot.0.is_some() {
                        return Err(fail(i, format!("CNAME and other data at {}", r.name)));
                    }
                    slot.1 = Some(i);
                }
            }
        }
        Ok(ZoneData {
            origin,
            records: self.records,
        })
    }
}

fn ttl_value(t: &Token) -> Result<u32, String> {
    let s = t.as_str();
    let v = parse_ttl(s).map_err(|_| format!("bad TTL {s:?}"))?;
    if v > i32::MAX as u32 {
        return Err(format!("TTL {s} is above 2^31-1"));
    }
    Ok(v)
}

fn class_value(t: &Token) -> Option<DNSClass> {
    let s = t.as_str().to_ascii_uppercase();
    match s.as_str() {
        "IN" => Some(DNSClass::IN),
        "CH" => Some(DNSClass::CH),
        "HS" => Some(DNSClass::HS),
        "NONE" | "ANY" => None,
        _ => s
            .strip_prefix("CLASS")
            .and_then(|n| n.parse::<u16>().ok())
            .map(DNSClass::from),
    }
}

fn type_value(t: &Token) -> Result<RecordType, String> {
    let s = t.as_str().to_ascii_uppercase();
    if let Some(n) = s.strip_prefix("TYPE").and_then(|n| n.parse::<u16>().ok()) {
        return Ok(RecordType::from(n));
    }
    match RecordType::from_str(&s) {
        Ok(RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT) | Err(_) => {
            Err(format!("unknown record type {}", t.as_str()))
        }
        Ok(t) => Ok(t),
    }
}

// ---------------------------------------------------------------------------------------
// Names and character strings.

/// Decodes `\DDD` and `\X` escapes.
fn decode_text(t: &Token) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(t.text.len());
    let b = &t.text;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (byte, used) = escape(&b[i + 1..])?;
            out.push(byte);
            i += 1 + used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The byte an escape (after its backslash) stands for, and how many bytes it used.
fn escape(rest: &[u8]) -> Result<(u8, usize), String> {
    match rest {
        [d1, d2, d3, ..] if d1.is_ascii_digit() && d2.is_ascii_digit() && d3.is_ascii_digit() => {
            let v = u32::from(d1 - b'0') * 100 + u32::from(d2 - b'0') * 10 + u32::from(d3 - b'0');
            let v = u8::try_from(v).map_err(|_| format!("escape \\{v} is above 255"))?;
            Ok((v, 3))
        }
        [d, ..] if d.is_ascii_digit() => Err("\\DDD escape needs three digits".into()),
        [c, ..] => Ok((*c, 1)),
        [] => Err("'\\' at the end of a word".into()),
    }
}

/// A domain name as written in a zone file: `@`, absolute, or relative to `origin`.
fn parse_name(t: &Token, origin: Option<&Name>) -> Result<Name, String> {
    if t.quoted {
        return Err(format!("a name cannot be quoted: \"{}\"", t.as_str()));
    }
    let b = &t.text;
    if b.as_slice() == b"@" {
        return origin
            .cloned()
            .ok_or_else(|| "'@' with no origin set".to_string());
    }
    if b.as_slice() == b"." {
        return Ok(Name::root());
    }
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut label = Vec::new();
    let mut absolute = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let (byte, used) = escape(&b[i + 1..])?;
                label.push(byte);
                i += 1 + used;
            }
            b'.' => {
                if label.is_empty() {
                    return Err(format!("empty label in {:?}", t.as_str()));
                }
                labels.push(std::mem::take(&mut label));
                i += 1;
                if i == b.len() {
                    absolute = true;
                }
            }
            c => {
                label.push(c);
                i += 1;
            }
        }
    }
    if !label.is_empty() {
        labels.push(label);
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Err(format!("a label longer than 63 bytes in {:?}", t.as_str()));
    }
    let name = Name::from_labels(labels).map_err(|e| format!("bad name {:?}: {e}", t.as_str()))?;
    if absolute {
        return Ok(name);
    }
    let origin = origin.ok_or_else(|| format!("relative name {:?} with no origin", t.as_str()))?;
    name.append_name(origin)
        .map_err(|e| format!("name {:?} too long: {e}", t.as_str()))
}

// ---------------------------------------------------------------------------------------
// Record data.

fn rdata_from_tokens(rtype: RecordType, toks: &[Token], origin: &Name) -> Result<RData, String> {
    if toks.first().is_some_and(|t| t.is("\\#")) {
        return generic(rtype, &toks[1..]);
    }
    let exactly = |n: usize| field_count(rtype, toks, n, n);
    let at_least = |n: usize| field_count(rtype, toks, n, usize::MAX);
    let name = |i: usize| parse_name(&toks[i], Some(origin));
    Ok(match rtype {
        RecordType::A => {
            exactly(1)?;
            RData::A(parsed::<Ipv4Addr>(&toks[0], "bad IPv4 address")?.into())
        }
        RecordType::AAAA => {
            exactly(1)?;
            RData::AAAA(parsed::<Ipv6Addr>(&toks[0], "bad IPv6 address")?.into())
        }
        RecordType::NS => {
            exactly(1)?;
            RData::NS(NS(name(0)?))
        }
        RecordType::CNAME => {
            exactly(1)?;
            RData::CNAME(CNAME(name(0)?))
        }
        RecordType::PTR => {
            exactly(1)?;
            RData::PTR(PTR(name(0)?))
        }
        RecordType::MX => {
            exactly(2)?;
            RData::MX(MX::new(u16_field(&toks[0])?, name(1)?))
        }
        RecordType::SRV => {
            exactly(4)?;
            RData::SRV(SRV::new(
                u16_field(&toks[0])?,
                u16_field(&toks[1])?,
                u16_field(&toks[2])?,
                name(3)?,
            ))
        }
        RecordType::SOA => {
            exactly(7)?;
            let serial = u32_field(&toks[2])?;
            let timer = |i: usize| ttl_value(&toks[i]).map(|v| v as i32);
            RData::SOA(SOA::new(
                name(0)?,
                name(1)?,
                serial,
                timer(3)?,
                timer(4)?,
                timer(5)?,
                ttl_value(&toks[6])?,
            ))
        }
        RecordType::TXT => {
            at_least(1)?;
            let strings = toks
                .iter()
                .map(char_string)
                .collect::<Result<Vec<_>, _>>()?;
            RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
        }
        _ => return wire_form(rtype, toks, origin),
    })
}

/// Types built as wire bytes and decoded by hickory.
fn wire_form(rtype: RecordType, toks: &[Token], origin: &Name) -> Result<RData, String> {
    let mut w = Vec::new();
    let exactly = |n: usize| field_count(rtype, toks, n, n);
    let at_least = |n: usize| field_count(rtype, toks, n, usize::MAX);
    let name = |i: usize| parse_name(&toks[i], Some(origin));
    match rtype {
        RecordType::DNAME | RecordType::ANAME => {
            exactly(1)?;
            name_wire(&name(0)?, &mut w);
        }
        RecordType::Unknown(99) => {
            // SPF: TXT's form.
            at_least(1)?;
            for t in toks {
                push_string(&mut w, &char_string(t)?);
            }
        }
        RecordType::HINFO => {
            exactly(2)?;
            push_string(&mut w, &char_string(&toks[0])?);
            push_string(&mut w, &char_string(&toks[1])?);
        }
        RecordType::CAA => {
            exactly(3)?;
            w.push(u8_field(&toks[0])?);
            let tag = decode_text(&toks[1])?;
            if tag.is_empty() || tag.len() > 255 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return Err(format!("bad CAA tag {:?}", toks[1].as_str()));
            }
            w.push(tag.len() as u8);
            w.extend_from_slice(&tag);
            w.extend_from_slice(&decode_text(&toks[2])?);
        }
        RecordType::NAPTR => {
            exactly(6)?;
            w.extend_from_slice(&u16_field(&toks[0])?.to_be_bytes());
            w.extend_from_slice(&u16_field(&toks[1])?.to_be_bytes());
            for t in &toks[2..5] {
                push_string(&mut w, &char_string(t)?);
            }
            name_wire(&name(5)?, &mut w);
        }
        RecordType::DS | RecordType::CDS => {
            at_least(4)?;
            w.extend_from_slice(&u16_field(&toks[0])?.to_be_bytes());
            w.push(algorithm(&toks[1])?);
            w.push(u8_field(&toks[2])?);
            w.extend_from_slice(&hex(&toks[3..])?);
        }
        RecordType::DNSKEY | RecordType::CDNSKEY | RecordType::KEY => {
            at_least(4)?;
            w.extend_from_slice(&u16_field(&toks[0])?.to_be_bytes());
            w.push(u8_field(&toks[1])?);
            w.push(algorithm(&toks[2])?);
            w.extend_from_slice(&base64(&toks[3..])?);
        }
        RecordType::RRSIG => {
            at_least(9)?;
            let covered = type_value(&toks[0])?;
            w.extend_from_slice(&u16::from(covered).to_be_bytes());
            w.push(algorithm(&toks[1])?);
            w.push(u8_field(&toks[2])?);
            w.extend_from_slice(&ttl_value(&toks[3])?.to_be_bytes());
            w.extend_from_slice(&sig_time(&toks[4])?.to_be_bytes());
            w.extend_from_slice(&sig_time(&toks[5])?.to_be_bytes());
            w.extend_from_slice(&u16_field(&toks[6])?.to_be_bytes());
            name_wire(&name(7)?, &mut w);
            w.extend_from_slice(&base64(&toks[8..])?);
        }
        RecordType::NSEC => {
            at_least(1)?;
            name_wire(&name(0)?, &mut w);
            type_bitmap(&toks[1..], &mut w)?;
        }
        RecordType::NSEC3 => {
            at_least(5)?;
            nsec3_parameters(&toks[..4], &mut w)?;
            let next = toks[4].as_str().to_ascii_uppercase();
            let next = BASE32HEX_NOPAD
                .decode(next.as_bytes())
                .map_err(|_| format!("bad base32hex {:?}", toks[4].as_str()))?;
            if next.is_empty() || next.len() > 255 {
                return Err("bad NSEC3 next hashed owner".into());
            }
            w.push(next.len() as u8);
            w.extend_from_slice(&next);
            type_bitmap(&toks[5..], &mut w)?;
        }
        RecordType::NSEC3PARAM => {
            exactly(4)?;
            nsec3_parameters(toks, &mut w)?;
        }
        RecordType::SSHFP => {
            at_least(3)?;
            w.push(u8_field(&toks[0])?);
            w.push(u8_field(&toks[1])?);
            w.extend_from_slice(&hex(&toks[2..])?);
        }
        RecordType::TLSA | RecordType::SMIMEA => {
            at_least(4)?;
            w.push(u8_field(&toks[0])?);
            w.push(u8_field(&toks[1])?);
            w.push(u8_field(&toks[2])?);
            w.extend_from_slice(&hex(&toks[3..])?);
        }
        RecordType::OPENPGPKEY => {
            at_least(1)?;
            w.extend_from_slice(&base64(toks)?);
        }
        RecordType::Unknown(_) => {
            return Err(format!(
                "no text form known for {rtype}: write it as \\# length hex (RFC 3597)"
            ));
        }
        _ => return through_hickory(rtype, toks, origin),
    }
    decode_wire(rtype, &w)
}

/// RFC 3597: `\# length hex…`.
fn generic(rtype: RecordType, toks: &[Token]) -> Result<RData, String> {
    let (len, rest) = toks
        .split_first()
        .ok_or_else(|| "\\# needs a length".to_string())?;
    let len: usize = len
        .as_str()
        .parse()
        .map_err(|_| format!("bad \\# length {:?}", len.as_str()))?;
    let bytes = if rest.is_empty() {
        Vec::new()
    } else {
        hex(rest)?
    };
    if bytes.len() != len {
        return Err(format!("\\# says {len} bytes but has {}", bytes.len()));
    }
    decode_wire(rtype, &bytes)
}

fn decode_wire(rtype: RecordType, w: &[u8]) -> Result<RData, String> {
    let len = u16::try_from(w.len()).map_err(|_| "record data longer than 65535 bytes")?;
    let mut decoder = BinDecoder::new(w);
    let rdata = RData::read(&mut decoder, rtype, Restrict::new(len))
        .map_err(|e| format!("bad {rtype} data: {e}"))?;
    if decoder.index() != w.len() {
        return Err(format!("bad {rtype} data: trailing bytes"));
    }
    Ok(rdata)
}

/// The types this module has no text form for: hickory's text parser, one record at a time.
fn through_hickory(rtype: RecordType, toks: &[Token], origin: &Name) -> Result<RData, String> {
    let mut text = format!("@ 0 IN {rtype}");
    for t in toks {
        text.push(' ');
        if t.quoted {
            text.push('"');
            text.push_str(&String::from_utf8_lossy(&t.text));
            text.push('"');
        } else {
            text.push_str(&String::from_utf8_lossy(&t.text));
        }
    }
    text.push('\n');
    let (_, sets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| format!("bad {rtype} data: {e}"))?;
    sets.into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .map(|r| r.data)
        .ok_or_else(|| format!("bad {rtype} data"))
}

fn char_string(t: &Token) -> Result<Vec<u8>, String> {
    let s = decode_text(t)?;
    if s.len() > 255 {
        return Err(format!(
            "character string longer than 255 bytes ({})",
            s.len()
        ));
    }
    Ok(s)
}

fn push_string(w: &mut Vec<u8>, s: &[u8]) {
    w.push(s.len() as u8);
    w.extend_from_slice(s);
}

fn name_wire(name: &Name, w: &mut Vec<u8>) {
    for label in name.iter() {
        w.push(label.len() as u8);
        w.extend_from_slice(label);
    }
    w.push(0);
}

/// Checks that `rtype` has from `min` to `max` fields.
fn field_count(rtype: RecordType, toks: &[Token], min: usize, max: usize) -> Result<(), String> {
    let found = toks.len();
    if (min..=max).contains(&found) {
        Ok(())
    } else if min == max {
        Err(format!("{rtype} takes {min} fields, found {found}"))
    } else {
        Err(format!(
            "{rtype} needs at least {min} fields, found {found}"
        ))
    }
}

/// `t` parsed as a `T`; else `complaint` and `t`.
fn parsed<T: std::str::FromStr>(t: &Token, complaint: &str) -> Result<T, String> {
    t.as_str()
        .parse()
        .map_err(|_| format!("{complaint} {:?}", t.as_str()))
}

fn u8_field(t: &Token) -> Result<u8, String> {
    parsed(t, "expected a number 0-255, found")
}

fn u16_field(t: &Token) -> Result<u16, String> {
    parsed(t, "expected a number 0-65535, found")
}

fn u32_field(t: &Token) -> Result<u32, String> {
    parsed(t, "expected a 32-bit number, found")
}

/// DNSSEC algorithm: a number or a mnemonic.
fn algorithm(t: &Token) -> Result<u8, String> {
    if let Ok(n) = t.as_str().parse() {
        return Ok(n);
    }
    let n = match t.as_str().to_ascii_uppercase().as_str() {
        "RSAMD5" => 1,
        "DH" => 2,
        "DSA" => 3,
        "RSASHA1" => 5,
        "DSA-NSEC3-SHA1" => 6,
        "RSASHA1-NSEC3-SHA1" => 7,
        "RSASHA256" => 8,
        "RSASHA512" => 10,
        "ECC-GOST" => 12,
        "ECDSAP256SHA256" => 13,
        "ECDSAP384SHA384" => 14,
        "ED25519" => 15,
        "ED448" => 16,
        _ => return Err(format!("unknown algorithm {:?}", t.as_str())),
    };
    Ok(n)
}

fn joined(toks: &[Token]) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    for t in toks {
        if t.quoted {
            return Err(format!("unexpected quoted string \"{}\"", t.as_str()));
        }
        all.extend_from_slice(&t.text);
    }
    Ok(all)
}

fn hex(toks: &[Token]) -> Result<Vec<u8>, String> {
    let all = joined(toks)?;
    if all == b"-" {
        return Ok(Vec::new());
    }
    HEXLOWER_PERMISSIVE
        .decode(&all)
        .map_err(|_| format!("bad hex {:?}", String::from_utf8_lossy(&all)))
}

fn base64(toks: &[Token]) -> Result<Vec<u8>, String> {
    let all = joined(toks)?;
    BASE64
        .decode(&all)
        .map_err(|_| format!("bad base64 {:?}", String::from_utf8_lossy(&all)))
}

/// The four fields NSEC3 and NSEC3PARAM start with (RFC 5155): hash algorithm, flags,
/// iterations, salt.
fn nsec3_parameters(toks: &[Token], w: &mut Vec<u8>) -> Result<(), String> {
    let [algorithm, flags, iterations, salt_text] = toks else {
        return Err("NSEC3 parameters take 4 fields".into());
    };
    w.push(u8_field(algorithm)?);
    w.push(u8_field(flags)?);
    w.extend_from_slice(&u16_field(iterations)?.to_be_bytes());
    salt(salt_text, w)
}

fn salt(t: &Token, w: &mut Vec<u8>) -> Result<(), String> {
    let s = if t.is("-") {
        Vec::new()
    } else {
        hex(std::slice::from_ref(t))?
    };
    if s.len() > 255 {
        return Err("salt longer than 255 bytes".into());
    }
    push_string(w, &s);
    Ok(())
}

/// The NSEC/NSEC3 type bitmap (RFC 4034 section 4.1.2).
fn type_bitmap(toks: &[Token], w: &mut Vec<u8>) -> Result<(), String> {
    let mut types: Vec<u16> = toks
        .iter()
        .map(|t| type_value(t).map(u16::from))
        .collect::<Result<_, _>>()?;
    types.sort_unstable();
    types.dedup();
    let mut i = 0;
    while i < types.len() {
        let window = (types[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < types.len() && (types[i] >> 8) as u8 == window {
            let low = (types[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        w.push(window);
        w.push(len as u8);
        w.extend_from_slice(&bits[..len]);
    }
    Ok(())
}

/// An RRSIG time: `YYYYMMDDHHmmSS` (UTC), or seconds since the epoch.
fn sig_time(t: &Token) -> Result<u32, String> {
    let s = t.as_str();
    let bad = || format!("bad signature time {s:?}");
    if s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n = |a: usize, b: usize| s[a..b].parse::<i64>().map_err(|_| bad());
        let (y, mo, d, h, mi, se) = (
            n(0, 4)?,
            n(4, 6)?,
            n(6, 8)?,
            n(8, 10)?,
            n(10, 12)?,
            n(12, 14)?,
        );
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
        // Serial-number arithmetic (RFC 4034 3.1.5): the value is modulo 2^32.
        return Ok(secs.rem_euclid(1 << 32) as u32);
    }
    s.parse().map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn parse(text: &str) -> Result<ZoneData, Error> {
        parse_zone_str(text, "test.zone", Some(&n("example.com.")))
    }

    fn line_of(text: &str) -> usize {
        match parse(text) {
            Err(Error::File { line, .. }) => line,
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    const SOA: &str = "$TTL 300\n@ IN SOA ns hostmaster 1 7200 3600 604800 300\n";

    #[test]
    fn basics_and_inheritance() {
        let z = parse(&format!(
            "{SOA}  NS ns.example.com.\nns 60 A 192.0.2.1\n   IN 70 AAAA 2001:db8::1\nwww CNAME ns\n"
        ))
        .unwrap();
        assert_eq!(z.records.len(), 5);
        let ns = &z.records[2];
        assert_eq!(ns.name, n("ns.example.com."));
        assert_eq!(ns.ttl, 60);
        assert_eq!(z.records[3].name, n("ns.example.com."));
        assert_eq!(z.records[3].ttl, 70);
        assert_eq!(z.records[4].data, RData::CNAME(CNAME(n("ns.example.com."))));
        assert_eq!(z.records[1].name, n("example.com."));
        assert_eq!(z.records[1].ttl, 300);
    }

    #[test]
    fn multi_line_soa_and_units() {
        let z = parse(
            "@ 1h IN SOA ns.example.com. hostmaster.example.com. (\n  2024010101 ; serial\n  2h 1h\n  1w\n  5m )\n",
        )
        .unwrap();
        let RData::SOA(soa) = &z.records[0].data else {
            panic!()
        };
        assert_eq!(soa.serial, 2024010101);
        assert_eq!(soa.refresh, 7200);
        assert_eq!(soa.expire, 604_800);
        assert_eq!(soa.minimum, 300);
        assert_eq!(z.records[0].ttl, 3600);
    }

    #[test]
    fn txt_quotes_and_escapes() {
        let z = parse(&format!(
            "{SOA}t TXT \"a \\\"quoted\\\" ; not a comment\" plain \"\\065\\066\"\n"
        ))
        .unwrap();
        let RData::TXT(txt) = &z.records[1].data else {
            panic!()
        };
        let parts: Vec<&[u8]> = txt.txt_data.iter().map(|b| &b[..]).collect();
        assert_eq!(
            parts,
            vec![&b"a \"quoted\" ; not a comment"[..], b"plain", b"AB"]
        );
    }

    #[test]
    fn name_escapes_and_wildcards() {
        let z = parse(&format!(
            "{SOA}a\\.b A 192.0.2.1\n\\042 A 192.0.2.2\n*.w A 192.0.2.3\n"
        ))
        .unwrap();
        let first = z.records[1].name.iter().next().unwrap();
        assert_eq!(first, b"a.b");
        assert_eq!(z.records[1].name.num_labels(), 3);
        assert_eq!(z.records[2].name.iter().next().unwrap(), b"*");
        assert!(z.records[3].name.is_wildcard());
    }

    #[test]
    fn origin_directive_and_generic() {
        let z = parse(&format!(
            "{SOA}$ORIGIN sub.example.com.\nx TYPE65534 \\# 3 010203\ny A \\# 4 C0000201\n"
        ))
        .unwrap();
        assert_eq!(z.records[1].name, n("x.sub.example.com."));
        assert_eq!(z.records[1].record_type(), RecordType::Unknown(65534));
        assert_eq!(
            z.records[2].data,
            RData::A(Ipv4Addr::new(192, 0, 2, 1).into())
        );
    }

    #[test]
    fn dnssec_types() {
        let z = parse(&format!(
            "{SOA}@ DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n\
             @ NSEC a.example.com. NS SOA RRSIG NSEC DNSKEY TYPE65534\n\
             @ RRSIG SOA 13 2 300 20300101000000 20200101000000 12345 example.com. dGVzdA==\n\
             @ NSEC3PARAM 1 0 0 -\n\
             abc NSEC3 1 1 10 AABBCCDD 2t7b4g4vsa5smi47k61mv5bv1a22bojr A RRSIG\n\
             sub DS 12345 13 2 4D9A3C4F5E6B7A8C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E\n"
        ))
        .unwrap();
        let types: Vec<RecordType> = z.records.iter().map(Record::record_type).collect();
        assert_eq!(
            types,
            vec![
                RecordType::SOA,
                RecordType::DNSKEY,
                RecordType::NSEC,
                RecordType::RRSIG,
                RecordType::NSEC3PARAM,
                RecordType::NSEC3,
                RecordType::DS
            ]
        );
        let shown = z.records[3].data.to_string();
        assert!(shown.contains("SOA") || shown.contains("12345"), "{shown}");
    }

    #[test]
    fn other_types() {
        let z = parse(&format!(
            "{SOA}@ MX 10 mail\n_sip._tcp SRV 0 5 5060 sip\n@ CAA 0 issue \"letsencrypt.org\"\n\
             h HINFO \"PC\" \"Linux\"\n1 PTR host.\nn NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp\n\
             s SSHFP 1 1 dd465c09cfa51fb45020cc83316fff21b9ec74ac\n"
        ))
        .unwrap();
        assert_eq!(z.records.len(), 8);
        assert_eq!(
            z.records[1].data,
            RData::MX(MX::new(10, n("mail.example.com.")))
        );
    }

    #[test]
    fn error_lines() {
        assert_eq!(line_of(&format!("{SOA}\n\nbad A 300.1.1.1\n")), 5);
        assert_eq!(line_of(&format!("{SOA}x A 192.0.2.1\nx CNAME y\n")), 4);
        assert_eq!(line_of(&format!("{SOA}www.example.net. A 192.0.2.1\n")), 3);
        assert_eq!(line_of(&format!("{SOA}@ SOA ns hm 2 1 1 1 1\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x TXT (\n \"a\"\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x TXT \"open\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x BOGUS 1\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x A 192.0.2.1 )\n")), 3);
        assert_eq!(line_of(&format!("{SOA}$INCLUDE other.zone\n")), 3);
        assert_eq!(line_of(&format!("{SOA}$GENERATE 1-2 x A 1.2.3.$\n")), 3);
        assert_eq!(line_of("x A 192.0.2.1\n"), 1);
        assert_eq!(line_of(&format!("{SOA}x MX mail\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x A \\# 4 C00002\n")), 3);
        assert_eq!(line_of(&format!("{SOA}x\\999 A 192.0.2.1\n")), 3);
        assert_eq!(line_of("$TTL 1h\n  A 192.0.2.1\n"), 2);
        assert_eq!(line_of(&format!("{SOA}x CH A 192.0.2.1\n")), 3);
    }

    #[test]
    fn include_files_and_loops() {
        let dir = twistor_testing::TempDir::new("dns-zonefile");
        let root = dir.path().join("root.zone");
        std::fs::write(
            &root,
            format!("{SOA}$INCLUDE sub/inc.zone sub\nafter A 192.0.2.9\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/inc.zone"), "$TTL 42\nx A 192.0.2.1\n").unwrap();
        let z = parse_zone_file(&root, Some(&n("example.com."))).unwrap();
        assert_eq!(z.records[1].name, n("x.sub.example.com."));
        assert_eq!(z.records[1].ttl, 42);
        // The include's origin does not come back; its $TTL does (as in BIND).
        assert_eq!(z.records[2].name, n("after.example.com."));
        assert_eq!(z.records[2].ttl, 42);

        std::fs::write(
            dir.path().join("sub/inc.zone"),
            "x A 192.0.2.1\n$INCLUDE ../root.zone\n",
        )
        .unwrap();
        match parse_zone_file(&root, Some(&n("example.com."))) {
            Err(Error::File { path, line, reason }) => {
                assert!(path.ends_with("inc.zone"), "{path}");
                assert_eq!(line, 2);
                assert!(reason.contains("loop"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn origin_from_soa() {
        let z = parse_zone_str(
            "example.org. 300 IN SOA ns.example.org. h.example.org. 1 2 3 4 5\n",
            "t",
            None,
        )
        .unwrap();
        assert_eq!(z.origin, n("example.org."));
    }

    #[test]
    fn sig_time_conversion() {
        let t = Token {
            text: b"20000101000000".to_vec(),
            quoted: false,
        };
        assert_eq!(sig_time(&t).unwrap(), 946_684_800);
    }

    #[test]
    fn mutated_text_never_panics() {
        let base = format!(
            "{SOA}$ORIGIN example.com.\n@ MX 10 mail\nmail A 192.0.2.1\nt TXT \"a\\\"b\" (\n \"c\" )\n\
             s SRV 0 0 1 t\nk DNSKEY 257 3 13 AQID\nr RRSIG A 13 2 300 20300101000000 20200101000000 1 example.com. AQID\n\
             n NSEC a A RRSIG\nh HTTPS 1 . alpn=h2\nc CAA 0 issue \"x\"\nz NAPTR 1 1 \"s\" \"x\" \"\" .\n\
             u TYPE999 \\# 2 0102\nx\\.y\\065 A 192.0.2.2\n"
        );
        assert_eq!(parse(&base).unwrap().records.len(), 13);
        let base = base.as_bytes();
        let alphabet = b" \t\n;()\"\\.@$*#0123456789aAzZ-";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..5_000 {
            let mut text = base.to_vec();
            for _ in 0..(next() % 6 + 1) {
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => text[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        text.remove(at);
                    }
                    _ => text.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text = String::from_utf8_lossy(&text);
            if let Ok(z) = parse(&text) {
                accepted += 1;
                assert!(!z.records.is_empty());
            }
        }
        // Some mutations are harmless (in a comment, a digit for a digit).
        assert!(accepted > 0);
    }

    #[test]
    fn rdata_alone() {
        let r = parse_rdata(RecordType::MX, "5 mx", &n("example.com.")).unwrap();
        assert_eq!(r, RData::MX(MX::new(5, n("mx.example.com."))));
    }
}
