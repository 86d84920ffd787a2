//! CPU time and memory of a process and its descendants, from `/proc` (Linux).

use std::collections::HashMap;

/// CPU time used so far and memory, summed over a process and all its descendants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU, in seconds.
    pub cpu_s: f64,
    /// Resident set now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set (`VmHWM`), in KiB.
    pub peak_kib: u64,
}

/// `pid` and every process below it.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// The fields of `/proc/PID/stat` after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The usage of `pid` and its descendants now.
pub fn usage(pid: u32) -> Usage {
    // Clock ticks per second: 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    const TICKS: f64 = 100.0;
    let mut u = Usage::default();
    for p in tree(pid) {
        if let Some(f) = stat_fields(p) {
            // utime and stime are fields 14 and 15, so 11 and 12 after the name.
            let t: f64 = [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
                .sum();
            u.cpu_s += t / TICKS;
        }
        u.rss_kib += status_kib(p, "VmRSS:");
        u.peak_kib += status_kib(p, "VmHWM:");
    }
    u
}
