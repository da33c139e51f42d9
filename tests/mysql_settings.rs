//! Blast radius on MySQL / MariaDB: a robot row or a setting that can never mean what it says
//! is refused when it is written (SQLSTATE 45000), naming the value and what to write instead,
//! and changes nothing; good values are taken, and a fixed default zone puts back in service
//! the robots an earlier worker disabled for it. Zones are checked against wecom_timezones
//! (filled by migrate from chrono-tz; the migration seeds a few), never the server's tables.

mod mysql_support;

use mysql_support::MyDb;

#[tokio::test(flavor = "multi_thread")]
async fn a_default_timezone_that_is_no_iana_zone_is_refused_and_changes_nothing() {
    let Some(db) = MyDb::migrated("badzone").await else {
        return;
    };
    for zone in ["Mars/Olympus", "asia/hong_kong", "HKT", "UTC+8", ""] {
        let e = db
            .exec_err(&format!(
                "UPDATE wecom_settings SET value = '{zone}' WHERE name = 'default_timezone'"
            ))
            .await;
        assert_eq!(
            e,
            format!("wecom_settings: default_timezone {zone} is not an IANA time zone name (such as Asia/Hong_Kong; names are case-sensitive)")
        );
    }
    assert_eq!(
        db.text("SELECT value FROM wecom_settings WHERE name = 'default_timezone'")
            .await
            .as_deref(),
        Some("Asia/Hong_Kong")
    );
    // A zone migrate added from chrono-tz is taken.
    db.exec("INSERT INTO wecom_timezones (name) VALUES ('Europe/Paris')")
        .await;
    db.exec("UPDATE wecom_settings SET value = 'Europe/Paris' WHERE name = 'default_timezone'")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn robot_rows_that_could_never_send_are_refused_naming_the_value() {
    let Some(db) = MyDb::migrated("badrobot").await else {
        return;
    };
    db.add_robot("parent_group").await;
    let cases = [
        ("send_days = '[]'", "wecom_webhooks: send_days is empty ([]), so the robot would never send: set it to NULL for every day, or list ISO weekdays such as [1,2,3,4,5]"),
        ("send_days = '[[1,2],[3,4]]'", "wecom_webhooks: send_days [[1,2],[3,4]] contains [1, 2]: list ISO weekdays 1 (Monday) to 7 (Sunday) only, such as [1,2,3,4,5]"),
        ("send_days = '[1,8]'", "wecom_webhooks: send_days [1,8] contains 8: list ISO weekdays 1 (Monday) to 7 (Sunday) only, such as [1,2,3,4,5]"),
        ("send_days = '[1,null]'", "wecom_webhooks: send_days [1,null] contains null: list ISO weekdays 1 (Monday) to 7 (Sunday) only, such as [1,2,3,4,5]"),
        ("send_days = '{\"mon\":1}'", "wecom_webhooks: send_days {\"mon\":1} is not a JSON array: write ISO weekdays such as [1,2,3,4,5] (1 = Monday … 7 = Sunday), or NULL for every day"),
        ("send_window_start = '09:00', send_window_end = '09:00'", "wecom_webhooks: send window 09:00-09:00 starts and ends at the same time: set send_window_start and send_window_end to NULL to send at any time, or to the hours it may send, e.g. 09:00 and 20:00"),
        ("send_window_start = '00:00', send_window_end = '24:00'", "wecom_webhooks: send window 00:00-24:00 is not two times of day: write them from 00:00 to 23:59, midnight as 00:00 (a window may wrap midnight, e.g. 22:00-02:00; both NULL = any time)"),
        ("timezone = 'Mars/Olympus'", "wecom_webhooks: timezone Mars/Olympus is not an IANA time zone name (such as Asia/Hong_Kong; names are case-sensitive)"),
        ("rate_window = 40000000", "wecom_webhooks: rate_window 40000000 seconds is longer than 366 days: give a window of at most a year (WeCom's own is 60 seconds)"),
    ];
    for (set, want) in cases {
        let e = db
            .exec_err(&format!("UPDATE wecom_webhooks SET {set}"))
            .await;
        assert_eq!(e, want, "UPDATE … SET {set}");
    }
    // The CHECKs the table carries say the rest.
    db.exec_err("UPDATE wecom_webhooks SET rate_limit = 0")
        .await;
    db.exec_err("UPDATE wecom_webhooks SET send_window_start = '09:00'")
        .await;
    // The same rules at INSERT.
    let e = db
        .exec_err("INSERT INTO wecom_webhooks (webhook_name, webhook_url, send_days) VALUES ('r2', 'http://127.0.0.1:9/?key=b', '[]')")
        .await;
    assert!(e.starts_with("wecom_webhooks: send_days is empty"), "{e}");
    assert_eq!(db.count("SELECT COUNT(*) FROM wecom_webhooks").await, 1);

    // What can work is taken: a window that wraps midnight, weekdays, a zone, any limit.
    db.exec(
        "UPDATE wecom_webhooks SET send_window_start = '22:00', send_window_end = '02:00', send_days = '[1,2,3,4,5]',
                                   timezone = 'Asia/Shanghai', rate_limit = 2147483647, rate_window = 31622400",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_are_checked_the_way_their_readers_use_them_and_known_ones_cannot_be_deleted() {
    let Some(db) = MyDb::migrated("settings").await else {
        return;
    };
    let set = |name: &str, value: &str| {
        format!("UPDATE wecom_settings SET value = '{value}' WHERE name = '{name}'")
    };
    let cases = [
        (set("reminder_min_days", "soon"), "wecom_settings: reminder_min_days 'soon' is not a whole number of days, such as 7"),
        (set("conversion_window_days", "-1"), "wecom_settings: conversion_window_days -1 is negative: give 0 or more days"),
        (set("reminder_cadence", "7,x"), "wecom_settings: reminder_cadence '7,x' is not a list of whole numbers of days such as 7,3,1,0 (empty = every day in range): 'x' is not one"),
        (set("reminder_run_time", "25:00"), "wecom_settings: reminder_run_time '25:00' is not a local time like 09:00 (00:00 to 23:59), or off"),
        (set("reminder_destination", "nowhere"), "wecom_settings: reminder_destination unknown destination nowhere: no robot or pool of that name in wecom_webhooks"),
        (set("prune_after_days", "-5"), "wecom_settings: prune_after_days '-5' is not a whole number of days of at least 1, such as 90 (empty = never prune)"),
        (set("reminder_status", " "), "wecom_settings: reminder_status is empty: give the renewal_action_status that gets reminders (default: the Not Yet Renewed status)"),
        ("INSERT INTO wecom_settings (name, value) VALUES ('reminder_typo', '1')".to_owned(), "wecom_settings: unknown setting reminder_typo: the settings are conversion_window_days, default_timezone, prune_after_days, reminder_cadence, reminder_destination, reminder_max_days, reminder_min_days, reminder_route_column, reminder_route_fallback, reminder_run_time, reminder_status, reminder_urgent_days"),
        ("DELETE FROM wecom_settings".to_owned(), "wecom_settings: conversion_window_days cannot be deleted, the worker and reminders read it: UPDATE its value instead"),
        ("UPDATE wecom_settings SET name = 'x' WHERE name = 'reminder_status'".to_owned(), "wecom_settings: reminder_status cannot be renamed, the worker and reminders read it: UPDATE its value instead"),
    ];
    for (sql, want) in cases {
        assert_eq!(db.exec_err(&sql).await, want, "{sql}");
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM wecom_settings").await,
        12,
        "nothing changed"
    );
    db.exec(&set("reminder_run_time", "off")).await;
    db.exec(&set("reminder_cadence", "7, 3, 1, 0")).await;
    db.exec(&set("reminder_min_days", "+1")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fixing_the_default_zone_puts_back_the_robots_disabled_for_it_and_no_others() {
    let Some(db) = MyDb::migrated("victims").await else {
        return;
    };
    db.exec(
        "INSERT INTO wecom_webhooks (webhook_name, webhook_url, is_active, disabled_reason) VALUES
           ('zone_victim', 'http://127.0.0.1:9/?key=a', FALSE, 'timezone \"Mars/Olympus\" is not an IANA time zone name'),
           ('gone', 'http://127.0.0.1:9/?key=b', FALSE, 'WeCom 93000: invalid webhook url');",
    )
    .await;
    db.exec("UPDATE wecom_settings SET value = 'Asia/Shanghai' WHERE name = 'default_timezone'")
        .await;
    assert_eq!(
        db.count("SELECT is_active FROM wecom_webhooks WHERE webhook_name = 'zone_victim'")
            .await,
        1
    );
    assert_eq!(
        db.text("SELECT disabled_reason FROM wecom_webhooks WHERE webhook_name = 'zone_victim'")
            .await,
        None
    );
    assert_eq!(
        db.count("SELECT is_active FROM wecom_webhooks WHERE webhook_name = 'gone'")
            .await,
        0
    );
    // A new URL for the gone robot puts it back in service.
    db.exec("UPDATE wecom_webhooks SET webhook_url = 'http://127.0.0.1:9/?key=c' WHERE webhook_name = 'gone'").await;
    assert_eq!(
        db.count("SELECT is_active FROM wecom_webhooks WHERE webhook_name = 'gone'")
            .await,
        1
    );
}
