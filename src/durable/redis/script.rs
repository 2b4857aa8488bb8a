//! The Lua scripts and how a group of batches becomes script calls
//! (sans-IO: plain data in, plain data out; the writer sends them).
//!
//! One client's ops of a group become ONE call of [`WRITE`] on that
//! client's slot, in order, so the change is atomic and a retried call is
//! idempotent: deliveries are keyed by `seq` (a second `HSET` of the same
//! seq rewrites it), removals of what is gone do nothing, and the meta
//! record is rewritten whole.

use std::collections::HashMap;
use std::sync::Arc;

use redis::Value;

use super::keys::{client_keys, retained_bucket, retained_key};
use super::record::{encode_delivery, encode_meta, encode_retained, session_records};
use crate::durable::{Batch, Op, SessionMeta};
use crate::limits::{INFLIGHT_MAX, MQUEUE_OVERSHOOT_MAX};

/// KEYS: own, meta, d. ARGV[1]: this node's name; then ops, each an opcode
/// and the writer's epoch followed by its arguments:
/// `S meta deadline dmax n (seq record){n}` (PutSession),
/// `M meta deadline dmax` (PutMeta), `D seq record` (PutDelivery),
/// `R seq` (RemoveDelivery), `X` (RemoveSession).
/// An op whose epoch is below the stored one is refused (fenced); only
/// `S` creates a session, so a stale writer cannot bring a removed one
/// back piecemeal (`gone`); a new delivery past `dmax` is refused (`full`).
/// Answers `{fenced, stored epoch, gone, full}`.
pub const WRITE: &str = r#"
local own, meta, d = KEYS[1], KEYS[2], KEYS[3]
local node = ARGV[1]
-- Numbers kept as the strings they came as too: Lua's tostring would
-- print a large one in exponent form.
local stored_s = redis.call('HGET', own, 'epoch') or '0'
local stored = tonumber(stored_s)
local deadline_s = redis.call('HGET', own, 'deadline') or '0'
local dmax_s = redis.call('HGET', own, 'dmax') or '0'
local dmax = tonumber(dmax_s)
local live = redis.call('EXISTS', meta) == 1
local fenced, gone, full = 0, 0, 0
local wrote, removed = false, false
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  local epoch = tonumber(ARGV[i + 1])
  local ok = epoch >= stored
  if not ok then fenced = fenced + 1 end
  if op == 'S' then
    local n = tonumber(ARGV[i + 5])
    if ok then
      stored, stored_s = epoch, ARGV[i + 1]
      redis.call('DEL', d)
      redis.call('SET', meta, ARGV[i + 2])
      deadline_s, dmax_s = ARGV[i + 3], ARGV[i + 4]
      dmax = tonumber(dmax_s)
      for j = 0, n - 1 do
        redis.call('HSET', d, ARGV[i + 6 + 2 * j], ARGV[i + 7 + 2 * j])
      end
      live, wrote, removed = true, true, false
    end
    i = i + 6 + 2 * n
  elseif op == 'M' then
    if ok and not live then gone = gone + 1 elseif ok then
      stored, stored_s = epoch, ARGV[i + 1]
      redis.call('SET', meta, ARGV[i + 2])
      deadline_s, dmax_s = ARGV[i + 3], ARGV[i + 4]
      dmax = tonumber(dmax_s)
      wrote = true
    end
    i = i + 5
  elseif op == 'D' then
    if ok and not live then gone = gone + 1 elseif ok then
      stored, stored_s = epoch, ARGV[i + 1]
      if redis.call('HEXISTS', d, ARGV[i + 2]) == 0 and redis.call('HLEN', d) >= dmax then
        full = full + 1
      else
        redis.call('HSET', d, ARGV[i + 2], ARGV[i + 3])
        wrote = true
      end
    end
    i = i + 4
  elseif op == 'R' then
    if ok and live then
      stored, stored_s = epoch, ARGV[i + 1]
      redis.call('HDEL', d, ARGV[i + 2])
      wrote = true
    end
    i = i + 3
  elseif op == 'X' then
    if ok then
      stored, stored_s = epoch, ARGV[i + 1]
      redis.call('DEL', meta, d)
      live, wrote, removed = false, false, true
    end
    i = i + 2
  else
    return redis.error_reply('ringmq: unknown op ' .. tostring(op))
  end
