//! `/etc/resolv.conf` and `/etc/hosts`: pure parsers over text, and `load`s from paths.
//!
//! [`ResolvConf`] reads what glibc's stub resolver reads (`nameserver`, `search`,
//! `domain`, `options ndots: timeout: attempts: rotate edns0`), with glibc's defaults and
//! limits; lines it does not know are skipped, as glibc skips them, but a known keyword
//! with a bad value is an [`Error::File`] naming the file, line and reason (glibc would
//! silently ignore it). [`Hosts`] maps names to addresses (both families, aliases) and
//! addresses back to names.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// Where glibc reads its resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where glibc reads its host table.
pub const HOSTS: &str = "/etc/hosts";

/// glibc's `MAXNS`: later `nameserver` lines are ignored.
pub const MAX_NAMESERVERS: usize = 3;

/// The resolver configuration of `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvConf {
    /// The servers, in order (at most three; `127.0.0.1` if the file names none).
    pub nameservers: Vec<IpAddr>,
    /// The search list (`search`, or the single `domain`; the last of them wins).
    pub search: Vec<String>,
    /// Names with at least this many dots are first tried as they are (default 1, at
    /// most 15).
    pub ndots: u32,
    /// How long to wait for each server (default 5 s, at most 30 s).
    pub timeout: Duration,
    /// Rounds over the servers (default 2, at most 5).
    pub attempts: u32,
    /// Spread queries over the servers instead of always starting with the first.
    pub rotate: bool,
    /// `options edns0`: glibc sends EDNS0 only with it. (This crate's resolver sends EDNS0
    /// regardless, as modern resolvers do; see `ResolverConfig::edns_payload`.)
    pub edns0: bool,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            edns0: false,
        }
    }
}

impl ResolvConf {
    /// Parses the text of a resolv.conf; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<ResolvConf, Error> {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            ..ResolvConf::default()
        };
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: String| Error::File {
                path: path.to_string(),
                line: index + 1,
                reason,
            };
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // Comments may follow the values too.
            let values: Vec<&str> = words
                .take_while(|w| !w.starts_with('#') && !w.starts_with(';'))
                .collect();
            match keyword {
                "nameserver" => {
                    let [text] = values.as_slice() else {
                        return Err(bad("nameserver takes one address".into()));
                    };
                    let address = parse_address(text)
                        .ok_or_else(|| bad(format!("{text:?} is not an IP address")))?;
                    if conf.nameservers.len() < MAX_NAMESERVERS {
                        conf.nameservers.push(address);
                    }
                }
                "domain" => {
                    let [name] = values.as_slice() else {
                        return Err(bad("domain takes one name".into()));
                    };
                    conf.search = vec![domain(name).map_err(bad)?];
                }
                "search" => {
                    if values.is_empty() {
                        return Err(bad("search needs at least one domain".into()));
                    }
                    conf.search = values
                        .iter()
                        .map(|name| domain(name))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?;
                }
                "options" => {
                    for option in values {
                        conf.option(option).map_err(bad)?;
                    }
                }
                // `sortlist`, BSD's `lookup` and `family`, and anything else.
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(conf)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<ResolvConf, Error> {
        let path = path.as_ref();
        ResolvConf::parse(&read(path)?, &path.display().to_string())
    }

    /// One word of an `options` line.
    fn option(&mut self, option: &str) -> Result<(), String> {
        let (name, value) = match option.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let number = |max: u32| -> Result<u32, String> {
            let value = value.ok_or_else(|| format!("{name} needs a value ({name}:N)"))?;
            value
                .parse::<u32>()
                .map(|n| n.min(max))
                .map_err(|_| format!("{name} must be a whole number, got {value:?}"))
        };
        match name {
            "ndots" => self.ndots = number(15)?,
            "timeout" => self.timeout = Duration::from_secs(u64::from(number(30)?.max(1))),
            "attempts" => self.attempts = number(5)?.max(1),
            "rotate" => self.rotate = true,
            "edns0" => self.edns0 = true,
            // debug, inet6, single-request, use-vc, trust-ad, no-aaaa, ...
            _ => {}
        }
        Ok(())
    }
}

