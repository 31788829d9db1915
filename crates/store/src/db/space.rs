//! Space kept for a full disk. A file of `OPS_DB_RESERVE_MB` (default 64)
//! is preallocated beside the database (`<db>-reserve`). When the disk
//! fills — a commit fails for want of space, Litestream cannot write its
//! staging files, or less than 1 MiB is left — the file is deleted, and
//! writes are refused (503 `storage_unavailable`) until space is back:
//! what the reserve frees goes to the work that must finish first, the
//! checkpoints that give the WAL's pages back, and Litestream staging and
//! uploading the writes already acknowledged, so that the replica holds
//! them and Litestream's read position moves on. Once at least twice the
//! reserve is free again the file is made anew and writes resume.
//!
//! With Litestream replicating the file, SQLite should never meet a full
//! disk in the middle of a commit: a commit that fails there leaves part
//! of a transaction in the WAL, which Litestream reads itself (see
//! BENCHMARKS.md, "Litestream at the edges", for the damaged restores the
//! rounds of `tests/it/disk_full.rs` found on the way). So 16 MiB
//! after the end of the `-wal` file are kept allocated ahead of it
//! (`fallocate` with `FALLOC_FL_KEEP_SIZE`: its size does not change), the
//! disk is looked at ten times a second, and writes stop while less than
//! 1 MiB is left, before a commit can run out of room; they resume once
//! there is room for the reserve twice over (or 32 MiB without a
//! reserve). The same is done for the `-shm` file (1 MiB ahead), which
//! grows by 32 KiB each time the WAL reaches a size it never had: a commit
//! whose frames are written but whose index cannot grow fails with an I/O
//! error while its frames, commit mark included, stay in the WAL for
//! Litestream to read (measured: a replica that restored damaged). Its
//! descriptor is opened once and never closed: closing any descriptor of
//! the `-shm` would drop the fcntl locks this process's SQLite connections
//! hold on it.
//!
//! Without Litestream and without a reserve (0, or one that never fitted)
//! a full disk is met as before: each write is tried, and they succeed
//! again as soon as space is back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Less than this left on the disk counts as full.
const LOW: u64 = 1024 * 1024;
/// How often the free space is looked at.
const EVERY: Duration = Duration::from_millis(100);
/// With Litestream: space kept allocated after the end of the `-wal`
/// file, so that no commit meets a full disk before the next look.
const WAL_RUNWAY: u64 = 16 * 1024 * 1024;
const SHM_RUNWAY: u64 = 1024 * 1024;
/// With Litestream and no reserve: writes resume once this much is free.
const RESUME_WITHOUT_RESERVE: u64 = 2 * WAL_RUNWAY;

/// The reserve's file beside the database.
pub fn reserve_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-reserve");
    PathBuf::from(s)
}

