//! The trajectory store: parameter checkpoints θ_t with their step numbers,
//! kept in memory or in an append-only file.
//!
//! File format, version 2 (all integers little-endian):
//!
//! | bytes            | content                                                           |
//! |------------------|-------------------------------------------------------------------|
//! | 0..16            | magic `\x89LINPATH-TRJ\r\n\x1a\n`                                  |
//! | 16..20           | format version (u32, currently 2)                                 |
//! | 20..24           | length H of the JSON header (u32)                                 |
//! | 24..28           | CRC32 of the header: bytes 0..24 and 28..data_start               |
//! | 28..32           | zero                                                              |
//! | 32..32+H         | JSON: `{"numel", "dtype", "names", "shapes"}`                     |
//! | ..data_start     | zero padding up to a multiple of 64                               |
//! | records          | each: step (i64), `numel` values of `dtype` (f32 or f64), CRC32   |
//! |                  | (u32) of the step and value bytes, zero padding to a multiple of 8 |
//!
//! Version 1 (still read, never written): no header CRC (the JSON starts at byte 24) and
//! records without CRC or padding (step, then values), so nothing in it can be checked.
//! The CRC is CRC-32/ISO-HDLC (zlib's `crc32`). Records are a multiple of 8 bytes long and
//! start on a multiple of 8, so float64 values stay aligned in the file.
//!
//! Opening checks the magic, version, header (and its CRC) and that the file ends on a
//! record boundary, so a foreign or truncated file gives a clear error and nothing is
//! ever read past the data. Every read of a whole checkpoint checks its CRC; so does
//! `project`, as it streams the checkpoints; [`TrajectoryStore::steps`] checks every
//! record not yet checked before it answers. A new file is created exclusively under
//! an unpredictable temporary name, then linked into place without ever replacing an
//! existing path, and written through that same open file: it never appears half-made.

use crate::error::{Error, Result};
use crate::flat::Layout;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(target_endian = "big")]
compile_error!("linpath's trajectory files are little-endian; big-endian hosts are not supported");

/// The 16 bytes every trajectory file starts with.
pub const MAGIC: &[u8; 16] = b"\x89LINPATH-TRJ\r\n\x1a\n";
/// The file format version this build writes (it reads this one and version 1).
pub const FORMAT_VERSION: u32 = 2;
/// Magic, version and JSON length: the part of the prefix common to every version.
const PREFIX_LEN: u64 = 24;
/// The version-2 prefix: magic, version, JSON length, header CRC and four zero bytes.
const PREFIX_LEN_V2: u64 = 32;
const MAX_HEADER_LEN: u64 = 256 << 20;
const STEP_LEN: u64 = 8;
/// A record's CRC32 field (version 2).
const CRC_LEN: u64 = 4;
/// Bytes of a record read at a time when checking it whole.
const CHECK_CHUNK: usize = 1 << 20;

/// Element type of stored checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// Parses `"float32"` or `"float64"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Dtype::F32),
            "float64" => Ok(Dtype::F64),
            other => {
                Err(Error::Dtype(format!("trajectories are stored as float32 or float64, not {other:?}")))
            }
        }
    }

    /// `"float32"` or `"float64"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A plain floating-point element that a checkpoint can hold.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// The stored dtype of this element type.
    const DTYPE: Dtype;
    /// Widening conversion for float64 accumulation.
    fn to_f64(self) -> f64;
    /// This element type's values inside `c`, if `c` holds this type.
    fn values(c: &Checkpoint) -> Option<&[Self]>;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn values(c: &Checkpoint) -> Option<&[f32]> {
        match c {
            Checkpoint::F32(v) => Some(v),
            Checkpoint::F64(_) => None,
        }
    }
}

impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn to_f64(self) -> f64 {
        self
    }
    fn values(c: &Checkpoint) -> Option<&[f64]> {
        match c {
            Checkpoint::F64(v) => Some(v),
            Checkpoint::F32(_) => None,
        }
    }
}

/// The values of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Checkpoint {
    /// The element type held.
    pub fn dtype(&self) -> Dtype {
        match self {
            Checkpoint::F32(_) => Dtype::F32,
            Checkpoint::F64(_) => Dtype::F64,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Checkpoint::F32(v) => v.len(),
            Checkpoint::F64(v) => v.len(),
        }
    }

    /// True when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Checkpoint::F32(v) => as_bytes(v),
            Checkpoint::F64(v) => as_bytes(v),
        }
    }

    fn zeros(dtype: Dtype, n: usize) -> Self {
        match dtype {
            Dtype::F32 => Checkpoint::F32(vec![0.0; n]),
            Dtype::F64 => Checkpoint::F64(vec![0.0; n]),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Checkpoint::F32(v) => as_bytes_mut(v),
            Checkpoint::F64(v) => as_bytes_mut(v),
        }
    }
}

