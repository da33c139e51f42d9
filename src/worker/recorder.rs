//! Group commit for the hot path: robot tasks hand their sent messages to the replica's
//! recorder, whose writers each write whatever has gathered in a single commit. Each task still waits for
//! its own message to be recorded before sending the next, so a crash can duplicate at most
//! the one message in flight per robot.

use crate::store::{SentRecord, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// At most this many messages per commit.
const MAX_BATCH: usize = 256;
/// Commits in flight at once: while one batch is being written the next gathers and goes.
const WRITERS: usize = 4;

struct Request {
    record: SentRecord,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The replica's recorder; cheap to share, it stops when the last handle is dropped.
pub(crate) struct Recorder {
    requests: mpsc::Sender<Request>,
}

impl Recorder {
    /// Start the recorder task for `worker_id`.
    pub(crate) fn start(store: Store, worker_id: String) -> Recorder {
        let (requests, inbox) = mpsc::channel(MAX_BATCH * 4);
        let inbox = Arc::new(Mutex::new(inbox));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(
                store.clone(),
                worker_id.clone(),
                inbox.clone(),
            ));
        }
        Recorder { requests }
    }

    /// Record one sent message; `Ok(false)` if its lease had been lost.
    pub(crate) async fn record(&self, record: SentRecord) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { record, reply })
            .await
            .map_err(|_| "the recorder has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the recorder has stopped".to_string())?
    }
}

/// One writer: take what has gathered (up to `MAX_BATCH`), write it in one commit, answer.
async fn write_batches(
    store: Store,
    worker_id: String,
    inbox: Arc<Mutex<mpsc::Receiver<Request>>>,
) {
    loop {
        let batch = {
            let mut inbox = inbox.lock().await;
            let Some(first) = inbox.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            batch
        };
        let records: Vec<SentRecord> = batch.iter().map(|r| r.record.clone()).collect();
        let result = store.record_sent(&worker_id, &records).await;
        for request in batch {
            let answer = match &result {
                Ok(done) => Ok(done.contains(&request.record.outbox_id)),
                Err(e) => Err(e.to_string()),
            };
            let _ = request.reply.send(answer);
        }
    }
}