/// The space kept for a full disk; does nothing unless `start` was called
/// with a size.
#[derive(Default)]
pub struct Space {
    path: Mutex<Option<PathBuf>>,
    /// The reserve's size (0: none).
    want: AtomicU64,
    /// Whether the file is in place.
    held: AtomicBool,
    /// Litestream replicates the file: keep the WAL's runway, and stop
    /// writes before the disk is full even without a reserve.
    replicated: AtomicBool,
    /// Writes are refused until the reserve is back.
    gated: AtomicBool,
    /// Free bytes on the database's disk at the last look.
    free: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Space {
    /// Makes (or keeps) the reserve of `bytes` beside `db` and starts the
    /// thread that watches the disk; `litestream_full` says whether
    /// Litestream last failed for want of space.
    pub fn start(
        self: &Arc<Self>,
        db: &Path,
        bytes: u64,
        replicated: bool,
        litestream_full: impl Fn() -> bool + Send + 'static,
    ) {
        let path = reserve_path(db);
        self.replicated.store(replicated, Ordering::SeqCst);
        if bytes == 0 {
            // A reserve left by an earlier configuration is space to give back.
            let _ = std::fs::remove_file(&path);
            if !replicated {
                return;
            }
        }
        *lock(&self.path) = Some(path.clone());
        self.want.store(bytes, Ordering::SeqCst);
        let made = if bytes == 0 {
            Err(std::io::Error::other("no reserve"))
        } else {
            make(&path, bytes)
        };
        match made {
            Ok(()) if bytes == 0 => {}
            Ok(()) => {
                self.held.store(true, Ordering::SeqCst);
                log::info!(
                    "disk space: {} MiB reserved in {} for a full disk",
                    bytes / (1024 * 1024),
                    path.display()
                );
            }
            Err(_) if bytes == 0 => {}
            Err(e) => log::warn!(
                "disk space: cannot reserve {} MiB in {} ({e}); it is made once {} MiB are free",
                bytes / (1024 * 1024),
                path.display(),
                2 * bytes / (1024 * 1024)
            ),
        }
        self.free
            .store(free_bytes(&path).unwrap_or(0), Ordering::SeqCst);
        let me = self.clone();
        let db = db.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("db-space".into())
            .spawn(move || me.watch(&db, &path, litestream_full))
            .expect("spawn space thread");
        *lock(&self.thread) = Some(thread);
    }

    pub fn stop(&self) {
        *lock(&self.stop) = true;
        self.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// Whether writes are refused until space is back.
    pub fn gated(&self) -> bool {
        self.gated.load(Ordering::SeqCst)
    }

    /// The reserve's size, and whether it is in place.
    pub fn reserve(&self) -> (u64, bool) {
        (
            self.want.load(Ordering::SeqCst),
            self.held.load(Ordering::SeqCst),
        )
    }

    /// Free bytes on the database's disk at the last look (0 without a
    /// reserve).
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::SeqCst)
    }

    /// A commit failed with an I/O error: if that was the disk filling (the
    /// `-shm` could not grow), the same as `full`.
    pub fn io_failed(&self) {
        let low = lock(&self.path)
            .as_deref()
            .and_then(|p| free_bytes(p).ok())
            .is_some_and(|free| free < LOW);
        if low {
            self.full("a commit failed with an I/O error on a full disk");
        }
    }

    /// The disk is full (a commit failed for want of space): the reserve
    /// goes, and writes wait for space. Called by the writer.
    pub fn full(&self, why: &str) {
        let held = self.held.swap(false, Ordering::SeqCst);
        if !held {
            // Nothing to give back: with Litestream, writes still wait for
            // room; without it, they are tried as before.
            if self.replicated.load(Ordering::SeqCst) && !self.gated.swap(true, Ordering::SeqCst) {
                log::warn!(
                    "disk space: {why}: writes are refused until {} MiB are free",
                    self.resume_at() / (1024 * 1024)
                );
            }
            return;
        }
        self.gated.store(true, Ordering::SeqCst);
        if let Some(path) = lock(&self.path).clone() {
            match std::fs::remove_file(&path) {
                Ok(()) => log::warn!(
                    "disk space: {why}: released the {} MiB reserve {} so that checkpoints and \
                     Litestream can go on; writes are refused until {} MiB are free",
                    self.want.load(Ordering::SeqCst) / (1024 * 1024),
                    path.display(),
                    self.resume_at() / (1024 * 1024)
                ),
                Err(e) => log::error!("disk space: cannot delete {}: {e}", path.display()),
            }
        }
    }

    /// The free space at which held writes resume.
    pub fn resume_at(&self) -> u64 {
        let want = self.want.load(Ordering::SeqCst);
        if want == 0 {
            RESUME_WITHOUT_RESERVE
        } else {
            2 * want
        }
    }