fn as_bytes<T: Element>(v: &[T]) -> &[u8] {
    // SAFETY: f32/f64 have no padding; any initialised value is valid bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn as_bytes_mut<T: Element>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid f32/f64, so writing bytes is sound.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

#[derive(Serialize, Deserialize)]
struct Header {
    numel: u64,
    dtype: String,
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
}

struct FileBackend {
    path: PathBuf,
    file: File,
    data_start: u64,
    writable: bool,
    /// The file's format version (1: no checksums).
    version: u32,
    /// Per record: its CRC has been checked (or, in version 1, there is none to check).
    checked: Vec<AtomicBool>,
}

enum Backend {
    Memory(Vec<Checkpoint>),
    File(FileBackend),
}

/// Checkpoints of one parameter layout, in memory or in a file.
pub struct TrajectoryStore {
    layout: Layout,
    dtype: Dtype,
    steps: Vec<i64>,
    backend: Backend,
}

/// The running CRC of one checkpoint while its values are read, in order
/// (see [`TrajectoryStore::begin_check`]).
pub struct RecordCheck {
    index: usize,
    /// None where there is nothing to check (in memory, or a version-1 file).
    hasher: Option<crc32fast::Hasher>,
    /// Value bytes added so far.
    bytes: u64,
}

impl RecordCheck {
    /// Adds the next values of the checkpoint (segments must come in order, without gaps).
    pub fn update<T: Element>(&mut self, values: &[T]) {
        self.update_bytes(as_bytes(values));
    }

    fn update_bytes(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
            self.bytes += bytes.len() as u64;
        }
    }
}

fn padded(len: u64) -> u64 {
    len.div_ceil(64) * 64
}

/// The CRC32 of a version-2 header `head` (bytes 0..data_start), leaving out the four bytes that hold it.
fn header_crc(head: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[..PREFIX_LEN as usize]);
    hasher.update(&head[(PREFIX_LEN + CRC_LEN) as usize..]);
    hasher.finalize()
}

