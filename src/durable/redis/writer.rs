//! The write path on the `ringmq-redis` thread: one task per shard takes
//! that shard's batches in ticket order, applies every waiting batch as a
//! group (one script per client, all in flight at once on the multiplexed
//! connections: pipelined), optionally waits for replica acks, then
//! publishes the group's last ticket. A failed call is retried with a
//! capped backoff until Redis answers: tickets wait, nothing is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use redis::{Script, Value};
use tokio::sync::mpsc::Receiver;

use super::conn::Conn;
use super::counters::RedisCounters;
use super::script::{parse_write, plan, ClientWrite, Plan, RetainedWrite};
use super::Fenced;
use crate::durable::{Batch, Synced};
use crate::limits::{
    REDIS_GROUP_BATCHES_MAX, REDIS_REPLICA_ACK_TIMEOUT_MS, REDIS_RETRY_BACKOFF_MAX_MS,
    REDIS_RETRY_BACKOFF_MIN_MS, REDIS_SCRIPTS_IN_FLIGHT_MAX, REDIS_UNREACHABLE_LOG_INTERVAL_MS,
};

/// What every task of the Redis thread shares.
pub struct Shared {
    pub conn: Conn,
    pub node: String,
    pub write: Script,
    pub load: Script,
    pub replica_acks: u32,
    pub counters: Arc<RedisCounters>,
    /// Per shard: the sessions Redis fenced, for the shard to end them.
    pub fenced: Vec<Arc<ArrayQueue<Fenced>>>,
}

