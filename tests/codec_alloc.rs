//! The hot path does not allocate: decoding a PUBLISH without properties
//! only takes slices of the input buffer, and encoding one writes into the
//! output buffer's spare capacity.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use ringmq::codec::*;

/// Counts allocations made by the current thread, so the test harness's own
/// threads do not disturb the count.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

fn publish(qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from("sensors/room-1/temperature"),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
        payload: Bytes::from_static(b"{\"celsius\": 21.5}"),
        properties: None,
    })
}

#[test]
fn publish_hot_path_does_not_allocate() {
    for protocol in [Protocol::V311, Protocol::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let packet = publish(qos);
            let mut buf = BytesMut::with_capacity(4 * encoded_len(&packet, protocol));
            for _ in 0..3 {
                encode(&packet, protocol, &mut buf).unwrap();
            }
            // The first split turns the buffer into shared storage: that is
            // the one allocation a read buffer pays, not one per packet.
            decode(&mut buf, Some(protocol), 1 << 20).unwrap().unwrap();

            let (count, decoded) = allocations_during(|| decode(&mut buf, Some(protocol), 1 << 20));
            assert_eq!(decoded, Ok(Some(packet.clone())));
            assert_eq!(count, 0, "decode {protocol:?} {qos:?}");
            let (count, dropped) = allocations_during(|| drop(decoded));
            assert_eq!(count, 0, "drop {dropped:?}");

            let mut out = BytesMut::with_capacity(1024);
            let (count, result) = allocations_during(|| encode(&packet, protocol, &mut out));
            assert_eq!(result, Ok(()));
            assert_eq!(count, 0, "encode {protocol:?} {qos:?}");
        }
    }
}
