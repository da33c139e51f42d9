//! What `migrate` checks before it changes anything: the tables it adopts (the school's
//! Phase-1 `wecom_webhooks` and `wecom_message_log`, and any of our columns already there)
//! must have types the worker can read and write. Otherwise the migrations would succeed and
//! every later command fail ("COALESCE types smallint and boolean cannot be matched"), or fail
//! half-way without naming the column. A refusal names table, column, found and needed type,
//! lists every problem at once, and nothing has been changed.
//!
//! The accepted types are written once, in [`EXPECTED`].

use crate::store::StoreError;
use sqlx::PgPool;

/// Types a column may have (as `format_type` names them) and how to say what is needed.
#[derive(Debug, Clone, Copy)]
pub struct Accepts {
    /// `format_type(type, NULL)` of each accepted type.
    pub types: &'static [&'static str],
    /// What is needed, for the message.
    pub needed: &'static str,
    /// The type to convert to, for the suggested `ALTER TABLE`.
    pub convert_to: &'static str,
}

const TEXT: Accepts = Accepts {
    types: &["text", "character varying"],
    needed: "text or varchar",
    convert_to: "text",
};
const INT: Accepts = Accepts {
    types: &["integer"],
    needed: "integer",
    convert_to: "integer",
};
const INT_OR_BIGINT: Accepts = Accepts {
    types: &["integer", "bigint"],
    needed: "integer or bigint",
    convert_to: "bigint",
};
const ANY_INTEGER: Accepts = Accepts {
    types: &["smallint", "integer", "bigint"],
    needed: "an integer type",
    convert_to: "bigint",
};
const TIMESTAMP: Accepts = Accepts {
    types: &["timestamp without time zone", "timestamp with time zone"],
    needed: "timestamp or timestamptz",
    convert_to: "timestamptz",
};
const BOOLEAN: Accepts = Accepts {
    types: &["boolean"],
    needed: "boolean",
    convert_to: "boolean",
};
const INTERVAL: Accepts = Accepts {
    types: &["interval"],
    needed: "interval",
    convert_to: "interval",
};
const TIME: Accepts = Accepts {
    types: &["time without time zone"],
    needed: "time (without time zone)",
    convert_to: "time",
};
const INT_ARRAY: Accepts = Accepts {
    types: &["integer[]"],
    needed: "integer[]",
    convert_to: "integer[]",
};
const UUID: Accepts = Accepts {
    types: &["uuid"],
    needed: "uuid",
    convert_to: "uuid",
};

/// One column of an adopted table.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub table: &'static str,
    pub column: &'static str,
    pub accepts: Accepts,
    /// A Phase-1 column: it must be there. Our own columns are added when missing.
    pub phase1: bool,
    /// Its default, where a type change must drop it and set it again (a number's default
    /// does not cast to boolean).
    pub default: Option<&'static str>,
}

const fn phase1(table: &'static str, column: &'static str, accepts: Accepts) -> Expected {
    Expected {
        table,
        column,
        accepts,
        phase1: true,
        default: None,
    }
}

const fn ours(table: &'static str, column: &'static str, accepts: Accepts) -> Expected {
    Expected {
        table,
        column,
        accepts,
        phase1: false,
        default: None,
    }
}

impl Expected {
    const fn default(self, default: &'static str) -> Expected {
        Expected {
            default: Some(default),
            ..self
        }
    }
}