/// A host table: names to addresses and back, as in `/etc/hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Lower-cased name without a trailing dot → its addresses in file order.
    names: HashMap<String, Vec<IpAddr>>,
    /// Address → its names in file order (the first one is canonical).
    addresses: HashMap<IpAddr, Vec<String>>,
}

impl Hosts {
    /// An empty table.
    pub fn new() -> Hosts {
        Hosts::default()
    }

    /// Parses the text of a hosts file (`ADDRESS NAME [ALIAS...]` lines, `#` comments);
    /// `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Hosts, Error> {
        let mut hosts = Hosts::new();
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: String| Error::File {
                path: path.to_string(),
                line: index + 1,
                reason,
            };
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(address) = words.next() else {
                continue;
            };
            let address = parse_address(address)
                .ok_or_else(|| bad(format!("{address:?} is not an IP address")))?;
            let mut any = false;
            for name in words {
                domain(name).map_err(bad)?;
                hosts.insert(name, address);
                any = true;
            }
            if !any {
                return Err(bad("expected a host name after the address".into()));
            }
        }
        Ok(hosts)
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Hosts, Error> {
        let path = path.as_ref();
        Hosts::parse(&read(path)?, &path.display().to_string())
    }

    /// Adds `address` for `name`.
    pub fn insert(&mut self, name: &str, address: IpAddr) {
        let key = normalize(name);
        let addresses = self.names.entry(key).or_default();
        if !addresses.contains(&address) {
            addresses.push(address);
        }
        let names = self.addresses.entry(address).or_default();
        let name = name.trim_end_matches('.').to_string();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }

    /// The addresses of `name` (any case, with or without a trailing dot), in file order.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&normalize(name)).map(Vec::as_slice)
    }

    /// The names of `address`, the canonical one first.
    pub fn reverse(&self, address: IpAddr) -> Option<&[String]> {
        self.addresses.get(&address).map(Vec::as_slice)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// An IPv4 or IPv6 address, an IPv6 one possibly with a `%scope` (dropped: a link-local
/// server needs its interface, which this resolver does not take).
fn parse_address(text: &str) -> Option<IpAddr> {
    let bare = text.split_once('%').map_or(text, |(a, _)| a);
    bare.parse().ok()
}

/// Checks a domain name from a configuration file.
fn domain(name: &str) -> Result<String, String> {
    hickory_proto::rr::Name::from_utf8(name)
        .map(|_| name.to_string())
        .map_err(|e| format!("{name:?} is not a domain name: {e}"))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn error_line(result: Result<impl std::fmt::Debug, Error>) -> (usize, String) {
        match result {
            Err(Error::File { path, line, reason }) => {
                assert_eq!(path, "test.conf");
                (line, reason)
            }
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn resolv_conf_with_everything() {
        let text = "\
# a comment
; another
nameserver 192.0.2.1
nameserver 2001:db8::53   # trailing comment
nameserver fe80::1%eth0
nameserver 192.0.2.4
domain ignored.example
search one.example two.example
options ndots:3 timeout:2 attempts:4 rotate edns0 single-request trust-ad
sortlist 130.155.160.0/255.255.240.0
lookup file bind
";
        let conf = ResolvConf::parse(text, "test.conf").unwrap();
        assert_eq!(
            conf.nameservers,
            [ip("192.0.2.1"), ip("2001:db8::53"), ip("fe80::1")]
        );
        assert_eq!(conf.search, ["one.example", "two.example"]);
        assert_eq!(conf.ndots, 3);
        assert_eq!(conf.timeout, Duration::from_secs(2));
        assert_eq!(conf.attempts, 4);
        assert!(conf.rotate && conf.edns0);
    }

    #[test]
    fn resolv_conf_defaults_are_glibcs() {
        let conf = ResolvConf::parse("", "test.conf").unwrap();
        assert_eq!(conf, ResolvConf::default());
        assert_eq!(conf.nameservers, [ip("127.0.0.1")]);
        assert_eq!((conf.ndots, conf.attempts), (1, 2));
        assert_eq!(conf.timeout, Duration::from_secs(5));
        assert!(!conf.rotate);
        // The last of domain and search wins; limits are glibc's.
        let conf = ResolvConf::parse(
            "search a.example b.example\ndomain c.example\noptions ndots:99 timeout:600 attempts:9\n",
            "test.conf",
        )
        .unwrap();
        assert_eq!(conf.search, ["c.example"]);
        assert_eq!(conf.ndots, 15);
        assert_eq!(conf.timeout, Duration::from_secs(30));
        assert_eq!(conf.attempts, 5);
    }

    #[test]
    fn resolv_conf_errors_name_the_line() {
        let (line, reason) = error_line(ResolvConf::parse(
            "nameserver 192.0.2.1\nnameserver dns.example\n",
            "test.conf",
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("not an IP address"), "{reason}");
        let (line, reason) = error_line(ResolvConf::parse(
            "\n\noptions rotate ndots:many\n",
            "test.conf",
        ));
        assert_eq!(line, 3);
        assert!(reason.contains("ndots must be a whole number"), "{reason}");
        let (_, reason) = error_line(ResolvConf::parse("options timeout\n", "test.conf"));
        assert!(reason.contains("timeout needs a value"), "{reason}");
        let (_, reason) = error_line(ResolvConf::parse("nameserver\n", "test.conf"));
        assert!(reason.contains("one address"), "{reason}");
        let (_, reason) = error_line(ResolvConf::parse("search\n", "test.conf"));
        assert!(reason.contains("at least one"), "{reason}");
        let (_, reason) = error_line(ResolvConf::parse("domain a..b\n", "test.conf"));
        assert!(reason.contains("not a domain name"), "{reason}");
    }

    #[test]
    fn load_reports_missing_files() {
        match ResolvConf::load("/nonexistent/resolv.conf") {
            Err(Error::Io { path, .. }) => assert_eq!(path, "/nonexistent/resolv.conf"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Hosts::load("/nonexistent/hosts"),
            Err(Error::Io { .. })
        ));
        let dir = twistor_testing::TempDir::new("dns-system");
        let path = dir.write("resolv.conf", "nameserver 192.0.2.9\n");
        assert_eq!(
            ResolvConf::load(&path).unwrap().nameservers,
            [ip("192.0.2.9")]
        );
        let path = dir.write("hosts", "192.0.2.9 nine\n");
        assert_eq!(
            Hosts::load(&path).unwrap().lookup("nine"),
            Some(&[ip("192.0.2.9")][..])
        );
    }

    #[test]
    fn hosts_names_aliases_families_and_reverse() {
        let text = "\
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
# comment line
192.0.2.10  www.example.com www   # web
2001:db8::10 www.example.com
192.0.2.11  WWW.Example.COM

";
        let hosts = Hosts::parse(text, "test.conf").unwrap();
        assert_eq!(
            hosts.lookup("localhost"),
            Some(&[ip("127.0.0.1"), ip("::1")][..])
        );
        assert_eq!(hosts.lookup("ip6-loopback"), Some(&[ip("::1")][..]));
        assert_eq!(
            hosts.lookup("www.EXAMPLE.com."),
            Some(&[ip("192.0.2.10"), ip("2001:db8::10"), ip("192.0.2.11")][..])
        );
        assert_eq!(hosts.lookup("www"), Some(&[ip("192.0.2.10")][..]));
        assert_eq!(hosts.lookup("nothere"), None);
        assert_eq!(
            hosts.reverse(ip("192.0.2.10")).unwrap(),
            ["www.example.com", "www"]
        );
        assert_eq!(hosts.reverse(ip("::1")).unwrap()[0], "localhost");
        assert!(hosts.reverse(ip("192.0.2.99")).is_none());
    }

    #[test]
    fn hosts_errors_name_the_line() {
        let (line, reason) = error_line(Hosts::parse(
            "127.0.0.1 localhost\n300.1.1.1 bad\n",
            "test.conf",
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("not an IP address"), "{reason}");
        let (line, reason) = error_line(Hosts::parse("\n192.0.2.1\n", "test.conf"));
        assert_eq!(line, 2);
        assert!(reason.contains("host name"), "{reason}");
    }

    #[test]
    fn the_system_files_parse() {
        // Whatever this machine has must be readable (or absent).
        for result in [
            ResolvConf::load(RESOLV_CONF).map(|_| ()),
            Hosts::load(HOSTS).map(|_| ()),
        ] {
            match result {
                Ok(()) | Err(Error::Io { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
}
