//! The selftest target: a forwarder that does as little as an MQTT server
//! can, so the load generator's own ceiling shows.
//!
//! It answers CONNECT with CONNACK, SUBSCRIBE with SUBACK (remembering
//! filter -> connection, exact topics only), PINGREQ with PINGRESP, and
//! copies each PUBLISH frame unchanged to the connection subscribed to its
//! topic (QoS 1: it PUBACKs the publisher and ignores the subscriber's
//! PUBACK). Frames are found from the fixed header and the topic read in
//! place: no decode, no allocation, one hash lookup per message.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ahash::AHashMap;
use bytes::BytesMut;
use ringmq::codec::{decode_any, encode, AckProperties, Packet, Protocol, ReasonCode, SubAck};

use crate::sys::{self, Epoll};

const LISTENER: u64 = u64::MAX;
const READ_CHUNK: usize = 256 * 1024;
/// `--forwarder-rt`: how long the forwarder keeps polling after its last
/// event before it sleeps in `epoll_wait` (it must sleep now and then: a
/// real-time thread that never does starves its CPU's other tasks until
/// the kernel throttles it, for tens of milliseconds).
const RT_SPIN_NS: u64 = 20_000;
/// `--forwarder-rt`: longest sleep, so a stop is seen promptly.
const RT_WAIT_MS: i32 = 10;
/// `--forwarder-rt`: SCHED_FIFO priority (the lowest: above every
/// normal task, below the kernel's real-time threads).
const RT_PRIORITY: i32 = 1;

struct Conn {
    fd: RawFd,
    protocol: Protocol,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    want_write: bool,
    dirty: bool,
}

pub struct Forwarder {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// The forwarder thread's id (0 until it started).
    tid: Arc<AtomicI32>,
    handle: JoinHandle<u64>,
}

impl Forwarder {
    /// Start on 127.0.0.1, an ephemeral port, pinned to `cpu` if given.
    /// `rt`: at real-time priority (SCHED_FIFO), sleeping when idle, so no
    /// other task on its CPU delays a message (`--forwarder-rt`).
    pub fn spawn(cpu: Option<usize>, rt: bool) -> io::Result<Forwarder> {
        let (listener, port) = sys::tcp_listen_loopback()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let tid = Arc::new(AtomicI32::new(0));
        let tid2 = tid.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("forwarder".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid2.store(unsafe { libc::gettid() }, Ordering::Relaxed);
                if let Some(cpu) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                if rt {
                    if let Err(e) = sys::set_fifo_priority(RT_PRIORITY) {
                        let _ = started_tx.send(Err(e));
                        sys::close(listener);
                        return 0;
                    }
                }
                let _ = started_tx.send(Ok(()));
                run(listener, &stop2, rt)
            })?;
        started_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("forwarder thread exited")))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("--forwarder-rt: SCHED_FIFO refused ({e}); needs CAP_SYS_NICE"),
                )
            })?;
        Ok(Forwarder {
            port,
            stop,
            tid,
            handle,
        })
    }

    /// The forwarder thread's run delay so far (time runnable while another
    /// task had its CPU), where the kernel reports it. It busy-polls, so
    /// every other task on its CPU takes time from it, and messages wait.
    pub fn run_delay_ns(&self) -> Option<u64> {
        let tid = self.tid.load(Ordering::Relaxed);
        if tid == 0 {
            return None;
        }
        let path = format!("/proc/self/task/{tid}/schedstat");
        sys::parse_schedstat_run_delay(&std::fs::read_to_string(path).ok()?)
    }

    /// Stop; returns the number of messages forwarded.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// Fixed header: (type, header length, remaining length), or None when
/// incomplete.
fn frame_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *b.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    for k in 1..5 {
        let byte = *b.get(k)?;
        len |= ((byte & 0x7F) as usize) << shift;
        if byte & 0x80 == 0 {
            return Some((first >> 4, k + 1, len));
        }
        shift += 7;
    }
    Some((0, 0, usize::MAX))
}

