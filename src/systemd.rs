//! systemd's readiness protocol (`sd_notify(3)`): with `Type=notify` the
//! unit is "started" only once the node said `READY=1`, so a dependent unit
//! (or `systemctl start` itself) does not race the listeners. Outside
//! systemd `NOTIFY_SOCKET` is unset and nothing is sent.
//!
//! A datagram to the socket the service manager names: a path, or an
//! abstract name when it starts with `@`. Small enough to write here rather
//! than pull in a crate (libsystemd is not linked).

use std::io;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (for example `"READY=1"`) to the service manager, if
/// there is one. Errors are returned for logging: a failed notification
/// must not stop the broker.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &target)?;
    }
    Ok(true)
}

/// [`notify`], logging a failure instead of returning it.
pub fn notify_or_log(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told systemd"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, state, "cannot notify systemd ({NOTIFY_SOCKET_ENV})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches NOTIFY_SOCKET: the environment is process-wide.
    #[test]
    fn sends_the_state_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("ringmq-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        std::env::set_var(NOTIFY_SOCKET_ENV, &path);
        assert!(notify("READY=1").unwrap());
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringmq-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_server = UnixDatagram::bind_addr(&addr).unwrap();
        std::env::set_var(NOTIFY_SOCKET_ENV, format!("@{name}"));
        assert!(notify("STOPPING=1").unwrap());
        let n = abstract_server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        std::env::remove_var(NOTIFY_SOCKET_ENV);
        assert!(!notify("READY=1").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
