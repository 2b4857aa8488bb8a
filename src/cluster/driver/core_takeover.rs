//! The takeover side of the driver's core (`super`): the shards' claims
//! and imports, membership roles and the shard jobs, handed to
//! `super::super::takeover::TakeoverGlue`.

use super::Core;
use crate::cluster::driver::port::ToDriver;
use crate::cluster::driver::session_push::AdoptJob;
use crate::cluster::driver::takeover::{JobDone, ShardJob};
use crate::cluster::logic::homes::Role;
use crate::router::location::NodeId;

impl Core {
    /// This node's own role (core nodes home client ids).
    pub fn set_role(&mut self, role: Role) {
        self.takeover.set_role(role);
    }

    /// A peer is running with `role` (after `handle_member_up`); `again`:
    /// it was already (a new link or a restart).
    pub fn handle_member_role(&mut self, node: NodeId, role: Role, again: bool, now_ms: u64) {
        if node == self.here {
            return;
        }
        self.takeover.handle_member_up(node, role, now_ms);
        if again {
            self.takeover.handle_link_renewed(node, now_ms);
        }
        self.pump();
    }

    pub(super) fn handle_takeover_request(&mut self, request: ToDriver, now_ms: u64) {
        match request {
            ToDriver::Claim {
                client_id,
                at,
                answer,
            } => self.takeover.handle_claim(client_id, at, answer, now_ms),
            ToDriver::Imported { client_id, held } => {
                self.takeover.handle_imported(client_id, held, now_ms)
            }
            ToDriver::SessionEnded { client_id, at } => {
                self.takeover.handle_session_ended(&client_id, at, now_ms)
            }
            _ => unreachable!("only takeover requests come here"),
        }
    }

    /// A shard finished a takeover job.
    pub fn handle_takeover_done(&mut self, done: JobDone, now_ms: u64) {
        self.takeover.handle_job_done(done, now_ms);
        self.pump();
    }

    /// The next job for a shard (kick and export, end an export, evict).
    pub fn poll_takeover_job(&mut self) -> Option<ShardJob> {
        self.takeover.poll_job()
    }

    /// The next session a peer pushed here, for a shard to adopt.
    pub fn poll_adopt_job(&mut self) -> Option<AdoptJob> {
        self.pushes.poll_job()
    }

    /// A shard ran an adopt job: answer the node that pushed.
    pub fn handle_adopted(&mut self, job: AdoptJob, moved: bool) {
        self.pushes.handle_adopted(job, moved);
        self.pump();
    }
}
