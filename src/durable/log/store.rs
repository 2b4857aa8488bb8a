//! [`LogStore`]: a log store's files. Opening reads every segment twice
//! (the index first, then the live records decoded), cuts a torn tail off
//! the last segment and refuses damage anywhere else; the writer then
//! appends groups to the head segment, rotates it, and compacts the
//! oldest segment by copying its live records to the head.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::durable::builtin::{show_key, OpenError};
use crate::durable::record::{
    check_delivery, decode_delivery_in_group, decode_meta_in_group, decode_retained_in_group,
    RecordError,
};
use crate::durable::{Restored, StoredSession};
use crate::limits::{
    DURABLE_LOG_BUSY_SLACK_BYTES, DURABLE_LOG_COMPACT_MIN_BYTES, DURABLE_LOG_SEGMENT_BYTES,
};

use super::index::{Index, Loc};
use super::segment::{self, Group, Kind, SEGMENT_HEADER_BYTES};
use super::state;

pub(crate) struct LogStore {
    pub path: PathBuf,
    head: File,
    head_number: u64,
    head_len: u64,
    pub index: Index,
    /// Held (flock) while the store is open.
    _lock: File,
}

fn segment_name(number: u64) -> String {
    format!("{number:020}.seg")
}

fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl LogStore {
    /// Opens (creating it if new) the store in `path` and reads it.
    pub(crate) fn open(path: &Path) -> Result<(LogStore, Restored), OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let lock = lock(path)?;
        let numbers = list_segments(path).map_err(io)?;
        let damaged = |detail: String| OpenError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        if let Some(w) = numbers.windows(2).find(|w| w[1] != w[0] + 1) {
            return Err(damaged(format!(
                "segment {} is missing (the store holds {} and {})",
                segment_name(w[0] + 1),
                segment_name(w[0]),
                segment_name(w[1])
            )));
        }
        // Pass 1: the index.
        let mut index = Index::default();
        for (i, &number) in numbers.iter().enumerate() {
            let file = path.join(segment_name(number));
            let bytes = std::fs::read(&file).map_err(io)?;
            let last = i + 1 == numbers.len();
            let parsed = segment::parse(&bytes, number, last)
                .map_err(|d| damaged(format!("segment {}: {d}", file.display())))?;
            index.add_segment(number, 0);
            for r in &parsed.records {
                let loc = Loc {
                    segment: number,
                    at: r.at,
                    len: r.len,
                };
                if r.kind == Kind::DeliveryState {
                    // Checked here, as the index keeps its bytes.
                    state::decode(r.value).map_err(|why| {
                        damaged(format!("segment {} at {}: {why}", file.display(), r.at))
                    })?;
                }
                index.apply(r.kind, r.name, r.number, loc, r.value);
            }
            let end = parsed.torn_at.unwrap_or(bytes.len() as u64);
            if let Some(at) = parsed.torn_at {
                cut_torn_tail(&file, number, at).map_err(io)?;
                tracing::warn!(
                    segment = %file.display(),
                    at,
                    dropped_bytes = bytes.len() as u64 - at,
                    "durable store: cut a torn tail (a write cut by a crash, never acknowledged \
                     as synced)"
                );
            }
            index.set_total(number, end.max(SEGMENT_HEADER_BYTES as u64));
        }
        // Pass 2: the live records, decoded.
        let restored = decode_live(path, &numbers, &index)?;
        let orphans = index.orphans();
        let (head, head_number, head_len) = match numbers.last() {
            Some(&n) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path.join(segment_name(n)))
                    .map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                (file, n, len)
            }
            None => {
                let file = create_segment(path, 1).map_err(io)?;
                index.add_segment(1, SEGMENT_HEADER_BYTES as u64);
                (file, 1, SEGMENT_HEADER_BYTES as u64)
            }
        };
        let mut store = LogStore {
            path: path.to_path_buf(),
            head,
            head_number,
            head_len,
            index,
            _lock: lock,
        };
        if !orphans.is_empty() {
            let mut group = Group::new();
            for client in &orphans {
                store.record(&mut group, Kind::RemoveSession, client, 0, &[]);
            }
            store.write(group).and_then(|_| store.sync()).map_err(io)?;
            tracing::warn!(
                store = %path.display(),
                dropped = orphans.len(),
                "dropped the deliveries of clients with no session meta record"
            );
        }
        Ok((store, restored))
    }

    /// Adds a record to `group` (to be written by [`LogStore::write`]) and
    /// to the index, at the place it will have.
    pub(crate) fn record(
        &mut self,
        group: &mut Group,
        kind: Kind,
        name: &str,
        number: u64,
        value: &[u8],
    ) {
        let (at, len) = group.push(kind, name, number, value);
        self.noted(kind, name, number, at, len, value);
    }

    /// [`LogStore::record`] of a record whose value `value` encodes in
    /// place (`durable::record::append_*_for_group`).
    pub(crate) fn record_with(
        &mut self,
        group: &mut Group,
        kind: Kind,
        name: &str,
        number: u64,
        value: impl FnOnce(&mut Vec<u8>) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        debug_assert_ne!(kind, Kind::DeliveryState, "the index reads a state's bytes");
        let (at, len) = group.push_with(kind, name, number, value)?;
        self.noted(kind, name, number, at, len, &[]);
        Ok(())
    }

    fn noted(&mut self, kind: Kind, name: &str, number: u64, at: usize, len: u32, value: &[u8]) {
        let loc = Loc {
            segment: self.head_number,
            at: self.head_len + at as u64,
            len,
        };
        self.index.apply(kind, name, number, loc, value);
    }

    /// Appends `group` to the head segment (not synced) and gives its
    /// buffer back for the next group. A failed write leaves the index
    /// ahead of the file: the writer stops on it.
    pub(crate) fn write(&mut self, group: Group) -> std::io::Result<Vec<u8>> {
        if group.is_empty() {
            return Ok(group.finish());
        }
        let bytes = group.finish();
        self.head.write_all(&bytes)?;
        self.head_len += bytes.len() as u64;
        self.index.set_total(self.head_number, self.head_len);
        Ok(bytes)
    }

    /// `fdatasync` of the head segment (earlier segments were synced when
    /// they stopped being the head).
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.head.sync_data()
    }

    /// Begins a new head segment once this one is full.
    pub(crate) fn rotate_if_full(&mut self) -> std::io::Result<()> {
        if self.head_len >= DURABLE_LOG_SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.head.sync_data()?;
        let number = self.head_number + 1;
        self.head = create_segment(&self.path, number)?;
        self.head_number = number;
        self.head_len = SEGMENT_HEADER_BYTES as u64;
        self.index.add_segment(number, SEGMENT_HEADER_BYTES as u64);
        Ok(())
    }

    /// Whether a compaction step is due. A fully dead oldest segment
    /// always is (it is deleted unread). Copying live records is due when
    /// the store holds more than twice its live bytes, and, while the
    /// writer is `busy` (its last write was large), only once the dead
    /// bytes exceed `DURABLE_LOG_BUSY_SLACK_BYTES` too: under a moving
    /// queue the oldest segment's records die by themselves moments later,
    /// and copying them was the writer's largest avoidable cost
    /// (docs/benchmarks.md, "The log engine").
    pub(crate) fn wants_compaction(&self, busy: bool) -> bool {
        if self.oldest_is_dead() {
            return true;
        }
        let (total, live) = self.index.bytes();
        match busy {
            true => total > 2 * live + DURABLE_LOG_BUSY_SLACK_BYTES,
            false => total > DURABLE_LOG_COMPACT_MIN_BYTES && total > 2 * live,
        }
    }

    /// The oldest segment is not the head and holds no live record.
    pub(crate) fn oldest_is_dead(&self) -> bool {
        self.index
            .segments()
            .next()
            .is_some_and(|(n, b)| n != self.head_number && b.live == 0)
    }

    /// One step of compaction: the oldest segment's live records are
    /// copied to the head (a new segment first if the head is the only
    /// one), synced, and the segment is deleted. Returns the bytes freed.
    pub(crate) fn compact_step(&mut self) -> std::io::Result<u64> {
        let oldest = self.index.segments().next().map(|(n, _)| n);
        let Some(oldest) = oldest else { return Ok(0) };
        if oldest == self.head_number {
            self.rotate()?;
        }
        let file = self.path.join(segment_name(oldest));
        let dead = self
            .index
            .segments()
            .next()
            .is_some_and(|(_, b)| b.live == 0);
        if dead {
            // Nothing to copy (the common case once queues drain).
            let freed = std::fs::metadata(&file)?.len();
            std::fs::remove_file(&file)?;
            sync_dir(&self.path)?;
            self.index.remove_segment(oldest);
            return Ok(freed);
        }
        let bytes = std::fs::read(&file)?;
        let parsed = segment::parse(&bytes, oldest, false).map_err(|d| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("segment {} cannot be compacted: {d}", file.display()),
            )
        })?;
        let mut group = Group::new();
        let mut moved = Vec::new();
        for r in &parsed.records {
            let from = Loc {
                segment: oldest,
                at: r.at,
                len: r.len,
            };
            if !self.index.is_live(r.kind, r.name, r.number, from) {
                continue;
            }
            let delivery = self.index.delivery(r.name, r.number);
            if r.kind == Kind::DeliveryState && delivery.is_some_and(|d| d.record.segment == oldest)
            {
                // Written again right after its delivery's copy (below).
                continue;
            }
            let (at, len) = group.push_raw(&bytes[r.at as usize..r.at as usize + r.len as usize]);
            moved.push((r.kind, r.name, r.number, at, len));
            if r.kind == Kind::Delivery {
                // Its state follows it, so the state stays after it in
                // the log (the index's rule for a live state record).
                if let Some((_, state)) = delivery.and_then(|d| d.state) {
                    let (at, len) = group.push(Kind::DeliveryState, r.name, r.number, &state);
                    moved.push((Kind::DeliveryState, r.name, r.number, at, len));
                }
            }
        }
        let base = self.head_len;
        for &(kind, name, number, at, len) in &moved {
            let to = Loc {
                segment: self.head_number,
                at: base + at as u64,
                len,
            };
            self.index.relocate(kind, name, number, to);
        }
        self.write(group)?;
        // The copies are on disk before the originals go.
        self.sync()?;
        std::fs::remove_file(&file)?;
        sync_dir(&self.path)?;
        let freed = bytes.len() as u64;
        self.index.remove_segment(oldest);
        Ok(freed)
    }
}

