//! PostgreSQL going away for a while: the worker keeps running, reconnects with backoff,
//! and loses nothing. The outage is real: the worker reaches the database through a TCP
//! proxy that the test cuts (closing every connection) and restores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use wecom_outbox::store::Store;
use wecom_outbox::testing::{fast_config, standin, TestDatabase};
use wecom_outbox::wecom::client::WeComClient;

/// A loopback TCP proxy to PostgreSQL that can be cut and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_postgres_going_away_and_loses_nothing() {
    let fake = standin(100, Duration::from_secs(60)).await;
    let db = TestDatabase::migrated().await;
    db.add_robot(&fake, "parent_group", None, 100, Duration::from_secs(60))
        .await;

    let url = reqwest::Url::parse(&db.url).unwrap();
    let proxy = Proxy::start(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    let mut via_proxy = url.clone();
    via_proxy.set_host(Some("127.0.0.1")).unwrap();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let store = Store::connect_lazy(via_proxy.as_str(), 5).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(wecom_outbox::worker::run(
        store,
        WeComClient::new(Duration::from_secs(5)).unwrap(),
        fast_config("survivor", &fake),
        shutdown.clone(),
    ));

    db.enqueue("parent_group", "before", 5).await;
    db.wait_for_status("sent", 5, Duration::from_secs(10)).await;

    proxy.cut();
    db.enqueue("parent_group", "during", 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !worker.is_finished(),
        "the worker must not exit while the database is away"
    );
    assert_eq!(
        db.status_count("sent").await,
        5,
        "nothing can be sent without the database"
    );

    proxy.restore();
    db.wait_for_status("sent", 10, Duration::from_secs(30))
        .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();

    assert_eq!(fake.received().len(), 10, "each message reached WeCom once");
    assert_eq!(db.count("SELECT count(*) FROM wecom_message_log").await, 10);
    assert_eq!(
        db.count("SELECT count(*) FROM wecom_outbox WHERE status <> 'sent'")
            .await,
        0
    );
}
