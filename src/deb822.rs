//! The one deb822 reader: text (or a byte stream) in, paragraphs of fields out, as Debian Policy
//! §5.1 defines the format. Release, Packages, control, dpkg status and apt `.sources` files all
//! go through it.
//!
//! - A paragraph is a run of field lines; one or more lines that are empty or hold only spaces
//!   and tabs separate paragraphs.
//! - A field is `Name: value`; a line starting with a space or tab continues the field above,
//!   so a folded `Depends` keeps every line and a multiline field (`SHA256`, `Conffiles`,
//!   `Description`) keeps its lines. [`Field::folded`] and [`Field::lines`] read the two kinds.
//! - Field names are matched case-insensitively, may not start with `#` or `-` and hold
//!   printable ASCII other than `:`; a name may appear once per paragraph.
//! - Comment lines (`#` in the first column) exist only where the file's format allows them
//!   ([`Comments::Allowed`], apt sources); elsewhere such a line is an error.
//!
//! Why not the deb822-fast crate: it drops comments in every file (they are errors in a
//! Packages or control file), gives no byte positions (dpkg's `available` file is cut from the
//! verified index by position), and allocates vectors per paragraph with no streaming reader
//! that keeps a paragraph's position in the stream. This module borrows every name and value
//! from the caller's text or from one reused line buffer ([`StreamReader`]), reports the line of
//! each error, and is small enough to read in one sitting.

use std::borrow::Cow;
use std::io::BufRead;

/// Whether `#` lines are comments (apt sources) or errors (everything the archive writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comments {
    Allowed,
    Refused,
}

/// A line that is not deb822.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("line {line}: a continuation line with no field before it")]
    OrphanContinuation { line: usize },
    #[error("line {line}: not a field (no colon)")]
    NotAField { line: usize },
    #[error("line {line}: {name:?} is not a valid field name")]
    BadName { line: usize, name: String },
    #[error("line {line}: field {name} appears twice in one paragraph")]
    Duplicate { line: usize, name: String },
}

/// Why a paragraph could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the text")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
}

/// One field: its name as written and its value with continuation lines as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    name: &'a str,
    /// Everything after the colon up to the end of the last continuation line, without the
    /// final newline.
    raw: &'a str,
    line: usize,
}

impl<'a> Field<'a> {
    /// The name as written (compare with [`Field::is`]).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether this is the field `name`, compared case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The line the field starts on, counted from 1 in the whole text.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The value exactly as written after the colon, continuation lines included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The first line of the value, trimmed: what a simple field holds.
    pub fn first_line(&self) -> &'a str {
        self.raw.split('\n').next().unwrap_or("").trim()
    }

    /// A folded field's value: every line trimmed and joined by one space (Policy: folding
    /// is allowed wherever whitespace is, as in `Depends`). Borrowed when there is one line.
    pub fn folded(&self) -> Cow<'a, str> {
        if !self.raw.contains('\n') {
            return Cow::Borrowed(self.raw.trim());
        }
        let mut out = String::with_capacity(self.raw.len());
        for part in self.raw.split('\n').filter_map(value_line) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(part);
        }
        Cow::Owned(out)
    }

    /// A multiline field's continuation lines (those after the first), each trimmed, without
    /// comment lines.
    pub fn lines(&self) -> impl Iterator<Item = &'a str> {
        self.raw.split('\n').skip(1).filter_map(value_line)
    }
}

/// A line of a value, trimmed, unless it is empty or a comment line: a continuation starts
/// with whitespace, so a `#` in the first column can only be a comment the file allows.
fn value_line(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    Some(line.trim()).filter(|l| !l.is_empty())
}

/// A paragraph: its text and its fields in order, names and values borrowed from the text.
#[derive(Debug, Clone)]
pub struct Paragraph<'a> {
    text: &'a str,
    offset: usize,
    fields: Vec<Field<'a>>,
}

impl<'a> Paragraph<'a> {
    /// Parses the lines of one paragraph (no separator lines inside); `first_line` numbers its
    /// first line in errors and `offset` is its byte position in the whole text.
    fn parse(
        text: &'a str,
        offset: usize,
        first_line: usize,
        comments: Comments,
    ) -> Result<Paragraph<'a>, SyntaxError> {
        let mut fields: Vec<Field<'a>> = Vec::with_capacity(24);
        let mut pos = 0;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let start = pos;
            pos += line.len();
            let line_no = first_line + n;
            let body = line.strip_suffix('\n').unwrap_or(line);
            if comments == Comments::Allowed && body.starts_with('#') {
                continue;
            }
            if body.starts_with([' ', '\t']) {
                let last = fields
                    .last_mut()
                    .ok_or(SyntaxError::OrphanContinuation { line: line_no })?;
                // Extend the value to the end of this line; a comment line in between (where
                // allowed) is inside `raw` but skipped by `folded` and `lines`.
                let value_start = last.raw.as_ptr() as usize - text.as_ptr() as usize;
                last.raw = &text[value_start..start + body.len()];
                continue;
            }
            let (name, value) = body
                .split_once(':')
                .ok_or(SyntaxError::NotAField { line: line_no })?;
            if !is_field_name(name) {
                return Err(SyntaxError::BadName {
                    line: line_no,
                    name: name.to_owned(),
                });
            }
            if fields
                .iter()
                .any(|f| f.name.len() == name.len() && f.name.eq_ignore_ascii_case(name))
            {
                return Err(SyntaxError::Duplicate {
                    line: line_no,
                    name: name.to_owned(),
                });
            }
            fields.push(Field {
                name,
                raw: value,
                line: line_no,
            });
        }
        Ok(Paragraph {
            text,
            offset,
            fields,
        })
    }

    /// The paragraph's lines as written.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Where the paragraph starts in the whole text (or stream), in bytes.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Every field, in order.
    pub fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The field `name`, compared case-insensitively.
    pub fn field(&self, name: &str) -> Option<Field<'a>> {
        self.fields.iter().find(|f| f.is(name)).copied()
    }

    /// The first line of field `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.field(name).map(|f| f.first_line())
    }
}

