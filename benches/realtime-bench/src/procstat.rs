//! The server's footprint, read from /proc: resident memory (VmRSS) and CPU
//! time (utime + stime of every thread), summed over its processes when a
//! deployment runs several on one port.

use std::fs;

use anyhow::{bail, Context};

/// The server's processes (one, or several sharing a port).
pub struct ServerProc {
    pids: Vec<u32>,
    ticks_per_s: f64,
}

impl ServerProc {
    pub fn open(pids: &[u32]) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let proc = Self { pids: pids.to_vec(), ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 } };
        for &pid in pids {
            rss_kib(pid).with_context(|| format!("--pid {pid}: cannot read /proc/{pid}/status"))?;
        }
        proc.cpu_s()?;
        Ok(proc)
    }

    /// Optional variant: `None` when no pid was given.
    pub fn maybe(pids: &[u32]) -> anyhow::Result<Option<Self>> {
        (!pids.is_empty()).then(|| Self::open(pids)).transpose()
    }

    /// Resident set size in KiB, summed over the processes.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.pids.iter().map(|&pid| rss_kib(pid)).sum()
    }

    /// User plus system CPU seconds the processes have used so far.
    pub fn cpu_s(&self) -> anyhow::Result<f64> {
        let ticks: anyhow::Result<u64> = self.pids.iter().map(|&pid| cpu_ticks(pid)).sum();
        Ok(ticks? as f64 / self.ticks_per_s)
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("no VmRSS in /proc/{pid}/status")
}

/// utime + stime of every thread of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// CPU seconds (user + system) this process has used so far: the load
/// generator's own cost, to tell when it, not the server, is the limit.
pub fn own_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = ServerProc::open(&[std::process::id()]).expect("own pid");
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.cpu_s().unwrap() >= 0.0);
        let twice = ServerProc::open(&[std::process::id(), std::process::id()]).expect("own pid twice");
        assert!(twice.rss_kib().unwrap() >= me.rss_kib().unwrap(), "summed over the pids");
    }
}
