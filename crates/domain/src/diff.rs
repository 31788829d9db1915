//! A unified diff as `git diff --binary` prints it (what a launcher reports
//! as a run's patch) split into files and hunks, each line numbered on the
//! side or sides it belongs to. Pure: text in, values out.
//!
//! What it reads: `diff --git` headers with plain or C-quoted paths,
//! `new file mode`, `deleted file mode`, `old mode`/`new mode`,
//! `similarity index` with `rename from/to` or `copy from/to`, `index`,
//! `---`/`+++`, hunks and their `\ No newline at end of file`, and binary
//! files (`Binary files … differ`, `GIT binary patch`), whose content is
//! skipped. A patch cut at the report's size limit ends in an incomplete
//! file: the last one, whose last hunk may have fewer lines than its header
//! says and whose last line may be cut.

/// How a file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
    Copied,
    /// Only its mode changed (no content).
    ModeChanged,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Added => "added",
            FileStatus::Modified => "modified",
            FileStatus::Deleted => "deleted",
            FileStatus::Renamed => "renamed",
            FileStatus::Copied => "copied",
            FileStatus::ModeChanged => "mode_changed",
        }
    }
}

/// A line of a hunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Context,
    Add,
    Del,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Context => "context",
            LineKind::Add => "add",
            LineKind::Del => "del",
        }
    }
}

/// Which version of a file a line number counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
}

impl Side {
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "old" => Some(Side::Old),
            "new" => Some(Side::New),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    /// Its number in the old file (context and deleted lines).
    pub old: Option<u32>,
    /// Its number in the new file (context and added lines).
    pub new: Option<u32>,
    /// The text without its `+`, `-` or space.
    pub text: String,
    /// Followed by `\ No newline at end of file`.
    pub no_newline: bool,
}

impl Line {
    /// The line's number on `side`, if it has one there.
    pub fn number(&self, side: Side) -> Option<u32> {
        match side {
            Side::Old => self.old,
            Side::New => self.new,
        }
    }

