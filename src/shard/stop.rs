//! A shard's stop: its clients closed (DISCONNECT 0x8B, wills published),
//! then the in-order drain of the mesh (`Mesh::stop`). Nothing here sleeps
//! for a fixed time: each step waits for the event that ends it, bounded by
//! `SHUTDOWN_GRACE`.

use super::state::Shard;

impl Shard {
    /// One admitted connection ended: counted, and a stop waiting for the
    /// last one is woken.
    pub(super) fn connection_closed(&self) {
        let left = {
            let mut st = self.state.borrow_mut();
            st.connections -= 1;
            st.connections
        };
        if left == 0 {
            self.no_connections.raise();
        }
    }

    /// Returns once no admitted connection is left.
    pub(super) async fn no_connections_left(&self) {
        while self.state.borrow().connections > 0 {
            self.no_connections.wait().await;
        }
    }
}
