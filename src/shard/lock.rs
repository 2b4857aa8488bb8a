//! One broker per listener address. glommio's listeners always set
//! SO_REUSEPORT, so a second broker on the same port would bind silently and
//! steal half the connections. Two checks prevent it: an exclusive flock on a
//! lock file named after the address (another ringmq), and a probe bind
//! (any other program holding the port).

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

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
