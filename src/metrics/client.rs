//! The records `/api/v5/clients` and `/api/v5/subscriptions` list: plain
//! `Send` data a shard builds from its own state (`shard::inspect`) and the
//! admin thread renders as EMQX 5 shapes it (field names and types of
//! EMQX's `GET /api/v5/clients`).

use serde::Serialize;

/// One session as the admin API lists it: a connected client, or an
/// offline session kept for its expiry interval (`connected: false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    /// The shard that holds the session.
    pub shard: u16,
    pub connected: bool,
    /// CONNECT's User Name (known while connected).
    pub username: Option<String>,
    /// Protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub proto_ver: u8,
    /// The client's address (known while connected).
    pub peer: Option<std::net::SocketAddr>,
    /// Negotiated Keep Alive, seconds (0 while offline).
    pub keepalive_s: u16,
    /// CONNECT's Clean Start / Clean Session (known while connected).
    pub clean_start: Option<bool>,
    /// Session Expiry Interval, seconds (after the broker's cap).
    pub expiry_interval_s: u32,
    pub subscriptions: u64,
    /// Messages queued for the inflight window or for the client's return.
    pub mqueue_len: u64,
    /// The queue's bound (`mqtt.max_mqueue_len` when the session was last
    /// connected).
    pub mqueue_max: u64,
    /// Messages the session dropped, all causes.
    pub mqueue_dropped: u64,
    /// Outbound QoS 1/2 messages holding a packet id.
    pub inflight_cnt: u64,
    /// Unix time of the CONNECT, milliseconds (known while connected).
    pub connected_at_ms: Option<u64>,
    /// Unix time the connection ended, milliseconds (offline sessions with
    /// a finite expiry: derived from their expiry deadline).
    pub disconnected_at_ms: Option<u64>,
}

/// One subscription of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub client_id: String,
    /// The filter as subscribed, `$share/{group}/` included.
    pub topic: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub subscription_id: Option<u32>,
}

/// `GET /api/v5/clients` items, EMQX's field names and types.
#[derive(Serialize)]
pub struct ClientJson<'a> {
    pub clientid: &'a str,
    pub username: Option<&'a str>,
    pub node: &'a str,
    pub shard: u16,
    pub connected: bool,
    pub proto_name: &'static str,
    pub proto_ver: u8,
    pub ip_address: Option<String>,
    pub port: Option<u16>,
    pub keepalive: u16,
    pub clean_start: Option<bool>,
    pub expiry_interval: u32,
    pub subscriptions_cnt: u64,
    pub mqueue_len: u64,
    pub mqueue_max: u64,
    pub mqueue_dropped: u64,
    pub inflight_cnt: u64,
    pub connected_at: Option<String>,
    pub disconnected_at: Option<String>,
}

impl ClientInfo {
    pub fn to_json<'a>(&'a self, node: &'a str) -> ClientJson<'a> {
        ClientJson {
            clientid: &self.client_id,
            username: self.username.as_deref(),
            node,
            shard: self.shard,
            connected: self.connected,
            proto_name: "MQTT",
            proto_ver: self.proto_ver,
            ip_address: self.peer.map(|p| p.ip().to_canonical().to_string()),
            port: self.peer.map(|p| p.port()),
            keepalive: self.keepalive_s,
            clean_start: self.clean_start,
            expiry_interval: self.expiry_interval_s,
            subscriptions_cnt: self.subscriptions,
            mqueue_len: self.mqueue_len,
            mqueue_max: self.mqueue_max,
            mqueue_dropped: self.mqueue_dropped,
            inflight_cnt: self.inflight_cnt,
            connected_at: self.connected_at_ms.map(rfc3339_ms),
            disconnected_at: self.disconnected_at_ms.map(rfc3339_ms),
        }
    }
}

/// Subscription items, EMQX's field names (`nl`, `rap`, `rh`).
#[derive(Serialize)]
pub struct SubscriptionJson<'a> {
    pub clientid: &'a str,
    pub topic: &'a str,
    pub qos: u8,
    pub nl: u8,
    pub rap: u8,
    pub rh: u8,
    pub sub_id: Option<u32>,
    pub node: &'a str,
}

