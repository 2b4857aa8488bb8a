//! Running the takeover's shard jobs (`super::ShardJob`) through the
//! shards' inboxes, from the driver's tokio thread.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::{JobDone, Role, ShardJob};
use crate::cluster::driver::session_push::AdoptJob;
use crate::limits::CLUSTER_DRIVER_RETRY_MS;
use crate::router::location::ShardId;
use crate::shard::{CallError, NodeHandle, ShardContext};

/// The logic's role for a member's.
pub fn role_of(role: crate::cluster::net::Role) -> Role {
    match role {
        crate::cluster::net::Role::Core => Role::Core,
        crate::cluster::net::Role::Replicant => Role::Replicant,
    }
}

/// Runs `f` on shard `shard`, waiting for room in a full inbox (a storm
/// of takeovers must not lose one to a busy shard).
async fn call_with_room<R, F, Fut>(node: &NodeHandle, shard: ShardId, f: F) -> Result<R, CallError>
where
    R: Send + 'static,
    F: Fn(ShardContext) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    loop {
        match node.call_async(usize::from(shard), f.clone()).await {
            Err(CallError::Full) => {
                tokio::time::sleep(Duration::from_millis(CLUSTER_DRIVER_RETRY_MS)).await
            }
            other => return other,
        }
    }
}

/// Runs `job` on its shard; `None` when nothing comes back (an evict).
/// A shard that stopped answers nothing: the node is stopping.
/// Adopts a session a peer pushed (`super::super::session_push`) on the
/// job's shard; whether this node holds it now.
pub async fn run_adopt(node: &NodeHandle, job: &AdoptJob) -> bool {
    let id = job.client_id.clone();
    let adopt = move |ctx: ShardContext| ctx.adopt_pushed(id.clone());
    call_with_room(node, job.shard, adopt)
        .await
        .unwrap_or_else(|e| {
            warn!(client_id = %job.client_id, "session push: adoption not run: {e}");
            false
        })
}

pub async fn run_job(node: &NodeHandle, job: ShardJob) -> Option<JobDone> {
    match job {
        ShardJob::Export {
            client_id,
            shard,
            to,
        } => {
            let id = client_id.clone();
            let export = move |ctx: ShardContext| ctx.export_to_peer(id.clone(), to);
            let snapshot = call_with_room(node, shard, export)
                .await
                .unwrap_or_else(|e| {
                    warn!(%client_id, "cluster takeover: export not run: {e}");
                    None
                });
            Some(JobDone::Exported {
                client_id,
                snapshot,
            })
        }
        ShardJob::EndExport {
            client_id,
            shard,
            send_to,
        } => {
            let id = client_id.clone();
            let end = move |ctx: ShardContext| ctx.end_export(id.clone());
            let held = call_with_room(node, shard, end).await.unwrap_or_else(|e| {
                warn!(%client_id, "cluster takeover: held deliveries lost: {e}");
                Vec::new()
            });
            send_to.map(|(to, epoch)| JobDone::Held {
                client_id,
                to,
                epoch,
                held,
            })
        }
        ShardJob::Evict { client_id, shard } => {
            let id = client_id.clone();
            let evict = move |ctx: ShardContext| ctx.evict(id.clone());
            if let Err(e) = call_with_room(node, shard, evict).await {
                warn!(%client_id, "cluster takeover: evict not run: {e}");
            }
            None
        }
    }
}
