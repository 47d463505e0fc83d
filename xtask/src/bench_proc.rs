//! Process-tree figures for the agent benches, read from `/proc`: resident memory and CPU
//! time of a process and all its descendants (W&B's agent runs as Python + wandb-core +
//! a system monitor, ours as one process), and the machine the figures were taken on.

use std::collections::BTreeSet;
use std::fs;

/// Linux's `USER_HZ`: `/proc/<pid>/stat` counts CPU time in these ticks.
const TICKS_PER_SECOND: f64 = 100.0;

/// `pid` and every process below it, now.
pub fn tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| Some((child, stat_fields(child)?.get(1)?.parse().ok()?)))
        .collect();
    let mut found = BTreeSet::from([pid]);
    loop {
        let before = found.len();
        for (child, parent) in &parents {
            if found.contains(parent) {
                found.insert(*child);
            }
        }
        if found.len() == before {
            return found.into_iter().collect();
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name: state is `[0]`, ppid `[1]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Resident memory of the tree, MiB.
pub fn tree_rss_mib(pid: u32) -> f64 {
    let kib: u64 = tree(pid).into_iter().filter_map(rss_kib).sum();
    kib as f64 / 1024.0
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) of the tree, including its reaped children.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            // utime, stime, cutime, cstime: fields 14..=17 of stat, 11..=14 after the name.
            let sum: u64 = fields
                .get(11..15)?
                .iter()
                .filter_map(|field| field.parse::<u64>().ok())
                .sum();
            Some(sum)
        })
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// Cores and memory of this machine, as JSON.
pub fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_mib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    serde_json::json!({
        "cores": cores,
        "memory_mib": memory_mib,
        "load_average_at_start": load.split_whitespace().take(3).collect::<Vec<_>>(),
    })
}