pub async fn run_shard(
    shared: Arc<Shared>,
    shard: usize,
    mut batches: Receiver<Batch>,
    synced: Arc<Synced>,
) {
    let mut group = Vec::with_capacity(REDIS_GROUP_BATCHES_MAX);
    while let Some(first) = batches.recv().await {
        group.clear();
        group.push(first);
        while group.len() < REDIS_GROUP_BATCHES_MAX {
            match batches.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let last = group.last().expect("one batch").ticket;
        let plan = plan(&group);
        for refused in &plan.refused {
            tracing::error!(
                shard,
                "redis: op not written, its record is too large: {refused}"
            );
        }
        RedisCounters::add(
            &shared.counters.refused_too_large,
            plan.refused.len() as u64,
        );
        // A group whose ops all cancelled in the shard (`always`: empty
        // batches keep their tickets) needs no call and no `WAIT`: every
        // earlier group is acknowledged already.
        if !plan.clients.is_empty() || !plan.retained.is_empty() {
            apply(&shared, shard, &plan).await;
        }
        let c = &shared.counters;
        RedisCounters::add(&c.groups, 1);
        RedisCounters::add(&c.batches, group.len() as u64);
        RedisCounters::add(&c.ops, plan.ops as u64);
        synced.publish(last);
    }
}

/// Applies `plan` (and waits for replicas) until Redis acknowledged all of
/// it. Every call is idempotent, so a whole round is simply sent again.
async fn apply(shared: &Shared, shard: usize, plan: &Plan) {
    let mut clients: Vec<&ClientWrite> = plan.clients.iter().collect();
    let mut retained: Vec<&RetainedWrite> = plan.retained.iter().collect();
    let mut backoff_ms = REDIS_RETRY_BACKOFF_MIN_MS;
    let mut failing_since: Option<Instant> = None;
    let mut logged = Instant::now();
    // Answers are acted on (fenced, index) once the whole group is
    // acknowledged, so a group sent again after a failed WAIT is not
    // counted twice.
    let mut answered: Vec<(&ClientWrite, Value)> = Vec::with_capacity(clients.len());
    loop {
        let mut failed_clients = Vec::new();
        let mut failed_retained = Vec::new();
        let mut last_error = None;
        for chunk in clients.chunks(REDIS_SCRIPTS_IN_FLIGHT_MAX) {
            let calls = chunk.iter().map(|w| write_client(shared, w));
            let results = futures_util::future::join_all(calls).await;
            for (w, result) in chunk.iter().zip(results) {
                match result {
                    Ok(v) => answered.push((*w, v)),
                    Err(e) => {
                        shared.counters.error(&e);
                        last_error = Some(e);
                        failed_clients.push(*w);
                    }
                }
            }
        }
        for chunk in retained.chunks(REDIS_SCRIPTS_IN_FLIGHT_MAX) {
            let calls = chunk.iter().map(|r| write_retained(shared, r));
            let results = futures_util::future::join_all(calls).await;
            for (r, result) in chunk.iter().zip(results) {
                if let Err(e) = result {
                    shared.counters.error(&e);
                    last_error = Some(e);
                    failed_retained.push(*r);
                }
            }
        }
        if last_error.is_none() && shared.replica_acks > 0 {
            if let Err(e) = wait_replicas(shared).await {
                // A master that died before its replica had the writes:
                // the whole group goes again, to whoever holds the slots.
                shared.counters.error(&e);
                last_error = Some(e);
                answered.clear();
                failed_clients = plan.clients.iter().collect();
                failed_retained = plan.retained.iter().collect();
            }
        }
        let Some(error) = last_error else {
            for (w, answer) in &answered {
                done_client(shared, shard, w, answer).await;
            }
            if let Some(since) = failing_since {
                tracing::warn!(
                    shard,
                    "redis: reachable again after {} ms; held tickets published",
                    since.elapsed().as_millis()
                );
            }
            return;
        };
        let since = *failing_since.get_or_insert_with(Instant::now);
        if logged.elapsed() >= Duration::from_millis(REDIS_UNREACHABLE_LOG_INTERVAL_MS) {
            logged = Instant::now();
            tracing::warn!(
                shard,
                "redis: writes failing for {} ms ({} calls waiting, last error: {error}); \
                 acknowledgements that wait for them are held",
                since.elapsed().as_millis(),
                failed_clients.len() + failed_retained.len()
            );
        }
        RedisCounters::add(
            &shared.counters.retries,
            (failed_clients.len() + failed_retained.len()) as u64,
        );
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(REDIS_RETRY_BACKOFF_MAX_MS);
        RedisCounters::add(
            &shared.counters.unreachable_ms,
            start.elapsed().as_millis() as u64,
        );
        clients = failed_clients;
        retained = failed_retained;
    }
}

async fn write_client(shared: &Shared, w: &ClientWrite) -> redis::RedisResult<Value> {
    let mut conn = shared.conn.clone();
    let mut call = shared.write.prepare_invoke();
    call.key(&w.keys[0]).key(&w.keys[1]).key(&w.keys[2]);
    call.arg(&shared.node);
    for a in &w.args {
        call.arg(a);
    }
    call.invoke_async(&mut conn).await
}

/// What a client's script answered: fenced ops go back to the shard; the
/// node index follows created / removed sessions (best effort: another
/// slot, so another command; `load_node` checks the owner anyway).
async fn done_client(shared: &Shared, shard: usize, w: &ClientWrite, answer: &Value) {
    let c = &shared.counters;
    RedisCounters::add(&c.scripts, 1);
    let Some(outcome) = parse_write(answer) else {
        RedisCounters::add(&c.errors_other, 1);
        tracing::error!(
            "redis: unexpected script answer for {}: {answer:?}",
            w.client
        );
        return;
    };
    RedisCounters::add(&c.gone, outcome.gone);
    RedisCounters::add(&c.full, outcome.full);
    if outcome.fenced > 0 {
        RedisCounters::add(&c.fenced, outcome.fenced);
        let fenced = Fenced {
            client: w.client.clone(),
            stored_epoch: outcome.stored_epoch,
        };
        if shared.fenced[shard].push(fenced).is_err() {
            RedisCounters::add(&c.fenced_dropped, 1);
        }
        return;
    }
    let Some(created) = w.index else { return };
    let mut conn = shared.conn.clone();
    let mut cmd = redis::cmd(if created { "SADD" } else { "SREM" });
    cmd.arg(super::keys::node_index(&shared.node))
        .arg(w.client.as_bytes());
    if cmd.query_async::<Value>(&mut conn).await.is_err() {
        RedisCounters::add(&c.index_errors, 1);
    }
}

async fn write_retained(shared: &Shared, r: &RetainedWrite) -> redis::RedisResult<Value> {
    let mut conn = shared.conn.clone();
    let cmd = match &r.record {
        Some(record) => {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&r.key).arg(r.topic.as_bytes()).arg(record);
            cmd
        }
        None => {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(&r.key).arg(r.topic.as_bytes());
            cmd
        }
    };
    cmd.query_async(&mut conn).await
}

/// `WAIT n timeout` on every master (the client sends it to all and keeps
/// the least count): each master's replicas acknowledged every write this
/// thread sent it. Fewer acks after the timeout is counted, not retried.
async fn wait_replicas(shared: &Shared) -> redis::RedisResult<()> {
    let mut conn = shared.conn.clone();
    let acked: i64 = redis::cmd("WAIT")
        .arg(shared.replica_acks)
        .arg(REDIS_REPLICA_ACK_TIMEOUT_MS)
        .query_async(&mut conn)
        .await?;
    if acked < i64::from(shared.replica_acks) {
        RedisCounters::add(&shared.counters.replica_ack_shortfalls, 1);
    }
    Ok(())
}