/// Whether `name` is a field name as Policy §5.1 allows it.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b':')
}

/// Whether a line separates paragraphs: nothing but spaces, tabs and the line end.
fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Every paragraph of `text`, in order.
pub fn paragraphs(
    text: &str,
    comments: Comments,
) -> impl Iterator<Item = Result<Paragraph<'_>, SyntaxError>> {
    let mut pos = 0;
    let mut line_no = 1;
    std::iter::from_fn(move || {
        // Skip separator lines (and, where allowed, comment lines) before the paragraph.
        let mut start = None;
        let mut first_line = line_no;
        let mut end = pos;
        for line in text[pos..].split_inclusive('\n') {
            let blank = is_blank(line.as_bytes());
            let comment = comments == Comments::Allowed && line.starts_with('#');
            match start {
                None if blank || comment => {
                    pos += line.len();
                    line_no += 1;
                    end = pos;
                }
                None => {
                    start = Some(pos);
                    first_line = line_no;
                    pos += line.len();
                    line_no += 1;
                    end = pos;
                }
                Some(_) if blank => break,
                Some(_) => {
                    pos += line.len();
                    line_no += 1;
                    end = pos;
                }
            }
        }
        let start = start?;
        Some(Paragraph::parse(
            &text[start..end],
            start,
            first_line,
            comments,
        ))
    })
}

/// The first paragraph of `text` (a Release or a control file), if there is one.
pub fn first_paragraph(
    text: &str,
    comments: Comments,
) -> Result<Option<Paragraph<'_>>, SyntaxError> {
    paragraphs(text, comments).next().transpose()
}

/// Reads paragraphs one at a time from a stream, holding only the current one: memory follows
/// the largest paragraph, not the size of the file. Comments are refused (the archive's files).
pub struct StreamReader<R> {
    input: R,
    buf: Vec<u8>,
    /// The current paragraph as text (a lossy copy only when it is not UTF-8).
    lossy: String,
    /// Bytes of the stream consumed so far.
    pos: u64,
    line_no: usize,
}

/// A paragraph from a [`StreamReader`], with its byte range in the stream.
pub struct StreamParagraph<'a> {
    pub paragraph: Paragraph<'a>,
    /// Where it starts in the stream.
    pub start: u64,
    /// Where its last line ends in the stream (newline included).
    pub end: u64,
}

impl<R: BufRead> StreamReader<R> {
    pub fn new(input: R) -> StreamReader<R> {
        StreamReader {
            input,
            buf: Vec::with_capacity(16 * 1024),
            lossy: String::new(),
            pos: 0,
            line_no: 1,
        }
    }

