//! One broker per listener address. glommio's listeners always set
//! SO_REUSEPORT, so a second broker on the same port would bind silently and
//! steal half the connections. Two checks prevent it: an exclusive flock on a
//! lock file named after the address (another ringmq), and a probe bind
//! (any other program holding the port).

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

use crate::limits::{BIND_STALE_LISTENER_POLL, BIND_STALE_LISTENER_WAIT_MAX};

/// Held for the life of the broker; the kernel drops the flock on exit.
pub struct BindLock {
    _file: File,
    pub path: PathBuf,
}

impl BindLock {
    pub fn acquire(bind: SocketAddr) -> Result<BindLock, String> {
        let name = format!(
            "ringmq-{}.lock",
            bind.to_string().replace([':', '[', ']'], "_")
        );
        let path = std::env::temp_dir().join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .or_else(|e| match e.kind() {
                // Left by a broker of another user (root's, before a
                // packaged one ran as `ringmq`): a flock needs no write
                // access, so read is enough.
                std::io::ErrorKind::PermissionDenied => File::open(&path),
                _ => Err(e),
            })
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        // SAFETY: plain flock on an fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(format!(
                "another ringmq is already listening on {bind} (lock file {} is held)",
                path.display()
            ));
        }
        // No live ringmq holds the address now (the flock), but the
        // listeners of one just killed may still: its io_uring is torn
        // down after the process is gone, and until then its sockets
        // listen in the SO_REUSEPORT group this broker's shards join,
        // taking a share of the new connections that nobody will accept
        // (seen after `kill -9` and an immediate restart).
        wait_for_stale_listeners(bind)?;
        if let Err(e) = probe_bind(bind) {
            return Err(format!(
                "cannot listen on {bind}: {e} (is another server using this address?)"
            ));
        }
        Ok(BindLock { _file: file, path })
    }
}

/// Bind `bind` for a moment, the way the shards will, to find another
/// program that holds it. SO_REUSEADDR and SO_REUSEPORT are both set so the
/// TIME_WAIT connections a previous ringmq on this address left behind (its
/// accepted sockets carry SO_REUSEPORT, inherited from glommio's listener)
/// do not block a restart; a listener without SO_REUSEPORT, or one owned by
/// another user, still makes this fail.
fn probe_bind(bind: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&bind.into())
}

/// Waits until no socket listens on `bind` (`BIND_STALE_LISTENER_WAIT_MAX`
/// at most), the flock being held: any listener left is a dead ringmq's.
fn wait_for_stale_listeners(bind: SocketAddr) -> Result<(), String> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let left = match listeners_on(bind) {
            Ok(n) => n,
            // Without procfs there is nothing to read: start as before.
            Err(_) => return Ok(()),
        };
        if left == 0 {
            if told {
                tracing::info!(%bind, waited_ms = started.elapsed().as_millis() as u64,
                    "the earlier listeners closed");
            }
            return Ok(());
        }
        if started.elapsed() >= BIND_STALE_LISTENER_WAIT_MAX {
            return Err(format!(
                "cannot listen on {bind}: {left} socket(s) of another process still listen there \
                 with SO_REUSEPORT after {} s (a ringmq that is still shutting down, or another \
                 server of the same user); stop it, or choose another address",
                BIND_STALE_LISTENER_WAIT_MAX.as_secs()
            ));
        }
        if !told {
            tracing::info!(%bind, listeners = left,
                "waiting for the listeners of an earlier ringmq on this address to close");
            told = true;
        }
        std::thread::sleep(BIND_STALE_LISTENER_POLL);
    }
}

/// How many TCP sockets listen on exactly `bind` (/proc/net/tcp or tcp6).
pub fn listeners_on(bind: SocketAddr) -> std::io::Result<usize> {
    let table = match bind {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table)?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let (Some(local), Some(_remote), Some(state)) =
                (fields.nth(1), fields.next(), fields.next())
            else {
                return false;
            };
            // 0A: TCP_LISTEN.
            state == "0A" && parse_proc_addr(local) == Some(bind)
        })
        .count())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit
/// word of the address is printed as the host reads it from memory.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    match addr.len() {
        8 => Some(SocketAddr::from((word(addr)?, port))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            Some(SocketAddr::from((bytes, port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_parse_as_the_kernel_prints_them() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_proc_addr("junk"), None);
    }

    #[test]
    fn a_listener_is_counted_until_it_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bind = listener.local_addr().unwrap();
        assert_eq!(listeners_on(bind).unwrap(), 1);
        // Connected sockets on the port are not listeners.
        let _client = std::net::TcpStream::connect(bind).unwrap();
        assert_eq!(listeners_on(bind).unwrap(), 1);
        drop(listener);
        assert_eq!(listeners_on(bind).unwrap(), 0);
    }

    #[test]
    fn the_start_waits_for_a_listener_that_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bind = listener.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(150));
            drop(listener);
        });
        let started = Instant::now();
        wait_for_stale_listeners(bind).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(100));
        closer.join().unwrap();
    }
}
