//! Reviewing a task's change file by file: a run's patch read as files and
//! hunks (`domain::diff`), comments on their lines kept with the hunk they
//! lie in, and the comments sent to the agent as a follow-up, through the
//! same rules as any follow-up (`dispatch::follow_up`).

use rusqlite::Connection;
use serde_json::json;

use crate::dispatch::{follow_up_answer, follow_up_in, FollowUpOutcome};
use crate::{event, views};
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::diff::{self, FileDiff, FileStatus, Side};
use ops_protocol::review::{Review, ReviewComment, ReviewFileDiff};
use ops_protocol::tasks::DispatchAnswer;
use ops_protocol::Deleted;
use ops_store::changes::{self, StoredChange};
use ops_store::db::Db;
use ops_store::review_comments::{self, NewReviewComment};
use ops_store::tasks::{self, Task};

/// Lines shown before and after a commented range in its excerpt.
const EXCERPT_AROUND: usize = 3;
/// An excerpt holds at most this many lines of its hunk (the middle of a
/// longer range is cut, with a mark) …
const EXCERPT_LINES: usize = 40;
/// … and at most this many bytes.
const EXCERPT_BYTES: usize = 8 * 1024;
/// A review's follow-up message is at most this many bytes: agents' CLIs
/// may take their prompt as one argument, which Linux caps at 128 KiB.
pub const SEND_MAX_BYTES: usize = 120 * 1024;

/// A comment to add (`POST /api/tasks/:id/review/comments`), its fields
/// checked for shape by the route.
pub struct NewComment {
    pub run: Option<i64>,
    pub file: String,
    pub line: i64,
    pub end_line: Option<i64>,
    pub side: Option<Side>,
    pub body: String,
}

fn readable(conn: &Connection, who: &Principal, id: i64) -> Result<Task> {
    let t = tasks::require(conn, id)?;
    who.can_read(t.workspace_id)?;
    Ok(t)
}