    /// The line as the diff wrote it: its mark, then its text.
    pub fn marked(&self) -> String {
        let mark = match self.kind {
            LineKind::Context => ' ',
            LineKind::Add => '+',
            LineKind::Del => '-',
        };
        format!("{mark}{}", self.text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// The whole `@@ -a,b +c,d @@ section` line.
    pub header: String,
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    pub lines: Vec<Line>,
}

impl Hunk {
    /// Whether every line from `first` to `last` of `side` is in this hunk.
    pub fn covers(&self, side: Side, first: u32, last: u32) -> bool {
        let mut numbers = self.lines.iter().filter_map(|l| l.number(side));
        let Some(low) = numbers.next() else {
            return false;
        };
        let high = numbers.next_back().unwrap_or(low);
        low <= first && first <= last && last <= high
    }

    /// The header and the lines from `first` to `last` of `side` with up to
    /// `around` lines before and after, at most `max_lines` lines in all
    /// (cut in the middle of the range, with a mark), as the diff wrote
    /// them. `None` when the hunk does not cover the range.
    pub fn excerpt(
        &self,
        side: Side,
        first: u32,
        last: u32,
        around: usize,
        max_lines: usize,
    ) -> Option<String> {
        if !self.covers(side, first, last) {
            return None;
        }
        let at = |n: u32| self.lines.iter().position(|l| l.number(side) == Some(n));
        let (from, to) = (at(first)?, at(last)?);
        let start = from.saturating_sub(around);
        let end = (to + around).min(self.lines.len() - 1);
        let mut out = vec![self.header.clone()];
        let shown: Vec<&Line> = self.lines[start..=end].iter().collect();
        let push = |out: &mut Vec<String>, l: &Line| {
            out.push(l.marked());
            if l.no_newline {
                out.push(NO_NEWLINE.to_string());
            }
        };
        if shown.len() <= max_lines.max(2) {
            shown.iter().for_each(|l| push(&mut out, l));
        } else {
            let head = max_lines.max(2) / 2;
            let tail = max_lines.max(2) - head;
            shown[..head].iter().for_each(|l| push(&mut out, l));
            out.push(format!("[… {} lines …]", shown.len() - head - tail));
            shown[shown.len() - tail..]
                .iter()
                .for_each(|l| push(&mut out, l));
        }
        Some(out.join("\n"))
    }
}

/// One file of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    /// Its path before (`None` for an added file).
    pub old_path: Option<String>,
    /// Its path after (`None` for a deleted file).
    pub new_path: Option<String>,
    pub status: FileStatus,
    /// A rename's or copy's similarity, in percent.
    pub similarity: Option<u8>,
    pub old_mode: Option<String>,
    pub new_mode: Option<String>,
    pub binary: bool,
    /// The patch was cut inside this file: what follows is missing.
    pub incomplete: bool,
    pub additions: u32,
    pub deletions: u32,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The path a person calls it by: the new one, or the old one of a
    /// deleted file.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }

    /// The hunk holding lines `first` to `last` of `side`.
    pub fn hunk_of(&self, side: Side, first: u32, last: u32) -> Option<&Hunk> {
        self.hunks.iter().find(|h| h.covers(side, first, last))
    }
}

const NO_NEWLINE: &str = "\\ No newline at end of file";

/// Splits `patch` into its files. `truncated`: the patch was cut at a size
/// limit, so its last file is incomplete (a last line without its newline
/// is dropped: it was cut).
pub fn parse(patch: &str, truncated: bool) -> Vec<FileDiff> {
    let mut text = patch;
    if truncated && !text.ends_with('\n') {
        text = text.rfind('\n').map_or("", |at| &text[..=at]);
    }
    let mut files: Vec<FileDiff> = Vec::new();
    // Split at `\n` only: a `\r` is part of its line's text.
    let lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    // Lines still expected in the current hunk, per side.
    let (mut old_left, mut new_left) = (0u32, 0u32);
    let (mut old_no, mut new_no) = (0u32, 0u32);
    // Inside a `GIT binary patch` block: skip to the next file.
    let mut skipping = false;
    for line in lines {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            if old_left > 0 || new_left > 0 {
                if let Some(f) = files.last_mut() {
                    f.incomplete = true;
                }
            }
            files.push(new_file(rest));
            (old_left, new_left, skipping) = (0, 0, false);
            continue;
        }
        let Some(file) = files.last_mut() else {
            // Text before the first file header (none from git).
            continue;
        };
        if old_left > 0 || new_left > 0 {
            // Inside a hunk: a line of it, whatever it says.
            let hunk = file.hunks.last_mut().expect("a hunk is open");
            let (kind, body) = match line.as_bytes().first() {
                Some(b'+') => (LineKind::Add, &line[1..]),
                Some(b'-') => (LineKind::Del, &line[1..]),
                Some(b' ') => (LineKind::Context, &line[1..]),
                // An empty context line whose space an editor took off.
                None => (LineKind::Context, ""),
                Some(b'\\') => {
                    if let Some(last) = hunk.lines.last_mut() {
                        last.no_newline = true;
                    }
                    continue;
                }
                // Not a hunk line: the hunk was shorter than its header.
                Some(_) => {
                    file.incomplete = true;
                    (old_left, new_left) = (0, 0);
                    continue;
                }
            };
            let (old, new) = match kind {
                LineKind::Add => {
                    new_left = new_left.saturating_sub(1);
                    file.additions += 1;
                    new_no += 1;
                    (None, Some(new_no - 1))
                }
                LineKind::Del => {
                    old_left = old_left.saturating_sub(1);
                    file.deletions += 1;
                    old_no += 1;
                    (Some(old_no - 1), None)
                }
                LineKind::Context => {
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                    old_no += 1;
                    new_no += 1;
                    (Some(old_no - 1), Some(new_no - 1))
                }
            };
            hunk.lines.push(Line {
                kind,
                old,
                new,
                text: body.to_string(),
                no_newline: false,
            });
            continue;
        }
        if skipping {
            continue;
        }
        if let Some(h) = line.strip_prefix("@@ ").and_then(|_| hunk_header(line)) {
            (old_left, new_left) = (h.old_lines, h.new_lines);
            (old_no, new_no) = (h.old_start.max(1), h.new_start.max(1));
            file.hunks.push(h);
        } else if line.starts_with('\\') {
            if let Some(last) = file.hunks.last_mut().and_then(|h| h.lines.last_mut()) {
                last.no_newline = true;
            }
        } else if let Some(mode) = line.strip_prefix("new file mode ") {
            file.status = FileStatus::Added;
            file.old_path = None;
            file.new_mode = Some(mode.trim().to_string());
        } else if let Some(mode) = line.strip_prefix("deleted file mode ") {
            file.status = FileStatus::Deleted;
            file.new_path = None;
            file.old_mode = Some(mode.trim().to_string());
        } else if let Some(mode) = line.strip_prefix("old mode ") {
            file.old_mode = Some(mode.trim().to_string());
        } else if let Some(mode) = line.strip_prefix("new mode ") {
            file.new_mode = Some(mode.trim().to_string());
        } else if let Some(p) = line.strip_prefix("similarity index ") {
            file.similarity = p.trim().trim_end_matches('%').parse().ok();
        } else if let Some(p) = line.strip_prefix("rename from ") {
            file.status = FileStatus::Renamed;
            file.old_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("rename to ") {
            file.status = FileStatus::Renamed;
            file.new_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("copy from ") {
            file.status = FileStatus::Copied;
            file.old_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("copy to ") {
            file.status = FileStatus::Copied;
            file.new_path = Some(unquote(p));
        } else if let Some(p) = line.strip_prefix("--- ") {
            file.old_path = label(p, "a/");
        } else if let Some(p) = line.strip_prefix("+++ ") {
            file.new_path = label(p, "b/");
        } else if line == "GIT binary patch" {
            file.binary = true;
            skipping = true;
        } else if line.starts_with("Binary files ") && line.ends_with(" differ") {
            file.binary = true;
        }
        // `index …`, `dissimilarity index`, anything else: nothing to keep.
    }
    for f in &mut files {
        if f.status == FileStatus::Modified
            && f.hunks.is_empty()
            && !f.binary
            && f.old_mode.is_some()
            && f.new_mode.is_some()
            && f.old_mode != f.new_mode
        {
            f.status = FileStatus::ModeChanged;
        }
    }
    if old_left > 0 || new_left > 0 {
        if let Some(f) = files.last_mut() {
            f.incomplete = true;
        }
    }
    if truncated {
        if let Some(f) = files.last_mut() {
            f.incomplete = true;
        }
    }
    files
}

/// A file from its `diff --git a/… b/…` line: both paths, which later
/// header lines may replace, and `modified` until they say otherwise.
fn new_file(rest: &str) -> FileDiff {
    let (old, new) = git_line_paths(rest);
    FileDiff {
        old_path: old,
        new_path: new,
        status: FileStatus::Modified,
        similarity: None,
        old_mode: None,
        new_mode: None,
        binary: false,
        incomplete: false,
        additions: 0,
        deletions: 0,
        hunks: Vec::new(),
    }
}

/// The two paths of a `diff --git` line (after `diff --git `). Quoted ones
/// are read as C strings; unquoted ones cannot be told apart where a path
/// holds ` b/`, so the line is split where both halves name the same path
/// (no rename), else at the first ` b/`.
fn git_line_paths(rest: &str) -> (Option<String>, Option<String>) {
    let strip = |p: String, prefix: &str| p.strip_prefix(prefix).map(str::to_string).unwrap_or(p);
    if rest.starts_with('"') {
        let (a, after) = quoted(rest);
        let b = after.trim_start();
        let b = if b.starts_with('"') {
            quoted(b).0
        } else {
            b.to_string()
        };
        return (Some(strip(a, "a/")), Some(strip(b, "b/")));
    }
    if let Some(at) = rest.find(" \"") {
        let a = rest[..at].to_string();
        let b = quoted(&rest[at + 1..]).0;
        return (Some(strip(a, "a/")), Some(strip(b, "b/")));
    }
    // `a/X b/X`: X is half of what is left of the prefixes and the space.
    if rest.len() >= 5 && (rest.len() - 5) % 2 == 0 {
        let n = (rest.len() - 5) / 2;
        if rest.is_char_boundary(2 + n) && rest.is_char_boundary(5 + n) {
            let (a, b) = (&rest[2..2 + n], &rest[5 + n..]);
            if rest.starts_with("a/") && &rest[2 + n..5 + n] == " b/" && a == b {
                return (Some(a.to_string()), Some(b.to_string()));
            }
        }
    }
    match rest.find(" b/") {
        Some(at) => (
            Some(strip(rest[..at].to_string(), "a/")),
            Some(rest[at + 3..].to_string()),
        ),
        None => (Some(rest.to_string()), Some(rest.to_string())),
    }
}

/// The path of a `---`/`+++` line: `None` for `/dev/null`; git adds a tab
/// after a name holding a space.
fn label(p: &str, prefix: &str) -> Option<String> {
    let p = p.strip_suffix('\t').unwrap_or(p);
    if p == "/dev/null" {
        return None;
    }
    let p = unquote(p);
    Some(p.strip_prefix(prefix).map(str::to_string).unwrap_or(p))
}

/// A path as git wrote it: C-quoted when it holds special characters.
fn unquote(p: &str) -> String {
    if p.starts_with('"') {
        quoted(p).0
    } else {
        p.to_string()
    }
}

/// Reads the C-quoted string at the start of `s` (`"…"` with `\n`, `\"`,
/// `\\`, `\303` and the like); the string and what follows it.
fn quoted(s: &str) -> (String, &str) {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), &s[i + 1..]),
            b'\\' if i + 1 < bytes.len() => {
                let c = bytes[i + 1];
                i += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'v' => out.push(0x0b),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut k = 0;
                        while k < 2 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                            v = v * 8 + u32::from(bytes[i] - b'0');
                            i += 1;
                            k += 1;
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), "")
}

