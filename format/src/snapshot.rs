//! Writing, publishing, opening and verifying snapshot directories.
//!
//! Layout: `OUT` is a symbolic link to a generation directory `.OUT.gen-<nanos>-<pid>`
//! beside it. A build writes a new generation, fsyncs it, and atomically renames a new link
//! over `OUT`, so a reader that resolves `OUT` once sees one whole generation or the
//! previous one, never a mix. The previous generation is kept (a server may still map it);
//! older ones are removed.

use std::fs::{self, File};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::Mmap;
use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::Portable;

use crate::container;
use crate::manifest::{FileEntry, Manifest};
use crate::model::{Availability, Fares, Mct, Network, Places};
use crate::{Error, Result, FORMAT_VERSION};

pub const MANIFEST_FILE: &str = "MANIFEST";
pub const PLACES_DIR: &str = "places";

/// The archives of a snapshot: file name and footer kind.
pub const NETWORK: (&str, &str) = ("network.rkyv", "network");
pub const FARES: (&str, &str) = ("fares.rkyv", "fares");
pub const AVAILABILITY: (&str, &str) = ("availability.rkyv", "avail");
pub const MCT: (&str, &str) = ("mct.rkyv", "mct");
pub const PLACES: (&str, &str) = ("places.rkyv", "places");

/// Files written as `MANIFEST` are capped so a corrupt length cannot make us read gigabytes.
const MANIFEST_MAX_BYTES: u64 = 64 << 20;

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

fn write_file_synced(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io("create", path, e))?;
    for p in parts {
        f.write_all(p).map_err(|e| Error::io("write", path, e))?;
    }
    f.sync_all().map_err(|e| Error::io("fsync", path, e))
}

fn hash_file(path: &Path) -> Result<FileEntry> {
    let bytes = fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(FileEntry {
        name: String::new(),
        bytes: bytes.len() as u64,
        xxh3: format!("{:016x}", container::checksum(&bytes)),
    })
}

/// Current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::date::format_utc_seconds(secs)
}

/// Writes one snapshot generation; `finish` publishes it.
pub struct SnapshotWriter {
    out: PathBuf,
    gen_dir: PathBuf,
    files: Vec<FileEntry>,
    published: bool,
}

impl SnapshotWriter {
    /// Starts a new generation next to `out` (which need not exist yet).
    pub fn create(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Publish {
                path: out.to_path_buf(),
                message: "the output path has no usable final component".into(),
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| Error::io("create directory", &parent, e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let gen_dir = parent.join(format!(".{name}.gen-{nanos:020}-{}", std::process::id()));
        fs::create_dir(&gen_dir).map_err(|e| Error::io("create directory", &gen_dir, e))?;
        Ok(SnapshotWriter {
            out: out.to_path_buf(),
            gen_dir,
            files: Vec::new(),
            published: false,
        })
    }

    /// The directory being written (for the places index and tests).
    pub fn dir(&self) -> &Path {
        &self.gen_dir
    }

    pub fn places_dir(&self) -> PathBuf {
        self.gen_dir.join(PLACES_DIR)
    }

    /// Serializes `value` as the archive `(file, kind)`.
    pub fn write_archive<T>(&mut self, (file, kind): (&str, &str), value: &T) -> Result<()>
    where
        T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    {
        let bytes = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| Error::Serialize {
            what: "archive",
            message: format!("{file}: {e}"),
        })?;
        let footer = container::footer(kind, &bytes);
        let path = self.gen_dir.join(file);
        write_file_synced(&path, &[&bytes, &footer])?;
        let mut whole = container::checksum_streaming();
        whole.update(&bytes);
        whole.update(&footer);
        self.files.push(FileEntry {
            name: file.to_string(),
            bytes: (bytes.len() + footer.len()) as u64,
            xxh3: format!("{:016x}", whole.digest()),
        });
        Ok(())
    }

    /// Records every file of the places index, writes the manifest and publishes.
    /// Returns the published generation directory.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<PathBuf> {
        let places = self.places_dir();
        if places.is_dir() {
            let mut names: Vec<String> = Vec::new();
            for entry in fs::read_dir(&places).map_err(|e| Error::io("list", &places, e))? {
                let entry = entry.map_err(|e| Error::io("list", &places, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Lock files are tantivy's run-time state, not content.
                if name.starts_with(".tantivy-") && name.ends_with(".lock") {
                    continue;
                }
                names.push(name);
            }
            names.sort();
            for name in names {
                let path = places.join(&name);
                // tantivy creates some files 0600; servers may run as another user.
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .map_err(|e| Error::io("set permissions of", &path, e))?;
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("fsync", &path, e))?;
                let mut entry = hash_file(&path)?;
                entry.name = format!("{PLACES_DIR}/{name}");
                self.files.push(entry);
            }
            fsync_dir(&places)?;
        }
        manifest.format_version = FORMAT_VERSION;
        manifest.created_at = now_rfc3339();
        let mut id = container::checksum_streaming();
        for f in &self.files {
            id.update(f.name.as_bytes());
            id.update(f.xxh3.as_bytes());
        }
        id.update(manifest.created_at.as_bytes());
        manifest.snapshot_id = format!("{:016x}", id.digest());
        manifest.files = self.files.clone();
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Serialize {
            what: "manifest",
            message: e.to_string(),
        })?;
        let footer = container::footer("manifest", &json);
        write_file_synced(&self.gen_dir.join(MANIFEST_FILE), &[&json, &footer])?;
        fsync_dir(&self.gen_dir)?;
        // A writer bug must not reach readers: the generation is opened with every check
        // a reader makes before it is published.
        Snapshot::open(&self.gen_dir)?;
        publish(&self.gen_dir, &self.out)?;
        self.published = true;
        Ok(self.gen_dir.clone())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // A build that failed leaves nothing behind for a reader to find.
        if !self.published {
            let _ = fs::remove_dir_all(&self.gen_dir);
        }
    }
}

