//! Secrets as stored: each value sealed (encrypted and authenticated) by the service with a key
//! the database never holds, next to the fingerprint of that key. Storage sees only sealed text.

use sea_orm::{ConnectionTrait, Value as SqlValue};

use super::row::int;
use super::{QueueError, Store};

/// A stored secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    pub name: String,
    /// The value, sealed: nonce and ciphertext with its tag, in base64.
    pub sealed: String,
    /// The fingerprint of the key that sealed it.
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, sealed, key_id, created_at, updated_at";

impl Store {
    /// Writes a secret, replacing the value of one with that name; true when it is new.
    pub async fn put_secret(
        &self,
        name: &str,
        sealed: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool, QueueError> {
        let existed = self.secret(name).await?.is_some();
        let sql = "INSERT INTO secrets (name, sealed, key_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?) \
                   ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, key_id = excluded.key_id, \
                   updated_at = excluded.updated_at";
        let values: Vec<SqlValue> = vec![name.into(), sealed.into(), key_id.into(), now.into(), now.into()];
        let written = self.writer().execute_raw(self.statement(sql, values)).await.map(|_| ());
        let written = written.map_err(QueueError::from);
        self.note_write(&written);
        written?;
        Ok(!existed)
    }

    pub async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM secrets WHERE name = ?");
        let row = self.connection().query_one_raw(self.statement(&sql, vec![name.into()])).await?;
        row.map(|row| sealed(&row)).transpose()
    }

    /// The secrets named in `names` that exist.
    pub async fn secrets_named(&self, names: &[String]) -> Result<Vec<SealedSecret>, QueueError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT {COLUMNS} FROM secrets WHERE name IN ({})", vec!["?"; names.len()].join(", "));
        let values = names.iter().cloned().map(SqlValue::from).collect();
        let rows = self.connection().query_all_raw(self.statement(&sql, values)).await?;
        rows.iter().map(sealed).collect()
    }

    /// Every secret, by name.
    pub async fn secrets(&self) -> Result<Vec<SealedSecret>, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM secrets ORDER BY name");
        let rows = self.connection().query_all_raw(self.statement(&sql, Vec::new())).await?;
        rows.iter().map(sealed).collect()
    }

    /// Removes a secret; false when there was none of that name.
    pub async fn remove_secret(&self, name: &str) -> Result<bool, QueueError> {
        let sql = "DELETE FROM secrets WHERE name = ?";
        let deleted = self.writer().execute_raw(self.statement(sql, vec![name.into()])).await?;
        Ok(deleted.rows_affected() == 1)
    }
}

fn sealed(row: &sea_orm::QueryResult) -> Result<SealedSecret, QueueError> {
    Ok(SealedSecret {
        name: row.try_get("", "name")?,
        sealed: row.try_get("", "sealed")?,
        key_id: row.try_get("", "key_id")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}
