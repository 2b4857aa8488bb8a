//! The read paths on the `ringmq-redis` thread: a session resumed on this
//! node (`load_session`: takes ownership, fencing the old owner) and a
//! node's own sessions and every retained message at its start
//! (`load_node`: SSCAN of the node's index, HSCAN of each retained
//! bucket; never a global scan, never `KEYS`).

use std::time::Duration;

use redis::Value;

use super::keys::{client_keys, node_index, retained_key};
use super::record::{decode_delivery, decode_meta, decode_retained};
use super::script::int;
use super::writer::Shared;
use super::Error;
use crate::durable::{Restored, StoredSession};
use crate::limits::{
    REDIS_CLIENT_RETRIES, REDIS_LOAD_SESSIONS_IN_FLIGHT_MAX, REDIS_RETRY_BACKOFF_MIN_MS,
    REDIS_SCAN_COUNT, RETAINED_BUCKETS,
};

/// Runs `f` again after transient errors, a few times with backoff: a
/// load is asked for by someone waiting (a CONNECT, a start) who gets the
/// error rather than an endless wait.
async fn retried<T, F, Fut>(shared: &Shared, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut backoff_ms = REDIS_RETRY_BACKOFF_MIN_MS;
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                shared.counters.error(&e);
                attempt += 1;
                let transient = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_cluster_error()
                    || e.is_timeout();
                if !transient || attempt > REDIS_CLIENT_RETRIES {
                    return Err(Error::Redis(e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms *= 2;
            }
        }
    }
}

async fn run_load(shared: &Shared, client: &str, epoch: u64) -> Result<Value, Error> {
    let keys = client_keys(client);
    retried(shared, || {
        let mut conn = shared.conn.clone();
        let mut call = shared.load.prepare_invoke();
        call.key(&keys[0]).key(&keys[1]).key(&keys[2]);
        call.arg(epoch).arg(&shared.node);
        async move { call.invoke_async::<Value>(&mut conn).await }
    })
    .await
}

/// The owner node and the session, if any, out of [`super::script::LOAD`]'s answer.
fn parse_load(client: &str, answer: Value) -> Result<(String, Option<StoredSession>), Error> {
    let bad = || Error::Redis(format!("unexpected answer loading {client}"));
    let Value::Array(items) = answer else {
        return Err(bad());
    };
    let code = items.first().and_then(int).ok_or_else(bad)?;
    let stored_epoch = items.get(1).and_then(int).ok_or_else(bad)?;
    if code == 1 {
        return Err(Error::Fenced { stored_epoch });
    }
    let [_, _, owner, meta, deliveries] = <[Value; 5]>::try_from(items).map_err(|_| bad())?;
    let owner = match owner {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    };
    let meta = match meta {
        Value::BulkString(b) if !b.is_empty() => b,
        _ => return Ok((owner, None)),
    };
    let key = |suffix: &str| format!("{{c:{client}}}:{suffix}");
    let meta = decode_meta(&meta).map_err(|error| Error::Record {
        key: key("meta"),
        error,
    })?;
    let Value::Array(flat) = deliveries else {
        return Err(bad());
    };
    let mut records = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks(2) {
        let [Value::BulkString(seq), Value::BulkString(bytes)] = pair else {
            return Err(bad());
        };
        let seq: u64 = std::str::from_utf8(seq)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let record = decode_delivery(bytes).map_err(|error| Error::Record {
            key: format!("{} field {seq}", key("d")),
            error,
        })?;
        records.push((seq, record));
    }
    records.sort_unstable_by_key(|(seq, _)| *seq);
    Ok((
        owner,
        Some(StoredSession {
            meta,
            deliveries: records,
        }),
    ))
}

pub async fn load_session(
    shared: &Shared,
    client: &str,
    epoch: u64,
) -> Result<Option<StoredSession>, Error> {
    if epoch == 0 || epoch > super::EPOCH_MAX {
        return Err(Error::Config(format!(
            "load_session epoch {epoch}: must be 1 ..= 2^53 (Lua numbers are doubles)"
        )));
    }
    let answer = run_load(shared, client, epoch).await?;
    let (_, session) = parse_load(client, answer)?;
    Ok(session.map(|mut s| {
        s.meta.epoch = epoch;
        s
    }))
}

pub async fn load_node(shared: &Shared) -> Result<Restored, Error> {
    let mut restored = Restored::default();
    let index = node_index(&shared.node);
    let mut cursor = 0u64;
    loop {
        let (next, members): (u64, Vec<Vec<u8>>) = retried(shared, || {
            let mut conn = shared.conn.clone();
            let mut cmd = redis::cmd("SSCAN");
            cmd.arg(&index)
                .arg(cursor)
                .arg("COUNT")
                .arg(REDIS_SCAN_COUNT);
            async move { cmd.query_async(&mut conn).await }
        })
        .await?;
        let clients: Vec<String> = members
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect();
        // A few sessions in flight, not the whole page: each answer holds
        // the session's every delivery, and a master busy with hundreds of
        // them answers the last ones past `REDIS_RESPONSE_TIMEOUT_MS`, and
        // the start fails (seen with 100 sessions of 10,000 deliveries).
        for chunk in clients.chunks(REDIS_LOAD_SESSIONS_IN_FLIGHT_MAX) {
            let loads = chunk.iter().map(|c| run_load(shared, c, 0));
            let answers = futures_util::future::join_all(loads).await;
            for (client, answer) in chunk.iter().zip(answers) {
                let (owner, session) = parse_load(client, answer?)?;
                match session {
                    Some(s) if owner == shared.node => restored.sessions.push(s),
                    // Expired, removed, or taken by another node: not ours.
                    _ => {
                        let mut conn = shared.conn.clone();
                        let mut cmd = redis::cmd("SREM");
                        cmd.arg(&index).arg(client.as_bytes());
                        if cmd.query_async::<Value>(&mut conn).await.is_err() {
                            super::RedisCounters::add(&shared.counters.index_errors, 1);
                        }
                    }
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let buckets: Vec<u32> = (0..RETAINED_BUCKETS).collect();
    for chunk in buckets.chunks(64) {
        let scans = chunk.iter().map(|&b| scan_bucket(shared, b));
        for result in futures_util::future::join_all(scans).await {
            restored.retained.extend(result?);
        }
    }
    Ok(restored)
}

async fn scan_bucket(
    shared: &Shared,
    bucket: u32,
) -> Result<Vec<(String, crate::session::snapshot::MessageSnapshot)>, Error> {
    let key = retained_key(bucket);
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<Vec<u8>>) = retried(shared, || {
            let mut conn = shared.conn.clone();
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(&key).arg(cursor).arg("COUNT").arg(REDIS_SCAN_COUNT);
            async move { cmd.query_async(&mut conn).await }
        })
        .await?;
        for pair in flat.chunks(2) {
            let [topic, bytes] = pair else { continue };
            let topic = String::from_utf8_lossy(topic).into_owned();
            let message = decode_retained(bytes).map_err(|error| Error::Record {
                key: format!("{key} field {topic}"),
                error,
            })?;
            out.push((topic, message));
        }
        cursor = next;
        if cursor == 0 {
            return Ok(out);
        }
    }
}
