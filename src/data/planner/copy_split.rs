//! Splitting `COPY … FROM STDIN` data (text, CSV or binary) into per-shard
//! streams. Binary data is framed by [`super::copy_binary`]; the rest of
//! this comment is about text and CSV.
//!
//! Feed CopyData payloads in order; complete rows (which may span payloads)
//! come out with their shard, byte for byte as received. Text format: `\N`
//! (or the NULL option) is NULL, backslash escapes the next byte (including
//! a newline or the delimiter), `\.` on its own line ends the data. CSV:
//! quoted fields may hold delimiters, newlines and doubled quotes (or the
//! ESCAPE character before a quote); an unquoted field equal to the NULL
//! option (default empty) is NULL. With HEADER, the first line goes to every
//! shard, because every shard runs the same COPY … HEADER and skips one line.
//! Rows must end in `\n` (or `\r\n`); old Mac-style `\r`-only line ends
//! are not recognized.
//!
//! Hand-written: the row framing rules are Postgres's own (copyfromparse.c),
//! which general CSV crates don't follow (text format, `\.`, ESCAPE).

use std::borrow::Cow;

use crate::data::router::{KeyType, KeyValue, ShardMap};

use super::plan::{CopyFormat, CopySpec};
use super::resolve::RouteError;

/// Where a piece of COPY data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDest {
    /// Every shard (the header line).
    All,
    Shard(usize),
}

/// One complete item of binary COPY data.
#[derive(Debug, Clone, Copy)]
enum Binary {
    Header(usize),
    /// A tuple and its key field's byte range (None: NULL).
    Tuple {
        len: usize,
        key: Option<(usize, usize)>,
    },
    Trailer,
}

impl Binary {
    fn len(&self) -> usize {
        match *self {
            Binary::Header(n) | Binary::Tuple { len: n, .. } => n,
            Binary::Trailer => 2,
        }
    }
}

/// Row-framing state carried across payloads.
#[derive(Debug, Clone, Copy, Default)]
struct Framing {
    /// Text: the previous byte was an escaping backslash.
    backslash: bool,
    /// CSV: inside a quoted field.
    in_quote: bool,
    /// CSV: the previous byte was the escape character inside quotes.
    last_was_esc: bool,
}

/// Splits COPY data rows by shard key.
pub struct CopySplitter {
    format: CopyFormat,
    key_index: usize,
    key_column: String,
    key_type: KeyType,
    group: usize,
    map: ShardMap,
    /// The start of a row that continues in the next payload.
    partial: Vec<u8>,
    framing: Framing,
    header_pending: bool,
    /// Binary format: fields per tuple, and whether the header went out.
    fields: usize,
    binary_started: bool,
    rows: u64,
    /// `\.` seen: the rest is ignored.
    ended: bool,
}

impl CopySplitter {
    /// A splitter for a planned COPY. `columns` is the order of the data's
    /// columns: the COPY column list, or (when the statement has none) the
    /// table's columns in order, as the session learns them.
    pub fn new(
        spec: &CopySpec,
        columns: &[String],
        map: &ShardMap,
    ) -> Result<CopySplitter, RouteError> {
        let cols = if spec.columns.is_empty() {
            columns
        } else {
            &spec.columns[..]
        };
        let key_index = cols
            .iter()
            .position(|c| *c == spec.key_column)
            .ok_or_else(|| {
                RouteError::new(
                    "0A000",
                    format!(
                        "COPY into sharded table \"{}\" must include its shard key column \"{}\"",
                        spec.table, spec.key_column
                    ),
                )
            })?;
        if spec.group >= map.groups().len() {
            return Err(RouteError::new(
                "XX000",
                "the shard map changed since this statement was planned",
            ));
        }
        Ok(CopySplitter {
            format: spec.format.clone(),
            key_index,
            key_column: spec.key_column.clone(),
            key_type: spec.key_type,
            group: spec.group,
            map: map.clone(),
            partial: Vec::new(),
            framing: Framing::default(),
            header_pending: spec.format.header,
            fields: cols.len(),
            binary_started: false,
            rows: 0,
            ended: false,
        })
    }

