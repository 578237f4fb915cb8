//! Real DNS servers for interop tests: NSD as a primary (or a secondary of ours), started
//! in a scratch directory on a free port, as the current user, and stopped when dropped.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;

use crate::TempDir;
use crate::process::{ChildGuard, have};

/// A port free for both UDP and TCP on `ip` (DNS wants one port for both).
pub fn free_dns_port(ip: IpAddr) -> u16 {
    loop {
        let tcp = TcpListener::bind((ip, 0)).expect("bind a TCP port");
        let port = tcp.local_addr().expect("its address").port();
        if UdpSocket::bind((ip, port)).is_ok() {
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
}

/// NSD running in the foreground on one address; stopped when dropped.
pub struct Nsd {
    guard: ChildGuard,
    dir: TempDir,
    addr: SocketAddr,
}

impl Nsd {
    /// Starts NSD on `ip` (a free port) serving `zones`. `None` if NSD is not installed
    /// (a failure under `CI=true`, as [`have`] says).
    pub fn start(ip: IpAddr, zones: &[NsdZone]) -> Option<Nsd> {
        if !have("nsd", &["-v"]) {
            return None;
        }
        let dir = TempDir::new("nsd");
        let port = free_dns_port(ip);
        let d = dir.path().display().to_string();
        let mut conf = format!(
            "server:\n  ip-address: {ip}@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  database: \"\"\n  \
             pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  \
             server-count: 1\n  verbosity: 2\n  rrl-ratelimit: 0\nremote-control:\n  control-enable: no\n"
        );
        for zone in zones {
            let file = format!("{}.zone", zone.name.trim_end_matches('.'));
            if !zone.text.is_empty() {
                dir.write(&file, &zone.text);
            }
            conf.push_str(&format!(
                "zone:\n  name: {}\n  zonefile: {file}\n",
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
        guard.err_line_containing("nsd started");
        Some(Nsd {
            guard,
            dir,
            addr: SocketAddr::new(ip, port),
        })
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
}