end
if removed and not live then
  -- Keeps fencing a stale owner for a while after the session ended.
  redis.call('HSET', own, 'epoch', stored_s, 'node', '', 'deadline', '0', 'dmax', '0')
  redis.call('PEXPIRE', own, TOMBSTONE_MS)
elseif wrote then
  redis.call('HSET', own, 'epoch', stored_s, 'node', node, 'deadline', deadline_s, 'dmax', dmax_s)
  for _, k in ipairs({own, meta, d}) do
    if deadline_s ~= '0' then redis.call('PEXPIREAT', k, deadline_s) else redis.call('PERSIST', k) end
  end
end
return {fenced, stored_s, gone, full}
"#;

/// KEYS: own, meta, d. ARGV: new epoch (0: read only), node.
/// With a new epoch above the stored one, takes the session: the owner
/// record gets the epoch and the node (fencing the old owner) and keeps
/// the session's TTL. Answers `{1, stored epoch}` when the new epoch is not
/// above it, else `{0, stored epoch, owner node, meta or '', HGETALL d}`.
pub const LOAD: &str = r#"
local own, meta, d = KEYS[1], KEYS[2], KEYS[3]
local new = tonumber(ARGV[1])
local stored_s = redis.call('HGET', own, 'epoch') or '0'
local stored = tonumber(stored_s)
local owner = redis.call('HGET', own, 'node') or ''
if new > 0 then
  if new <= stored then return {1, stored_s} end
  redis.call('HSET', own, 'epoch', ARGV[1], 'node', ARGV[2])
  owner = ARGV[2]
  local ttl = redis.call('PTTL', meta)
  if ttl == -2 then redis.call('PEXPIRE', own, TOMBSTONE_MS)
  elseif ttl == -1 then redis.call('PERSIST', own)
  else redis.call('PEXPIRE', own, ttl) end
end
local m = redis.call('GET', meta)
if not m then return {0, stored_s, owner, '', {}} end
return {0, stored_s, owner, m, redis.call('HGETALL', d)}
"#;

/// The scripts with the tombstone TTL written in.
pub fn sources() -> (String, String) {
    let tomb = crate::limits::REDIS_FENCE_TOMBSTONE_TTL_MS.to_string();
    (
        WRITE.replace("TOMBSTONE_MS", &tomb),
        LOAD.replace("TOMBSTONE_MS", &tomb),
    )
}

/// One script call: every op of one client in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientWrite {
    pub client: Arc<str>,
    pub keys: [Vec<u8>; 3],
    /// ARGV after the node name.
    pub args: Vec<Vec<u8>>,
    /// The last session-level op: created (`Some(true)`: add to the node
    /// index) or removed (`Some(false)`: take out of it).
    pub index: Option<bool>,
}

/// A retained message's final state in a group (the last op per topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedWrite {
    pub key: String,
    pub topic: Arc<str>,
    /// `None`: removed.
    pub record: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub clients: Vec<ClientWrite>,
    pub retained: Vec<RetainedWrite>,
    pub ops: usize,
    /// Ops whose record could not be encoded (over the size limit): logged
    /// and counted, never sent.
    pub refused: Vec<String>,
}

/// Most deliveries a session keeps in Redis: its queue, its window and the
/// overshoot a queue may take while full (src/limits.rs).
pub fn deliveries_max(queue_len_max: u32) -> u64 {
    u64::from(queue_len_max) + u64::from(INFLIGHT_MAX) + MQUEUE_OVERSHOOT_MAX as u64
}

fn meta_args(args: &mut Vec<Vec<u8>>, meta: &SessionMeta, bytes: Vec<u8>, op: &str, epoch: u64) {
    args.push(op.into());
    args.push(epoch.to_string().into_bytes());
    args.push(bytes);
    args.push(
        meta.expires_at_unix_ms
            .unwrap_or(0)
            .to_string()
            .into_bytes(),
    );
    args.push(deliveries_max(meta.queue_len_max).to_string().into_bytes());
}