fn run(listener: RawFd, stop: &AtomicBool, rt: bool) -> u64 {
    let mut epoll = Epoll::new(1024).expect("epoll");
    epoll.add(listener, sys::IN, LISTENER).expect("epoll add");
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut routes: AHashMap<Vec<u8>, usize> = AHashMap::new();
    let mut forwarded = 0u64;
    let mut dirty: Vec<usize> = Vec::new();
    let mut events = Vec::new();
    let mut last_event_ns = crate::clock::now_ns();
    while !stop.load(Ordering::Relaxed) {
        events.clear();
        // Busy-poll: the forwarder has its own CPU, and sleeping would add
        // wake-up latency to the selftest latency floor. At real-time
        // priority it sleeps once idle for RT_SPIN_NS (see there).
        let timeout_ms = if rt && crate::clock::now_ns() - last_event_ns > RT_SPIN_NS {
            RT_WAIT_MS
        } else {
            0
        };
        events.extend(epoll.wait(timeout_ms).iter().map(|e| (e.events, e.u64)));
        if !events.is_empty() {
            last_event_ns = crate::clock::now_ns();
        }
        for &(ev, token) in &events {
            if token == LISTENER {
                while let Ok(Some(fd)) = sys::accept(listener) {
                    let idx = conns.len();
                    conns.push(Some(Conn {
                        fd,
                        protocol: Protocol::V5,
                        rbuf: Vec::with_capacity(READ_CHUNK),
                        wbuf: Vec::new(),
                        wpos: 0,
                        want_write: false,
                        dirty: false,
                    }));
                    let _ = epoll.add(fd, sys::IN, idx as u64);
                }
                continue;
            }
            let i = token as usize;
            if ev & sys::OUT != 0 {
                if let Some(c) = conns[i].as_mut() {
                    if !c.dirty {
                        c.dirty = true;
                        dirty.push(i);
                    }
                }
            }
            if ev & (sys::IN | sys::ERR) == 0 {
                continue;
            }
            let Some(mut c) = conns[i].take() else {
                continue;
            };
            let mut alive = true;
            loop {
                let len = c.rbuf.len();
                c.rbuf.reserve(READ_CHUNK);
                let spare = c.rbuf.spare_capacity_mut();
                let want = spare.len().min(READ_CHUNK);
                // SAFETY: reading into spare capacity; only `n` bytes are exposed.
                let buf =
                    unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr() as *mut u8, want) };
                match sys::read(c.fd, buf) {
                    Ok(0) => {
                        alive = false;
                        break;
                    }
                    Ok(n) => {
                        // SAFETY: read() wrote n bytes.
                        unsafe { c.rbuf.set_len(len + n) };
                        if !process(
                            i,
                            &mut c,
                            &mut conns,
                            &mut routes,
                            &mut dirty,
                            &mut forwarded,
                        ) {
                            alive = false;
                            break;
                        }
                        if n < want {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        alive = e.kind() == io::ErrorKind::WouldBlock;
                        break;
                    }
                }
            }
            if alive {
                if !c.wbuf.is_empty() && !c.dirty {
                    c.dirty = true;
                    dirty.push(i);
                }
                conns[i] = Some(c);
            } else {
                sys::close(c.fd);
            }
            // Forward what this read produced now, not after every other
            // readable connection has been read: a message waits for its
            // own read and send only (a p2p target has one source, so this
            // costs no extra send).
            flush_dirty(&mut conns, &mut dirty, &epoll);
        }
        flush_dirty(&mut conns, &mut dirty, &epoll);
    }
    for c in conns.into_iter().flatten() {
        sys::close(c.fd);
    }
    sys::close(listener);
    forwarded
}

