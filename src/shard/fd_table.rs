//! The process's file descriptor table, sized once at start.
//!
//! Linux grows a process's descriptor table by doubling it when a new
//! descriptor does not fit (256, 512, 1024, ...), and in a multi-threaded
//! process each growth waits for an RCU grace period (`expand_fdtable` calls
//! `synchronize_rcu`): 10 to 15 ms on the test machines. The shard whose
//! accept needed the slot sleeps that long with its other connections, and
//! a storm of 10,000 connections paid it six times, about a sixth of the
//! storm (docs/performance.md, "Accept rate"). Reserving the table before
//! the shards start moves that wait to start-up, where nothing waits on it.

use crate::limits::FD_TABLE_PRESIZE_MAX;
use std::io;

/// Grows the descriptor table to hold `want` descriptors, capped at the
/// soft `RLIMIT_NOFILE` (beyond it no descriptor can be opened anyway) and
/// at `limits::FD_TABLE_PRESIZE_MAX`.
/// Returns the table size the kernel reports afterwards (`FDSize` in
/// `/proc/self/status`), or the error of the probe descriptor.
pub fn presize_fd_table(want: usize) -> io::Result<usize> {
    let highest = want
        .min(soft_nofile()?)
        .min(FD_TABLE_PRESIZE_MAX)
        .saturating_sub(1);
    if highest > 0 {
        use std::os::fd::AsRawFd;
        let null = std::fs::File::open("/dev/null")?;
        // F_DUPFD returns the lowest free descriptor at or above its
        // argument, so the table must grow to cover `highest`; the
        // duplicate is closed at once and the table never shrinks.
        // SAFETY: fcntl on a descriptor `null` owns; the duplicate is
        // closed here and never shared.
        let probe = unsafe {
            libc::fcntl(
                null.as_raw_fd(),
                libc::F_DUPFD_CLOEXEC,
                highest as libc::c_int,
            )
        };
        if probe < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        unsafe { libc::close(probe) };
    }
    table_size()
}

fn soft_nofile() -> io::Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// The descriptor table's size as the kernel reports it.
pub fn table_size() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no FDSize in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_the_table_to_the_request_within_the_limit() {
        let limit = soft_nofile().unwrap();
        let want = 3000.min(limit);
        let size = presize_fd_table(want).unwrap();
        assert!(size >= want, "table {size} < {want} (limit {limit})");
        // Nothing is left open above the probe point.
        // SAFETY: F_GETFD only reads flags.
        assert!(unsafe { libc::fcntl(want as libc::c_int - 1, libc::F_GETFD) } < 0);
    }

    #[test]
    fn a_request_beyond_the_limit_is_capped_not_an_error() {
        let limit = soft_nofile().unwrap();
        let want = limit.saturating_add(10);
        let size = presize_fd_table(want).unwrap();
        assert!(
            size >= limit.min(FD_TABLE_PRESIZE_MAX),
            "table {size}, limit {limit}"
        );
    }
}