fn encode_header(layout: &Layout, dtype: Dtype) -> Result<Vec<u8>> {
    let header = Header {
        numel: layout.numel() as u64,
        dtype: dtype.name().into(),
        names: layout.names().to_vec(),
        shapes: layout.shapes().to_vec(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if json.len() as u64 > MAX_HEADER_LEN {
        return Err(Error::InvalidArgument("too many parameter names and shapes for one header".into()));
    }
    let mut bytes = Vec::with_capacity(padded(PREFIX_LEN_V2 + json.len() as u64) as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&[0u8; 8]); // the CRC, filled in below, and four zero bytes
    bytes.extend_from_slice(&json);
    bytes.resize(padded(bytes.len() as u64) as usize, 0);
    let crc = header_crc(&bytes);
    bytes[PREFIX_LEN as usize..(PREFIX_LEN + CRC_LEN) as usize].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Reads and validates the header; returns (layout, dtype, data_start, format version).
fn decode_header(path: &Path, file: &File, file_len: u64) -> Result<(Layout, Dtype, u64, u32)> {
    let (version, json_len) = read_prefix(path, file, file_len)?;
    let json_start = if version == 1 { PREFIX_LEN } else { PREFIX_LEN_V2 };
    let data_start = padded(json_start + json_len);
    if json_len > MAX_HEADER_LEN || data_start > file_len {
        return Err(Error::corrupt(path, "truncated or damaged header"));
    }
    let mut head = vec![0u8; data_start as usize];
    file.read_exact_at(&mut head, 0).map_err(|e| Error::io(path, e))?;
    if version != 1 {
        let stored = u32::from_le_bytes(head[24..28].try_into().unwrap_or_default());
        if header_crc(&head) != stored {
            return Err(Error::corrupt(
                path,
                "damaged header (it does not match its CRC32 checksum): the file is damaged",
            ));
        }
    }
    let (layout, dtype) = parse_header(path, &head[json_start as usize..(json_start + json_len) as usize])?;
    Ok((layout, dtype, data_start, version))
}

/// Checks the magic bytes; returns (format version, length of the JSON header).
fn read_prefix(path: &Path, file: &File, file_len: u64) -> Result<(u32, u64)> {
    if file_len < PREFIX_LEN {
        return Err(Error::corrupt(path, "not a linpath trajectory file (too short for the header)"));
    }
    let mut prefix = [0u8; PREFIX_LEN as usize];
    file.read_exact_at(&mut prefix, 0).map_err(|e| Error::io(path, e))?;
    if &prefix[..16] != MAGIC {
        return Err(Error::corrupt(path, "not a linpath trajectory file (wrong magic bytes)"));
    }
    let version = u32::from_le_bytes(prefix[16..20].try_into().unwrap_or_default());
    if version != 1 && version != FORMAT_VERSION {
        return Err(Error::corrupt(
            path,
            format!(
                "trajectory format version {version}; this linpath reads versions 1 and {FORMAT_VERSION}"
            ),
        ));
    }
    Ok((version, u32::from_le_bytes(prefix[20..24].try_into().unwrap_or_default()) as u64))
}

/// The layout and dtype of a JSON header, checked for consistency.
fn parse_header(path: &Path, json: &[u8]) -> Result<(Layout, Dtype)> {
    let header: Header =
        serde_json::from_slice(json).map_err(|e| Error::corrupt(path, format!("damaged header ({e})")))?;
    let layout = Layout::new(header.names, header.shapes).map_err(|e| Error::corrupt(path, e.to_string()))?;
    let dtype = Dtype::parse(&header.dtype).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if layout.numel() as u64 != header.numel || layout.numel() == 0 || !record_fits(&layout, dtype) {
        return Err(Error::corrupt(path, "header sizes do not add up"));
    }
    Ok((layout, dtype))
}

impl TrajectoryStore {
    /// An empty in-memory store.
    pub fn in_memory(layout: Layout, dtype: Dtype) -> Result<Self> {
        check_layout(&layout, dtype)?;
        Ok(TrajectoryStore { layout, dtype, steps: Vec::new(), backend: Backend::Memory(Vec::new()) })
    }

    /// Creates a new, empty trajectory file at `path` (format version 2); never replaces an
    /// existing path, and never writes through a symbolic link (see [`create_new_file`]).
    pub fn create(path: &Path, layout: Layout, dtype: Dtype) -> Result<Self> {
        check_layout(&layout, dtype)?;
        let header = encode_header(&layout, dtype)?;
        let file = create_new_file(path, &header)?;
        let backend = FileBackend {
            path: path.to_path_buf(),
            file,
            data_start: header.len() as u64,
            writable: true,
            version: FORMAT_VERSION,
            checked: Vec::new(),
        };
        Ok(TrajectoryStore { layout, dtype, steps: Vec::new(), backend: Backend::File(backend) })
    }

    /// Opens an existing trajectory file (version 1 or 2). A trailing partial record (from a
    /// crash mid-write) is an error unless `allow_partial`, which then ignores it.
    /// With `writable`, later [`append`](Self::append)s extend the file; a version-1 file
    /// (which has no checksums) is refused then, so that no file mixes the two formats.
    pub fn open(path: &Path, allow_partial: bool, writable: bool) -> Result<Self> {
        // Non-blocking: a FIFO opens at once (and is refused below) instead of waiting for a writer.
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::corrupt(path, "not a regular file (a directory, device or pipe)"));
        }
        let file_len = meta.len();
        let (layout, dtype, data_start, version) = decode_header(path, &file, file_len)?;
        if writable && version != FORMAT_VERSION {
            return Err(Error::InvalidArgument(format!(
                "{} is a version-{version} trajectory file, which has no checksums; linpath appends only \
                 to version-{FORMAT_VERSION} files: record into a new file",
                path.display()
            )));
        }
        let record = record_len(&layout, dtype, version);
        let count = (file_len - data_start) / record;
        let partial = (file_len - data_start) % record;
        if partial != 0 && (!allow_partial || writable) {
            return Err(Error::corrupt(
                path,
                format!(
                    "truncated: it ends {partial} bytes into a checkpoint of {record} bytes, after {count} \
                     complete checkpoints (a write was interrupted?); open it with allow_partial=True to read \
                     the complete ones"
                ),
            ));
        }
        let mut steps = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut b = [0u8; 8];
            file.read_exact_at(&mut b, data_start + i * record).map_err(|e| Error::io(path, e))?;
            steps.push(i64::from_le_bytes(b));
        }
        let checked = (0..count).map(|_| AtomicBool::new(version == 1)).collect();
        let backend = FileBackend { path: path.to_path_buf(), file, data_start, writable, version, checked };
        Ok(TrajectoryStore { layout, dtype, steps, backend: Backend::File(backend) })
    }

    /// The parameter layout of every checkpoint.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The stored element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The format version of the file behind the store (None in memory). Version-1 files carry
    /// no checksums, so nothing read from them can be checked.
    pub fn format_version(&self) -> Option<u32> {
        match &self.backend {
            Backend::File(f) => Some(f.version),
            Backend::Memory(_) => None,
        }
    }

    /// Step numbers of the checkpoints, in order. Those of a file are checked first: every
    /// record not checked yet (by a read of its checkpoint, or a projection) is read and
    /// checked against its CRC, once.
    pub fn steps(&self) -> Result<&[i64]> {
        if let Backend::File(f) = &self.backend {
            let pending: Vec<usize> =
                (0..self.len()).filter(|&i| !f.checked[i].load(Ordering::Relaxed)).collect();
            let results: Vec<Result<()>> =
                pending.into_par_iter().map_init(Vec::new, |buf, i| self.check_record(i, buf)).collect();
            results.into_iter().collect::<Result<()>>()?;
        }
        Ok(&self.steps)
    }

    /// Number of checkpoints.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when no checkpoint is stored.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The file behind the store, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File(f) => Some(&f.path),
            Backend::Memory(_) => None,
        }
    }

    /// Appends a checkpoint (its dtype and length must match the store).
    pub fn append(&mut self, step: i64, values: Checkpoint) -> Result<()> {
        if values.dtype() != self.dtype || values.len() != self.layout.numel() {
            return Err(Error::Layout(format!(
                "checkpoint has {} {} values; this trajectory stores {} {} values",
                values.len(),
                values.dtype().name(),
                self.layout.numel(),
                self.dtype.name()
            )));
        }
        let record = record_len(&self.layout, self.dtype, FORMAT_VERSION);
        match &mut self.backend {
            Backend::Memory(v) => v.push(values),
            Backend::File(f) => {
                if !f.writable {
                    return Err(Error::InvalidArgument(format!("{} was opened read-only", f.path.display())));
                }
                let pos = f.data_start + self.steps.len() as u64 * record;
                f.write_record(pos, record, step, values.bytes())?;
            }
        }
        self.steps.push(step);
        Ok(())
    }

    /// The whole checkpoint `i`, checked against its CRC.
    pub fn checkpoint(&self, i: usize) -> Result<Checkpoint> {
        self.check_index(i)?;
        match &self.backend {
            Backend::Memory(v) => Ok(v[i].clone()),
            Backend::File(f) => {
                let mut out = Checkpoint::zeros(self.dtype, self.layout.numel());
                f.file
                    .read_exact_at(out.bytes_mut(), self.values_pos(f, i))
                    .map_err(|e| Error::io(&f.path, e))?;
                let mut check = self.begin_check(i)?;
                check.update_bytes(out.bytes());
                self.finish_check(check)?;
                Ok(out)
            }
        }
    }

    /// Values `offset..offset+len` of checkpoint `i`: borrowed from memory, or read into `buf`.
    /// Not checked: pass the segments to a [`RecordCheck`] to check them.
    pub fn segment<'a, T: Element>(
        &'a self,
        i: usize,
        offset: usize,
        len: usize,
        buf: &'a mut Vec<T>,
    ) -> Result<&'a [T]> {
        self.check_index(i)?;
        if T::DTYPE != self.dtype || offset.checked_add(len).is_none_or(|end| end > self.layout.numel()) {
            return Err(Error::InvalidArgument("segment out of range or of the wrong dtype".into()));
        }
        match &self.backend {
            Backend::Memory(v) => T::values(&v[i])
                .map(|vals| &vals[offset..offset + len])
                .ok_or_else(|| Error::InvalidArgument("stored checkpoint has the wrong dtype".into())),
            Backend::File(f) => {
                buf.resize(len, T::default());
                let pos = self.values_pos(f, i) + offset as u64 * self.dtype.size() as u64;
                f.file.read_exact_at(as_bytes_mut(&mut buf[..]), pos).map_err(|e| Error::io(&f.path, e))?;
                Ok(&buf[..])
            }
        }
    }

    /// Asks the kernel to start reading values `offset..offset+len` of checkpoint `i` into the page
    /// cache now, without waiting (`posix_fadvise(WILLNEED)`), so that a later [`segment`](Self::segment)
    /// of them finds them there: a reader that hints its next segments while it computes on the
    /// current ones keeps the disk busy. Only a hint: out-of-range requests, memory-backed stores and
    /// non-Linux systems do nothing, and a failed hint changes no result.
    pub fn prefetch(&self, i: usize, offset: usize, len: usize) {
        #[cfg(target_os = "linux")]
        if let Backend::File(f) = &self.backend {
            use std::os::fd::AsRawFd;
            // (len 0 would mean "to the end of the file" to posix_fadvise)
            if i >= self.len() || len == 0 || offset.saturating_add(len) > self.layout.numel() {
                return;
            }
            let size = self.dtype.size() as u64;
            let pos = self.values_pos(f, i) + offset as u64 * size;
            let (Ok(pos), Ok(bytes)) = (i64::try_from(pos), i64::try_from(len as u64 * size)) else { return };
            // SAFETY: a valid open descriptor of this store; posix_fadvise reads no user memory.
            unsafe { libc::posix_fadvise(f.file.as_raw_fd(), pos, bytes, libc::POSIX_FADV_WILLNEED) };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (i, offset, len);
    }

    /// Starts checking checkpoint `i` against its CRC: pass all its values, in order, to
    /// [`RecordCheck::update`], then hand the check to [`finish_check`](Self::finish_check).
    pub fn begin_check(&self, i: usize) -> Result<RecordCheck> {
        self.check_index(i)?;
        let hasher = match &self.backend {
            Backend::File(f) if f.version != 1 => {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&self.steps[i].to_le_bytes());
                Some(hasher)
            }
            _ => None,
        };
        Ok(RecordCheck { index: i, hasher, bytes: 0 })
    }

    /// Compares the CRC of the values passed to `check` with the one stored in the file; a
    /// mismatch is a `CorruptFile` error that names the file and the checkpoint.
    pub fn finish_check(&self, check: RecordCheck) -> Result<()> {
        let (Backend::File(f), Some(hasher)) = (&self.backend, check.hasher) else { return Ok(()) };
        let i = check.index;
        let values = values_len(&self.layout, self.dtype);
        if check.bytes != values {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {i} was checked before it was read whole"
            )));
        }
        let tail_len = (record_len(&self.layout, self.dtype, f.version) - STEP_LEN - values) as usize;
        let mut tail = [0u8; 8];
        let pos = self.values_pos(f, i) + values;
        f.file.read_exact_at(&mut tail[..tail_len], pos).map_err(|e| Error::io(&f.path, e))?;
        let stored = u32::from_le_bytes(tail[..4].try_into().unwrap_or_default());
        if hasher.finalize() != stored || tail[4..tail_len].iter().any(|&b| b != 0) {
            return Err(Error::corrupt(
                &f.path,
                format!(
                    "the file is damaged: checkpoint {i} does not match its CRC32 checksum (its bytes \
                     changed after they were written)"
                ),
            ));
        }
        f.checked[i].store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads checkpoint `i` whole, a chunk at a time, and checks it against its CRC.
    fn check_record(&self, i: usize, buf: &mut Vec<u8>) -> Result<()> {
        let Backend::File(f) = &self.backend else { return Ok(()) };
        let mut check = self.begin_check(i)?;
        let (len, pos) = (values_len(&self.layout, self.dtype), self.values_pos(f, i));
        buf.resize(CHECK_CHUNK.min(len as usize), 0);
        for offset in (0..len).step_by(CHECK_CHUNK) {
            let n = (len - offset).min(CHECK_CHUNK as u64) as usize;
            f.file.read_exact_at(&mut buf[..n], pos + offset).map_err(|e| Error::io(&f.path, e))?;
            check.update_bytes(&buf[..n]);
        }
        self.finish_check(check)
    }

    /// Where the values of checkpoint `i` start in the file.
    fn values_pos(&self, f: &FileBackend, i: usize) -> u64 {
        f.data_start + i as u64 * record_len(&self.layout, self.dtype, f.version) + STEP_LEN
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "checkpoint {i} out of range (the trajectory has {})",
                self.len()
            )))
        }
    }
}