/// The calls for a group of batches: one per client in first-seen order,
/// each with that client's ops in batch order; retained ops reduced to
/// the last one per topic.
pub fn plan(batches: &[Batch]) -> Plan {
    let mut plan = Plan::default();
    let mut by_client: HashMap<Arc<str>, usize> = HashMap::new();
    let mut by_topic: HashMap<Arc<str>, usize> = HashMap::new();
    // A delivery put and removed within this group: its puts are not sent;
    // its removal is, as the shard keeps it (every delivery's script checks
    // the owner, so a stale owner learns it is fenced on its next one).
    let mut skip = crate::durable::op::cancelled(batches);
    skip.retain(|&(b, o)| !matches!(batches[b].ops[o], Op::RemoveDelivery { .. }));
    let ops = batches.iter().enumerate().flat_map(|(b, batch)| {
        batch
            .ops
            .iter()
            .enumerate()
            .map(move |(o, op)| ((b, o), op))
    });
    for (at, op) in ops {
        if skip.contains(&at) {
            continue;
        }
        plan.ops += 1;
        let client = match op {
            Op::PutSession { client, .. }
            | Op::PutMeta { client, .. }
            | Op::PutDelivery { client, .. }
            | Op::PutDeliveryState { client, .. }
            | Op::RemoveDelivery { client, .. }
            | Op::RemoveSession { client, .. } => client,
            Op::PutRetained { topic, message } => {
                let record = match encode_retained(message) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        plan.refused.push(format!("retained {topic}: {e}"));
                        continue;
                    }
                };
                put_retained(&mut plan, &mut by_topic, topic, record);
                continue;
            }
            Op::RemoveRetained { topic } => {
                put_retained(&mut plan, &mut by_topic, topic, None);
                continue;
            }
        };
        let at = *by_client.entry(client.clone()).or_insert_with(|| {
            plan.clients.push(ClientWrite {
                client: client.clone(),
                keys: client_keys(client),
                args: Vec::new(),
                index: None,
            });
            plan.clients.len() - 1
        });
        let write = &mut plan.clients[at];
        if let Err(e) = push_op(write, op) {
            plan.refused.push(format!("client {client}: {e}"));
        }
    }
    plan.clients.retain(|w| !w.args.is_empty());
    plan
}

fn push_op(write: &mut ClientWrite, op: &Op) -> Result<(), super::record::RecordError> {
    let args = &mut write.args;
    match op {
        Op::PutSession {
            epoch, snapshot, ..
        } => {
            let (meta, deliveries) = session_records(snapshot, *epoch);
            let mut records = Vec::with_capacity(deliveries.len());
            for (seq, d) in &deliveries {
                records.push((seq.to_string().into_bytes(), encode_delivery(d)?));
            }
            let bytes = encode_meta(&meta)?;
            meta_args(args, &meta, bytes, "S", *epoch);
            args.push(records.len().to_string().into_bytes());
            for (seq, record) in records {
                args.push(seq);
                args.push(record);
            }
            write.index = Some(true);
        }
        Op::PutMeta { meta, .. } => {
            let bytes = encode_meta(meta)?;
            meta_args(args, meta, bytes, "M", meta.epoch);
        }
        Op::PutDelivery {
            epoch, seq, record, ..
        } => {
            let bytes = encode_delivery(record)?;
            args.extend([
                b"D".to_vec(),
                epoch.to_string().into_bytes(),
                seq.to_string().into_bytes(),
                bytes,
            ]);
        }
        Op::PutDeliveryState { seq, .. } => {
            // The shard writes whole deliveries to Redis (its handle does
            // not take states): refused and logged, never guessed.
            return Err(super::record::RecordError::Invalid(format!(
                "a state-only change of delivery {seq} reached the Redis backend"
            )));
        }
        Op::RemoveDelivery { epoch, seq, .. } => {
            args.extend([
                b"R".to_vec(),
                epoch.to_string().into_bytes(),
                seq.to_string().into_bytes(),
            ]);
        }
        Op::RemoveSession { epoch, .. } => {
            args.extend([b"X".to_vec(), epoch.to_string().into_bytes()]);
            write.index = Some(false);
        }
        Op::PutRetained { .. } | Op::RemoveRetained { .. } => unreachable!("handled by plan"),
    }
    Ok(())
}

