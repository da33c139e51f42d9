//! Where the demo's tables live: a throwaway cluster of its own, or — with `DATABASE_URL` —
//! a new database of its own on that server, so the demo never touches the user's tables
//! (and a real worker serving them never sees, let alone delivers, the demo's messages).
//! Either way it is removed when the demo ends. The server may be PostgreSQL or, with a
//! `mysql://` / `mariadb://` URL, MySQL 8.0 / MariaDB.

use super::throwaway_pg::ThrowawayPg;
use crate::store::postgres::display_url;
use anyhow::Context;
use sqlx::{Connection, MySqlConnection, PgConnection};
use std::path::PathBuf;

/// The demo's database, and how to remove it.
pub enum Place {
    /// A private cluster in a temporary directory.
    Throwaway(ThrowawayPg),
    /// A database `name` created through `url`; `demo_url` connects to it.
    Database {
        url: String,
        name: String,
        demo_url: String,
    },
}

impl Place {
    /// A throwaway cluster (blocking work runs off the async threads).
    pub async fn throwaway(bindir: Option<PathBuf>) -> anyhow::Result<Place> {
        let pg = tokio::task::spawn_blocking(move || ThrowawayPg::start(bindir.as_deref()))
            .await
            .context("starting PostgreSQL")??;
        Ok(Place::Throwaway(pg))
    }

    /// A fresh database `wecom_outbox_demo_XXXXXXXX` on the server at `url`.
    pub async fn database_beside(url: &str) -> anyhow::Result<Place> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("wecom_outbox_demo_{}", &id[..8]);
        let mut demo_url = reqwest::Url::parse(url).context("DATABASE_URL is not a URL")?;
        demo_url.set_path(&format!("/{name}"));
        let refused = |what: &str| {
            format!(
                "the demo makes a database of its own and this user may not ({what}): \
                 unset DATABASE_URL to let the demo start a throwaway PostgreSQL instead"
            )
        };
        if is_mysql(url) {
            let sql = format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4");
            on_mysql(url, &sql)
                .await
                .with_context(|| refused("CREATE on wecom_outbox_demo_%"))?;
        } else {
            let sql = format!("CREATE DATABASE {name}");
            on_postgres(url, &sql)
                .await
                .with_context(|| refused("CREATEDB"))?;
        }
        Ok(Place::Database {
            url: url.to_string(),
            name,
            demo_url: demo_url.to_string(),
        })
    }

    /// The URL the demo's own connections use.
    pub fn url(&self) -> &str {
        match self {
            Place::Throwaway(pg) => pg.url(),
            Place::Database { demo_url, .. } => demo_url,
        }
    }

    /// One line saying where the demo runs and that it cleans up.
    pub fn describe(&self) -> String {
        match self {
            Place::Throwaway(pg) => format!(
                "throwaway PostgreSQL in {} at {} (removed when the demo ends)",
                pg.dir().display(),
                pg.url()
            ),
            Place::Database { url, name, .. } => format!(
                "DATABASE_URL is set: using the server of {}, in a new database {name} \
                 (your database is not touched; {name} is dropped when the demo ends)",
                display_url(url)
            ),
        }
    }

    /// Stop and delete the cluster, or drop the database.
    pub async fn remove(self) -> anyhow::Result<()> {
        match self {
            Place::Throwaway(mut pg) => {
                tokio::task::spawn_blocking(move || pg.remove()).await?;
                Ok(())
            }
            Place::Database { url, name, .. } => {
                let dropped = if is_mysql(&url) {
                    on_mysql(&url, &format!("DROP DATABASE IF EXISTS `{name}`")).await
                } else {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    on_postgres(&url, &sql).await
                };
                dropped.with_context(|| format!("cannot drop the demo's database {name}"))
            }
        }
    }
}

/// A `mysql://` or `mariadb://` URL (the backend `Store` picks for it).
fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

/// Run one statement on its own PostgreSQL connection to `url`.
async fn on_postgres(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {}", display_url(url)))?;
    sqlx::query(sql).execute(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

/// Run one statement on its own MySQL connection to `url` (sqlx spells `mariadb://` `mysql://`).
async fn on_mysql(url: &str, sql: &str) -> anyhow::Result<()> {
    let sqlx_url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let mut conn = MySqlConnection::connect(&sqlx_url)
        .await
        .with_context(|| format!("cannot connect to {}", display_url(url)))?;
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}
