//! Reading columns out of a row the same way on both backends: integers may come back as
//! 32- or 64-bit depending on the column and the backend, and JSON is stored as text.

use sea_orm::QueryResult;
use serde_json::Value;

use super::queue::QueueError;

pub(super) fn int(row: &QueryResult, column: &str) -> Result<i64, QueueError> {
    Ok(row.try_get::<i64>("", column).or_else(|_| row.try_get::<i32>("", column).map(i64::from))?)
}

pub(super) fn opt_int(row: &QueryResult, column: &str) -> Result<Option<i64>, QueueError> {
    Ok(row
        .try_get::<Option<i64>>("", column)
        .or_else(|_| row.try_get::<Option<i32>>("", column).map(|v| v.map(i64::from)))?)
}

pub(super) fn json(row: &QueryResult, column: &str) -> Result<Value, QueueError> {
    let raw: String = row.try_get("", column)?;
    parse(&raw, column)
}

pub(super) fn opt_json(row: &QueryResult, column: &str) -> Result<Option<Value>, QueueError> {
    let raw: Option<String> = row.try_get("", column)?;
    raw.map(|raw| parse(&raw, column)).transpose()
}

fn parse(raw: &str, column: &str) -> Result<Value, QueueError> {
    serde_json::from_str(raw).map_err(|e| QueueError::Corrupt(format!("{column} is not JSON: {e}")))
}