/// Run `run`'s change (404 for a run the task does not have or one that
/// reported none), or, without `run`, the last run's that reported one.
fn change_of(conn: &Connection, t: &Task, run: Option<i64>) -> Result<Option<(i64, StoredChange)>> {
    let number = match run {
        Some(n) => n,
        None => match changes::last_changed_run(conn, t.id)? {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    match changes::of_run(conn, t.id, number)? {
        Some(c) => Ok(Some((number, c))),
        None if ops_store::runs::of_task(conn, t.id)?
            .iter()
            .any(|r| r.number == number) =>
        {
            Err(Error::not_found(format!(
                "run {number} of task {} reported no change",
                t.id
            )))
        }
        None => Err(Error::not_found(format!(
            "task {} has no run {number}",
            t.id
        ))),
    }
}

fn files_of(c: &StoredChange) -> Vec<FileDiff> {
    diff::parse(&c.change.patch, c.change.truncated)
}

/// `GET /api/tasks/:id/review[?run=N]`.
pub fn review(db: &Db, who: &Principal, id: i64, run: Option<i64>) -> Result<Review> {
    let conn = db.read()?;
    let t = readable(&conn, who, id)?;
    let comments = review_comments::of_task(&conn, id)?
        .iter()
        .map(views::review_comment)
        .collect();
    let Some((number, c)) = change_of(&conn, &t, run)? else {
        return Ok(Review {
            run: None,
            branch: None,
            base: None,
            head: None,
            truncated: false,
            files: Vec::new(),
            comments,
        });
    };
    Ok(Review {
        run: Some(number),
        files: files_of(&c)
            .iter()
            .enumerate()
            .map(|(i, f)| views::review_file(i, f))
            .collect(),
        branch: Some(c.change.branch),
        base: c.change.base,
        head: c.change.head,
        truncated: c.change.truncated,
        comments,
    })
}

/// `GET /api/tasks/:id/review/files/:index[?run=N]`.
pub fn file(
    db: &Db,
    who: &Principal,
    id: i64,
    index: i64,
    run: Option<i64>,
) -> Result<ReviewFileDiff> {
    let conn = db.read()?;
    let t = readable(&conn, who, id)?;
    let Some((number, c)) = change_of(&conn, &t, run)? else {
        return Err(Error::not_found(format!(
            "task {id} has no change to review"
        )));
    };
    let files = files_of(&c);
    let f = usize::try_from(index)
        .ok()
        .and_then(|i| files.get(i))
        .ok_or_else(|| {
            Error::not_found(format!(
                "run {number} of task {id} changed {} files: no file {index}",
                files.len()
            ))
        })?;
    Ok(ReviewFileDiff {
        run: number,
        file: views::review_file(index as usize, f),
        hunks: f.hunks.iter().map(views::review_hunk).collect(),
    })
}

/// `POST /api/tasks/:id/review/comments`: the lines must be in the file's
/// diff on that side, within one hunk, which is kept with the comment.
pub fn add_comment(db: &Db, who: &Principal, id: i64, c: NewComment) -> Result<ReviewComment> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        let Some((number, change)) = change_of(conn, &t, c.run)? else {
            return Err(Error::not_found(format!("task {id} has no change to review")));
        };
        let files = files_of(&change);
        let f = files
            .iter()
            .find(|f| f.path() == c.file)
            .or_else(|| files.iter().find(|f| f.old_path.as_deref() == Some(c.file.as_str())))
            .ok_or_else(|| {
                Error::invalid_field("file", format!("{:?} is not a file of run {number}'s change", c.file))
            })?;
        if f.binary {
            return Err(Error::invalid_field("file", format!("{:?} is binary: it has no lines to comment on", c.file)));
        }
        let side = c.side.unwrap_or(if f.status == FileStatus::Deleted { Side::Old } else { Side::New });
        let end_line = c.end_line.unwrap_or(c.line);
        if end_line < c.line {
            return Err(Error::invalid_field("end_line", format!("must be at least `line` ({})", c.line)));
        }
        let (first, last) = (u32::try_from(c.line).unwrap_or(u32::MAX), u32::try_from(end_line).unwrap_or(u32::MAX));
        let hunk = f.hunk_of(side, first, last).ok_or_else(|| {
            let lines = if first == last { format!("line {first}") } else { format!("lines {first}-{last}") };
            let hunks: Vec<&str> = f.hunks.iter().map(|h| h.header.as_str()).collect();
            Error::invalid_field(
                "line",
                format!("{lines} of the {} side of {:?} are not within one hunk of run {number}'s diff (hunks: {})",
                        side.as_str(), f.path(), if hunks.is_empty() { "none".into() } else { hunks.join(", ") }),
            )
        })?;
        let excerpt = hunk
            .excerpt(side, first, last, EXCERPT_AROUND, EXCERPT_LINES)
            .ok_or_else(|| Error::Internal("a covering hunk gave no excerpt".into()))?;
        let excerpt = cut(&excerpt, EXCERPT_BYTES);
        let actor = who.actor();
        let file = f.path().to_string();
        let cid = review_comments::add(
            conn,
            &NewReviewComment {
                task_id: id,
                run: number,
                file: &file,
                line: c.line,
                end_line,
                side: side.as_str(),
                body: &c.body,
                hunk: &excerpt,
                author: &actor,
            },
            now,
        )?;
        event(conn, now, Some(t.workspace_id), Some(id), "review.comment", &actor,
              json!({"comment_id": cid, "run": number, "file": file, "line": c.line,
                     "end_line": end_line, "side": side.as_str()}))?;
        review_comments::get(conn, id, cid)?
            .map(|c| views::review_comment(&c))
            .ok_or_else(|| Error::Internal("review comment vanished".into()))
    })
}

/// `DELETE /api/tasks/:id/review/comments/:cid`: an unsent comment, by its
/// author or an admin.
pub fn delete_comment(db: &Db, who: &Principal, id: i64, cid: i64) -> Result<Deleted> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, id)?;
        who.can_read(t.workspace_id)?;
        let c = review_comments::get(conn, id, cid)?
            .ok_or_else(|| Error::not_found(format!("task {id} has no review comment {cid}")))?;
        who.can_remove_writing_of(t.workspace_id, &c.author)?;
        if c.sent_at.is_some() {
            return Err(Error::conflict(
                "comment_sent",
                format!("review comment {cid} was sent to the agent; it stays as it was sent"),
            ));
        }
        review_comments::delete(conn, cid)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "review.comment_deleted",
            &who.actor(),
            json!({"comment_id": cid, "run": c.run, "file": c.file}),
        )?;
        Ok(Deleted { deleted: cid })
    })
}

