//! The server's footprint, read from /proc: resident memory (VmRSS) and CPU
//! time (utime + stime of every thread).

use std::fs;

use anyhow::{bail, Context};

pub struct ServerProc {
    pid: u32,
    ticks_per_s: f64,
}

impl ServerProc {
    pub fn open(pid: u32) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let proc = Self { pid, ticks_per_s: if ticks > 0 { ticks as f64 } else { 100.0 } };
        proc.rss_kib().with_context(|| format!("--pid {pid}: cannot read /proc/{pid}/status"))?;
        proc.cpu_s()?;
        Ok(proc)
    }

    /// Optional variant: `None` when no pid was given.
    pub fn maybe(pid: Option<u32>) -> anyhow::Result<Option<Self>> {
        pid.map(Self::open).transpose()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("VmRSS:") {
                let kib = rest.trim().trim_end_matches("kB").trim();
                return Ok(kib.parse()?);
            }
        }
        bail!("no VmRSS in /proc/{}/status", self.pid)
    }

    /// User plus system CPU seconds the process has used so far.
    pub fn cpu_s(&self) -> anyhow::Result<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("cannot read /proc/{}/stat", self.pid))?;
        // The command name (field 2) may hold spaces; count fields after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        let utime: u64 = fields.get(11).context("no utime")?.parse()?;
        let stime: u64 = fields.get(12).context("no stime")?.parse()?;
        Ok((utime + stime) as f64 / self.ticks_per_s)
    }
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
        let me = ServerProc::open(std::process::id()).expect("own pid");
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.cpu_s().unwrap() >= 0.0);
    }
}
