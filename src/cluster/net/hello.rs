//! The handshake (frame kind 0) and its checks (sans-IO).
//!
//! Each side sends one `Hello` on the control stream. The proof is an
//! HMAC-SHA256 keyed by the cookie over the TLS exporter secret of this
//! very connection and the sender's node name: the cookie never crosses,
//! a proof cannot be replayed on another connection, and a side cannot
//! reflect the other's proof back.

use std::net::SocketAddr;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::settings::{node_host, Role};
use crate::limits;
use crate::router::location::NodeId;

/// The version of everything a link speaks: the handshake, the frame
/// layout (`frame::FRAME_VERSION`) and the logic's bodies
/// (`cluster::logic::proto::PROTO_VERSION`). Checked first, so two builds
/// that differ in any of them refuse each other at the handshake with a
/// log line that says so, rather than link and then fail on a body the
/// other cannot read (mixed-version clusters are not supported:
/// docs/clustering.md, "Upgrades"). 2: message ids in held deliveries
/// and retained copies (PROTO_VERSION 2). `cluster::PROTOCOL_VERSIONS`
/// fails the build when one of the three changes alone.
pub const HELLO_VERSION: u16 = 2;

/// Label of the TLS exporter secret the proof is computed over.
pub const EXPORTER_LABEL: &[u8] = b"ringmq-cluster cookie proof";
pub const EXPORTER_LEN_BYTES: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub cluster_name: String,
    pub node_name: String,
    pub node_id: u32,
    pub role: Role,
    pub boot_epoch_ms: u64,
    /// The sender's QUIC endpoint as it is configured to be reached
    /// (peers dial it to probe this node).
    pub quic_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub proof: Vec<u8>,
}

/// Why a link was refused. Sent as the QUIC CONNECTION_CLOSE reason and
/// logged on both sides.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "cluster protocol version {theirs}, this node speaks {HELLO_VERSION}: \
         every node of a cluster must run the same ringmq version"
    )]
    Version { theirs: u16 },
    #[error("cluster name mismatch: this node is in cluster {ours:?}, the peer in {theirs:?}")]
    ClusterName { ours: String, theirs: String },
    #[error("cookie mismatch: the proof of {node} does not match this node's cookie")]
    Cookie { node: String },
    #[error("node id {id} of {theirs:?} is not the id of its name")]
    BadNodeId { theirs: String, id: u32 },
    #[error("node id collision: {theirs:?} and {ours:?} both have id {id}; rename one")]
    NodeIdCollision {
        ours: String,
        theirs: String,
        id: NodeId,
    },
    #[error("certificate of {node} does not name its host {host:?}")]
    CertName { node: String, host: String },
    #[error("{node} showed no certificate and fail_if_no_peer_cert is set")]
    NoCert { node: String },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("malformed handshake: {0}")]
    Malformed(String),
    #[error("a link to itself")]
    SelfLink,
}

/// The proof `node_name` sends over a connection whose exporter secret is
/// `exporter`.
pub fn proof(cookie: &str, exporter: &[u8], node_name: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(exporter);
    ctx.update(node_name.as_bytes());
    ctx.sign().as_ref().to_vec()
}

fn proof_is_valid(cookie: &str, exporter: &[u8], hello: &Hello) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    let mut msg = exporter.to_vec();
    msg.extend_from_slice(hello.node_name.as_bytes());
    hmac::verify(&key, &msg, &hello.proof).is_ok()
}

pub fn encode(hello: &Hello) -> Vec<u8> {
    postcard::to_stdvec(hello).expect("a Hello always serializes")
}

pub fn decode(body: &[u8]) -> Result<Hello, Refusal> {
    let hello: Hello = postcard::from_bytes(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if hello.node_name.len() > limits::CLUSTER_HELLO_NAME_LEN_MAX_BYTES
        || hello.cluster_name.len() > limits::CLUSTER_HELLO_NAME_LEN_MAX_BYTES
    {
        return Err(Refusal::Malformed("name too long".into()));
    }
    Ok(hello)
}

/// What this node checks a peer's Hello against.
pub struct Expect<'a> {
    pub cluster_name: &'a str,
    pub node_name: &'a str,
    pub cookie: &'a str,
    /// TLS exporter secret of the connection the Hello came on.
    pub exporter: &'a [u8],
}

