//! Reviewing a task's change file by file: the files and hunks of a run's
//! diff, comments on their lines, and sending the comments to the agent as
//! a follow-up.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One file of a run's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewFile {
    /// Its place in the diff, from 0: what `review/files/{index}` takes.
    pub index: i64,
    /// Its path before the change (null for an added file).
    pub old_path: Option<String>,
    /// Its path after the change (null for a deleted file).
    pub new_path: Option<String>,
    /// `added`, `modified`, `deleted`, `renamed`, `copied` or
    /// `mode_changed` (only its mode changed).
    pub status: String,
    /// A rename's or copy's similarity, in percent.
    pub similarity: Option<i64>,
    /// Lines added and deleted (0 for a binary file).
    pub additions: i64,
    pub deletions: i64,
    /// A binary file: no hunks.
    pub binary: bool,
    /// The patch was cut (at 256 KiB) inside this file: the rest is missing.
    pub incomplete: bool,
}

/// A comment on lines of a run's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewComment {
    pub id: i64,
    /// The number of the run whose change it is on.
    pub run: i64,
    /// The file: its new path, or the old one of a deleted file.
    pub file: String,
    pub line: i64,
    /// The last line of the range (`line` for one line).
    pub end_line: i64,
    /// `new` or `old`: which version of the file the numbers count in.
    pub side: String,
    pub body: String,
    /// The hunk's header and the lines around the range, as the diff
    /// wrote them: what the agent is shown with the comment.
    pub hunk: String,
    pub author: String,
    pub created_at: String,
    /// When a review sent it to the agent (null: not yet).
    pub sent_at: Option<String>,
    /// The number of the run that took the follow-up sending it (null until
    /// that run starts).
    pub sent_in_run: Option<i64>,
}

/// `GET /api/tasks/:id/review`: a run's change as files, and the task's
/// review comments (of all runs), oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// The run whose change this is (null: no run reported a change yet,
    /// and `files` is empty).
    pub run: Option<i64>,
    pub branch: Option<String>,
    /// The commit the branch is compared with.
    pub base: Option<String>,
    /// The branch's commit as of that run.
    pub head: Option<String>,
    /// The patch was cut at 256 KiB: its last file is incomplete and later
    /// files are missing.
    pub truncated: bool,
    pub files: Vec<ReviewFile>,
    pub comments: Vec<ReviewComment>,
}

/// One line of a hunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewLine {
    /// `context`, `add` or `del`.
    pub kind: String,
    /// Its number in the old file (context and deleted lines).
    pub old: Option<i64>,
    /// Its number in the new file (context and added lines).
    pub new: Option<i64>,
    /// The line without its `+`, `-` or space.
    pub text: String,
    /// The file ends here without a newline.
    pub no_newline: bool,
}

/// A hunk: `@@ -old_start,old_lines +new_start,new_lines @@`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewHunk {
    pub header: String,
    pub old_start: i64,
    pub old_lines: i64,
    pub new_start: i64,
    pub new_lines: i64,
    pub lines: Vec<ReviewLine>,
}

/// `GET /api/tasks/:id/review/files/:index`: one file of a run's change
/// and its hunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewFileDiff {
    /// The run whose change this is.
    pub run: i64,
    #[serde(flatten)]
    pub file: ReviewFile,
    pub hunks: Vec<ReviewHunk>,
}

/// `POST /api/tasks/:id/review/comments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewReviewComment {
    /// The run whose change it is on (default: the last run that reported
    /// a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    /// The file's new path, or the old one of a deleted file.
    pub file: String,
    pub line: i64,
    /// The last line of a range (default: `line`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<i64>,
    /// `new` (default; `old` for a deleted file) or `old`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// 1 to 10,000 characters.
    pub body: String,
}

/// `POST /api/tasks/:id/review/send`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewSend {
    /// What the agent reads before the comments (at most 20,000
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
