//! The process's CPU affinity mask, read once at startup to place shards.

use std::io;

/// CPUs the process may run on, ascending. Covers CPUs below
/// `libc::CPU_SETSIZE` (1024), the size of the fixed `cpu_set_t`.
pub(crate) fn cpus_in_affinity_mask() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits, so all-zero is a valid value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of exactly the size passed; pid 0 is
    // the calling thread, which carries the mask the process started with.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let setsize = usize::try_from(libc::CPU_SETSIZE).expect("CPU_SETSIZE is positive");
    // SAFETY: CPU_ISSET only reads `set`, and `cpu` is below CPU_SETSIZE.
    Ok((0..setsize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}
