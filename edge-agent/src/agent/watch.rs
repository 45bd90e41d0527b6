//! Watched folders: file events (notify, debounced) become work in the durable queue.
//!
//! Create and modify → index; delete → delete the document (a tombstone); rename → move the
//! document, keeping its id and vectors. Editors' temporary files, hidden files and the
//! configured patterns are skipped. When the kernel drops events (an overflowing inotify queue)
//! the watcher asks for a rescan, and a rescan on start reconciles what changed while the agent
//! was down: every file is queued (unchanged ones are skipped by content hash) and every document
//! whose file is gone is deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, DebouncedEvent};
use tokio::sync::mpsc;

use outpost_core::{Engine, WorkItem, WorkOp};

/// What the watcher reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// Work to queue.
    Work(Vec<WorkItem>),
    /// Events were lost: scan everything again.
    Rescan,
}

/// Which files are never indexed.
#[derive(Debug, Clone)]
pub struct Ignore {
    patterns: GlobSet,
    include_hidden: bool,
}

impl Ignore {
    /// From file-name globs.
    ///
    /// # Errors
    /// A pattern that is not a glob.
    pub fn new(patterns: &[String], include_hidden: bool) -> Result<Self> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(Glob::new(p).with_context(|| format!("ignore pattern '{p}'"))?);
        }
        Ok(Self {
            patterns: b.build()?,
            include_hidden,
        })
    }

    /// Whether `path` (under `root`) is skipped: a matching file name, or a hidden file or
    /// folder on the way from `root`.
    pub fn skips(&self, root: &Path, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(root) else {
            return true;
        };
        let hidden = rel
            .components()
            .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')));
        (hidden && !self.include_hidden)
            || path
                .file_name()
                .is_some_and(|n| self.patterns.is_match(Path::new(n)))
    }
}

/// Whether `path` is itself a symbolic link (not followed).
pub fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The watched folders, canonical.
#[derive(Debug, Clone)]
pub struct Folders {
    /// Canonical paths.
    pub dirs: Vec<PathBuf>,
    /// Their collection.
    pub collection: String,
    /// What to skip.
    pub ignore: Ignore,
}

impl Folders {
    /// Canonicalises `dirs`, which must exist and be folders.
    ///
    /// # Errors
    /// A folder that does not exist or is not one.
    pub fn new(dirs: &[PathBuf], collection: &str, ignore: Ignore) -> Result<Self> {
        let dirs = dirs
            .iter()
            .map(|d| {
                let c = std::fs::canonicalize(d)
                    .with_context(|| format!("watched folder {}", d.display()))?;
                anyhow::ensure!(c.is_dir(), "watched folder {} is not a folder", d.display());
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            dirs,
            collection: collection.to_string(),
            ignore,
        })
    }

    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| path.starts_with(d))
            .map(PathBuf::as_path)
    }

    /// Whether `path` is left alone: outside every watched folder, ignored, or a symbolic link
    /// (which could lead out of the watched folder; the start-up scan does not follow links
    /// either).
    fn skips(&self, path: &Path) -> bool {
        is_symlink(path)
            || self
                .root_of(path)
                .is_none_or(|root| self.ignore.skips(root, path))
    }

    fn item(&self, path: &Path, op: WorkOp) -> WorkItem {
        WorkItem {
            path: path.display().to_string(),
            op,
            collection: self.collection.clone(),
        }
    }

    /// Every file under `dir` that is not skipped, as index work.
    fn files_under(&self, dir: &Path) -> Vec<WorkItem> {
        walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.path() == dir || !self.skips(e.path()))
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| self.item(e.path(), WorkOp::Index))
            .collect()
    }

    /// The work a rescan finds: every file (to index or skip as unchanged), and a delete for
    /// every live document under a watched folder whose file is gone.
    ///
    /// # Errors
    /// Database errors.
    pub fn scan(&self, engine: &Engine) -> Result<Vec<WorkItem>> {
        let collection = engine.ensure_collection(&self.collection)?;
        let mut work = Vec::new();
        for dir in &self.dirs {
            let files = self.files_under(dir);
            let present: std::collections::HashSet<&str> =
                files.iter().map(|w| w.path.as_str()).collect();
            let prefix = format!("{}/", dir.display());
            for (_, source) in engine.live_sources_with_prefix(&collection, &prefix)? {
                if !present.contains(source.as_str()) {
                    work.push(self.item(Path::new(&source), WorkOp::Delete));
                }
            }
            work.extend(files);
        }
        Ok(work)
    }

    /// The work one debounced event means.
    fn work_for(&self, event: &DebouncedEvent) -> Vec<WorkItem> {
        let paths = &event.event.paths;
        match event.event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if paths.len() == 2 => {
                let (from, to) = (&paths[0], &paths[1]);
                if to.is_dir() && !is_symlink(to) {
                    // A folder renamed: its documents go and its files come back under the
                    // new name.
                    let mut work = vec![self.item(from, WorkOp::Delete)];
                    work.extend(self.files_under(to));
                    return work;
                }
                match (self.skips(from), self.skips(to)) {
                    (_, true) => vec![self.item(from, WorkOp::Delete)],
                    (true, false) => vec![self.item(to, WorkOp::Index)],
                    (false, false) => vec![self.item(
                        to,
                        WorkOp::Move {
                            from: from.display().to_string(),
                        },
                    )],
                }
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => paths
                .iter()
                .filter(|p| self.root_of(p).is_some())
                .map(|p| self.item(p, WorkOp::Delete))
                .collect(),
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => paths
                .iter()
                .flat_map(|p| {
                    if p.is_dir() {
                        if self.skips(p) {
                            Vec::new()
                        } else {
                            self.files_under(p)
                        }
                    } else if self.skips(p) {
                        Vec::new()
                    } else {
                        vec![self.item(p, WorkOp::Index)]
                    }
                })
                .collect(),
            EventKind::Access(_) | EventKind::Other => Vec::new(),
        }
    }
}

/// A running watcher; dropping it stops it.
pub struct Watcher {
    _debouncer: notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
}

/// Watches `folders`, sending what happens to `events`.
///
/// # Errors
/// The platform's watcher failing to start or to watch a folder.
pub fn start(
    folders: Folders,
    debounce: Duration,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<Watcher> {
    let dirs = folders.dirs.clone();
    let mut debouncer =
        new_debouncer(
            debounce,
            None,
            move |result: DebounceEventResult| match result {
                Ok(batch) => {
                    if batch.iter().any(|e| e.event.need_rescan()) {
                        let _ = events.send(WatchEvent::Rescan);
                        return;
                    }
                    let work: Vec<WorkItem> =
                        batch.iter().flat_map(|e| folders.work_for(e)).collect();
                    if !work.is_empty() {
                        let _ = events.send(WatchEvent::Work(work));
                    }
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::warn!(error = %e, "file watcher error; rescanning");
                    }
                    let _ = events.send(WatchEvent::Rescan);
                }
            },
        )
        .context("starting the file watcher")?;
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    Ok(Watcher {
        _debouncer: debouncer,
    })
}