/// Every column `migrate` adopts, with the types it accepts. Robot ids must be `integer`:
/// `wecom_robot_state.robot_id` and the worker hold them as int.
pub const EXPECTED: &[Expected] = &[
    phase1("wecom_webhooks", "id", INT),
    phase1("wecom_webhooks", "webhook_name", TEXT),
    phase1("wecom_webhooks", "webhook_url", TEXT),
    phase1("wecom_webhooks", "target_description", TEXT),
    phase1("wecom_webhooks", "is_active", BOOLEAN).default("true"),
    phase1("wecom_webhooks", "last_used_at", TIMESTAMP),
    phase1("wecom_webhooks", "total_messages_sent", INT_OR_BIGINT),
    phase1("wecom_webhooks", "created_at", TIMESTAMP),
    phase1("wecom_webhooks", "created_by", TEXT),
    phase1("wecom_webhooks", "notes", TEXT),
    ours("wecom_webhooks", "pool_name", TEXT),
    ours("wecom_webhooks", "rate_limit", INT),
    ours("wecom_webhooks", "rate_window", INTERVAL),
    ours("wecom_webhooks", "send_window_start", TIME),
    ours("wecom_webhooks", "send_window_end", TIME),
    ours("wecom_webhooks", "send_days", INT_ARRAY),
    ours("wecom_webhooks", "timezone", TEXT),
    ours("wecom_webhooks", "disabled_reason", TEXT),
    ours("wecom_webhooks", "is_external", BOOLEAN).default("false"),
    phase1("wecom_message_log", "id", ANY_INTEGER),
    phase1("wecom_message_log", "webhook_name", TEXT),
    phase1("wecom_message_log", "message_type", TEXT),
    phase1("wecom_message_log", "message_content", TEXT),
    phase1("wecom_message_log", "enrollment_id", INT_OR_BIGINT),
    phase1("wecom_message_log", "session_id", ANY_INTEGER),
    phase1("wecom_message_log", "send_status", TEXT),
    phase1("wecom_message_log", "send_timestamp", TIMESTAMP),
    phase1("wecom_message_log", "error_message", TEXT),
    phase1("wecom_message_log", "created_at", TIMESTAMP),
    ours("wecom_message_log", "outbox_id", UUID),
    ours("wecom_message_log", "robot_name", TEXT),
    ours("wecom_message_log", "errcode", INT_OR_BIGINT),
    ours("wecom_message_log", "attempts", INT_OR_BIGINT),
];

/// Log columns the worker always gives a value.
const LOG_ALWAYS_WRITTEN: &[&str] = &[
    "webhook_name",
    "message_content",
    "send_status",
    "outbox_id",
    "robot_name",
    "attempts",
];

/// Log columns the worker writes NULL into when there is nothing to say (a row without a
/// message_type or enrollment, a failure's send_timestamp, a success's error_message): they
/// must allow NULL, default or not, since an explicit NULL does not take the default.
const LOG_MAYBE_NULL: &[&str] = &[
    "message_type",
    "enrollment_id",
    "send_timestamp",
    "error_message",
    "errcode",
];

/// The columns of one table as the catalog has them (the table the unqualified name
/// resolves to, as the migrations will see it).
const COLUMNS: &str = r#"
SELECT c.relkind::text AS relkind,
       a.attname::text AS name,
       format_type(a.atttypid, NULL) AS type,
       format_type(a.atttypid, a.atttypmod) AS shown,
       a.attnotnull AS not_null,
       a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
           AS needs_a_value
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass($1)
ORDER BY a.attnum
"#;

#[derive(Debug, sqlx::FromRow)]
struct Column {
    relkind: String,
    name: String,
    r#type: String,
    shown: String,
    not_null: bool,
    needs_a_value: bool,
}

/// Check every table `migrate` would adopt; `Err` lists what must change first. Reads the
/// catalog only.
pub async fn check(pool: &PgPool) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    for table in ["wecom_webhooks", "wecom_message_log"] {
        let columns: Vec<Column> = sqlx::query_as(COLUMNS).bind(table).fetch_all(pool).await?;
        let next_id = next_log_id(pool, table, &columns).await?;
        problems.extend(table_problems(table, &columns, next_id));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::NotAdoptable { problems })
    }
}

