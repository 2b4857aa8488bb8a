//! What nodes tell each other about evacuation and rebalance, and how a
//! command reaches a node by name: this node's own commands are served
//! directly, another node's go over the cluster
//! (`cluster::driver::rebalance`, frames 44 and 45) as JSON text.
//!
//! The answer is `Result<Value, Failure>`: the JSON the API would answer,
//! or the error it would answer (status, field, message), so a request
//! forwarded to another node gets that node's own answer.

use super::params::RebalanceParams;
use super::run::Rebalancer;
use crate::admin::{ClusterControl, NodeStatus};
use crate::cluster::driver::rebalance::{Incoming, RebalancePort};
use crate::router::location::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// One command to a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PeerCommand {
    /// `POST {node}/evacuation/start` for that node: the API's body.
    EvacuationStart {
        body: Value,
    },
    EvacuationStop,
    /// `POST {node}/start` for that node (it coordinates): the API's body.
    RebalanceStart {
        body: Value,
    },
    /// `POST {node}/stop`: stop the rebalance the node coordinates.
    RebalanceStop,
    /// The node's `status`, and its entries of `global_status`.
    Status,
    /// Take part in rebalance `id` as a donor or a recipient.
    Join(Box<Join>),
    /// The coordinator's tick: the rebalance's state, and what this
    /// participant evicts now. Answered with the node's counts.
    Tick(Tick),
    /// Rebalance `id` is over: back to normal.
    Leave {
        id: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Join {
    pub id: u64,
    pub coordinator: String,
    pub donor: bool,
    pub params: RebalanceParams,
    pub donors: Vec<String>,
    pub recipients: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tick {
    pub id: u64,
    /// `plan::State::as_str`.
    pub state: String,
    pub evict_connections: u64,
    pub evict_sessions: u64,
    /// What donors evict down to (the status's goals).
    pub connection_goal: u64,
    pub disconnected_session_goal: u64,
}

/// A participant's answer to a tick: its counts after this tick's
/// evictions, and what became of the sessions it was asked to move.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TickAnswer {
    pub connected: u64,
    pub sessions: u64,
    pub disconnected_sessions: u64,
    pub sessions_moved: u64,
    pub sessions_failed: u64,
}

/// An error as the API answers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}

impl Failure {
    pub fn bad_request(field: Option<&str>, message: impl Into<String>) -> Failure {
        Failure {
            status: 400,
            code: "BAD_REQUEST".into(),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Failure {
        Failure {
            status: 503,
            code: "SERVICE_UNAVAILABLE".into(),
            field: None,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Failure {
        Failure {
            status: 500,
            code: "INTERNAL_ERROR".into(),
            field: None,
            message: message.into(),
        }
    }
}

pub type Answer = Result<Value, Failure>;

/// This node's reach into the cluster: the membership (which nodes run)
/// and the port commands go through.
pub struct Peers {
    pub control: Arc<dyn ClusterControl>,
    pub port: RebalancePort,
    /// Peers' commands, until the admin thread's runtime takes them
    /// (`Rebalancer::spawn_services`).
    pub incoming: Mutex<Option<tokio::sync::mpsc::Receiver<Incoming>>>,
}

impl Rebalancer {
    /// The running nodes, this one first.
    pub async fn running_nodes(&self) -> Vec<String> {
        let mut nodes = vec![self.node_name.clone()];
        if let Some(p) = self.peers.get() {
            let peers =
                tokio::time::timeout(crate::limits::ADMIN_SHARD_CALL_TIMEOUT, p.control.peers())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            nodes.extend(
                peers
                    .into_iter()
                    .filter(|n| n.node_status == NodeStatus::Running)
                    .map(|n| n.node),
            );
        }
        nodes
    }

    /// `command` served by node `node`: here, or asked over the cluster.
    /// A named boxed future: serving a start asks nodes again (this one
    /// too), and the recursion needs a type.
    pub fn ask<'a>(
        self: &'a Arc<Self>,
        node: &'a str,
        command: PeerCommand,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
        Box::pin(self.ask_inner(node, command))
    }

    async fn ask_inner(self: &Arc<Self>, node: &str, command: PeerCommand) -> Answer {
        if node == self.node_name {
            return self.serve(command).await;
        }
        let Some(p) = self.peers.get() else {
            return Err(Failure::bad_request(
                Some("node"),
                format!("node {node} is not running"),
            ));
        };
        let text = serde_json::to_string(&command).expect("serializes");
        let answer = p
            .port
            .ask(NodeId::from_name(node), text)
            .await
            .map_err(|e| Failure::unavailable(format!("node {node}: {e}")))?;
        serde_json::from_str::<Answer>(&answer)
            .map_err(|e| Failure::internal(format!("node {node} answered malformed JSON: {e}")))?
    }

    /// Serves the peers' commands on the admin thread's runtime, each in
    /// its own task (a tick evicts through the shards meanwhile).
    pub(super) fn spawn_peer_service(self: &Arc<Self>) {
        let Some(p) = self.peers.get() else {
            return;
        };
        let Some(mut incoming) = p.incoming.lock().expect("not poisoned").take() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(Incoming {
                from,
                command,
                reply,
            }) = incoming.recv().await
            {
                let me = me.clone();
                tokio::spawn(async move {
                    let answer: Answer = match serde_json::from_str::<PeerCommand>(&command) {
                        Ok(c) => me.serve(c).await,
                        Err(e) => {
                            tracing::warn!(%from, error = %e, "rebalance: a peer's command is malformed");
                            Err(Failure::bad_request(
                                None,
                                format!("malformed command: {e}"),
                            ))
                        }
                    };
                    let _ = reply.send(serde_json::to_string(&answer).expect("serializes"));
                });
            }
        });
    }

    /// One command to this node.
    pub async fn serve(self: &Arc<Self>, command: PeerCommand) -> Answer {
        match command {
            PeerCommand::EvacuationStart { body } => self.evacuation_start_body(&body).await,
            PeerCommand::EvacuationStop => self
                .stop_evacuation()
                .map(|()| serde_json::json!({}))
                .map_err(|e| Failure::bad_request(None, e.to_string())),
            PeerCommand::RebalanceStart { body } => self.rebalance_start_body(&body).await,
            PeerCommand::RebalanceStop => self.stop_rebalance().await,
            PeerCommand::Status => Ok(serde_json::json!({
                "counts": self.count().await.ok().map(|c| TickAnswer {
                    connected: c.connected,
                    sessions: c.sessions,
                    disconnected_sessions: c.disconnected_sessions,
                    ..TickAnswer::default()
                }),
                "status": self.status(),
                "evacuation": self.evacuation_entry(),
                "rebalance": self.rebalance_entry(),
            })),
            PeerCommand::Join(join) => self.join(*join),
            PeerCommand::Tick(tick) => self.tick(tick).await,
            PeerCommand::Leave { id } => {
                self.leave(id, "the coordinator ended it");
                Ok(serde_json::json!({}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_answers_keep_their_shape_through_json() {
        let join = PeerCommand::Join(Box::new(Join {
            id: 7,
            coordinator: "a@h".into(),
            donor: true,
            params: RebalanceParams::default(),
            donors: vec!["a@h".into()],
            recipients: vec!["b@h".into()],
        }));
        let text = serde_json::to_string(&join).unwrap();
        assert!(text.starts_with(r#"{"op":"join","id":7,"#), "{text}");
        let PeerCommand::Join(back) = serde_json::from_str(&text).unwrap() else {
            panic!("a join: {text}")
        };
        assert!(back.donor && back.params == RebalanceParams::default());
        // A forwarded answer is the other node's own: its error, or its
        // value (not the value wrapped in the result).
        let failed: Answer = Err(Failure::bad_request(Some("nodes"), "nodes: no"));
        let text = serde_json::to_string(&failed).unwrap();
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), failed);
        let ok: Answer = Ok(serde_json::json!({"state": "evicting_conns"}));
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), ok);
        assert!(serde_json::from_str::<PeerCommand>(r#"{"op":"reboot"}"#).is_err());
    }
}
