//! Where the demo's tables live: a throwaway cluster of its own, or — with `DATABASE_URL` —
//! a new database of its own on that server, so the demo never touches the user's tables
//! (and a real worker serving them never sees, let alone delivers, the demo's messages).
//! Either way it is removed when the demo ends.

use super::throwaway_pg::ThrowawayPg;
use crate::store::postgres::display_url;
use anyhow::Context;
use sqlx::{Connection, PgConnection};
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
        let mut conn = PgConnection::connect(url)
            .await
            .with_context(|| format!("cannot connect to {}", display_url(url)))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .context(
                "the demo makes a database of its own and this user may not (CREATEDB): \
                 unset DATABASE_URL to let the demo start a throwaway PostgreSQL instead",
            )?;
        let _ = conn.close().await;
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
                let mut conn = PgConnection::connect(&url).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("cannot drop the demo's database {name}"))?;
                let _ = conn.close().await;
                Ok(())
            }
        }
    }
}