fn put_retained(
    plan: &mut Plan,
    by_topic: &mut HashMap<Arc<str>, usize>,
    topic: &Arc<str>,
    record: Option<Vec<u8>>,
) {
    if let Some(&at) = by_topic.get(topic) {
        plan.retained[at].record = record;
        return;
    }
    by_topic.insert(topic.clone(), plan.retained.len());
    plan.retained.push(RetainedWrite {
        key: retained_key(retained_bucket(topic)),
        topic: topic.clone(),
        record,
    });
}

/// What [`WRITE`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    pub fenced: u64,
    pub stored_epoch: u64,
    pub gone: u64,
    pub full: u64,
}

pub fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn parse_write(v: &Value) -> Option<WriteOutcome> {
    let Value::Array(items) = v else { return None };
    let [fenced, stored, gone, full] = items.as_slice() else {
        return None;
    };
    Some(WriteOutcome {
        fenced: int(fenced)?,
        stored_epoch: int(stored)?,
        gone: int(gone)?,
        full: int(full)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::{DeliveryRecord, DeliveryState};
    use crate::session::snapshot::{DeliverySnapshot, MessageSnapshot};

    fn message(topic: &str) -> MessageSnapshot {
        MessageSnapshot {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"p"),
            qos: 1,
            retain: true,
            payload_format_indicator: None,
            message_expiry_interval_s: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
            content_type: None,
            origin: None,
            expires_at_unix_ms: None,
        }
    }

    fn put(client: &str, seq: u64) -> Op {
        Op::PutDelivery {
            client: client.into(),
            epoch: 3,
            seq,
            record: Box::new(DeliveryRecord {
                delivery: DeliverySnapshot {
                    message: message("t"),
                    qos: 1,
                    retain: false,
                    subscription_ids: vec![],
                    id: None,
                },
                state: DeliveryState::Queued,
            }),
            fresh: false,
        }
    }

    #[test]
    fn a_group_is_one_call_per_client_with_its_ops_in_order() {
        let remove = |client: &str, seq| Op::RemoveDelivery {
            client: client.into(),
            epoch: 3,
            seq,
        };
        let batches = [
            Batch {
                ticket: 1,
                ops: vec![put("a", 1), put("b", 1), remove("a", 1)],
            },
            Batch {
                ticket: 2,
                ops: vec![put("a", 2)],
            },
        ];
        let plan = plan(&batches);
        assert_eq!(plan.ops, 4);
        let clients: Vec<&str> = plan.clients.iter().map(|w| &*w.client).collect();
        assert_eq!(clients, ["a", "b"]);
        let a = &plan.clients[0];
        let codes: Vec<&[u8]> = a
            .args
            .iter()
            .filter(|x| x.len() == 1 && x[0].is_ascii_uppercase())
            .map(|x| x.as_slice())
            .collect();
        assert_eq!(codes, [b"D", b"R", b"D"]);
        assert_eq!(a.keys, client_keys("a"));
        assert_eq!(a.index, None);
    }

    #[test]
    fn retained_ops_keep_the_last_state_per_topic() {
        let batches = [Batch {
            ticket: 1,
            ops: vec![
                Op::PutRetained {
                    topic: "x".into(),
                    message: Box::new(message("x")),
                },
                Op::RemoveRetained { topic: "x".into() },
                Op::PutRetained {
                    topic: "y".into(),
                    message: Box::new(message("y")),
                },
            ],
        }];
        let plan = plan(&batches);
        assert!(plan.clients.is_empty());
        assert_eq!(plan.retained.len(), 2);
        assert_eq!(plan.retained[0].record, None);
        assert_eq!(plan.retained[0].key, retained_key(retained_bucket("x")));
        assert!(plan.retained[1].record.is_some());
    }

    #[test]
    fn session_ops_mark_the_node_index() {
        let batches = [Batch {
            ticket: 1,
            ops: vec![Op::RemoveSession {
                client: "a".into(),
                epoch: 1,
            }],
        }];
        assert_eq!(plan(&batches).clients[0].index, Some(false));
    }
}
