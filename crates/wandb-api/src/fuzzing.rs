//! Entry points for the fuzz targets in `fuzz/` (hidden; not part of the API): every
//! operation's response decoder, run on bytes as if the server had sent them.

use graphql_client::GraphQLQuery;
use rlaunch_model::ApiKey;

use crate::error::Result;
use crate::ops;
use crate::transport::{decode_graphql, error_message};
use crate::types::PoppedItem;

/// What one decode produced.
#[derive(Debug)]
pub enum Decoded {
    /// The body matched the operation's `data`.
    Data,
    /// `popFromRunQueue` answered with an item, turned into what the agent sees.
    Popped(PoppedItem),
    /// `popFromRunQueue` answered with no item (the queue is empty).
    Empty,
}

type Decoder = fn(&[u8], &ApiKey) -> Result<Decoded>;

macro_rules! decoders {
    ($($op:ident),* $(,)?) => {
        /// Every operation's name and decoder, in a fixed order.
        pub const OPERATIONS: &[(&str, Decoder)] = &[$((stringify!($op), |body, key| {
            decode_graphql::<<ops::$op as GraphQLQuery>::ResponseData>(stringify!($op), body, key)
                .map(|_| Decoded::Data)
        }),)*];
    };
}

decoders!(
    Viewer,
    ProjectRunQueues,
    CreateRunQueue,
    CreateLaunchAgent,
    EntityIsTeam,
    LaunchAgent,
    UpdateLaunchAgent,
    AckRunQueueItem,
    FailRunQueueItem,
    UpdateRunQueueItemWarning,
    RunStoppedStatus,
    RunState,
    PushToRunQueueByName,
    UpsertBucket,
    CreateRunFiles,
    ArtifactByName,
    ArtifactFiles,
);

/// Decodes `body` as operation number `operation` (modulo the count; the last number is
/// `popFromRunQueue`, whose item goes through the same parsing as in the client).
pub fn decode_response(operation: usize, body: &[u8], key: &ApiKey) -> Result<Decoded> {
    let index = operation % (OPERATIONS.len() + 1);
    match OPERATIONS.get(index) {
        Some((_, decode)) => decode(body, key),
        None => decode_pop(body, key),
    }
}

fn decode_pop(body: &[u8], key: &ApiKey) -> Result<Decoded> {
    type Data = <ops::PopFromRunQueue as GraphQLQuery>::ResponseData;
    let data: Data = decode_graphql("popFromRunQueue", body, key)?;
    Ok(match data.pop_from_run_queue {
        Some(payload) => Decoded::Popped(ops::parse_popped(
            payload.run_queue_item_id,
            payload.run_spec,
        )),
        None => Decoded::Empty,
    })
}

/// The message the client puts in an error for a failed HTTP answer with this body.
pub fn failed_answer_message(body: &[u8], key: &ApiKey) -> String {
    error_message(body, key)
}

/// How long a `Retry-After` header with this value makes the client wait, at `now`.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    crate::transport::parse_retry_after(value, now)
}
