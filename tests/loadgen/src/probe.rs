//! What `/proc` says about a process (the server under test, or a worker itself): resident
//! memory, open descriptors, the open-file limit and CPU time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Memory figures from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    /// Anonymous (heap, stacks) part of RSS: what connections grow.
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    /// Peak RSS since the process started.
    pub hwm_kib: u64,
}

pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        rss_anon_kib: field("RssAnon").unwrap_or(0),
        rss_file_kib: field("RssFile").unwrap_or(0),
        hwm_kib: field("VmHWM").unwrap_or(0),
    })
}

pub fn memory(pid: u32) -> std::io::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&text)
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// Soft and hard "Max open files" from `/proc/PID/limits`.
pub fn parse_nofile(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line["Max open files".len()..].split_whitespace().map(|s| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    });
    Some((nums.next()??, nums.next()??))
}

pub fn nofile_limit(pid: u32) -> Option<(u64, u64)> {
    parse_nofile(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

/// Descriptors the process has open right now.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// User plus system CPU time from `/proc/PID/stat` (in USER_HZ = 100 ticks a second).
pub fn parse_cpu(stat: &str) -> Option<Duration> {
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line, so utime (14) and stime (15) sit at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

pub fn cpu_time(pid: u32) -> Option<Duration> {
    parse_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Machine-wide CPU time from the `cpu` line of `/proc/stat`: (busy, total), in ticks.
pub fn parse_machine_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

pub fn machine_cpu() -> Option<(u64, u64)> {
    parse_machine_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Number of CPUs busy on average between two `machine_cpu` readings (e.g. 1.5 of 2).
pub fn cpus_busy(before: (u64, u64), after: (u64, u64), cpus: usize) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1) as f64;
    if total == 0.0 {
        0.0
    } else {
        busy / total * cpus as f64
    }
}

/// One counter from `/proc/net/netstat` text (`TcpExt` section), e.g. `ListenOverflows`.
pub fn parse_netstat(text: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    lines.chunks(2).find_map(|pair| {
        let [header, values] = pair else { return None };
        let i = header.split_whitespace().position(|h| h == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    })
}

/// Connections the kernel dropped because a listen backlog was full (machine-wide).
pub fn listen_overflows() -> Option<u64> {
    parse_netstat(
        &std::fs::read_to_string("/proc/net/netstat").ok()?,
        "ListenOverflows",
    )
}

/// Bytes waiting in kernel send queues of the established TCP sockets whose local port is
/// `port` (the server's side of its client connections), from `/proc/net/tcp` text:
/// (total, largest, sockets).
pub fn parse_send_queues(text: &str, port: u16) -> (u64, u64, usize) {
    let mut total = 0u64;
    let mut largest = 0u64;
    let mut count = 0usize;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queues)) = (f.get(1), f.get(3), f.get(4)) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        // 01 = ESTABLISHED
        if local_port != Some(port) || *state != "01" {
            continue;
        }
        let tx = queues
            .split(':')
            .next()
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        total += tx;
        largest = largest.max(tx);
        count += 1;
    }
    (total, largest, count)
}

/// [`parse_send_queues`] for this machine's IPv4 sockets.
pub fn send_queues(port: u16) -> Option<(u64, u64, usize)> {
    Some(parse_send_queues(
        &std::fs::read_to_string("/proc/net/tcp").ok()?,
        port,
    ))
}

/// Raise this process's open-file soft limit to its hard limit; returns the new soft limit.
pub fn raise_own_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|_| {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tgateway\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  900000 kB\nVmHWM:\t  160000 kB\nVmRSS:\t  150000 kB\n\
        RssAnon:\t  140000 kB\nRssFile:\t   10000 kB\nRssShmem:\t       0 kB\nThreads:\t3\n";

    #[test]
    fn reads_rss_fields() {
        let m = parse_status(STATUS).unwrap();
        assert_eq!(
            m,
            Memory {
                rss_kib: 150_000,
                rss_anon_kib: 140_000,
                rss_file_kib: 10_000,
                hwm_kib: 160_000
            }
        );
        assert!(parse_status("Name:\tx\n").is_none());
    }

    #[test]
    fn reads_open_file_limits() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             95000                95000                processes \n\
            Max open files            1024                 20000                files     \n";
        assert_eq!(parse_nofile(limits), Some((1024, 20_000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(parse_nofile("nothing"), None);
    }

    #[test]
    fn reads_cpu_time_past_odd_names() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu(stat), Some(Duration::from_millis(2000)));
    }

    #[test]
    fn reads_machine_cpu() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(parse_machine_cpu(stat), Some((150, 1000)));
        assert_eq!(cpus_busy((150, 1000), (450, 1600), 2), 1.0);
        assert_eq!(cpus_busy((1, 1), (1, 1), 2), 0.0);
    }

    #[test]
    fn reads_netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\n\
            IpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(parse_netstat(text, "ListenOverflows"), Some(7));
        assert_eq!(parse_netstat(text, "InNoRoutes"), Some(3));
        assert_eq!(parse_netstat(text, "Nope"), None);
    }

    #[test]
    fn reads_send_queues_of_a_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n\
            1: 0100007F:1F90 0200007F:9C40 01 0002D850:00000000 01:00000014 00000000 0 0 2\n\
            2: 0100007F:1F90 0200007F:9C41 01 00000010:00000000 00:00000000 00000000 0 0 3\n\
            3: 0200007F:9C40 0100007F:1F90 01 00000000:0002D850 00:00000000 00000000 0 0 4\n";
        assert_eq!(parse_send_queues(text, 8080), (186_448 + 16, 186_448, 2));
        assert_eq!(parse_send_queues(text, 1), (0, 0, 0));
    }

    #[test]
    fn probes_this_process() {
        let me = std::process::id();
        assert!(memory(me).unwrap().rss_kib > 0);
        assert!(open_fds(me).unwrap() >= 3);
        assert!(nofile_limit(me).is_some());
        assert!(cpu_time(me).is_some());
        assert!(listen_overflows().is_some());
    }
}
