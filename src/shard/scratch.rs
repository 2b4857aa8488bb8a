//! The `Scratch` part of a shard: the buffers every connection of the
//! shard reads into and encodes into, so a connection keeps only what is
//! left over (a partial packet, what the socket did not take) and nothing
//! while idle. Each is borrowed for one synchronous read or encode and
//! never across an await.

use bytes::BytesMut;
use std::cell::{RefCell, RefMut};

pub struct Scratch {
    /// What the kernel writes a read into (see `conn::read::poll_fill`).
    read: RefCell<Box<[u8]>>,
    /// What a connection encodes its outgoing packets into (see
    /// `conn::transmit::poll_transmit`).
    write: RefCell<BytesMut>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            read: RefCell::new(vec![0; crate::limits::READ_CHUNK_BYTES].into_boxed_slice()),
            write: RefCell::new(BytesMut::new()),
        }
    }
}

impl Scratch {
    #[inline]
    pub fn read(&self) -> RefMut<'_, Box<[u8]>> {
        self.read.borrow_mut()
    }

    #[inline]
    pub fn write(&self) -> RefMut<'_, BytesMut> {
        self.write.borrow_mut()
    }
}