impl FileBackend {
    /// Writes one version-2 record at `pos`: step, values, their CRC32, zero padding.
    fn write_record(&mut self, pos: u64, record: u64, step: i64, values: &[u8]) -> Result<()> {
        let step = step.to_le_bytes();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&step);
        hasher.update(values);
        let mut tail = [0u8; 8];
        tail[..4].copy_from_slice(&hasher.finalize().to_le_bytes());
        let tail_len = (record - STEP_LEN - values.len() as u64) as usize;
        let write =
            |bytes: &[u8], at: u64| self.file.write_all_at(bytes, at).map_err(|e| Error::io(&self.path, e));
        write(&step, pos)?;
        write(values, pos + STEP_LEN)?;
        write(&tail[..tail_len], pos + STEP_LEN + values.len() as u64)?;
        self.checked.push(AtomicBool::new(true));
        Ok(())
    }
}

/// An error from `tempfile` (which wraps the operating system's error with the temporary file's
/// name, dropping its errno) as the plain OS error of its kind, so that Python raises the right
/// `OSError` subclass (FileNotFoundError, PermissionError, ...) naming the directory.
fn os_error(e: io::Error) -> io::Error {
    use io::ErrorKind as K;
    let code = match e.kind() {
        K::NotFound => libc::ENOENT,
        K::PermissionDenied => libc::EACCES,
        K::AlreadyExists => libc::EEXIST,
        K::NotADirectory => libc::ENOTDIR,
        K::ReadOnlyFilesystem => libc::EROFS,
        K::StorageFull => libc::ENOSPC,
        K::QuotaExceeded => libc::EDQUOT,
        _ => return e,
    };
    io::Error::from_raw_os_error(code)
}

