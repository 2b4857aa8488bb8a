//! Authenticating a CONNECT (`crate::authn`): decided on the shard when no
//! password needs checking, else handed to the password workers and
//! awaited on this connection's task, so the shard serves its other
//! clients meanwhile.

use super::super::state::Shard;
use crate::authn::{reply, Verdict};
use crate::codec::{connack_v3, Connect, ReasonCode};
use crate::limits::AUTHN_THROTTLE_DELAY;
use std::net::SocketAddr;

/// Why a CONNECT is refused: its v5 and 3.1.1 codes.
pub(super) struct Refused {
    pub(super) v5: ReasonCode,
    pub(super) v3: ReasonCode,
}

/// `Ok(superuser)` when the client may connect.
pub(super) async fn authenticate(
    shard: &Shard,
    peer: Option<SocketAddr>,
    connect: &Connect,
) -> Result<bool, Refused> {
    let Some(authn) = &shard.settings.session.authn else {
        return Ok(false);
    };
    let username = connect.username.as_deref();
    let verdict = match authn.quick(username) {
        Some(verdict) => verdict,
        None => {
            let (answer_tx, answer) = reply();
            let submitted = authn.submit(
                peer.map(|p| p.ip()),
                username.unwrap_or_default().to_string(),
                connect.password.as_ref().map(|p| p.to_vec()),
                move |verdict| answer_tx.send(verdict),
            );
            if submitted.is_err() {
                tracing::warn!(
                    shard = shard.id,
                    ?peer,
                    "password checks queue full: refused"
                );
                return Err(Refused {
                    v5: ReasonCode::SERVER_BUSY,
                    v3: connack_v3::SERVER_UNAVAILABLE,
                });
            }
            // A worker always answers; `None` only if it died.
            answer.await.unwrap_or(Verdict::BadCredentials)
        }
    };
    let bad_credentials = Refused {
        v5: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        v3: connack_v3::BAD_USER_NAME_OR_PASSWORD,
    };
    match verdict {
        Verdict::Accept { superuser } => Ok(superuser),
        Verdict::BadCredentials => Err(bad_credentials),
        Verdict::Throttled => {
            glommio::timer::sleep(AUTHN_THROTTLE_DELAY).await;
            Err(bad_credentials)
        }
        Verdict::NotAuthorized => {
            tracing::info!(shard = shard.id, ?peer, "anonymous client refused");
            Err(Refused {
                v5: ReasonCode::NOT_AUTHORIZED,
                v3: connack_v3::NOT_AUTHORIZED,
            })
        }
    }
}
