//! Real DNS servers for interop tests: NSD as a primary (or a secondary of ours), started
//! in a scratch directory on a free port (or one several servers share), as the current
//! user, and stopped when dropped; with more `server:` options, zone reloads and its log.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;

use crate::TempDir;
use crate::process::{ChildGuard, have};

/// A port free for both UDP and TCP on `ip` (DNS wants one port for both).
pub fn free_dns_port(ip: IpAddr) -> u16 {
    free_dns_port_on(&[ip])
}

/// A port free for both UDP and TCP on every one of `ips` (bound, then released): for
/// several servers on loopback addresses sharing one port, as a hierarchy of name servers
/// asked on one port does.
pub fn free_dns_port_on(ips: &[IpAddr]) -> u16 {
    let first = *ips.first().expect("an address");
    loop {
        let tcp = TcpListener::bind((first, 0)).expect("bind a TCP port");
        let port = tcp.local_addr().expect("its address").port();
        let free = ips.iter().all(|&ip| {
            (ip == first || TcpListener::bind((ip, port)).is_ok())
                && UdpSocket::bind((ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
}

/// One zone of an [`Nsd`]: its name, its file's text (empty for a secondary, which NSD
/// transfers), and extra lines for its `zone:` clause (`provide-xfr: …`, `request-xfr: …`,
/// `allow-notify: …`, `notify: …`).
#[derive(Debug, Clone, Default)]
pub struct NsdZone {
    /// The zone's name, e.g. `example.test`.
    pub name: String,
    /// The zone file's text (empty: none, NSD transfers the zone).
    pub text: String,
    /// More lines for the zone's clause, each without indentation.
    pub options: Vec<String>,
}

impl NsdZone {
    /// A primary zone from `text`.
    pub fn primary(name: &str, text: &str) -> NsdZone {
        NsdZone {
            name: name.into(),
            text: text.into(),
            options: Vec::new(),
        }
    }

    /// Adds a line to the zone's clause.
    pub fn with(mut self, option: impl Into<String>) -> NsdZone {
        self.options.push(option.into());
        self
    }

    /// Its file's name in NSD's directory.
    fn file(&self) -> String {
        match self.name.trim_end_matches('.') {
            "" => "root.zone".into(),
            name => format!("{name}.zone"),
        }
    }
}

/// NSD running in the foreground on one address; stopped when dropped.
pub struct Nsd {
    guard: ChildGuard,
    dir: TempDir,
    addr: SocketAddr,
    zones: Vec<NsdZone>,
}

/// How to start an [`Nsd`]: its zones, more `server:` options, a fixed port.
#[derive(Debug, Clone)]
pub struct NsdBuilder {
    ip: IpAddr,
    port: Option<u16>,
    zones: Vec<NsdZone>,
    options: Vec<String>,
}

impl NsdBuilder {
    /// Serves `zone` too.
    pub fn zone(mut self, zone: NsdZone) -> NsdBuilder {
        self.zones.push(zone);
        self
    }

    /// Serves `zones` too.
    pub fn zones(mut self, zones: &[NsdZone]) -> NsdBuilder {
        self.zones.extend_from_slice(zones);
        self
    }

    /// Adds a line to the `server:` clause (`minimal-responses: yes`, …), without
    /// indentation.
    pub fn option(mut self, option: impl Into<String>) -> NsdBuilder {
        self.options.push(option.into());
        self
    }

    /// Listens on `port` rather than on a free one the kit picks (several servers on
    /// different addresses sharing one port: [`free_dns_port_on`]).
    pub fn port(mut self, port: u16) -> NsdBuilder {
        self.port = Some(port);
        self
    }

    /// Starts NSD; `None` if it is not installed (a failure under `CI=true`, as [`have`]
    /// says). On a port the kit picked, another program taking the port first makes it
    /// try again on another; a server that does not start fails the test with its log.
    pub fn start(self) -> Option<Nsd> {
        if !Nsd::installed() {
            return None;
        }
        let attempts = if self.port.is_some() { 1 } else { 5 };
        let mut why = String::new();
        for _ in 0..attempts {
            match self.clone().try_start() {
                Ok(nsd) => return Some(nsd),
                Err(log) => why = log,
            }
        }
        panic!("NSD did not start: {why}");
    }

    /// Starts NSD (installed: see [`Nsd::installed`]); on failure (the port taken, a bad
    /// zone), what it logged.
    pub fn try_start(self) -> Result<Nsd, String> {
        let NsdBuilder {
            ip,
            port,
            zones,
            options,
        } = self;
        let dir = TempDir::new("nsd");
        let port = port.unwrap_or_else(|| free_dns_port(ip));
        let d = dir.path().display().to_string();
        let mut conf = format!(
            "server:\n  ip-address: {ip}@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  database: \"\"\n  \
             pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  \
             server-count: 1\n  verbosity: 2\n  rrl-ratelimit: 0\n"
        );
        for option in &options {
            conf.push_str(&format!("  {option}\n"));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        for zone in &zones {
            let file = zone.file();
            if !zone.text.is_empty() {
                dir.write(&file, &zone.text);
            }
            conf.push_str(&format!(
                "zone:\n  name: \"{}\"\n  zonefile: {file}\n",
                zone.name
            ));
            for option in &zone.options {
                conf.push_str(&format!("  {option}\n"));
            }
        }
        let path = dir.write("nsd.conf", conf);
        let mut cmd = Command::new("nsd");
        cmd.arg("-d").arg("-c").arg(&path);
        let mut guard = ChildGuard::spawn(cmd);
        guard.try_err_line_containing("nsd started")?;
        Ok(Nsd {
            guard,
            dir,
            addr: SocketAddr::new(ip, port),
            zones,
        })
    }
}

impl Nsd {
    /// Whether NSD is installed (missing under `CI=true` is a failure, as [`have`] says).
    pub fn installed() -> bool {
        have("nsd", &["-v"])
    }

    /// How to start NSD on `ip`, serving nothing yet.
    pub fn on(ip: IpAddr) -> NsdBuilder {
        NsdBuilder {
            ip,
            port: None,
            zones: Vec::new(),
            options: Vec::new(),
        }
    }

    /// Starts NSD on `ip` (a free port) serving `zones`. `None` if NSD is not installed
    /// (a failure under `CI=true`, as [`have`] says).
    pub fn start(ip: IpAddr, zones: &[NsdZone]) -> Option<Nsd> {
        Nsd::on(ip).zones(zones).start()
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its scratch directory (configuration, zone files, transferred zones).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Reads its log (standard error) until a line contains `needle`; returns that line.
    pub fn log_line_containing(&mut self, needle: &str) -> String {
        self.guard.err_line_containing(needle)
    }

    /// Rewrites the file of its zone `name` to `text` and has NSD reload it (SIGHUP);
    /// returns once NSD has read it. The old server process may answer a little longer.
    pub fn reload_zone(&mut self, name: &str, text: &str) {
        let zone = self
            .zones
            .iter()
            .find(|z| z.name == name)
            .unwrap_or_else(|| panic!("NSD does not serve {name}"));
        let path = self.dir.write(zone.file(), text);
        // NSD reloads files whose mtime changed: make sure it does, even within a second.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("set the zone file's mtime");
        self.guard.signal(1); // SIGHUP
        let shown = match name.trim_end_matches('.') {
            "" => ".",
            name => name,
        };
        self.guard
            .err_line_containing(&format!("zone {shown} read with success"));
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn a_taken_port_fails_with_nsds_log() {
        if !Nsd::installed() {
            return;
        }
        let taken = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let log = Nsd::on(LOCALHOST)
            .port(port)
            .try_start()
            .err()
            .expect("NSD started on a taken port");
        assert!(log.contains("in use"), "{log}");
    }

    #[test]
    fn options_and_zones_reach_the_configuration() {
        let zone = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 30\n\
                    @ NS ns\nns A 127.0.0.1\n";
        let Some(mut nsd) = Nsd::on(LOCALHOST)
            .option("minimal-responses: yes")
            .zone(NsdZone::primary("example.test", zone))
            .zone(NsdZone::primary(".", ""))
            .start()
        else {
            return;
        };
        let conf = std::fs::read_to_string(nsd.dir().join("nsd.conf")).unwrap();
        assert!(conf.contains("\n  minimal-responses: yes\n"), "{conf}");
        assert!(conf.contains("zonefile: root.zone"), "{conf}");
        nsd.reload_zone("example.test", &zone.replace(" 1 3600", " 2 3600"));
        assert!(
            std::fs::read_to_string(nsd.dir().join("example.test.zone"))
                .unwrap()
                .contains(" 2 3600")
        );
    }
}