    /// Feeds one CopyData payload; `out` receives each complete row.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut dyn FnMut(CopyDest, &[u8]),
    ) -> Result<(), RouteError> {
        if self.format.binary {
            return self.feed_binary(chunk, out);
        }
        let mut start = 0;
        while start < chunk.len() && !self.ended {
            match self.row_end(&chunk[start..]) {
                Some(n) => {
                    let end = start + n + 1;
                    if self.partial.is_empty() {
                        self.emit(&chunk[start..end], out)?;
                    } else {
                        let mut row = std::mem::take(&mut self.partial);
                        row.extend_from_slice(&chunk[start..end]);
                        let r = self.emit(&row, out);
                        row.clear();
                        self.partial = row; // keep the allocation
                        r?;
                    }
                    start = end;
                }
                None => {
                    self.partial.extend_from_slice(&chunk[start..]);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the data: a last row without a newline is sent with one added.
    pub fn finish(&mut self, out: &mut dyn FnMut(CopyDest, &[u8])) -> Result<(), RouteError> {
        if self.ended || self.partial.is_empty() {
            return Ok(());
        }
        if self.format.binary {
            return Err(RouteError::new(
                "22P04",
                format!(
                    "binary COPY data ended in the middle of {}",
                    if self.binary_started {
                        "a row"
                    } else {
                        "its header"
                    }
                ),
            ));
        }
        if self.format.csv && self.framing.in_quote {
            return Err(RouteError::new("22P04", "unterminated CSV quoted field"));
        }
        let mut row = std::mem::take(&mut self.partial);
        row.push(b'\n');
        self.emit(&row, out)
    }

    /// Binary data: whole tuples inside `chunk` go out as slices of it; a
    /// tuple (or the header) cut at the end of a payload is completed in
    /// `partial`, taking from the next payload only the bytes it needs.
    fn feed_binary(
        &mut self,
        chunk: &[u8],
        out: &mut dyn FnMut(CopyDest, &[u8]),
    ) -> Result<(), RouteError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.ended {
                return Err(RouteError::new(
                    "22P04",
                    "received binary COPY data after the end-of-data trailer",
                ));
            }
            if self.partial.is_empty() {
                match self.binary_item(rest)? {
                    Ok(item) => {
                        let n = item.len();
                        self.emit_binary(&rest[..n], item, out)?;
                        rest = &rest[n..];
                    }
                    Err(_) => {
                        self.partial.extend_from_slice(rest);
                        rest = &[];
                    }
                }
                continue;
            }
            // Complete the cut item: only as many bytes as it still needs.
            let need = match self.binary_item(&self.partial)? {
                Ok(_) => 0,
                Err(n) => n,
            };
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if let Ok(item) = self.binary_item(&self.partial)? {
                let bytes = std::mem::take(&mut self.partial);
                let r = self.emit_binary(&bytes[..item.len()], item, out);
                self.partial = bytes;
                self.partial.clear();
                r?;
            }
        }
        Ok(())
    }

    /// The complete item (header, tuple, trailer) at the start of `buf`,
    /// or how many more bytes it needs at least.
    fn binary_item(&self, buf: &[u8]) -> Result<Result<Binary, usize>, RouteError> {
        use super::copy_binary::{header_len, next_item, Item};
        if !self.binary_started {
            return Ok(header_len(buf)?.map(Binary::Header));
        }
        Ok(match next_item(buf, self.key_index, self.fields)? {
            Item::Tuple { len, key } => Ok(Binary::Tuple { len, key }),
            Item::Trailer => Ok(Binary::Trailer),
            Item::More(n) => Err(n),
        })
    }

    /// Routes one complete binary item: the header and the trailer go to
    /// every shard, a tuple to its key's.
    fn emit_binary(
        &mut self,
        bytes: &[u8],
        item: Binary,
        out: &mut dyn FnMut(CopyDest, &[u8]),
    ) -> Result<(), RouteError> {
        let key = match item {
            Binary::Header(_) => {
                self.binary_started = true;
                out(CopyDest::All, bytes);
                return Ok(());
            }
            Binary::Trailer => {
                self.ended = true;
                out(CopyDest::All, bytes);
                return Ok(());
            }
            Binary::Tuple { key, .. } => key,
        };
        self.rows += 1;
        let key = match key {
            None => KeyValue::Null,
            Some((a, b)) => self
                .key_type
                .from_binary(&bytes[a..b])
                .map_err(|m| RouteError::new("22P02", format!("COPY row {}: {m}", self.rows)))?,
        };
        out(CopyDest::Shard(self.map.shard_for(self.group, &key)), bytes);
        Ok(())
    }

    /// Rows routed so far (not counting the header).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The index of the newline ending the current row in `data`, continuing
    /// the framing state; `None` if the row continues past `data`.
    fn row_end(&mut self, data: &[u8]) -> Option<usize> {
        let f = &mut self.framing;
        if !self.format.csv {
            let mut i = 0;
            if f.backslash {
                f.backslash = false;
                i = 1;
            }
            while i < data.len() {
                let n = memchr::memchr2(b'\n', b'\\', &data[i..])?;
                i += n;
                if data[i] == b'\n' {
                    return Some(i);
                }
                if i + 1 == data.len() {
                    f.backslash = true;
                    return None;
                }
                i += 2;
            }
            return None;
        }
        let q = self.format.quote;
        // Mirrors CopyReadLineText's CSV rules: when ESCAPE equals QUOTE the
        // quote is a plain toggle.
        let e = (self.format.escape != q).then_some(self.format.escape);
        for (i, &c) in data.iter().enumerate() {
            if f.in_quote && Some(c) == e {
                f.last_was_esc = !f.last_was_esc;
            }
            if c == q && !f.last_was_esc {
                f.in_quote = !f.in_quote;
            }
            if Some(c) != e {
                f.last_was_esc = false;
            }
            if c == b'\n' && !f.in_quote {
                return Some(i);
            }
        }
        None
    }

    /// Routes one complete row (ending in a newline).
    fn emit(&mut self, row: &[u8], out: &mut dyn FnMut(CopyDest, &[u8])) -> Result<(), RouteError> {
        self.framing = Framing::default();
        let line = strip_newline(row);
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            out(CopyDest::All, row);
            return Ok(());
        }
        self.rows += 1;
        let field = if self.format.csv {
            csv_field(line, &self.format, self.key_index)
        } else {
            text_field(line, &self.format, self.key_index)
        };
        let Some(field) = field else {
            return Err(RouteError::new(
                "22P04",
                format!(
                    "COPY row {} has no value for shard key column \"{}\"",
                    self.rows, self.key_column
                ),
            ));
        };
        let key = match &field {
            None => KeyValue::Null,
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    RouteError::new(
                        "22021",
                        format!("COPY row {}: shard key is not valid UTF-8", self.rows),
                    )
                })?;
                self.key_type
                    .from_text(text)
                    .map_err(|m| RouteError::new("22P02", format!("COPY row {}: {m}", self.rows)))?
            }
        };
        out(CopyDest::Shard(self.map.shard_for(self.group, &key)), row);
        Ok(())
    }
}

