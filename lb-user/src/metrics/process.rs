//! The daemon's own process metrics (`process_*`, as every Prometheus client library names
//! them), read from `/proc/self` at scrape time.

/// What `/proc/self` says about this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub start_time_seconds: f64,
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// Fields of `/proc/self/stat` after the command name (which may contain spaces).
struct StatFields {
    utime_ticks: u64,
    stime_ticks: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

fn parse_stat(stat: &str) -> Option<StatFields> {
    // "pid (comm) state ppid ..." : fields counted from `state` (field 3 in proc(5)).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime_ticks: at(14)?,
        stime_ticks: at(15)?,
        start_ticks: at(22)?,
        vsize: at(23)?,
        rss_pages: at(24)?,
    })
}

fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// Reads `/proc/self`; fields it cannot read stay 0.
pub fn read() -> ProcessStats {
    let mut p = ProcessStats::default();
    let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    if let Some(s) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_stat)
    {
        p.cpu_seconds = (s.utime_ticks + s.stime_ticks) as f64 / ticks;
        p.virtual_memory_bytes = s.vsize;
        p.resident_memory_bytes = s.rss_pages * page;
        if let Some(btime) = std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_btime)
        {
            p.start_time_seconds = btime as f64 + s.start_ticks as f64 / ticks;
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(parse_max_open_files)
        .unwrap_or(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (xlb run (x)) S 1 1234 1234 0 -1 4194560 2000 0 0 0 150 50 0 0 20 0 \
                    4 0 987654 123456789 2048 18446744073709551615";
        let s = parse_stat(stat).unwrap();
        assert_eq!((s.utime_ticks, s.stime_ticks), (150, 50));
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(s.vsize, 123456789);
        assert_eq!(s.rss_pages, 2048);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1700000000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
    }

    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.open_fds > 0 && p.max_fds > 0, "{p:?}");
        assert!(
            p.resident_memory_bytes > 0 && p.start_time_seconds > 1e9,
            "{p:?}"
        );
    }
}