/// Creates `path` holding `contents` and returns it open for reading and writing.
///
/// The contents go to a new file created exclusively (`O_CREAT | O_EXCL`, so a symbolic
/// link planted at its name is never followed) under an unpredictable name in the same
/// directory, which is then linked into place without replacing any existing path (a
/// dangling symbolic link included). The file is never reopened by name. On failure the
/// temporary file is removed.
fn create_new_file(path: &Path, contents: &[u8]) -> Result<File> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".linpath-")
        .suffix(".tmp")
        .rand_bytes(16)
        .permissions(Permissions::from_mode(0o666)) // less the umask, like any new file
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, os_error(e)))?;
    tmp.as_file().write_all_at(contents, 0).map_err(|e| Error::io(path, e))?;
    tmp.persist_noclobber(path).map_err(|e| match e.error.kind() {
        io::ErrorKind::AlreadyExists => Error::InvalidArgument(format!(
            "{} already exists; choose a new path, or open it with Trajectory.open",
            path.display()
        )),
        _ => Error::io(path, e.error),
    })
}

fn check_layout(layout: &Layout, dtype: Dtype) -> Result<()> {
    if layout.numel() == 0 {
        return Err(Error::InvalidArgument("a trajectory needs at least one parameter value".into()));
    }
    if !record_fits(layout, dtype) {
        return Err(Error::InvalidArgument(format!(
            "checkpoints of {} {} values are too large: a record must stay below 2**63 bytes",
            layout.numel(),
            dtype.name()
        )));
    }
    Ok(())
}