impl SubscriptionInfo {
    pub fn to_json<'a>(&'a self, node: &'a str) -> SubscriptionJson<'a> {
        SubscriptionJson {
            clientid: &self.client_id,
            topic: &self.topic,
            qos: self.qos,
            nl: u8::from(self.no_local),
            rap: u8::from(self.retain_as_published),
            rh: self.retain_handling,
            sub_id: self.subscription_id,
            node,
        }
    }
}

/// `2026-12-06T10:20:30.123+00:00` (RFC 3339, UTC, milliseconds), the
/// format of EMQX's `connected_at`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000+00:00");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789
        assert_eq!(rfc3339_ms(951_827_696_789), "2000-02-29T12:34:56.789+00:00");
        assert_eq!(
            rfc3339_ms(1_704_067_199_999),
            "2023-12-31T23:59:59.999+00:00"
        );
        assert_eq!(
            rfc3339_ms(4_102_444_800_000),
            "2100-01-01T00:00:00.000+00:00"
        );
    }

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: "c1".into(),
            shard: 1,
            connected: true,
            username: Some("alice".into()),
            proto_ver: 5,
            peer: Some("[::ffff:127.0.0.1]:50000".parse().unwrap()),
            keepalive_s: 30,
            clean_start: Some(true),
            expiry_interval_s: 60,
            subscriptions: 2,
            mqueue_len: 3,
            mqueue_max: 1000,
            mqueue_dropped: 0,
            inflight_cnt: 1,
            connected_at_ms: Some(0),
            disconnected_at_ms: None,
        }
    }

    #[test]
    fn client_json_has_emqx_fields_and_types() {
        let c = client();
        let v = serde_json::to_value(c.to_json("n@h")).unwrap();
        assert_eq!(v["clientid"], "c1");
        assert_eq!(v["username"], "alice");
        assert_eq!(v["node"], "n@h");
        assert_eq!(v["connected"], true);
        assert_eq!(v["proto_ver"], 5);
        assert_eq!(v["proto_name"], "MQTT");
        // An IPv4 client on a dual-stack socket shows as IPv4.
        assert_eq!(v["ip_address"], "127.0.0.1");
        assert_eq!(v["port"], 50000);
        assert_eq!(v["keepalive"], 30);
        assert_eq!(v["clean_start"], true);
        assert_eq!(v["expiry_interval"], 60);
        assert_eq!(v["subscriptions_cnt"], 2);
        assert_eq!(v["mqueue_len"], 3);
        assert_eq!(v["inflight_cnt"], 1);
        assert_eq!(v["connected_at"], "1970-01-01T00:00:00.000+00:00");
        assert!(v["disconnected_at"].is_null());
    }

    #[test]
    fn offline_client_json_has_nulls_for_what_is_unknown() {
        let c = ClientInfo {
            connected: false,
            username: None,
            peer: None,
            clean_start: None,
            keepalive_s: 0,
            connected_at_ms: None,
            disconnected_at_ms: Some(1000),
            ..client()
        };
        let v = serde_json::to_value(c.to_json("n")).unwrap();
        assert_eq!(v["connected"], false);
        assert!(v["ip_address"].is_null() && v["port"].is_null() && v["username"].is_null());
        assert_eq!(v["disconnected_at"], "1970-01-01T00:00:01.000+00:00");
    }

    #[test]
    fn subscription_json_uses_emqx_option_names() {
        let s = SubscriptionInfo {
            client_id: "c".into(),
            topic: "$share/g/a/#".into(),
            qos: 1,
            no_local: true,
            retain_as_published: false,
            retain_handling: 2,
            subscription_id: Some(7),
        };
        let v = serde_json::to_value(s.to_json("n")).unwrap();
        assert_eq!(v["topic"], "$share/g/a/#");
        assert_eq!((v["qos"].as_u64(), v["nl"].as_u64()), (Some(1), Some(1)));
        assert_eq!((v["rap"].as_u64(), v["rh"].as_u64()), (Some(0), Some(2)));
        assert_eq!(v["sub_id"], 7);
    }
}
