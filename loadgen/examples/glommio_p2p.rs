//! Runtime comparison (see README, "Architecture"): the selftest p2p path on
//! glommio (io_uring) instead of the epoll loop. Same PUBLISH template, same
//! in-place parser, same stamp, sequence tracking and HDR histogram, same
//! forwarder, QoS 0,
//! 64 B; it does a little less than the real loop (no per-publisher
//! stream map, no live counters), which only favours glommio.
//!
//! cargo run --release -p ringmq-loadgen --example glommio_p2p -- PAIRS SECONDS WINDOW CPU FORWARDER_CPU

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::codec::{
    decode_any, encode, ByteStr, Connect, ConnectProperties, Packet, Protocol, QoS, Subscribe,
    SubscriptionOptions,
};
use ringmq_loadgen::clock::now_ns;
use ringmq_loadgen::fastpath::{self, Frame};
use ringmq_loadgen::forwarder::Forwarder;
use ringmq_loadgen::stamp::{Stamp, STAMP_LEN};
use ringmq_loadgen::stats::histogram;
use ringmq_loadgen::track::{Mode, Stream};
use ringmq_loadgen::worker::publish_template;

const BATCH: u64 = 256;

#[derive(Default)]
struct Pair {
    delivered: Cell<u64>,
    waker: RefCell<Option<Waker>>,
}

async fn send(s: &mut TcpStream, p: Packet) {
    let mut b = BytesMut::new();
    encode(&p, Protocol::V5, &mut b).unwrap();
    s.write_all(&b).await.unwrap();
}

async fn expect_reply(s: &mut TcpStream) {
    let mut buf = BytesMut::zeroed(1024);
    let n = s.read(&mut buf).await.unwrap();
    buf.truncate(n);
    decode_any(&mut buf, Protocol::V5, 1 << 20)
        .unwrap()
        .expect("a whole reply");
}

async fn client(port: u16, id: String, filter: Option<String>) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let c = Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive_s: 0,
        client_id: ByteStr::from(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    };
    send(&mut s, Packet::Connect(Box::new(c))).await;
    expect_reply(&mut s).await;
    if let Some(f) = filter {
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![(ByteStr::from(f), SubscriptionOptions::default())],
            properties: Default::default(),
        };
        send(&mut s, Packet::Subscribe(sub)).await;
        expect_reply(&mut s).await;
    }
    s
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| a.get(i).map_or(d, |s| s.parse().unwrap());
    let (pairs, secs, window, cpu, fcpu) =
        (arg(0, 4), arg(1, 5), arg(2, 1000), arg(3, 1), arg(4, 0));
    let fwd = Forwarder::spawn(Some(fcpu as usize), false).unwrap();
    let port = fwd.port;
    let h = LocalExecutorBuilder::new(Placement::Fixed(cpu as usize))
        .spawn(move || async move {
            let mut counters = Vec::new();
            let hist = Rc::new(RefCell::new(histogram()));
            for i in 0..pairs {
                let topic = format!("bench/p2p/{i}");
                let mut sub = client(port, format!("gs{i}"), Some(topic.clone())).await;
                let mut publ = client(port, format!("gp{i}"), None).await;
                let pair = Rc::new(Pair::default());
                counters.push(pair.clone());
                let p2 = pair.clone();
                let hist = hist.clone();
                glommio::spawn_local(async move {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut stream = Stream::new(Mode::Exact);
                    let mut len = 0;
                    loop {
                        let n = sub.read(&mut buf[len..]).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        len += n;
                        let now = now_ns();
                        let mut pos = 0;
                        let mut got = 0;
                        let mut h = hist.borrow_mut();
                        while let Ok(Some((f, n))) = fastpath::parse(&buf[pos..len], true, 1 << 20) {
                            if let Frame::Publish { payload, .. } = f {
                                let s = Stamp::read(payload).unwrap();
                                stream.on_seq(s.seq);
                                let _ = h.record(now.saturating_sub(s.sent_ns).max(1));
                                got += 1;
                            }
                            pos += n;
                        }
                        buf.copy_within(pos..len, 0);
                        len -= pos;
                        p2.delivered.set(p2.delivered.get() + got);
                        if let Some(w) = p2.waker.borrow_mut().take() {
                            w.wake();
                        }
                    }
                })
                .detach();
                glommio::spawn_local(async move {
                    let (tpl, _, pay) = publish_template(&topic, QoS::AtMostOnce, 64, Protocol::V5);
                    let mut out = Vec::with_capacity(tpl.len() * BATCH as usize);
                    let mut seq = 0u64;
                    loop {
                        futures_lite::future::poll_fn(|cx| {
                            if seq - pair.delivered.get() < window {
                                Poll::Ready(())
                            } else {
                                *pair.waker.borrow_mut() = Some(cx.waker().clone());
                                Poll::Pending
                            }
                        })
                        .await;
                        let n = BATCH.min(window - (seq - pair.delivered.get()));
                        out.clear();
                        let now = now_ns();
                        for _ in 0..n {
                            let start = out.len();
                            out.extend_from_slice(&tpl);
                            let o = start + pay;
                            Stamp { run_id: 1, publisher_id: i as u32, seq, sent_ns: now }
                                .write(&mut out[o..o + STAMP_LEN]);
                            seq += 1;
                        }
                        publ.write_all(&out).await.unwrap();
                    }
                })
                .detach();
            }
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let before: u64 = counters.iter().map(|p| p.delivered.get()).sum();
            let t0 = now_ns();
            glommio::timer::sleep(Duration::from_secs(secs)).await;
            let after: u64 = counters.iter().map(|p| p.delivered.get()).sum();
            let rate = (after - before) as f64 / ((now_ns() - t0) as f64 / 1e9);
            let h = hist.borrow();
            println!(
                "glommio p2p: {pairs} pairs, window {window}: {:.0} msg/s, p50 {:.1} us, p99 {:.1} us",
                rate,
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3
            );
            std::process::exit(0);
        })
        .unwrap();
    h.join().unwrap();
}