fn publish(gen_dir: &Path, out: &Path) -> Result<()> {
    let perr = |message: String| Error::Publish {
        path: out.to_path_buf(),
        message,
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| perr("no final path component".into()))?
        .to_string();
    match fs::symlink_metadata(out) {
        Ok(md) if md.file_type().is_symlink() => {}
        Ok(md) if md.is_dir() => {
            let empty = fs::read_dir(out)
                .map_err(|e| Error::io("list", out, e))?
                .next()
                .is_none();
            if !empty {
                return Err(perr(
                    "it is a non-empty directory that is not a snapshot link; refusing to replace it"
                        .into(),
                ));
            }
            fs::remove_dir(out).map_err(|e| Error::io("remove empty directory", out, e))?;
        }
        Ok(_) => return Err(perr("it exists and is not a directory or link".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect", out, e)),
    }
    let target = gen_dir
        .file_name()
        .ok_or_else(|| perr("generation directory has no name".into()))?;
    let tmp_link = parent.join(format!(".{name}.link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(target, &tmp_link)
        .map_err(|e| Error::io("create link", &tmp_link, e))?;
    fs::rename(&tmp_link, out).map_err(|e| Error::io("rename link over", out, e))?;
    fsync_dir(&parent)?;
    collect_garbage(&parent, &name, gen_dir);
    Ok(())
}

/// Removes generations older than the current one and the one before it.
fn collect_garbage(parent: &Path, name: &str, current: &Path) {
    let prefix = format!(".{name}.gen-");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let mut gens: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    gens.sort();
    let current_name = current
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(pos) = gens.iter().position(|g| *g == current_name) else {
        return;
    };
    for old in gens.iter().take(pos.saturating_sub(1)) {
        let _ = fs::remove_dir_all(parent.join(old));
    }
}

/// A validated, memory-mapped rkyv archive.
pub struct Archive<T: rkyv::Archive> {
    mmap: Mmap,
    payload_len: usize,
    _type: PhantomData<T>,
}

impl<T> Archive<T>
where
    T: rkyv::Archive,
    T::Archived: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    /// Maps `path`, checks its footer and checksum, and validates the archive structure.
    /// After that, reads are zero-copy and unchecked.
    pub fn open(path: &Path, kind: &str) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                Error::io("open", path, e)
            }
        })?;
        // SAFETY: snapshot files are immutable once published (writers create new
        // generations, never rewrite one), so the mapping does not change under us.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map", path, e))?;
        let payload_len = container::check(path, kind, &mmap)?.payload.len();
        rkyv::access::<T::Archived, rancor::Error>(&mmap[..payload_len])
            .map_err(|e| Error::corrupt(path, format!("invalid archive structure: {e}")))?;
        // Validation touched every page; give them back so resident memory reflects what
        // queries use, not the whole file.
        let archive = Archive {
            mmap,
            payload_len,
            _type: PhantomData,
        };
        archive.release_pages();
        Ok(archive)
    }

    /// Drops this mapping's resident pages (they stay in the page cache and fault back in
    /// on access), so a full validation pass does not leave the whole file resident.
    pub fn release_pages(&self) {
        // SAFETY: the mapping is read-only and file-backed; dropped pages are re-read from
        // the file on the next access.
        let _ = unsafe {
            self.mmap
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }

    #[inline]
    pub fn get(&self) -> &T::Archived {
        // SAFETY: `open` validated these exact bytes with checked access, and the mapping
        // is immutable.
        unsafe { rkyv::access_unchecked::<T::Archived>(&self.mmap[..self.payload_len]) }
    }

    pub fn file_len(&self) -> usize {
        self.mmap.len()
    }
}

/// An open, fully validated snapshot.
pub struct Snapshot {
    /// The generation directory (the link resolved once).
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub network: Archive<Network>,
    pub fares: Archive<Fares>,
    pub availability: Archive<Availability>,
    pub mct: Archive<Mct>,
    pub places: Archive<Places>,
    pub places_index: tantivy::Index,
}

