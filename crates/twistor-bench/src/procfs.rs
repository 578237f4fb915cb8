//! What the OS says a server costs: CPU time from `/proc/PID/stat`, memory from
//! `/proc/PID/status`.

use std::fs;
use std::io;
use std::time::Duration;

/// CPU time a process (all its threads) has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTime {
    /// Time in user space.
    pub user: Duration,
    /// Time in the kernel on the process's behalf.
    pub system: Duration,
}

impl CpuTime {
    /// Reads `/proc/PID/stat`.
    pub fn of(pid: u32) -> io::Result<CpuTime> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        parse_stat(&text, clock_ticks_per_second())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))
    }

    /// The CPU time of `pid` and all its descendants (for servers that fork workers, such
    /// as NSD); a descendant that exits while this reads is left out.
    pub fn of_tree(pid: u32) -> io::Result<CpuTime> {
        let mut total = CpuTime::of(pid)?;
        for child in descendants(pid) {
            if let Ok(cpu) = CpuTime::of(child) {
                total.user += cpu.user;
                total.system += cpu.system;
            }
        }
        Ok(total)
    }

    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time used between `earlier` and `self` (zero rather than negative).
    pub fn since(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
}

impl Memory {
    /// Reads `/proc/PID/status`.
    pub fn of(pid: u32) -> io::Result<Memory> {
        let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
        parse_status(&text)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc status"))
    }
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS, by writing `5` to
/// `/proc/PID/clear_refs` (Linux 4.0+), so the next peak read covers one run only.
pub fn reset_peak_rss(pid: u32) -> io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// The 1-minute load average from `/proc/loadavg`, a hint of how busy the machine was.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses user and system time out of the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
/// so fields are counted from the last `)`: utime and stime are fields 14 and 15.
pub fn parse_stat(text: &str, ticks_per_second: u64) -> Option<CpuTime> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace();
    // after_comm starts at field 3 (state); utime is field 14, i.e. the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tick = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks_per_second);
    Some(CpuTime {
        user: tick(utime),
        system: tick(stime),
    })
}

/// Parses `VmRSS` and `VmHWM` (in kB) out of the text of `/proc/PID/status`.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        peak_rss: field("VmHWM:")?,
    })
}

/// The kernel's clock tick rate for `/proc` times (`sysconf(_SC_CLK_TCK)`), usually 100.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// The pids of the direct children of `pid`, from `/proc/PID/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The pids of every descendant of `pid` (children, their children, …), parents first.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = children(pid);
    let mut i = 0;
    // A pid seen twice (reused while walking) would loop: the walk is bounded by the
    // number of processes there are.
    while let Some(&p) = out.get(i) {
        for c in children(p) {
            if !out.contains(&c) && c != pid {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "12345 (my (odd) cmd) S 1 12345 12345 0 -1 4194560 1234 0 0 0 \
                        250 75 0 0 20 0 3 0 987654 123456789 2000 18446744073709551615";

    #[test]
    fn stat_fields_after_parenthesised_name() {
        let cpu = parse_stat(STAT, 100).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(750));
        assert_eq!(cpu.total(), Duration::from_millis(3250));
    }

    #[test]
    fn stat_garbage_is_none() {
        assert_eq!(parse_stat("no parens here", 100), None);
        assert_eq!(parse_stat("1 (x) S 1 2", 100), None);
    }

    #[test]
    fn since_saturates() {
        let a = CpuTime {
            user: Duration::from_secs(2),
            system: Duration::from_secs(1),
        };
        let b = CpuTime {
            user: Duration::from_secs(3),
            system: Duration::from_secs(1),
        };
        assert_eq!(b.since(a).total(), Duration::from_secs(1));
        assert_eq!(a.since(b).total(), Duration::ZERO);
    }

    #[test]
    fn status_rss_and_peak() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss: 1024 * 1024,
                peak_rss: 2048 * 1024
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn descendants_include_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(CpuTime::of(pid).is_ok());
        assert!(CpuTime::of_tree(pid).unwrap().total() >= CpuTime::of(pid).unwrap().total());
        assert!(Memory::of(pid).unwrap().rss > 0);
    }
}