/// Write out every connection in `dirty`; register EPOLLOUT for those whose
/// socket is full (they are flushed again when it drains).
fn flush_dirty(conns: &mut [Option<Conn>], dirty: &mut Vec<usize>, epoll: &Epoll) {
    for i in dirty.drain(..) {
        let Some(c) = conns[i].as_mut() else { continue };
        c.dirty = false;
        while c.wpos < c.wbuf.len() {
            match sys::send(c.fd, &c.wbuf[c.wpos..]) {
                Ok(n) => c.wpos += n,
                Err(_) => break,
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            if c.want_write {
                c.want_write = false;
                let _ = epoll.modify(c.fd, sys::IN, i as u64);
            }
        } else if !c.want_write {
            c.want_write = true;
            let _ = epoll.modify(c.fd, sys::IN | sys::OUT, i as u64);
        }
    }
}

/// Handle every complete frame in `c.rbuf`; false = close the connection.
fn process(
    me: usize,
    c: &mut Conn,
    conns: &mut [Option<Conn>],
    routes: &mut AHashMap<Vec<u8>, usize>,
    dirty: &mut Vec<usize>,
    forwarded: &mut u64,
) -> bool {
    let mut pos = 0;
    let buf = std::mem::take(&mut c.rbuf);
    let mut ok = true;
    while let Some((kind, header_len, remaining)) = frame_header(&buf[pos..]) {
        if kind == 0 {
            ok = false;
            break;
        }
        let size = header_len + remaining;
        if buf.len() - pos < size {
            break;
        }
        let frame = &buf[pos..pos + size];
        pos += size;
        match kind {
            3 => {
                let body = &frame[header_len..];
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let topic = &body[2..2 + topic_len];
                let qos = (frame[0] >> 1) & 3;
                if let Some(&t) = routes.get(topic) {
                    let target = if t == me {
                        Some(&mut *c)
                    } else {
                        conns[t].as_mut()
                    };
                    if let Some(target) = target {
                        target.wbuf.extend_from_slice(frame);
                        *forwarded += 1;
                        if t != me && !target.dirty {
                            target.dirty = true;
                            dirty.push(t);
                        }
                    }
                }
                if qos == 1 {
                    let id = &body[2 + topic_len..4 + topic_len];
                    c.wbuf.extend_from_slice(&[0x40, 2, id[0], id[1]]);
                }
            }
            1 | 8 => {
                let mut b = BytesMut::from(frame);
                let reply = match decode_any(&mut b, c.protocol, u32::MAX) {
                    Ok(Some(Packet::Connect(conn))) => {
                        c.protocol = conn.protocol;
                        Packet::ConnAck(Box::default())
                    }
                    Ok(Some(Packet::Subscribe(s))) => {
                        let codes = s
                            .filters
                            .iter()
                            .map(|(f, o)| {
                                routes.insert(f.as_bytes().to_vec(), me);
                                ReasonCode(o.qos as u8)
                            })
                            .collect();
                        Packet::SubAck(SubAck {
                            packet_id: s.packet_id,
                            reason_codes: codes,
                            properties: AckProperties::default(),
                        })
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                };
                let mut out = BytesMut::new();
                if encode(&reply, c.protocol, &mut out).is_err() {
                    ok = false;
                    break;
                }
                c.wbuf.extend_from_slice(&out);
            }
            12 => c.wbuf.extend_from_slice(&[0xD0, 0]),
            14 => {
                ok = false;
                break;
            }
            _ => {} // acknowledgements from subscribers
        }
    }
    let mut buf = buf;
    buf.drain(..pos);
    c.rbuf = buf;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header() {
        assert_eq!(frame_header(&[0x30, 5]), Some((3, 2, 5)));
        assert_eq!(frame_header(&[0x30, 0x80, 0x01]), Some((3, 3, 128)));
        assert_eq!(frame_header(&[0x30, 0x80]), None);
        assert_eq!(frame_header(&[]), None);
        assert_eq!(frame_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap().0, 0);
    }
}