    /// The next paragraph, or `None` at the end of the stream.
    pub fn next_paragraph(&mut self) -> Result<Option<StreamParagraph<'_>>, ReadError> {
        self.buf.clear();
        let mut start = self.pos;
        let mut first_line = self.line_no;
        loop {
            let before = self.buf.len();
            let n = self.input.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                break;
            }
            let blank = is_blank(&self.buf[before..]);
            if blank {
                self.buf.truncate(before);
            }
            self.pos += n as u64;
            self.line_no += 1;
            if blank {
                if before > 0 {
                    break;
                }
                start = self.pos;
                first_line = self.line_no;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let end = start + self.buf.len() as u64;
        let text = match std::str::from_utf8(&self.buf) {
            Ok(text) => text,
            Err(_) => {
                self.lossy = String::from_utf8_lossy(&self.buf).into_owned();
                &self.lossy
            }
        };
        let paragraph = Paragraph::parse(text, start as usize, first_line, Comments::Refused)?;
        Ok(Some(StreamParagraph {
            paragraph,
            start,
            end,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str, comments: Comments) -> Vec<Paragraph<'_>> {
        paragraphs(text, comments)
            .collect::<Result<_, _>>()
            .expect("valid deb822")
    }

    #[test]
    fn a_folded_field_keeps_its_continuation_lines() {
        let text = "Package: a\nDepends: b,\n c (>= 1),\n\td\nVersion: 1\n";
        let p = &all(text, Comments::Refused)[0];
        assert_eq!(
            p.field("Depends").expect("field").folded(),
            "b, c (>= 1), d"
        );
        assert_eq!(p.get("Version"), Some("1"));
    }

    #[test]
    fn a_multiline_field_gives_its_lines() {
        let text = "SHA256:\n 00 1 main/a\n 11 2 main/b\nDate: x\n";
        let p = &all(text, Comments::Refused)[0];
        let lines: Vec<&str> = p.field("sha256").expect("field").lines().collect();
        assert_eq!(lines, ["00 1 main/a", "11 2 main/b"]);
        assert_eq!(p.get("SHA256"), Some(""));
    }

    #[test]
    fn field_names_match_case_insensitively() {
        let p = &all("PACKAGE: a\nvErSiOn: 1\n", Comments::Refused)[0];
        assert_eq!(p.get("Package"), Some("a"));
        assert_eq!(p.get("version"), Some("1"));
        assert!(p.fields()[0].is("package"));
    }

    #[test]
    fn whitespace_only_lines_separate_paragraphs() {
        let text = "\n \nA: 1\n \t \nA: 2\n\n\n\nA: 3";
        let ps = all(text, Comments::Refused);
        let values: Vec<_> = ps.iter().map(|p| p.get("A")).collect();
        assert_eq!(values, [Some("1"), Some("2"), Some("3")]);
        assert_eq!(&text[ps[1].offset()..][..5], "A: 2\n");
    }

    #[test]
    fn comments_are_skipped_only_where_allowed() {
        let text = "# about\nTypes: deb\n# inside\nURIs: http://127.0.0.1/d\n";
        let p = &all(text, Comments::Allowed)[0];
        assert_eq!(p.get("URIs"), Some("http://127.0.0.1/d"));
        assert_eq!(p.fields().len(), 2);
        let err = paragraphs(text, Comments::Refused)
            .next()
            .expect("a paragraph")
            .expect_err("comment refused");
        assert_eq!(err, SyntaxError::NotAField { line: 1 });
        let err = paragraphs("A: 1\n#B: 2\n", Comments::Refused)
            .next()
            .expect("a paragraph")
            .expect_err("a comment-like field refused");
        assert!(
            matches!(err, SyntaxError::BadName { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_comment_inside_a_folded_field_is_left_out() {
        let text = "Suites: a\n# gone\n b\n";
        let p = &all(text, Comments::Allowed)[0];
        assert_eq!(p.field("Suites").expect("field").folded(), "a b");
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line() {
        for (text, want) in [
            (
                " orphan\nA: 1\n",
                SyntaxError::OrphanContinuation { line: 1 },
            ),
            ("A: 1\nno colon\n", SyntaxError::NotAField { line: 2 }),
            (
                "A: 1\n-B: 2\n",
                SyntaxError::BadName {
                    line: 2,
                    name: "-B".into(),
                },
            ),
            (
                "A: 1\nB C: 2\n",
                SyntaxError::BadName {
                    line: 2,
                    name: "B C".into(),
                },
            ),
            (
                "X: 0\n\nA: 1\na: 2\n",
                SyntaxError::Duplicate {
                    line: 4,
                    name: "a".into(),
                },
            ),
        ] {
            let err = paragraphs(text, Comments::Refused)
                .find_map(Result::err)
                .expect("an error");
            assert_eq!(err, want, "{text:?}");
        }
    }

    #[test]
    fn the_stream_reader_gives_paragraphs_and_their_byte_ranges() {
        let text = "\nPackage: a\nDepends: b,\n c\n \t\nPackage: b\r\n\n\nPackage: c";
        let mut reader = StreamReader::new(std::io::BufReader::with_capacity(3, text.as_bytes()));
        let mut seen = Vec::new();
        while let Some(p) = reader.next_paragraph().expect("reads") {
            let range = &text[p.start as usize..p.end as usize];
            seen.push((
                p.paragraph.get("Package").map(str::to_owned),
                p.paragraph
                    .field("Depends")
                    .map(|f| f.folded().into_owned()),
                range.to_owned(),
            ));
        }
        assert_eq!(
            seen,
            [
                (
                    Some("a".into()),
                    Some("b, c".into()),
                    "Package: a\nDepends: b,\n c\n".into()
                ),
                (Some("b".into()), None, "Package: b\r\n".into()),
                (Some("c".into()), None, "Package: c".into()),
            ]
        );
    }

    #[test]
    fn the_stream_reader_reports_the_line_of_an_error() {
        let text = "A: 1\n\nA: 2\n orphan ok\nbad\n";
        let mut reader = StreamReader::new(text.as_bytes());
        assert!(reader.next_paragraph().expect("first").is_some());
        let err = match reader.next_paragraph() {
            Err(ReadError::Syntax(e)) => e,
            other => panic!(
                "expected a syntax error, got {:?}",
                other.map(|p| p.is_some())
            ),
        };
        assert_eq!(err, SyntaxError::NotAField { line: 5 });
    }
}