/// `POST /api/tasks/:id/review/send`: the task's unsent comments (and
/// `message`, if any) go to the agent as one follow-up, by the rules of
/// any follow-up; they are marked sent only when it is queued.
pub fn send(db: &Db, who: &Principal, id: i64, message: Option<String>) -> Result<DispatchAnswer> {
    let who = who.clone();
    let outcome = db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        let unsent = review_comments::unsent(conn, id)?;
        if unsent.is_empty() && message.is_none() {
            return Err(Error::conflict(
                "no_comments",
                format!("task {id} has no review comment waiting to be sent, and no message was given"),
            ));
        }
        let text = compose(message.as_deref(), &unsent);
        if text.len() > SEND_MAX_BYTES {
            return Err(Error::conflict(
                "review_too_long",
                format!("the review's follow-up would be {} bytes, over {SEND_MAX_BYTES}: delete or shorten comments, \
                         or send part of them first", text.len()),
            ));
        }
        let chars = text.chars().count();
        let outcome = follow_up_in(conn, &who, id, text)?;
        if let FollowUpOutcome::Queued(..) = outcome {
            let count = review_comments::mark_sent(conn, id, now)?;
            event(conn, now, Some(t.workspace_id), Some(id), "review.sent", &who.actor(),
                  json!({"count": count, "chars": chars, "message": message.is_some()}))?;
        }
        Ok(outcome)
    })?;
    follow_up_answer(id, outcome)
}

/// The follow-up of a review: the message, then each comment as
/// `path:line[-end]`, its hunk excerpt fenced, and its body.
pub fn compose(message: Option<&str>, comments: &[review_comments::ReviewComment]) -> String {
    let mut out = String::new();
    if let Some(m) = message {
        out.push_str(m.trim_end());
        out.push('\n');
    }
    if comments.is_empty() {
        return out;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "Review comments on your change ({}). Each names a file and line{} of the diff of your branch \
         against its base, quotes that part of the diff, then says what to do:\n",
        comments.len(),
        if comments.iter().any(|c| c.side == "old") { " (\"old\": a line as it was before the change)" } else { "" }
    ));
    for (i, c) in comments.iter().enumerate() {
        let range = if c.end_line > c.line {
            format!("{}-{}", c.line, c.end_line)
        } else {
            c.line.to_string()
        };
        let side = if c.side == "old" { " (old)" } else { "" };
        // A fence longer than any run of backticks in the excerpt.
        let longest = c
            .hunk
            .split(|ch| ch != '`')
            .map(str::len)
            .max()
            .unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        out.push_str(&format!(
            "\n{}. {}:{range}{side}\n{fence}diff\n{}\n{fence}\n{}\n",
            i + 1,
            c.file,
            c.hunk,
            c.body.trim_end()
        ));
    }
    out
}

/// `s` cut to at most `max` bytes at a character boundary, with a mark.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[…]", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(
        file: &str,
        line: i64,
        end_line: i64,
        side: &str,
        hunk: &str,
        body: &str,
    ) -> review_comments::ReviewComment {
        review_comments::ReviewComment {
            id: 1,
            task_id: 1,
            run: 1,
            file: file.into(),
            line,
            end_line,
            side: side.into(),
            body: body.into(),
            hunk: hunk.into(),
            author: "user:ana".into(),
            created_at: 0,
            sent_at: None,
            sent_in_run: None,
        }
    }

    #[test]
    fn a_review_reads_as_paths_lines_hunks_and_bodies() {
        let text = compose(
            Some("Good start; three things."),
            &[
                comment(
                    "src/a.rs",
                    3,
                    3,
                    "new",
                    "@@ -1,2 +1,3 @@\n+let x = 1;",
                    "Name it `count`.",
                ),
                comment(
                    "old.txt",
                    1,
                    2,
                    "old",
                    "@@ -1,2 +0,0 @@\n-a\n-b",
                    "Keep this file.",
                ),
                comment(
                    "b.md",
                    4,
                    4,
                    "new",
                    "@@ -4 +4 @@\n+```rust",
                    "Close the fence.",
                ),
            ],
        );
        assert!(
            text.starts_with("Good start; three things.\n\nReview comments on your change (3)."),
            "{text}"
        );
        assert!(
            text.contains(
                "\n1. src/a.rs:3\n```diff\n@@ -1,2 +1,3 @@\n+let x = 1;\n```\nName it `count`.\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n2. old.txt:1-2 (old)\n```diff\n"), "{text}");
        assert!(
            text.contains("\n3. b.md:4\n````diff\n@@ -4 +4 @@\n+```rust\n````\nClose the fence.\n"),
            "{text}"
        );
        assert_eq!(compose(Some("Only this."), &[]), "Only this.\n");
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("héllo", 2), "h\n[…]");
        assert_eq!(cut("abc", 3), "abc");
    }
}
