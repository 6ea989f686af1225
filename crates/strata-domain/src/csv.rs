//! A streaming reader for header-less RFC 4180 CSV.
//!
//! Why not the `csv` crate: rejections must quote each record's raw bytes and its line number,
//! and a broken record (a stray quote, bad UTF-8) must cost one rejection, not the whole file.
//! This reader splits records on newlines outside quotes, keeps the raw bytes, strips CR of CRLF
//! and a leading BOM, skips blank lines, and caps a record's size so memory stays flat even when
//! an unterminated quote would swallow the rest of a file.

use std::io::{self, BufRead};

/// Records longer than this are refused (and the reader resynchronises at the next newline).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One record as it appeared in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// 1-based line number where the record starts.
    pub line: u64,
    /// The record's bytes without its line terminator (possibly cut at the size cap).
    pub raw: Vec<u8>,
    /// Set when the record was longer than [`MAX_RECORD_BYTES`].
    pub oversized: bool,
}

pub struct RecordReader<R> {
    inner: R,
    line: u64,
    first: bool,
    bytes_read: u64,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, line: 1, first: true, bytes_read: 0 }
    }

    /// Bytes consumed so far: drives progress bars.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next non-blank record, or `None` at the end of input.
    pub fn next_record(&mut self) -> io::Result<Option<RawRecord>> {
        loop {
            let start_line = self.line;
            let mut raw = Vec::new();
            let mut in_quotes = false;
            let mut oversized = false;
            let mut saw_any = false;
            let mut closed_at: Option<usize> = None;
            loop {
                let buf = self.inner.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                saw_any = true;
                // Find the first newline that is outside quotes. Past the size cap quotes stop
                // counting, so the next newline ends this broken record.
                let mut end = None;
                let mut pos = 0;
                while let Some(off) = memchr::memchr2(b'\n', b'"', &buf[pos..]) {
                    let i = pos + off;
                    let at = raw.len() + i;
                    if at > MAX_RECORD_BYTES {
                        oversized = true;
                    }
                    if buf[i] == b'"' {
                        if oversized {
                        } else if in_quotes {
                            in_quotes = false;
                            closed_at = Some(at);
                        } else {
                            // RFC 4180: a quote opens a quoted field only at the field's start;
                            // right after a closing quote it is an escaped quote. Anywhere else
                            // it is a stray quote, which field splitting reports, and it must
                            // not swallow the following lines.
                            let prev = if i > 0 { Some(buf[i - 1]) } else { raw.last().copied() };
                            if closed_at.is_some_and(|c| c + 1 == at) || prev.is_none() || prev == Some(b',') {
                                in_quotes = true;
                            }
                        }
                    } else if !in_quotes || oversized {
                        end = Some(i);
                        break;
                    } else {
                        self.line += 1;
                    }
                    pos = i + 1;
                }
                let take = end.unwrap_or(buf.len());
                if raw.len() + take > MAX_RECORD_BYTES {
                    oversized = true;
                }
                let room = MAX_RECORD_BYTES.saturating_sub(raw.len()).min(take);
                raw.extend_from_slice(&buf[..room]);
                let consumed = if end.is_some() { take + 1 } else { take };
                self.inner.consume(consumed);
                self.bytes_read += consumed as u64;
                if end.is_some() {
                    self.line += 1;
                    break;
                }
            }
            if !saw_any && raw.is_empty() {
                return Ok(None);
            }
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
            if self.first {
                self.first = false;
                if raw.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    raw.drain(..3);
                }
            }
            if raw.is_empty() {
                if saw_any {
                    continue;
                }
                return Ok(None);
            }
            return Ok(Some(RawRecord { line: start_line, raw, oversized }));
        }
    }
}