/// Checks a peer's Hello: version, cluster name, proof of the cookie, that
/// its id is its name's, and that it is not this node or a collision.
pub fn check(expect: &Expect<'_>, hello: &Hello) -> Result<(), Refusal> {
    if hello.version != HELLO_VERSION {
        return Err(Refusal::Version {
            theirs: hello.version,
        });
    }
    if hello.cluster_name != expect.cluster_name {
        return Err(Refusal::ClusterName {
            ours: expect.cluster_name.to_owned(),
            theirs: hello.cluster_name.clone(),
        });
    }
    if !proof_is_valid(expect.cookie, expect.exporter, hello) {
        return Err(Refusal::Cookie {
            node: hello.node_name.clone(),
        });
    }
    if NodeId::from_name(&hello.node_name).0 != hello.node_id {
        return Err(Refusal::BadNodeId {
            theirs: hello.node_name.clone(),
            id: hello.node_id,
        });
    }
    if hello.node_name == expect.node_name {
        return Err(Refusal::SelfLink);
    }
    if NodeId::from_name(expect.node_name).0 == hello.node_id {
        return Err(Refusal::NodeIdCollision {
            ours: expect.node_name.to_owned(),
            theirs: hello.node_name.clone(),
            id: NodeId(hello.node_id),
        });
    }
    Ok(())
}

/// The host a peer's certificate must name.
pub fn peer_host(hello: &Hello) -> &str {
    node_host(&hello.node_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str, cookie: &str, exporter: &[u8]) -> Hello {
        Hello {
            version: HELLO_VERSION,
            cluster_name: "c1".into(),
            node_name: name.into(),
            node_id: NodeId::from_name(name).0,
            role: Role::Core,
            boot_epoch_ms: 1,
            quic_addr: "127.0.0.1:4370".parse().unwrap(),
            mqtt_addr: "127.0.0.1:1884".parse().unwrap(),
            proof: proof(cookie, exporter, name),
        }
    }

    fn expect<'a>(cookie: &'a str, exporter: &'a [u8]) -> Expect<'a> {
        Expect {
            cluster_name: "c1",
            node_name: "a@127.0.0.1",
            cookie,
            exporter,
        }
    }

    #[test]
    fn a_good_hello_passes_and_round_trips() {
        let h = hello("b@127.0.0.2", "secret", b"x1");
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(check(&expect("secret", b"x1"), &back), Ok(()));
        assert_eq!(peer_host(&back), "127.0.0.2");
    }

    #[test]
    fn each_mismatch_is_named() {
        let e = expect("secret", b"x1");
        let wrong_cookie = hello("b@h", "other", b"x1");
        assert!(matches!(
            check(&e, &wrong_cookie),
            Err(Refusal::Cookie { .. })
        ));
        // A proof made for another connection (exporter) does not pass.
        let replayed = hello("b@h", "secret", b"x2");
        assert!(matches!(check(&e, &replayed), Err(Refusal::Cookie { .. })));
        // Nor one reflected back under another name.
        let mut reflected = hello("b@h", "secret", b"x1");
        reflected.proof = proof("secret", b"x1", "a@127.0.0.1");
        assert!(matches!(check(&e, &reflected), Err(Refusal::Cookie { .. })));
        let mut other_cluster = hello("b@h", "secret", b"x1");
        other_cluster.cluster_name = "c2".into();
        let err = check(&e, &other_cluster).unwrap_err();
        assert!(err.to_string().contains("\"c1\"") && err.to_string().contains("\"c2\""));
        let mut version = hello("b@h", "secret", b"x1");
        version.version = 99;
        assert!(matches!(
            check(&e, &version),
            Err(Refusal::Version { theirs: 99 })
        ));
        let mut lying = hello("b@h", "secret", b"x1");
        lying.node_id ^= 1;
        assert!(matches!(check(&e, &lying), Err(Refusal::BadNodeId { .. })));
        let me = hello("a@127.0.0.1", "secret", b"x1");
        assert_eq!(check(&e, &me), Err(Refusal::SelfLink));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(decode(&[0xff; 7]), Err(Refusal::Malformed(_))));
        assert!(matches!(decode(&[]), Err(Refusal::Malformed(_))));
    }
}