fn lock(path: &Path) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join("LOCK"))
        .map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    // SAFETY: flock on a descriptor `file` owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(OpenError::Locked {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

fn list_segments(path: &Path) -> std::io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(path)? {
        if let Some(n) = entry?.file_name().to_str().and_then(segment_number) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn create_segment(dir: &Path, number: u64) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(segment_name(number)))?;
    file.write_all(&segment::header(number))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

fn cut_torn_tail(file: &Path, number: u64, at: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(file)?;
    if at < SEGMENT_HEADER_BYTES as u64 {
        // The header itself was cut: write it whole.
        f.set_len(0)?;
        let mut f = f;
        f.write_all(&segment::header(number))?;
        return f.sync_all();
    }
    f.set_len(at)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Pass 2 of opening: every live record decoded and checked.
fn decode_live(path: &Path, numbers: &[u64], index: &Index) -> Result<Restored, OpenError> {
    let bad = |keyspace, name: &str, error| OpenError::Record {
        path: path.to_path_buf(),
        keyspace,
        key: show_key(name.as_bytes()),
        error,
    };
    let mut sessions: BTreeMap<String, StoredSession> = BTreeMap::new();
    let mut deliveries: Vec<(String, u64, crate::durable::DeliveryRecord)> = Vec::new();
    let mut retained = BTreeMap::new();
    for &number in numbers {
        let file = path.join(segment_name(number));
        let bytes = std::fs::read(&file).map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Pass 1 read it (and cut its tail): it parses.
        let parsed = segment::parse(&bytes, number, true).map_err(|d| OpenError::Damaged {
            path: path.to_path_buf(),
            detail: format!("segment {}: {d}", file.display()),
        })?;
        for r in &parsed.records {
            let loc = Loc {
                segment: number,
                at: r.at,
                len: r.len,
            };
            if !index.is_live(r.kind, r.name, r.number, loc) {
                continue;
            }
            match r.kind {
                Kind::Meta => {
                    let meta =
                        decode_meta_in_group(r.value).map_err(|e| bad("sessions", r.name, e))?;
                    if meta.client_id != r.name {
                        let why = format!("it holds client id {:?}", meta.client_id);
                        return Err(bad("sessions", r.name, RecordError::Invalid(why)));
                    }
                    sessions.insert(
                        r.name.to_string(),
                        StoredSession {
                            meta,
                            deliveries: Vec::new(),
                        },
                    );
                }
                Kind::Delivery => {
                    let mut d = decode_delivery_in_group(r.value)
                        .map_err(|e| bad("deliveries", r.name, e))?;
                    // Its last state record, checked in pass 1.
                    if let Some((_, state)) = index.delivery(r.name, r.number).and_then(|d| d.state)
                    {
                        d.state = state::decode(&state)
                            .map_err(|why| bad("deliveries", r.name, RecordError::Invalid(why)))?;
                        // The state must fit the delivery's QoS.
                        check_delivery(&d).map_err(|e| bad("deliveries", r.name, e))?;
                    }
                    deliveries.push((r.name.to_string(), r.number, d));
                }
                Kind::Retained => {
                    let m = decode_retained_in_group(r.value)
                        .map_err(|e| bad("retained", r.name, e))?;
                    if m.topic != r.name {
                        let why = format!("it holds topic {:?}", m.topic);
                        return Err(bad("retained", r.name, RecordError::Invalid(why)));
                    }
                    retained.insert(r.name.to_string(), m);
                }
                _ => {}
            }
        }
    }
    for (client, seq, d) in deliveries {
        // Deliveries without a meta (orphans) are dropped by the caller.
        if let Some(s) = sessions.get_mut(&client) {
            s.deliveries.push((seq, d));
        }
    }
    for s in sessions.values_mut() {
        s.deliveries.sort_unstable_by_key(|(seq, _)| *seq);
    }
    Ok(Restored {
        sessions: sessions.into_values().collect(),
        retained: retained.into_iter().collect(),
    })
}