fn strip_newline(row: &[u8]) -> &[u8] {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    row.strip_suffix(b"\r").unwrap_or(row)
}

/// The `index`-th field of a text-format line: `None` if missing, `Some(None)`
/// for NULL, else the de-escaped bytes.
#[allow(clippy::type_complexity)]
fn text_field<'a>(line: &'a [u8], f: &CopyFormat, index: usize) -> Option<Option<Cow<'a, [u8]>>> {
    let d = f.delimiter;
    let mut field = 0;
    let mut start = 0;
    let mut i = 0;
    while i <= line.len() {
        if i == line.len() || line[i] == d {
            if field == index {
                let raw = &line[start..i];
                if raw == f.null.as_bytes() {
                    return Some(None);
                }
                return Some(Some(unescape_text(raw)));
            }
            field += 1;
            start = i + 1;
            i += 1;
        } else if line[i] == b'\\' {
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// Text-format escapes: `\b \f \n \r \t \v`, octal `\ooo`, hex `\xhh`, and a
/// backslash before any other byte stands for that byte.
fn unescape_text(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 == raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&o @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(o - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|h| (*h as char).to_digit(16)) {
                        Some(h) => {
                            v = v * 16 + h;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// The `index`-th field of a CSV line (which may contain quoted newlines).
#[allow(clippy::type_complexity)]
fn csv_field<'a>(line: &'a [u8], f: &CopyFormat, index: usize) -> Option<Option<Cow<'a, [u8]>>> {
    let (d, q, e) = (f.delimiter, f.quote, f.escape);
    let mut i = 0;
    let mut field = 0;
    loop {
        // One field starting at i.
        let start = i;
        let mut quoted = false;
        let mut value: Vec<u8> = Vec::new();
        let mut plain = true; // value == line[start..i] verbatim
        while i < line.len() && line[i] != d {
            if line[i] == q {
                quoted = true;
                plain = false;
                i += 1;
                while i < line.len() {
                    let c = line[i];
                    if c == e && i + 1 < line.len() && (line[i + 1] == q || line[i + 1] == e) {
                        value.push(line[i + 1]);
                        i += 2;
                    } else if c == q {
                        i += 1;
                        break;
                    } else {
                        value.push(c);
                        i += 1;
                    }
                }
            } else {
                value.push(line[i]);
                i += 1;
            }
        }
        if field == index {
            let raw = &line[start..i];
            if !quoted && raw == f.null.as_bytes() {
                return Some(None);
            }
            return Some(Some(if plain {
                Cow::Borrowed(raw)
            } else {
                Cow::Owned(value)
            }));
        }
        if i >= line.len() {
            return None;
        }
        i += 1; // the delimiter
        field += 1;
    }
}

#[cfg(test)]
mod tests;