    fn watch(&self, db: &Path, path: &Path, litestream_full: impl Fn() -> bool) {
        let want = self.want.load(Ordering::SeqCst);
        let replicated = self.replicated.load(Ordering::SeqCst);
        let side = |suffix: &str| {
            let mut s = db.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        let wal = side("-wal");
        let shm_path = side("-shm");
        // Opened once, never closed (see the module's comment).
        let mut shm: Option<std::mem::ManuallyDrop<std::fs::File>> = None;
        loop {
            {
                let stop = lock(&self.stop);
                let (stop, _) = self
                    .wake
                    .wait_timeout_while(stop, EVERY, |s| !*s)
                    .unwrap_or_else(|p| p.into_inner());
                if *stop {
                    return;
                }
            }
            let free = free_bytes(path).unwrap_or(u64::MAX);
            self.free.store(free, Ordering::SeqCst);
            let gated = self.gated.load(Ordering::SeqCst);
            if !gated {
                if free < LOW {
                    self.full(&format!("only {free} bytes left on the database's disk"));
                } else if litestream_full() {
                    self.full("Litestream cannot write its staging files (disk full)");
                } else if replicated {
                    if shm.is_none() {
                        shm = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(&shm_path)
                            .ok()
                            .map(std::mem::ManuallyDrop::new);
                    }
                    let shm_room = shm
                        .as_ref()
                        .map_or(Ok(()), |f| allocate_ahead(f, SHM_RUNWAY));
                    if let Err(e) = runway(&wal, WAL_RUNWAY).and(shm_room) {
                        self.full(&format!("no room ahead of the WAL ({e})"));
                    }
                }
                if want > 0 && !self.held.load(Ordering::SeqCst) && free >= 2 * want {
                    self.remake(path, want, free);
                }
            } else if free >= self.resume_at() {
                if want > 0 && !self.remake(path, want, free) {
                    continue;
                }
                self.gated.store(false, Ordering::SeqCst);
                log::info!(
                    "disk space: {} MiB free again; writes resume",
                    free / (1024 * 1024)
                );
            }
        }
    }

    /// Makes the reserve again; whether it is in place.
    fn remake(&self, path: &Path, want: u64, free: u64) -> bool {
        match make(path, want) {
            Ok(()) => {
                self.held.store(true, Ordering::SeqCst);
                log::info!(
                    "disk space: {} MiB reserved in {} ({} MiB were free)",
                    want / (1024 * 1024),
                    path.display(),
                    free / (1024 * 1024)
                );
                true
            }
            Err(e) => {
                log::debug!("disk space: cannot make the reserve yet: {e}");
                false
            }
        }
    }
}

/// Keeps `bytes` allocated after the end of `file` without changing its
/// size (nothing to do when it does not exist yet). Only for the `-wal`:
/// SQLite holds no fcntl lock on it, so this descriptor's close drops none.
fn runway(file: &Path, bytes: u64) -> std::io::Result<()> {
    let f = match std::fs::OpenOptions::new().write(true).open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    allocate_ahead(&f, bytes)
}

/// Allocates `bytes` after the end of `f`, its size unchanged.
fn allocate_ahead(f: &std::fs::File, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = f.metadata()?.len();
    // SAFETY: fallocate on a descriptor this function owns.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            len as libc::off_t,
            bytes as libc::off_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the reserve: `bytes` really allocated (not a sparse file), mode
/// 0600; nothing is left behind when that fails. An existing file of the
/// right size is kept.
fn make(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: posix_fallocate on a descriptor this function owns.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, bytes as libc::off_t) };
    let done = if rc == 0 {
        f.sync_all()
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    };
    if done.is_err() {
        drop(f);
        let _ = std::fs::remove_file(path);
    }
    done
}

/// The bytes this process may still write on the file system of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct from a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ops.db");
        let space = Arc::new(Space::default());
        space.start(&db, 1024 * 1024, false, || false);
        let file = reserve_path(&db);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 1024 * 1024);
        assert_eq!(space.reserve(), (1024 * 1024, true));
        assert!(!space.gated());
        space.full("test");
        assert!(!file.exists());
        assert!(space.gated());
        // The temp dir's disk has room: the watcher makes it again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while space.gated() {
            assert!(std::time::Instant::now() < deadline, "reserve not back");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(file.exists());
        space.stop();
        // 0: none, and an old one is given back.
        let none = Arc::new(Space::default());
        none.start(&db, 0, false, || false);
        assert!(!file.exists());
        none.full("test");
        assert!(!none.gated());
    }
}
