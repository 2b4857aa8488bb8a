//! The cluster-wide clients API between the admin API's types
//! (`AdminQuery`, `AdminAnswer`, `PeerClients`) and the frames' types
//! (`ClientsQuestion`, `ClientsReply`), for `control::Control`.

use super::driver::query::{from_wire, PeerReplies};
use super::logic::proto::{ClientsQuestion, ClientsReply};
use crate::admin::{ControlError, PeerClients};
use crate::router::location::NodeId;
use crate::shard::{AdminAnswer, AdminQuery};

/// The question a peer is asked for `query`; only the clients questions
/// go to peers.
pub(super) fn question_of(query: AdminQuery) -> Result<ClientsQuestion, ControlError> {
    Ok(match query {
        AdminQuery::CountClients => ClientsQuestion::Count,
        AdminQuery::ListClients { skip, take } => ClientsQuestion::List {
            skip: skip as u64,
            take: take as u64,
        },
        AdminQuery::Client(client_id) => ClientsQuestion::Get { client_id },
        AdminQuery::Kick(client_id) => ClientsQuestion::Kick { client_id },
        other => {
            return Err(ControlError::BadRequest(format!(
                "not a question for other nodes: {other:?}"
            )))
        }
    })
}

/// Each peer's reply by name; a peer that could not answer (or gave an
/// answer of another question's shape) has none.
pub(super) fn answers(peers: &[(NodeId, String)], replies: PeerReplies) -> Vec<PeerClients> {
    replies
        .into_iter()
        .map(|(node, reply)| {
            let name = peers
                .iter()
                .find(|(n, _)| *n == node)
                .map_or_else(|| node.to_string(), |(_, name)| name.clone());
            let answer = match reply {
                Some(ClientsReply::Count(n)) => {
                    Some(AdminAnswer::Count(usize::try_from(n).unwrap_or(usize::MAX)))
                }
                Some(ClientsReply::Clients(c)) => {
                    Some(AdminAnswer::Clients(c.into_iter().map(from_wire).collect()))
                }
                Some(ClientsReply::Client(c)) => Some(AdminAnswer::Client(c.map(from_wire))),
                Some(ClientsReply::Kicked(k)) => Some(AdminAnswer::Kicked(k)),
                Some(ClientsReply::Unavailable(why)) => {
                    tracing::debug!(%name, %why, "a peer could not answer a clients question");
                    None
                }
                None => None,
            };
            PeerClients { node: name, answer }
        })
        .collect()
}