/// Splits a record into fields, undoing RFC 4180 quoting. Errors say what is malformed.
pub fn split_fields(raw: &[u8]) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut i = 0;
    let n = raw.len();
    loop {
        let mut field = Vec::new();
        if i < n && raw[i] == b'"' {
            i += 1;
            loop {
                match memchr::memchr(b'"', &raw[i..]) {
                    None => return Err("a quoted field is never closed".into()),
                    Some(off) => {
                        field.extend_from_slice(&raw[i..i + off]);
                        i += off + 1;
                        if i < n && raw[i] == b'"' {
                            field.push(b'"');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            if i < n && raw[i] != b',' {
                return Err(format!(
                    "unexpected character {:?} after a closing quote (field {})",
                    raw[i] as char,
                    fields.len() + 1
                ));
            }
        } else {
            let end = memchr::memchr(b',', &raw[i..]).map_or(n, |off| i + off);
            let piece = &raw[i..end];
            if memchr::memchr(b'"', piece).is_some() {
                return Err(format!(
                    "a quote inside an unquoted field (field {}); quote the field and double the quote",
                    fields.len() + 1
                ));
            }
            field.extend_from_slice(piece);
            i = end;
        }
        match String::from_utf8(field) {
            Ok(s) => fields.push(s),
            Err(_) => return Err(format!("field {} is not valid UTF-8", fields.len() + 1)),
        }
        if i >= n {
            return Ok(fields);
        }
        // raw[i] == ','
        i += 1;
        if i == n {
            fields.push(String::new());
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(input: &[u8]) -> Vec<RawRecord> {
        let mut r = RecordReader::new(input);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }

    #[test]
    fn crlf_and_lf_endings_and_a_missing_final_newline_read_the_same() {
        let a = records(b"1,a\r\n2,b\r\n3,c");
        let b = records(b"1,a\n2,b\n3,c\n");
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].line, 3);
        assert_eq!(a[2].raw, b"3,c");
    }

    #[test]
    fn quoted_fields_may_hold_commas_quotes_and_newlines() {
        let recs = records(b"1,\"a, \"\"b\"\"\nc\"\r\n2,d");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].line, 3);
        let f = split_fields(&recs[0].raw).unwrap();
        assert_eq!(f, vec!["1".to_string(), "a, \"b\"\nc".to_string()]);
    }

    #[test]
    fn a_stray_quote_inside_a_field_does_not_swallow_the_next_lines() {
        let recs = records(b"1,Fay\"s\n2,b\n3,\"x\"\"y\"\n4,d");
        assert_eq!(recs.len(), 4);
        assert!(split_fields(&recs[0].raw).is_err());
        assert_eq!(split_fields(&recs[2].raw).unwrap(), vec!["3", "x\"y"]);
    }

    #[test]
    fn blank_lines_and_a_bom_are_skipped() {
        let recs = records(b"\xEF\xBB\xBF1,a\n\n\r\n2,b\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].raw, b"1,a");
        assert_eq!(recs[1].line, 4);
    }

    #[test]
    fn malformed_quoting_is_reported_per_record() {
        assert!(split_fields(b"1,a\"b").unwrap_err().contains("unquoted"));
        assert!(split_fields(b"1,\"ab\"c").unwrap_err().contains("closing quote"));
        assert!(split_fields(b"1,\"ab").unwrap_err().contains("never closed"));
        assert!(split_fields(b"1,\xff").unwrap_err().contains("UTF-8"));
        assert_eq!(split_fields(b"1,,").unwrap(), vec!["1", "", ""]);
        assert_eq!(split_fields(b"").unwrap(), vec![""]);
    }

    #[test]
    fn an_unterminated_quote_cannot_swallow_unbounded_memory() {
        let mut input = b"1,\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        input.extend_from_slice(b"\n2,b\n");
        let recs = records(&input);
        assert!(recs[0].oversized);
        assert!(recs[0].raw.len() <= MAX_RECORD_BYTES);
        assert_eq!(recs.len(), 2);
        assert!(recs.last().unwrap().raw == b"2,b");
    }
}
