//! Counting what a transfer will move, ahead of the walk that sends it, so
//! the progress bar can show a real total and ETA. It only runs when the
//! bar is drawn (stderr is a terminal): scripts never pay for it.
//!
//! The count is a best effort: it reads metadata only, follows the same
//! links as the walk, and a tree that changes meanwhile just makes the
//! total a little off (the bar then grows as the walk goes).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sys::signals;

/// Running totals, shared with the thread that counts.
#[derive(Default)]
pub struct Census {
    pub bytes: AtomicU64,
    pub files: AtomicU64,
    pub done: AtomicBool,
}

/// Counts the bytes and files under `roots` on a new thread.
pub fn spawn(roots: Vec<PathBuf>, follow: bool) -> Arc<Census> {
    let census = Arc::new(Census::default());
    let shared = Arc::clone(&census);
    let counted = signals::spawn_worker("zcp-census", move || {
        for root in roots {
            count(&root, follow, &shared, true);
        }
        shared.done.store(true, Ordering::Relaxed);
    });
    if counted.is_err() {
        census.done.store(true, Ordering::Relaxed);
    }
    census
}

fn count(path: &std::path::Path, follow: bool, census: &Census, top: bool) {
    if signals::interrupted() {
        return;
    }
    let meta = if follow || top {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    let Ok(meta) = meta else { return };
    if meta.is_file() {
        census.bytes.fetch_add(meta.len(), Ordering::Relaxed);
        census.files.fetch_add(1, Ordering::Relaxed);
    } else if meta.is_dir()
        && let Ok(children) = std::fs::read_dir(path)
    {
        for child in children.flatten() {
            count(&child.path(), follow, census, false);
        }
    }
}
