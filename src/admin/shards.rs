//! How the admin API's client and metrics handlers reach the shards: one
//! question at a time to one shard ([`AskShards`], answered by the shard
//! services inbox), and the paging of a node-wide listing over the shards'
//! own listings (`plan_page`, pure).

use crate::limits;
use crate::shard::{AdminAnswer, AdminQuery, NodeHandle};
use std::future::Future;
use std::pin::Pin;

/// Why a shard gave no answer (the API says 503).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

pub type Asked = Pin<Box<dyn Future<Output = Result<AdminAnswer, Unavailable>> + Send>>;

/// The shards as the admin thread reaches them. Implemented by the shard
/// services inbox (`shard::NodeHandle`); the handlers' tests implement it
/// with canned shards.
pub trait AskShards: Send + Sync + 'static {
    fn shard_count(&self) -> usize;
    /// Runs `query` on shard `shard` and returns its answer.
    fn ask(&self, shard: usize, query: AdminQuery) -> Asked;
}

impl AskShards for NodeHandle {
    fn shard_count(&self) -> usize {
        self.shards()
    }

    fn ask(&self, shard: usize, query: AdminQuery) -> Asked {
        let call = self.call(shard, move |ctx| ctx.answer_admin(query));
        Box::pin(async move {
            call.await
                .map_err(|e| Unavailable(format!("shard {shard}: {e}")))
        })
    }
}

/// `ask`, bounded by `limits::ADMIN_SHARD_CALL_TIMEOUT`.
pub async fn ask(
    shards: &dyn AskShards,
    shard: usize,
    query: AdminQuery,
) -> Result<AdminAnswer, Unavailable> {
    match tokio::time::timeout(limits::ADMIN_SHARD_CALL_TIMEOUT, shards.ask(shard, query)).await {
        Ok(answer) => answer,
        Err(_) => Err(Unavailable(format!("shard {shard} gave no answer in time"))),
    }
}

/// `query` asked of every shard in turn; the answers in shard order.
pub async fn ask_all(
    shards: &dyn AskShards,
    query: AdminQuery,
) -> Result<Vec<AdminAnswer>, Unavailable> {
    let mut answers = Vec::with_capacity(shards.shard_count());
    for s in 0..shards.shard_count() {
        answers.push(ask(shards, s, query.clone()).await?);
    }
    Ok(answers)
}

/// Which rows of which shard make up a page: the node's listing is shard
/// 0's rows, then shard 1's, and so on. `counts[s]`: rows on shard `s`;
/// `skip`: rows before the page. Returns `(shard, skip, take)` per shard
/// the page touches.
pub fn plan_page(counts: &[usize], mut skip: usize, limit: usize) -> Vec<(usize, usize, usize)> {
    let mut plan = Vec::new();
    let mut left = limit;
    for (shard, &count) in counts.iter().enumerate() {
        if left == 0 {
            break;
        }
        if skip >= count {
            skip -= count;
            continue;
        }
        let take = left.min(count - skip);
        plan.push((shard, skip, take));
        left -= take;
        skip = 0;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_spans_shards_in_order() {
        let counts = [3, 0, 4, 2];
        assert_eq!(plan_page(&counts, 0, 2), vec![(0, 0, 2)]);
        assert_eq!(plan_page(&counts, 2, 3), vec![(0, 2, 1), (2, 0, 2)]);
        assert_eq!(plan_page(&counts, 3, 10), vec![(2, 0, 4), (3, 0, 2)]);
        assert_eq!(plan_page(&counts, 8, 5), vec![(3, 1, 1)]);
        assert!(plan_page(&counts, 9, 5).is_empty());
        assert!(plan_page(&counts, 100, 5).is_empty());
        assert!(plan_page(&[], 0, 5).is_empty());
    }

    #[test]
    fn pages_cover_every_row_once() {
        let counts = [5, 1, 0, 7, 3];
        let total: usize = counts.iter().sum();
        for limit in 1..=total + 1 {
            let mut seen = vec![Vec::new(); counts.len()];
            for page in 0..total.div_ceil(limit) {
                for (shard, skip, take) in plan_page(&counts, page * limit, limit) {
                    seen[shard].extend(skip..skip + take);
                }
            }
            for (shard, rows) in seen.iter().enumerate() {
                assert_eq!(
                    *rows,
                    (0..counts[shard]).collect::<Vec<_>>(),
                    "limit {limit}"
                );
            }
        }
    }
}