/// `@@ -a[,b] +c[,d] @@[ section]`; a missing count is 1.
fn hunk_header(line: &str) -> Option<Hunk> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((s, n)) => Some((s.parse().ok()?, n.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (old_start, old_lines) = range(old)?;
    let (new_start, new_lines) = range(new)?;
    Some(Hunk {
        header: line.to_string(),
        old_start,
        old_lines,
        new_start,
        new_lines,
        lines: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODIFIED: &str = "\
diff --git a/src/lib.rs b/src/lib.rs
index 1111111..2222222 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,4 +1,5 @@ fn main() {
 one
-two
+deux
+trois
 three
 four
@@ -10,2 +11,2 @@
 ten
-eleven
+onze
";

    fn kinds(h: &Hunk) -> Vec<(&str, Option<u32>, Option<u32>, &str)> {
        h.lines
            .iter()
            .map(|l| (l.kind.as_str(), l.old, l.new, l.text.as_str()))
            .collect()
    }

    #[test]
    fn a_modified_file_has_its_hunks_and_numbered_lines() {
        let files = parse(MODIFIED, false);
        assert_eq!(files.len(), 1);
        let f = &files[0];
        assert_eq!(f.old_path.as_deref(), Some("src/lib.rs"));
        assert_eq!(f.new_path.as_deref(), Some("src/lib.rs"));
        assert_eq!(f.status, FileStatus::Modified);
        assert_eq!((f.additions, f.deletions), (3, 2));
        assert!(!f.binary && !f.incomplete);
        assert_eq!(f.hunks.len(), 2);
        let h = &f.hunks[0];
        assert_eq!(h.header, "@@ -1,4 +1,5 @@ fn main() {");
        assert_eq!(
            (h.old_start, h.old_lines, h.new_start, h.new_lines),
            (1, 4, 1, 5)
        );
        assert_eq!(
            kinds(h),
            [
                ("context", Some(1), Some(1), "one"),
                ("del", Some(2), None, "two"),
                ("add", None, Some(2), "deux"),
                ("add", None, Some(3), "trois"),
                ("context", Some(3), Some(4), "three"),
                ("context", Some(4), Some(5), "four"),
            ]
        );
        assert_eq!(
            kinds(&f.hunks[1]),
            [
                ("context", Some(10), Some(11), "ten"),
                ("del", Some(11), None, "eleven"),
                ("add", None, Some(12), "onze"),
            ]
        );
    }

    #[test]
    fn added_and_deleted_files_have_one_path() {
        let patch = "\
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+hello
+world
diff --git a/old.txt b/old.txt
deleted file mode 100755
index 4444444..0000000
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 2);
        let (a, d) = (&files[0], &files[1]);
        assert_eq!(a.status, FileStatus::Added);
        assert_eq!(
            (a.old_path.as_deref(), a.new_path.as_deref()),
            (None, Some("new.txt"))
        );
        assert_eq!(a.new_mode.as_deref(), Some("100644"));
        assert_eq!((a.additions, a.deletions), (2, 0));
        assert_eq!(kinds(&a.hunks[0])[1], ("add", None, Some(2), "world"));
        assert_eq!(d.status, FileStatus::Deleted);
        assert_eq!(
            (d.old_path.as_deref(), d.new_path.as_deref()),
            (Some("old.txt"), None)
        );
        assert_eq!(d.path(), "old.txt");
        assert_eq!((d.additions, d.deletions), (0, 1));
        assert_eq!(d.hunks[0].old_lines, 1, "a missing count is 1");
        assert_eq!(kinds(&d.hunks[0]), [("del", Some(1), None, "bye")]);
    }

    #[test]
    fn a_missing_newline_at_the_end_marks_the_line() {
        let patch = "\
diff --git a/a.txt b/a.txt
index 1..2 100644
--- a/a.txt
+++ b/a.txt
@@ -1 +1 @@
-old
\\ No newline at end of file
+new
\\ No newline at end of file
diff --git a/b.txt b/b.txt
index 1..2 100644
--- a/b.txt
+++ b/b.txt
@@ -1,2 +1,2 @@
 keep
-x
\\ No newline at end of file
+x
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 2);
        let lines = &files[0].hunks[0].lines;
        assert_eq!(lines.len(), 2);
        assert!(lines[0].no_newline && lines[1].no_newline);
        let lines = &files[1].hunks[0].lines;
        assert_eq!(lines.len(), 3);
        assert!(lines[1].no_newline && !lines[2].no_newline);
        assert!(!files[1].incomplete);
    }

    #[test]
    fn renames_and_copies_keep_both_paths_and_their_similarity() {
        let patch = "\
diff --git a/docs/old name.md b/docs/new name.md
similarity index 100%
rename from docs/old name.md
rename to docs/new name.md
diff --git a/src/a.rs b/src/b.rs
similarity index 87%
rename from src/a.rs
rename to src/b.rs
index 5..6 100644
--- a/src/a.rs
+++ b/src/b.rs
@@ -1,2 +1,2 @@
 fn a() {}
-fn b() {}
+fn c() {}
diff --git a/x.rs b/y.rs
similarity index 95%
copy from x.rs
copy to y.rs
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 3);
        let r = &files[0];
        assert_eq!(r.status, FileStatus::Renamed);
        assert_eq!(r.similarity, Some(100));
        assert_eq!(r.old_path.as_deref(), Some("docs/old name.md"));
        assert_eq!(r.new_path.as_deref(), Some("docs/new name.md"));
        assert!(r.hunks.is_empty());
        let r = &files[1];
        assert_eq!((r.status, r.similarity), (FileStatus::Renamed, Some(87)));
        assert_eq!(
            (r.old_path.as_deref(), r.new_path.as_deref()),
            (Some("src/a.rs"), Some("src/b.rs"))
        );
        assert_eq!((r.additions, r.deletions), (1, 1));
        assert_eq!(
            (files[2].status, files[2].similarity),
            (FileStatus::Copied, Some(95))
        );
        assert_eq!(files[2].new_path.as_deref(), Some("y.rs"));
    }

    #[test]
    fn quoted_paths_are_read_as_c_strings() {
        let patch = "\
diff --git \"a/caf\\303\\251 \\\"x\\\".txt\" \"b/caf\\303\\251 \\\"x\\\".txt\"
new file mode 100644
index 0..1
--- /dev/null
+++ \"b/caf\\303\\251 \\\"x\\\".txt\"
@@ -0,0 +1 @@
+hi
diff --git \"a/tab\\there\" \"b/tab\\there\"
old mode 100644
new mode 100755
diff --git a/with space.txt b/with space.txt
index 1..2 100644
--- a/with space.txt\t
+++ b/with space.txt\t
@@ -1 +1 @@
-a
+b
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].new_path.as_deref(), Some("café \"x\".txt"));
        assert_eq!(files[0].old_path, None);
        assert_eq!(files[1].new_path.as_deref(), Some("tab\there"));
        assert_eq!(files[1].status, FileStatus::ModeChanged);
        assert_eq!(
            (files[1].old_mode.as_deref(), files[1].new_mode.as_deref()),
            (Some("100644"), Some("100755"))
        );
        assert_eq!(files[2].new_path.as_deref(), Some("with space.txt"));
        assert_eq!(files[2].old_path.as_deref(), Some("with space.txt"));
        // Unquoted, from the `diff --git` line alone.
        assert_eq!(
            git_line_paths("a/a b/c.txt b/a b/c.txt"),
            (Some("a b/c.txt".into()), Some("a b/c.txt".into()))
        );
    }

    #[test]
    fn binary_files_are_marked_and_their_content_skipped() {
        let patch = "\
diff --git a/img.png b/img.png
new file mode 100644
index 0000000000000000000000000000000000000000..1234567890abcdef1234567890abcdef12345678
GIT binary patch
literal 12
TcmZ?wbhEHbRA2yN5C#AP0Y?A@

literal 0
HcmV?d00001

diff --git a/data.bin b/data.bin
index 1..2 100644
Binary files a/data.bin and b/data.bin differ
diff --git a/after.txt b/after.txt
index 1..2 100644
--- a/after.txt
+++ b/after.txt
@@ -1 +1 @@
-a
+b
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 3);
        assert!(files[0].binary && files[1].binary && !files[2].binary);
        assert_eq!(files[0].status, FileStatus::Added);
        assert_eq!(files[0].new_path.as_deref(), Some("img.png"));
        assert!(files[0].hunks.is_empty());
        assert_eq!(files[1].status, FileStatus::Modified);
        assert_eq!((files[1].additions, files[1].deletions), (0, 0));
        assert_eq!((files[2].additions, files[2].deletions), (1, 1));
    }

    #[test]
    fn a_patch_cut_at_its_limit_ends_in_an_incomplete_file() {
        let cut = &MODIFIED[..MODIFIED.find("+trois").unwrap() + 3];
        let files = parse(cut, true);
        assert_eq!(files.len(), 1);
        let f = &files[0];
        assert!(f.incomplete);
        // `+tr` was cut: dropped; what came before is kept.
        assert_eq!(f.hunks[0].lines.len(), 3);
        assert_eq!(f.hunks[0].lines[2].text, "deux");
        // Cut between files: the last one is incomplete, the others not.
        let two = format!("{MODIFIED}diff --git a/z b/z\nnew file mode 100644\n");
        let files = parse(&two, true);
        assert_eq!(files.len(), 2);
        assert!(!files[0].incomplete && files[1].incomplete);
        // Not said to be truncated, but a hunk shorter than its header.
        let files = parse(&MODIFIED[..MODIFIED.find(" three").unwrap()], false);
        assert!(files[0].incomplete);
        assert!(parse("", true).is_empty());
    }

    #[test]
    fn lines_that_look_like_headers_inside_a_hunk_are_lines() {
        let patch = "\
diff --git a/p.diff b/p.diff
index 1..2 100644
--- a/p.diff
+++ b/p.diff
@@ -1,2 +1,3 @@
--- a/x
++++ b/x
+diff --git a/y b/y
 @@ -1 +1 @@
";
        let files = parse(patch, false);
        assert_eq!(files.len(), 1);
        let k = kinds(&files[0].hunks[0]);
        assert_eq!(k[0], ("del", Some(1), None, "-- a/x"));
        assert_eq!(k[1], ("add", None, Some(1), "+++ b/x"));
        assert_eq!(k[2], ("add", None, Some(2), "diff --git a/y b/y"));
        assert_eq!(k[3], ("context", Some(2), Some(3), "@@ -1 +1 @@"));
    }

    #[test]
    fn an_excerpt_shows_the_range_with_its_surroundings() {
        let f = &parse(MODIFIED, false)[0];
        let h = f.hunk_of(Side::New, 2, 3).unwrap();
        assert_eq!(
            h.excerpt(Side::New, 2, 3, 1, 40).unwrap(),
            "@@ -1,4 +1,5 @@ fn main() {\n-two\n+deux\n+trois\n three"
        );
        assert_eq!(
            h.excerpt(Side::Old, 2, 2, 0, 40).unwrap(),
            "@@ -1,4 +1,5 @@ fn main() {\n-two"
        );
        // A range across two hunks, or outside any, is no hunk's.
        assert!(f.hunk_of(Side::New, 5, 11).is_none());
        assert!(f.hunk_of(Side::New, 7, 7).is_none());
        assert!(f.hunk_of(Side::Old, 12, 12).is_none());
        assert!(f.hunk_of(Side::New, 3, 2).is_none());
        // Capped: the middle is cut.
        let long = h.excerpt(Side::New, 1, 5, 0, 2).unwrap();
        assert_eq!(
            long,
            "@@ -1,4 +1,5 @@ fn main() {\n one\n[… 4 lines …]\n four"
        );
    }

    /// What `git diff --binary base..head` printed for a branch that
    /// deleted, modified, renamed, re-moded and added files (a binary one
    /// and one under a quoted path among them).
    #[test]
    fn real_git_output_is_read_whole() {
        let files = parse(include_str!("fixtures/git_diff_binary.patch"), false);
        let seen: Vec<(&str, &str, u32, u32, bool)> = files
            .iter()
            .map(|f| {
                (
                    f.path(),
                    f.status.as_str(),
                    f.additions,
                    f.deletions,
                    f.binary,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("del.txt", "deleted", 0, 1, false),
                ("eol.txt", "modified", 1, 1, false),
                ("img.png", "added", 0, 0, true),
                ("mod.txt", "modified", 2, 1, false),
                ("mode.sh", "mode_changed", 0, 0, false),
                ("renamed.txt", "renamed", 1, 0, false),
                ("sp ace/\u{e9}.txt", "modified", 1, 1, false),
            ]
        );
        assert!(files.iter().all(|f| !f.incomplete));
        assert_eq!(files[5].old_path.as_deref(), Some("ren.txt"));
        assert_eq!(files[5].similarity, Some(94));
        assert_eq!(files[5].hunks[0].lines[3].new, Some(21));
        assert!(files[1].hunks[0].lines.iter().all(|l| l.no_newline));
    }
}
