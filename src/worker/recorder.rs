//! Group commit for the hot path: robot tasks hand their sent messages to one recorder per
//! replica, which writes whatever has gathered in a single commit. Each task still waits for
//! its own message to be recorded before sending the next, so a crash can duplicate at most
//! the one message in flight per robot.

use crate::store::{SentRecord, Store};
use tokio::sync::{mpsc, oneshot};

/// At most this many messages per commit.
const MAX_BATCH: usize = 256;

struct Request {
    record: SentRecord,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The replica's recorder; cheap to share, it stops when the last handle is dropped.
pub(crate) struct Recorder {
    requests: mpsc::Sender<Request>,
}

impl Recorder {
    /// Start the recorder task.
    pub(crate) fn start(store: Store) -> Recorder {
        let (requests, inbox) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(store, inbox));
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

async fn run(store: Store, mut inbox: mpsc::Receiver<Request>) {
    while let Some(first) = inbox.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let records: Vec<SentRecord> = batch.iter().map(|r| r.record.clone()).collect();
        let result = store.record_sent(&records).await;
        for request in batch {
            let answer = match &result {
                Ok(done) => Ok(done.contains(&request.record.outbox_id)),
                Err(e) => Err(e.to_string()),
            };
            let _ = request.reply.send(answer);
        }
    }
}
