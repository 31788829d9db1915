//! The audit log: every change's event, listed for `GET /api/events` and
//! read after an id for the event stream's replay.

use super::views;
use ops_base::error::Result;
use ops_protocol::events::EventList;
use ops_store::db::Db;
use ops_store::events;
pub use ops_store::events::EventFilter;
use ops_store::Page;

/// `GET /api/events`, newest first; `filter.workspaces` is the caller's.
pub fn list(db: &Db, filter: &EventFilter, page: Page) -> Result<EventList> {
    let (list, total) = events::list(&*db.read()?, filter, page)?;
    Ok(EventList {
        events: list.iter().map(views::event).collect(),
        total,
    })
}

/// The id of the newest event, where a stream without `Last-Event-ID`
/// starts.
pub fn last_id(db: &Db) -> Result<i64> {
    events::last_id(&*db.read()?)
}

/// Up to `limit` events after id `after`, oldest first, of `workspaces`
/// (`None`: all): what a resumed stream replays.
pub fn after(
    db: &Db,
    after: i64,
    workspaces: Option<&[i64]>,
    limit: i64,
) -> Result<Vec<events::Committed>> {
    events::after(&*db.read()?, after, workspaces, limit)
}
