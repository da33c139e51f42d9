//! Triggers run with their definer's rights on MySQL and MariaDB (the role that ran migrate):
//! a login granted only what AppSheet needs (INSERT and SELECT on wecom_outbox, INSERT on the
//! school's own table) gets its message checked against robots it may not read, and its
//! renewal cancels the pending reminder through the school's trigger. Proved with a real login.

mod mysql_support;

use mysql_support::{error_text, phase1, MyDb};
use sqlx::Executor;

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_granted_only_insert_enqueues_and_its_renewal_cancels_the_reminder_under_its_own_login(
) {
    let Some(db) = MyDb::empty("definer").await else {
        return;
    };
    db.exec(&phase1("utf8mb4")).await;
    db.migrate().await.unwrap();
    db.add_robot("parent_group").await;
    db.exec(
        "CREATE TABLE payments (id INT AUTO_INCREMENT PRIMARY KEY, enrollment_id INT NOT NULL) DEFAULT CHARSET = utf8mb4;
         CREATE TRIGGER payments_cancel_reminders AFTER INSERT ON payments FOR EACH ROW
             CALL wecom_cancel_reminders(NEW.enrollment_id, 'payment received');
         INSERT INTO wecom_outbox (webhook_name, content, message_type, enrollment_id)
             VALUES ('parent_group', 'please renew', 'fee_reminder', 1);",
    )
    .await;
    let user = format!("app_{}", &db.name[db.name.len().saturating_sub(20)..]);
    let (name, password) = (db.name.clone(), "appsheet-pw-1");
    db.exec(&format!(
        "DROP USER IF EXISTS '{user}'@'%';
         CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';
         GRANT SELECT, INSERT ON `{name}`.wecom_outbox TO '{user}'@'%';
         GRANT INSERT ON `{name}`.payments TO '{user}'@'%';"
    ))
    .await;

    // Run as the writer in a task of its own, so the login is dropped even if an assertion fails.
    let app = db.login(&user, password).await;
    let outcome = tokio::spawn(async move {
        let mut app = app.expect("the writer logs in");
        app.execute("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('parent_group', '陳小明: class moved')")
            .await
            .expect("the INSERT check reads wecom_webhooks with the definer's rights");
        let refused = app
            .execute("INSERT INTO wecom_outbox (webhook_name, content) VALUES ('no_such_group', 'hi')")
            .await
            .expect_err("a bad row is still refused");
        assert_eq!(
            error_text(&refused),
            "wecom_outbox: unknown destination no_such_group: no robot or pool of that name in wecom_webhooks"
        );
        let keys = app.execute("SELECT webhook_url FROM wecom_webhooks").await;
        assert!(keys.is_err(), "the writer cannot read the robots' keys");
        app.execute("INSERT INTO payments (enrollment_id) VALUES (1)")
            .await
            .expect("the school's trigger cancels under the writer's login");
    })
    .await;
    db.exec(&format!("DROP USER IF EXISTS '{user}'@'%'")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }

    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_outbox WHERE status = 'pending'")
            .await,
        1
    );
    assert_eq!(
        db.text("SELECT last_error FROM wecom_outbox WHERE enrollment_id = 1")
            .await
            .as_deref(),
        Some("cancelled: payment received")
    );
}
