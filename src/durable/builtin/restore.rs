//! Reading a store at start: every record validated, sessions with their
//! deliveries in `seq` order, retained messages; deliveries without a
//! session are dropped (removed from the store) and counted.

use std::collections::{BTreeMap, HashMap};

use crate::durable::record::{
    self, decode_delivery, decode_meta, decode_retained, retained_key, session_key,
    split_delivery_key, RecordError,
};
use crate::durable::{Restored, StoredSession};

use super::{show_key, OpenError, Store, DELIVERIES, RETAINED, SESSIONS};

/// The stored epoch of each client, by its session key: the writer's
/// fencing of stale ops.
pub(crate) type Epochs = HashMap<Vec<u8>, u64>;

pub(crate) fn read_all(store: &Store) -> Result<(Restored, Epochs), OpenError> {
    let damaged = |e| OpenError::damaged(&store.path, e);
    let bad = |keyspace, key: &[u8], error| OpenError::Record {
        path: store.path.clone(),
        keyspace,
        key: show_key(key),
        error,
    };
    let mut sessions: BTreeMap<Vec<u8>, StoredSession> = BTreeMap::new();
    for guard in store.sessions.iter() {
        let (key, value) = guard.into_inner().map_err(damaged)?;
        let meta = decode_meta(&value).map_err(|e| bad(SESSIONS, &key, e))?;
        if session_key(&meta.client_id) != *key {
            let why = format!("it holds client id {:?}", meta.client_id);
            return Err(bad(SESSIONS, &key, RecordError::Invalid(why)));
        }
        sessions.insert(
            key.to_vec(),
            StoredSession {
                meta,
                deliveries: Vec::new(),
            },
        );
    }
    let mut orphans = Vec::new();
    for guard in store.deliveries.iter() {
        let (key, value) = guard.into_inner().map_err(damaged)?;
        let Some((client, seq)) = split_delivery_key(&key) else {
            let why = "the key is not client id, 0x00, seq".to_string();
            return Err(bad(DELIVERIES, &key, RecordError::Invalid(why)));
        };
        let delivery = decode_delivery(&value).map_err(|e| bad(DELIVERIES, &key, e))?;
        match sessions.get_mut(client) {
            Some(session) => session.deliveries.push((seq, delivery)),
            None => orphans.push(key),
        }
    }
    if !orphans.is_empty() {
        let mut batch = store.db.batch();
        for key in &orphans {
            batch.remove(&store.deliveries, key.clone());
        }
        batch.commit().map_err(damaged)?;
        tracing::warn!(
            store = %store.path.display(),
            dropped = orphans.len(),
            "dropped delivery records whose session has no meta record (a crash between a \
             session's removal and its deliveries'?)"
        );
    }
    let mut retained = Vec::new();
    for guard in store.retained.iter() {
        let (key, value) = guard.into_inner().map_err(damaged)?;
        let message = decode_retained(&value).map_err(|e| bad(RETAINED, &key, e))?;
        if retained_key(&message.topic) != *key {
            let why = format!("it holds topic {:?}", message.topic);
            return Err(bad(RETAINED, &key, RecordError::Invalid(why)));
        }
        retained.push((message.topic.clone(), message));
    }
    let epochs = sessions
        .iter()
        .map(|(key, s)| (key.clone(), s.meta.epoch))
        .collect();
    let restored = Restored {
        sessions: sessions.into_values().collect(),
        retained,
    };
    Ok((restored, epochs))
}

/// Writes `from` (another store's records) into `own`: per client the
/// higher epoch wins (equal: `from`, the same session moved twice), a
/// retained topic `own` holds keeps its record.
pub(crate) fn merge_into(own: &Store, from: Restored) -> Result<(), OpenError> {
    let damaged = |e| OpenError::damaged(&own.path, e);
    for session in from.sessions {
        let key = session_key(&session.meta.client_id);
        if let Some(bytes) = own.sessions.get(&key).map_err(damaged)? {
            let stored = decode_meta(&bytes).map_err(|error| OpenError::Record {
                path: own.path.clone(),
                keyspace: SESSIONS,
                key: show_key(&key),
                error,
            })?;
            if stored.epoch > session.meta.epoch {
                continue;
            }
        }
        let mut batch = own.db.batch();
        own.put_session(&mut batch, &session.meta, &session.deliveries)
            .map_err(|e| OpenError::Damaged {
                path: own.path.clone(),
                detail: e.to_string(),
            })?;
        batch.commit().map_err(damaged)?;
    }
    let mut batch = own.db.batch();
    for (topic, message) in from.retained {
        let key = retained_key(&topic);
        if !own.retained.contains_key(&key).map_err(damaged)? {
            let bytes = record::encode_retained(&message).map_err(|error| OpenError::Record {
                path: own.path.clone(),
                keyspace: RETAINED,
                key: show_key(&key),
                error,
            })?;
            batch.insert(&own.retained, key, bytes);
        }
    }
    batch.commit().map_err(damaged)
}