/// For a log whose integer `id` has no default: the first id a new default may hand out.
async fn next_log_id(pool: &PgPool, table: &str, columns: &[Column]) -> sqlx::Result<Option<i64>> {
    let needs_one = columns.iter().any(|c| {
        c.name == "id" && c.needs_a_value && ANY_INTEGER.types.contains(&c.r#type.as_str())
    });
    if table != "wecom_message_log" || !needs_one {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint + 1 FROM wecom_message_log")
        .fetch_one(pool)
        .await
        .map(Some)
}

/// What is wrong with an existing `table` (nothing when it does not exist yet); `next_id`
/// as [`next_log_id`] found it.
fn table_problems(table: &str, columns: &[Column], next_id: Option<i64>) -> Vec<String> {
    let Some(first) = columns.first() else {
        return Vec::new();
    };
    if !matches!(first.relkind.as_str(), "r" | "p") {
        return vec![format!(
            "{table} is not a table (a view or another kind of relation): migrate adopts only a table"
        )];
    }
    let mut problems: Vec<String> = EXPECTED
        .iter()
        .filter(|e| e.table == table)
        .filter_map(|e| column_problem(e, columns.iter().find(|c| c.name == e.column)))
        .collect();
    if table == "wecom_message_log" {
        problems.extend(columns.iter().filter_map(|c| log_null_problem(c, next_id)));
    }
    problems
}

/// Why `found` does not fit `expected`, if it does not.
fn column_problem(expected: &Expected, found: Option<&Column>) -> Option<String> {
    let (table, column, accepts) = (expected.table, expected.column, expected.accepts);
    let Some(found) = found else {
        return expected.phase1.then(|| {
            format!(
                "{table}.{column} is missing (a Phase-1 column, needed {}): ALTER TABLE {table} ADD COLUMN {column} {}",
                accepts.needed, accepts.convert_to
            )
        });
    };
    if accepts.types.contains(&found.r#type.as_str()) {
        return None;
    }
    Some(format!(
        "{table}.{column} is {}, needed {}: ALTER TABLE {table} {}",
        found.shown,
        accepts.needed,
        conversion(expected, &found.r#type)
    ))
}

/// The `ALTER TABLE` actions that convert the column from type `from`: a cast, except that
/// numbers become booleans by comparing with 0 (dropping and restoring the default, which
/// does not cast).
fn conversion(expected: &Expected, from: &str) -> String {
    let (column, to) = (expected.column, expected.accepts.convert_to);
    let change = format!("ALTER COLUMN {column} TYPE {to}");
    if to != "boolean" || !matches!(from, "smallint" | "integer" | "bigint" | "numeric") {
        return format!("{change} USING {column}::{to}");
    }
    let restore = expected
        .default
        .map(|d| format!(", ALTER COLUMN {column} SET DEFAULT {d}"))
        .unwrap_or_default();
    format!("ALTER COLUMN {column} DROP DEFAULT, {change} USING {column} <> 0{restore}")
}

/// A log column the worker cannot fill: NOT NULL where it writes NULL, or NOT NULL without
/// a default where it writes nothing (`id`, `session_id`, `created_at`, the school's own).
/// An `id` without a default is given one that continues after `next_id - 1`.
fn log_null_problem(column: &Column, next_id: Option<i64>) -> Option<String> {
    let name = column.name.as_str();
    if LOG_ALWAYS_WRITTEN.contains(&name) {
        return None;
    }
    let shown = &column.shown;
    if LOG_MAYBE_NULL.contains(&name) {
        return column.not_null.then(|| {
            format!(
                "wecom_message_log.{name} ({shown}) is NOT NULL, but the worker leaves it NULL when there is \
                 nothing to record: ALTER TABLE wecom_message_log ALTER COLUMN {name} DROP NOT NULL"
            )
        });
    }
    if !column.needs_a_value {
        return None;
    }
    let what = format!(
        "wecom_message_log.{name} ({shown}) is NOT NULL without a default, and the worker does not \
         write it, so it could never write its log rows"
    );
    Some(if let (Some(next), "id") = (next_id, name) {
        format!(
            "{what}: ALTER TABLE wecom_message_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY \
             (START WITH {next})"
        )
    } else {
        format!(
            "{what}: ALTER TABLE wecom_message_log ALTER COLUMN {name} DROP NOT NULL (or SET DEFAULT …)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adopted_column_is_listed_once() {
        for (i, e) in EXPECTED.iter().enumerate() {
            assert!(
                !EXPECTED[..i]
                    .iter()
                    .any(|o| o.table == e.table && o.column == e.column),
                "{}.{} is listed twice",
                e.table,
                e.column
            );
        }
    }

    #[test]
    fn a_number_becomes_a_boolean_by_comparing_with_zero_keeping_its_default() {
        let is_active = EXPECTED
            .iter()
            .find(|e| e.column == "is_active")
            .expect("is_active");
        assert_eq!(
            conversion(is_active, "smallint"),
            "ALTER COLUMN is_active DROP DEFAULT, ALTER COLUMN is_active TYPE boolean \
             USING is_active <> 0, ALTER COLUMN is_active SET DEFAULT true"
        );
        let id = EXPECTED.iter().find(|e| e.column == "id").expect("id");
        assert_eq!(
            conversion(id, "bigint"),
            "ALTER COLUMN id TYPE integer USING id::integer"
        );
    }
}