/// Reads and checks the manifest of a generation directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let md = fs::metadata(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: path.clone(),
                what: "no manifest: not a snapshot directory",
            }
        } else {
            Error::io("stat", &path, e)
        }
    })?;
    if md.len() > MANIFEST_MAX_BYTES {
        return Err(Error::corrupt(
            &path,
            format!("{} bytes is too large for a manifest", md.len()),
        ));
    }
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let checked = container::check(&path, "manifest", &bytes)?;
    let manifest: Manifest = serde_json::from_slice(checked.payload)
        .map_err(|e| Error::corrupt(&path, format!("invalid manifest JSON: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::corrupt(
            &path,
            format!(
                "manifest format version {}, this build reads version {FORMAT_VERSION}",
                manifest.format_version
            ),
        ));
    }
    Ok(manifest)
}

fn check_listed_file(dir: &Path, entry: &FileEntry) -> Result<()> {
    if entry.name.contains("..") || entry.name.starts_with('/') {
        return Err(Error::corrupt(
            dir.join(MANIFEST_FILE),
            format!("file name {:?} escapes the snapshot", entry.name),
        ));
    }
    let path = dir.join(&entry.name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing { path }),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", &path, e))?
        .len();
    if len == 0 {
        return Err(Error::corrupt(
            &path,
            format!("empty, the manifest says {} bytes", entry.bytes),
        ));
    }
    // Mapped, not read: the pages go back when the mapping is dropped, so checking a large
    // snapshot leaves neither the heap nor the resident set grown.
    // SAFETY: published generations are immutable.
    let bytes = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map", &path, e))?;
    if bytes.len() as u64 != entry.bytes {
        return Err(Error::corrupt(
            &path,
            format!(
                "size {} bytes, the manifest says {} (truncated or replaced)",
                bytes.len(),
                entry.bytes
            ),
        ));
    }
    let sum = format!("{:016x}", container::checksum(&bytes));
    if sum != entry.xxh3 {
        return Err(Error::corrupt(
            &path,
            format!("checksum mismatch: manifest {}, computed {sum}", entry.xxh3),
        ));
    }
    Ok(())
}

impl Snapshot {
    /// Opens `dir` (a snapshot link or a generation directory), validating every file once:
    /// footers, checksums, archive structure, and the cross-references between archives.
    pub fn open(dir: &Path) -> Result<Snapshot> {
        let dir = fs::canonicalize(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    path: dir.to_path_buf(),
                    what: "no such snapshot directory",
                }
            } else {
                Error::io("resolve", dir, e)
            }
        })?;
        let manifest = read_manifest(&dir)?;
        for name in [NETWORK.0, FARES.0, AVAILABILITY.0, MCT.0, PLACES.0] {
            if !manifest.files.iter().any(|f| f.name == name) {
                return Err(Error::corrupt(
                    dir.join(MANIFEST_FILE),
                    format!("does not list {name}"),
                ));
            }
        }
        // Whole-file checksums against the manifest catch a file swapped in from another
        // snapshot even when its own footer is intact; the places index has no footers of
        // ours, so this is its only integrity check.
        for entry in &manifest.files {
            check_listed_file(&dir, entry)?;
        }
        let network = Archive::<Network>::open(&dir.join(NETWORK.0), NETWORK.1)?;
        let fares = Archive::<Fares>::open(&dir.join(FARES.0), FARES.1)?;
        let availability =
            Archive::<Availability>::open(&dir.join(AVAILABILITY.0), AVAILABILITY.1)?;
        let mct = Archive::<Mct>::open(&dir.join(MCT.0), MCT.1)?;
        let places = Archive::<Places>::open(&dir.join(PLACES.0), PLACES.1)?;
        let places_dir = dir.join(PLACES_DIR);
        let places_index = crate::places::open(&places_dir).map_err(|e| {
            Error::corrupt(&places_dir, format!("cannot open the places index: {e}"))
        })?;
        crate::places::fields(&places_index)
            .map_err(|e| Error::corrupt(&places_dir, e.to_string()))?;
        crate::places::check(&places_index)
            .map_err(|e| Error::corrupt(&places_dir, e.to_string()))?;
        let snap = Snapshot {
            dir,
            manifest,
            network,
            fares,
            availability,
            mct,
            places,
            places_index,
        };
        crate::validate::snapshot(&snap)?;
        snap.network.release_pages();
        snap.fares.release_pages();
        snap.availability.release_pages();
        snap.mct.release_pages();
        snap.places.release_pages();
        Ok(snap)
    }
}

/// Checks everything `open` checks; returns the manifest of the sound snapshot.
pub fn verify(dir: &Path) -> Result<Manifest> {
    Snapshot::open(dir).map(|s| s.manifest)
}