/// Whether a record of the largest form (version 2) has a length that fits in an `isize`.
fn record_fits(layout: &Layout, dtype: Dtype) -> bool {
    (layout.numel() as u64)
        .checked_mul(dtype.size() as u64)
        .and_then(|b| b.checked_add(STEP_LEN + 2 * CRC_LEN))
        .is_some_and(|b| b <= isize::MAX as u64)
}

/// Bytes of the values of one checkpoint.
fn values_len(layout: &Layout, dtype: Dtype) -> u64 {
    layout.numel() as u64 * dtype.size() as u64
}

/// Bytes of one record: in version 2, with its CRC and padding to a multiple of 8.
fn record_len(layout: &Layout, dtype: Dtype, version: u32) -> u64 {
    let unchecked = STEP_LEN + values_len(layout, dtype);
    if version == 1 {
        unchecked
    } else {
        (unchecked + CRC_LEN).div_ceil(8) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    fn layout() -> Layout {
        Layout::new(vec!["w".into(), "b".into()], vec![vec![2, 3], vec![3]]).unwrap()
    }

    fn values(seed: u64) -> Vec<f32> {
        (0..9).map(|i| ((seed * 31 + i) as f32).sin()).collect()
    }

    #[test]
    fn file_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F32).unwrap();
        for s in 0..5 {
            store.append(s * 10, Checkpoint::F32(values(s as u64))).unwrap();
        }
        let reopened = TrajectoryStore::open(&path, false, false).unwrap();
        assert_eq!(reopened.steps().unwrap(), &[0, 10, 20, 30, 40]);
        assert_eq!(reopened.format_version(), Some(FORMAT_VERSION));
        assert_eq!(reopened.layout(), &layout());
        assert_eq!(reopened.checkpoint(3).unwrap(), Checkpoint::F32(values(3)));
        let mut buf = Vec::new();
        assert_eq!(reopened.segment::<f32>(2, 4, 3, &mut buf).unwrap(), &values(2)[4..7]);
        assert!(reopened.checkpoint(5).is_err());
        // Prefetch hints, in range or not, change nothing that is read.
        for (i, offset, len) in [(2, 4, 3), (4, 0, 9), (2, 0, 0), (5, 0, 9), (0, 8, 5), (0, usize::MAX, 2)] {
            reopened.prefetch(i, offset, len);
        }
        assert_eq!(reopened.segment::<f32>(4, 0, 9, &mut buf).unwrap(), &values(4)[..]);
        assert_eq!(reopened.checkpoint(3).unwrap(), Checkpoint::F32(values(3)));
    }

    #[test]
    fn create_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.txt");
        fs::write(&path, b"precious").unwrap();
        assert!(TrajectoryStore::create(&path, layout(), Dtype::F32).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn truncated_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F64).unwrap();
        store.append(0, Checkpoint::F64(vec![1.0; 9])).unwrap();
        store.append(1, Checkpoint::F64(vec![2.0; 9])).unwrap();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
        let err = TrajectoryStore::open(&path, false, false).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        let partial = TrajectoryStore::open(&path, true, false).unwrap();
        assert_eq!(partial.len(), 1);
        let foreign = dir.path().join("f.bin");
        File::create(&foreign).unwrap().write_all(&[7u8; 200]).unwrap();
        let err = TrajectoryStore::open(&foreign, false, false).err().unwrap().to_string();
        assert!(err.contains("magic"), "{err}");
        OpenOptions::new().write(true).open(&path).unwrap().set_len(30).unwrap();
        assert!(matches!(TrajectoryStore::open(&path, false, false), Err(Error::CorruptFile { .. })));
    }

    #[test]
    fn a_layout_whose_records_overflow_is_refused_before_any_file_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.lpt");
        let huge = Layout::new(vec!["w".into()], vec![vec![1 << 61]]).unwrap();
        let err = TrajectoryStore::create(&path, huge.clone(), Dtype::F64).err().unwrap().to_string();
        assert!(err.contains("2**63 bytes"), "{err}");
        assert!(!path.exists());
        assert!(TrajectoryStore::in_memory(huge, Dtype::F64).is_err());
    }

    #[test]
    fn append_checks_dtype_and_length() {
        let mut store = TrajectoryStore::in_memory(layout(), Dtype::F32).unwrap();
        assert!(store.append(0, Checkpoint::F64(vec![0.0; 9])).is_err());
        assert!(store.append(0, Checkpoint::F32(vec![0.0; 8])).is_err());
        store.append(0, Checkpoint::F32(values(1))).unwrap();
        assert_eq!(store.len(), 1);
    }

    /// A file with two records, the second damaged at `byte` bytes into it.
    fn damaged_file(dir: &Path, byte: u64) -> PathBuf {
        let path = dir.join(format!("d{byte}.lpt"));
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F32).unwrap();
        store.append(5, Checkpoint::F32(values(1))).unwrap();
        store.append(6, Checkpoint::F32(values(2))).unwrap();
        let Backend::File(f) = &store.backend else { unreachable!() };
        let at = f.data_start + record_len(&layout(), Dtype::F32, 2) + byte;
        let mut raw = fs::read(&path).unwrap();
        raw[at as usize] ^= 1;
        fs::write(&path, raw).unwrap();
        path
    }

    #[test]
    fn a_damaged_record_is_reported_by_every_checked_read() {
        let dir = tempfile::tempdir().unwrap();
        // Record of 8 + 36 + 4 = 48 bytes: step, values, CRC (no padding).
        assert_eq!(record_len(&layout(), Dtype::F32, 2), 48);
        for byte in [0, 7, 8, 43, 44, 47] {
            let path = damaged_file(dir.path(), byte);
            let store = TrajectoryStore::open(&path, false, false).unwrap();
            assert_eq!(store.checkpoint(0).unwrap(), Checkpoint::F32(values(1)));
            for err in [store.checkpoint(1).err(), store.steps().err()] {
                let err = err.unwrap().to_string();
                assert!(err.contains("the file is damaged: checkpoint 1 does not match"), "{err}");
                assert!(err.contains(&path.display().to_string()), "{err}");
            }
            let mut check = store.begin_check(1).unwrap();
            let mut buf = Vec::new();
            check.update(store.segment::<f32>(1, 0, 4, &mut buf).unwrap());
            check.update(store.segment::<f32>(1, 4, 5, &mut buf).unwrap());
            assert!(matches!(store.finish_check(check), Err(Error::CorruptFile { .. })));
        }
    }

    #[test]
    fn a_check_needs_the_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F64).unwrap();
        store.append(1, Checkpoint::F64(vec![0.5; 9])).unwrap();
        let mut check = store.begin_check(0).unwrap();
        check.update(&[0.5f64; 8]);
        assert!(store.finish_check(check).is_err());
        assert!(store.begin_check(1).is_err());
        // float64: 8 + 72 + 4 rounds up to 88 bytes, so every record starts 8-byte aligned.
        assert_eq!(record_len(&layout(), Dtype::F64, 2), 88);
        let raw = fs::read(&path).unwrap();
        assert_eq!(raw.len() % 8, 0);
        assert_eq!(&raw[raw.len() - 4..], &[0u8; 4]);
    }

    /// A version-1 file as earlier linpath wrote it: no CRCs, JSON at byte 24.
    fn version_1_file(path: &Path, records: &[(i64, Vec<f32>)]) {
        let json = br#"{"numel":9,"dtype":"float32","names":["w","b"],"shapes":[[2,3],[3]]}"#;
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&(json.len() as u32).to_le_bytes());
        raw.extend_from_slice(json);
        raw.resize(padded(raw.len() as u64) as usize, 0);
        for (step, v) in records {
            raw.extend_from_slice(&step.to_le_bytes());
            raw.extend_from_slice(as_bytes(v));
        }
        fs::write(path, raw).unwrap();
    }

    #[test]
    fn version_1_files_read_but_are_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.lpt");
        version_1_file(&path, &[(-4, values(3)), (i64::MAX, values(4))]);
        let store = TrajectoryStore::open(&path, false, false).unwrap();
        assert_eq!(store.format_version(), Some(1));
        assert_eq!(store.steps().unwrap(), &[-4, i64::MAX]);
        assert_eq!(store.checkpoint(1).unwrap(), Checkpoint::F32(values(4)));
        let before = fs::read(&path).unwrap();
        let err = TrajectoryStore::open(&path, false, true).err().unwrap().to_string();
        assert!(err.contains("version-1 trajectory file, which has no checksums"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn create_neither_follows_nor_replaces_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let old_tmp = dir.path().join(format!(".t.lpt.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F32).unwrap();
        store.append(0, Checkpoint::F32(values(0))).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(
            TrajectoryStore::open(&path, false, false).unwrap().checkpoint(0).unwrap(),
            store.checkpoint(0).unwrap()
        );
        for (name, target) in [("link.lpt", victim.clone()), ("dangling.lpt", dir.path().join("nothing"))] {
            let link = dir.path().join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = TrajectoryStore::create(&link, layout(), Dtype::F32).err().unwrap().to_string();
            assert!(err.contains("already exists"), "{err}");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.path().join("nothing").exists());
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let old_tmp_name = old_tmp.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(names, [old_tmp_name.as_str(), "dangling.lpt", "link.lpt", "t.lpt", "victim"]);
    }

    /// splitmix64: a deterministic stream of pseudo-random u64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// One random mutation of `raw`: flip a bit, overwrite bytes, truncate or extend.
    fn mutate(raw: &[u8], rng: &mut Rng, data_start: usize) -> Vec<u8> {
        let mut out = raw.to_vec();
        // Half of the mutations land in the header, where each byte matters most.
        let at = if rng.below(2) == 0 { rng.below(data_start as u64) } else { rng.below(raw.len() as u64) }
            as usize;
        match rng.below(5) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => {
                for b in out.iter_mut().skip(at).take(1 + rng.below(16) as usize) {
                    *b = rng.next() as u8;
                }
            }
            3 => out.truncate(at),
            _ => out.extend((0..1 + rng.below(100)).map(|_| rng.next() as u8)),
        }
        out
    }

    /// Every mutated file either fails to open or to read (open, each checkpoint, steps, project),
    /// or gives back the original data (possibly fewer checkpoints: a file cut on a record
    /// boundary is a shorter trajectory). Never a panic, never other values or steps.
    #[test]
    fn fuzzed_files_are_errors_or_the_original_data() {
        let dir = tempfile::tempdir().unwrap();
        let layouts =
            [(layout(), Dtype::F32), (Layout::new(vec!["v".into()], vec![vec![4]]).unwrap(), Dtype::F64)];
        let mut rng = Rng(2026);
        let (mut rejected, mut accepted) = (0, 0);
        for (li, (lay, dtype)) in layouts.iter().enumerate() {
            let path = dir.path().join(format!("orig{li}.lpt"));
            let mut orig = TrajectoryStore::create(&path, lay.clone(), *dtype).unwrap();
            for s in 0..4 {
                let v: Vec<f64> = (0..lay.numel()).map(|i| ((s * 7 + i as i64) as f64).cos()).collect();
                let c = match dtype {
                    Dtype::F32 => Checkpoint::F32(v.iter().map(|&x| x as f32).collect()),
                    Dtype::F64 => Checkpoint::F64(v),
                };
                orig.append([-5, 0, i64::MAX, 3][s as usize], c).unwrap();
            }
            let raw = fs::read(&path).unwrap();
            let Backend::File(f) = &orig.backend else { unreachable!() };
            let data_start = f.data_start as usize;
            let theta0: Vec<f64> = (0..lay.numel()).map(|i| i as f64 * 0.1).collect();
            let direction: Vec<f64> = (0..lay.numel()).map(|i| 1.0 + i as f64).collect();
            let expected = crate::project::project(&orig, &theta0, &direction).unwrap();
            for m in 0..200 {
                let bad = dir.path().join(format!("m{li}-{m}.lpt"));
                fs::write(&bad, mutate(&raw, &mut rng, data_start)).unwrap();
                for allow_partial in [false, true] {
                    // Each reader on a fresh store, so that each one's own checks are exercised.
                    let open = || -> Result<TrajectoryStore> {
                        let store = TrajectoryStore::open(&bad, allow_partial, false)?;
                        assert!(store.layout() == lay && store.dtype() == *dtype, "header accepted changed");
                        Ok(store)
                    };
                    let outcome = (|| -> Result<()> {
                        let store = open()?;
                        let steps = store.steps()?;
                        assert_eq!(steps, &orig.steps().unwrap()[..steps.len()]);
                        let store = open()?;
                        let got = crate::project::project(&store, &theta0, &direction)?;
                        assert_eq!(got[..], expected[..got.len()]);
                        let store = open()?;
                        for i in 0..store.len() {
                            assert_eq!(store.checkpoint(i)?, orig.checkpoint(i).unwrap(), "checkpoint {i}");
                        }
                        Ok(())
                    })();
                    match outcome {
                        Ok(()) => accepted += 1,
                        Err(Error::CorruptFile { .. } | Error::Io { .. }) => rejected += 1,
                        Err(other) => panic!("unexpected error kind: {other}"),
                    }
                }
                fs::remove_file(&bad).unwrap();
            }
        }
        println!("fuzz: {rejected} rejected, {accepted} accepted");
        assert!(rejected > 500 && accepted > 0, "rejected {rejected}, accepted {accepted}");
    }
}
