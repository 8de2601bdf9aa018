//! This process's memory as Linux reports it in /proc, for the benches.
#![allow(dead_code)]

pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn rss_kib() -> u64 {
    proc_status_kib("self", "VmRSS:")
}

/// Anonymous resident memory: the heap and stacks, without the pages of the binary's code
/// (file-backed, shared, dropped by the kernel under pressure), which the first run of the
/// watch path faults in whatever the cluster's size.
pub fn anon_kib() -> u64 {
    proc_status_kib("self", "RssAnon:")
}

/// The peak RSS since the last [`reset_peak`] (VmHWM).
pub fn peak_kib() -> u64 {
    proc_status_kib("self", "VmHWM:")
}

/// Resets VmHWM to the current RSS (Linux: `5` to clear_refs).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
