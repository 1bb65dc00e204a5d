//! When an idle claimer should look again for a job that is not due yet.
//!
//! A job added with a `run_at` ahead (a delayed job, a schedule's fire time added ahead) is
//! not claimable when it is added. Waking the idle claimer for it would cost a claim that finds
//! nothing and a query for the next due time, on every idle node (PostgreSQL tells them all):
//! instead its due time sets this alarm, and the claimer sleeps until the earliest due time
//! it heard of. Jobs due now still wake it at once ([`Service::wake_for`]).
//!
//! [`Service::wake_for`]: crate::Service::wake_for

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::Notify;

/// The earliest due time heard since the claimer last looked, and a signal when it moves
/// earlier.
pub(crate) struct DueAlarm {
    /// Milliseconds since the epoch; [`NOT_SET`] when nothing was heard.
    earliest: AtomicI64,
    earlier: Notify,
}

const NOT_SET: i64 = i64::MAX;

impl Default for DueAlarm {
    fn default() -> DueAlarm {
        DueAlarm { earliest: AtomicI64::new(NOT_SET), earlier: Notify::new() }
    }
}

impl DueAlarm {
    /// Hears that a job becomes due at `due`; signals the claimer only when that is earlier
    /// than what it heard already (a thousand jobs due at one time signal once).
    pub(crate) fn set(&self, due: i64) {
        if self.earliest.fetch_min(due, Ordering::AcqRel) > due {
            self.earlier.notify_one();
        }
    }

    /// The earliest due time heard since the last call, and forgets it.
    pub(crate) fn take(&self) -> Option<i64> {
        let earliest = self.earliest.swap(NOT_SET, Ordering::AcqRel);
        (earliest != NOT_SET).then_some(earliest)
    }

    /// Resolves when [`DueAlarm::set`] moved the alarm earlier (at once if it did since the
    /// last time this resolved).
    pub(crate) async fn moved_earlier(&self) {
        self.earlier.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_alarm_keeps_the_earliest_due_time_and_signals_only_when_it_moves_earlier() {
        let alarm = DueAlarm::default();
        assert_eq!(alarm.take(), None);
        alarm.set(2_000);
        alarm.moved_earlier().await;
        alarm.set(3_000);
        alarm.set(2_000);
        let signalled = tokio::time::timeout(std::time::Duration::from_millis(50), alarm.moved_earlier());
        assert!(signalled.await.is_err(), "a later or equal due time does not signal");
        alarm.set(1_000);
        alarm.moved_earlier().await;
        assert_eq!(alarm.take(), Some(1_000));
        assert_eq!(alarm.take(), None, "taken once");
        alarm.set(5_000);
        assert_eq!(alarm.take(), Some(5_000), "after a take, any due time is the earliest");
    }
}
