//! Thin wrappers over the Linux calls the event loops use: non-blocking TCP
//! sockets and level-triggered epoll. Nothing here keeps state.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd, pointer to a c_int of the given size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A non-blocking TCP socket with TCP_NODELAY (we batch ourselves), bound to
/// `source` if given, with `connect` started. Returns the fd; completion is
/// reported by EPOLLOUT, then [`take_socket_error`].
pub fn tcp_connect(dest: SocketAddr, source: Option<IpAddr>) -> io::Result<RawFd> {
    let family = if dest.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    let result = (|| {
        set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        if let Some(ip) = source {
            if ip.is_ipv4() == dest.is_ipv4() {
                // Let connect() pick the port for the full 4-tuple, so one
                // source address is not capped at one ephemeral range overall.
                let _ = set_int_opt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
                let (ss, len) = sockaddr(&SocketAddr::new(ip, 0));
                // SAFETY: ss/len describe a valid sockaddr.
                cvt(unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) })?;
            }
        }
        let (ss, len) = sockaddr(&dest);
        // SAFETY: as above.
        let rc = unsafe { libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// SO_ERROR of a socket whose connect completed (0 = connected).
pub fn take_socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out pointers.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns fd and forgets it.
    unsafe { libc::close(fd) };
}

/// Non-blocking read; `Ok(0)` = EOF; WouldBlock as an error kind.
#[inline]
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Non-blocking send without SIGPIPE.
#[inline]
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of its length.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Linux's most buffers per `sendmsg` (IOV_MAX; libc does not export it).
const IOV_MAX: usize = 1024;

/// Non-blocking gathering send (`sendmsg`) without SIGPIPE: several
/// buffers (TLS records) in one system call and, on loopback, one segment.
pub fn send_vectored(fd: RawFd, bufs: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: zeroed msghdr is valid; IoSlice is ABI-compatible with iovec
    // on Unix, and the slices outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A listening socket (selftest forwarder), non-blocking, on 127.0.0.1:0.
pub fn tcp_listen_loopback() -> io::Result<(RawFd, u16)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.set_nonblocking(true)?;
    let port = l.local_addr()?.port();
    use std::os::fd::IntoRawFd;
    Ok((l.into_raw_fd(), port))
}

/// accept4 non-blocking; `Ok(None)` when no connection is pending.
pub fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
    // SAFETY: null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    Ok(Some(fd))
}

pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const ERR: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: valid epoll fd and event pointer.
        cvt(unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) }).map(drop)
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Wait up to `timeout_ms` (0 = poll); returns (events, token) pairs.
    pub fn wait(&mut self, timeout_ms: i32) -> &[libc::epoll_event] {
        // SAFETY: the buffer holds `len` events.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n <= 0 {
            // EINTR (a signal) or nothing ready.
            return &[];
        }
        &self.events[..n as usize]
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.fd);
    }
}

/// Raise RLIMIT_NOFILE to the hard limit (a connection storm needs many fds).
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: valid out pointer.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return r.rlim_cur;
        }
    }
    0
}

pub fn stderr_is_tty() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::isatty(2) == 1 }
}

/// Nanoseconds the calling thread has spent runnable but waiting for a CPU
/// (`run_delay`, the second field of /proc/thread-self/schedstat): time
/// another task held the CPU this thread is pinned to. `None` where the
/// kernel does not provide it.
/// The calling thread to SCHED_FIFO at `priority` (needs CAP_SYS_NICE or
/// an RLIMIT_RTPRIO that allows it).
pub fn set_fifo_priority(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn thread_run_delay_ns() -> Option<u64> {
    parse_schedstat_run_delay(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// `run_delay` from the text of a schedstat file: "<on-cpu ns> <run_delay ns> <timeslices>".
pub fn parse_schedstat_run_delay(text: &str) -> Option<u64> {
    let mut fields = text.split_ascii_whitespace();
    fields.next()?.parse::<u64>().ok()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_delay() {
        assert_eq!(parse_schedstat_run_delay("0 2947613 1\n"), Some(2_947_613));
        assert_eq!(parse_schedstat_run_delay("81234567890 123 4567"), Some(123));
        assert_eq!(parse_schedstat_run_delay(""), None);
        assert_eq!(parse_schedstat_run_delay("12"), None);
        assert_eq!(parse_schedstat_run_delay("x 12 1"), None);
    }
}
