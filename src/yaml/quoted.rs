//! Multi-line quoted scalars indented less than yaml-rust2 allows.
//!
//! libyaml — and so go-yaml and kubectl — accepts the continuation lines of a multi-line quoted
//! scalar at any indentation; yaml-rust2 refuses those not indented deeper than the block around
//! the scalar. Leading white space of a continuation line is folded away, so indenting such
//! lines changes neither the value nor any line number. Once yaml-rust2 has refused one,
//! [`parse_reindented`] finds every multi-line quoted scalar of the text in one pass, indents
//! their continuation lines and reads the text once more — not once more per scalar, which made
//! reading quadratic in the number of such scalars.
//!
//! The finder is a small lexer, not a YAML parser: it may take a quote inside a block or plain
//! scalar for the start of a quoted scalar, or miss one. Neither can change what is read. Every
//! scalar it indented must come back from the parser as a quoted scalar starting exactly there,
//! or it is dropped and the text read again; a scalar it missed is named by yaml-rust2's error,
//! which gives its start exactly, and is trusted from then on. Every reading ends the work or
//! drops or trusts at least one scalar, and a text is read at most [`MAX_PASSES`] times.

use super::{DocumentSink, Position, STOPPED, YamlError, parse_events};
use std::collections::{BTreeSet, HashSet};

/// yaml-rust2's message for a continuation line indented too little.
pub(super) const UNDER_INDENTED: &str = "invalid indentation in quoted scalar";

/// Most readings of one YAML text, the first included.
pub const MAX_PASSES: usize = 8;

/// A quoted scalar spanning lines, as the lexer found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quoted {
    /// Byte offset of the opening quote.
    offset: usize,
    /// 1-based line and 0-based column (in characters) of the opening quote.
    line: usize,
    col: usize,
    /// The last line the scalar spans.
    last_line: usize,
    /// Named by yaml-rust2 itself, so certainly a quoted scalar.
    trusted: bool,
}

/// Reads `source`, which yaml-rust2 refused with `first` (an [`UNDER_INDENTED`] error), into
/// `sink` with the continuation lines of its multi-line quoted scalars indented. `passes`
/// counts readings.
pub(super) fn parse_reindented(
    source: &str,
    sink: &mut dyn DocumentSink,
    first: YamlError,
    passes: &mut usize,
) -> Result<(), YamlError> {
    let mut trusted = BTreeSet::new();
    let mut dropped = HashSet::new();
    match offset_of(source, first.line, first.column - 1) {
        Some(offset) => trusted.insert(offset),
        None => return Err(first),
    };
    let mut last_error = first;
    while *passes < MAX_PASSES {
        let found = find(source, &trusted, &dropped);
        let plan = Plan::new(source, &found);
        *passes += 1;
        let mut seen = HashSet::new();
        sink.restart();
        let result = parse_events(&plan.text, sink, &plan.watch, &mut seen);
        // Scalars the lexer found and the parser read past (to its end, an error, or where the
        // sink stopped it), that did not come back as quoted scalars where the lexer said: the
        // lexer was wrong there.
        let read_to = result.as_ref().err().map(|e| (e.line, e.column - 1));
        let wrong: Vec<usize> = plan
            .expected
            .iter()
            .filter(|(mark, q)| {
                !q.trusted && !seen.contains(mark) && read_to.is_none_or(|end| *mark < end)
            })
            .map(|(_, q)| q.offset)
            .collect();
        if !wrong.is_empty() {
            dropped.extend(wrong);
            continue;
        }
        let e = match result {
            Ok(()) => return Ok(()),
            Err(e) if e.message == STOPPED => return Ok(()),
            Err(e) => plan.to_source(e),
        };
        if e.message != UNDER_INDENTED {
            return Err(e);
        }
        match offset_of(source, e.line, e.column - 1) {
            Some(offset) if trusted.insert(offset) => last_error = e,
            _ => return Err(e),
        }
    }
    Err(YamlError {
        message: format!(
            "{} (read {MAX_PASSES} times without placing every quoted scalar; indent the \
             continuation lines of multi-line quoted scalars deeper than their key)",
            last_error.message
        ),
        ..last_error
    })
}

/// Byte offset of (1-based line, 0-based column in characters).
fn offset_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &text[start..];
    let end = rest.find('\n').unwrap_or(rest.len());
    rest[..end].char_indices().nth(col).map(|(i, _)| start + i)
}

/// `---` or `...` at the start of a line, followed by white space or the end of the line.
fn is_document_marker(rest: &[u8]) -> bool {
    (rest.starts_with(b"---") || rest.starts_with(b"..."))
        && rest
            .get(3)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The text to read again: every continuation line of the found scalars that is not indented
/// deeper than its scalar's opening quote gets enough spaces in front to be.
struct Plan {
    text: String,
    /// (line, spaces added), in line order.
    pads: Vec<(usize, usize)>,
    /// Where, in `text`, each scalar whose lines were indented must start.
    expected: Vec<(Position, Quoted)>,
    watch: HashSet<Position>,
}

impl Plan {
    fn new(source: &str, found: &[Quoted]) -> Plan {
        let mut text = String::with_capacity(source.len() + source.len() / 16);
        let mut pads = Vec::new();
        let mut expected = Vec::new();
        let mut next = found.iter().peekable();
        // The scalar whose continuation lines are being read: itself, the column of its quote
        // in `text`, and whether any of its lines was indented.
        let mut open: Option<(Quoted, usize, bool)> = None;
        for (i, line) in source.split_inclusive('\n').enumerate() {
            let n = i + 1;
            let mut pad = 0;
            if let Some((q, col, indented)) = &mut open {
                let bytes = line.as_bytes();
                let lead = bytes.iter().take_while(|&&b| b == b' ').count();
                let blank = bytes[lead..]
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                // Blank lines are never checked; a document marker must stay where it is, so
                // yaml-rust2 refuses it inside a quoted scalar as libyaml does.
                if lead <= *col && !blank && !is_document_marker(bytes) {
                    pad = *col + 1 - lead;
                    *indented = true;
                }
                if n >= q.last_line {
                    if *indented {
                        expected.push(((q.line, *col), *q));
                    }
                    open = None;
                }
            }
            if pad > 0 {
                pads.push((n, pad));
                text.extend(std::iter::repeat_n(' ', pad));
            }
            text.push_str(line);
            while let Some(q) = next.next_if(|q| q.line <= n) {
                if q.line == n && q.last_line > n {
                    open = Some((*q, q.col + pad, false));
                }
            }
        }
        if let Some((q, col, true)) = open {
            expected.push(((q.line, col), q));
        }
        let watch = expected.iter().map(|(mark, _)| *mark).collect();
        Plan {
            text,
            pads,
            expected,
            watch,
        }
    }

    /// `e`, read in `text`, with its column in the source.
    fn to_source(&self, mut e: YamlError) -> YamlError {
        if let Ok(i) = self.pads.binary_search_by_key(&e.line, |&(line, _)| line) {
            let pad = self.pads[i].1;
            if e.column > pad {
                e.column -= pad;
            }
        }
        e
    }
}

/// Finds the quoted scalars of `source` that span lines, in order. Quotes at `trusted` offsets
/// always start one; quotes at `dropped` offsets never do.
fn find(source: &str, trusted: &BTreeSet<usize>, dropped: &HashSet<usize>) -> Vec<Quoted> {
    let mut lexer = Lexer {
        b: source.as_bytes(),
        i: 0,
        line: 1,
        col: 0,
        flow: 0,
        node_col: 0,
        trusted: trusted.iter().copied().collect(),
        next_trusted: 0,
        dropped,
        found: Vec::new(),
    };
    lexer.run();
    lexer.found
}

struct Lexer<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    /// Column of `i` in characters.
    col: usize,
    /// Depth of open `[` and `{`.
    flow: usize,
    /// Column of the block node the current token belongs to: a key, a `-`, or the line's
    /// indentation. Block scalar and plain scalar continuation lines are indented deeper.
    node_col: usize,
    trusted: Vec<usize>,
    next_trusted: usize,
    dropped: &'a HashSet<usize>,
    found: Vec<Quoted>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

impl Lexer<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    /// The byte `k` ahead, a newline past the end.
    fn peek(&self, k: usize) -> u8 {
        self.b.get(self.i + k).copied().unwrap_or(b'\n')
    }

    fn bump(&mut self) {
        let c = self.b[self.i];
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 0;
        } else if c & 0xC0 != 0x80 {
            self.col += 1;
        }
    }

    /// At the end of an anchor, tag or alias name.
    fn at_token_end(&mut self) -> bool {
        self.at_end()
            || is_space(self.b[self.i])
            || (self.flow > 0 && is_flow_indicator(self.b[self.i]))
            || self.next_trusted() == Some(self.i)
    }

    /// Offset of the newline ending the current line (or the end of the text).
    fn line_end(&self) -> usize {
        self.b[self.i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.b.len(), |p| self.i + p)
    }

    /// The first trusted offset at or after `i`.
    fn next_trusted(&mut self) -> Option<usize> {
        while self
            .trusted
            .get(self.next_trusted)
            .is_some_and(|&t| t < self.i)
        {
            self.next_trusted += 1;
        }
        self.trusted.get(self.next_trusted).copied()
    }

    /// Moves to `end` on the current line, or to a trusted quote before it.
    fn skip_to(&mut self, end: usize) {
        let end = self.next_trusted().filter(|&t| t < end).unwrap_or(end);
        while self.i < end {
            self.bump();
        }
    }

    fn run(&mut self) {
        // Inside a block scalar, or a plain scalar in block context, whose node is at this
        // column: its lines are those indented deeper.
        let mut block: Option<usize> = None;
        let mut plain: Option<usize> = None;
        while !self.at_end() {
            let end = self.line_end();
            let line = &self.b[self.i..end];
            let indent = line.iter().take_while(|&&b| b == b' ').count();
            let trusted_here = self.next_trusted().is_some_and(|t| t < end);
            if line.iter().all(|&b| is_space(b)) {
                self.skip_line(end);
                continue;
            }
            if self.flow == 0 && !trusted_here {
                let first = line[indent];
                if block.is_some_and(|n| indent > n)
                    || (plain.is_some_and(|n| indent > n) && first != b'#')
                {
                    self.skip_line(end);
                    continue;
                }
            }
            block = None;
            plain = None;
            if is_document_marker(line) {
                self.flow = 0;
                for _ in 0..3 {
                    self.bump();
                }
                self.node_col = 0;
            } else if line[0] == b'%' && self.flow == 0 {
                self.skip_line(end);
                continue;
            } else {
                for _ in 0..indent {
                    self.bump();
                }
                self.node_col = indent;
            }
            self.lex_line(&mut block, &mut plain);
        }
    }

    fn skip_line(&mut self, end: usize) {
        self.i = end;
        if !self.at_end() {
            self.bump();
        }
    }

    /// Reads tokens up to and including the newline that ends the line (a quoted scalar may
    /// carry the reading over several lines).
    fn lex_line(&mut self, block: &mut Option<usize>, plain: &mut Option<usize>) {
        loop {
            while !self.at_end() && matches!(self.b[self.i], b' ' | b'\t' | b'\r') {
                self.bump();
            }
            if self.at_end() {
                return;
            }
            let c = self.b[self.i];
            if c == b'\n' {
                self.bump();
                return;
            }
            let trusted = self.next_trusted() == Some(self.i);
            if trusted || ((c == b'\'' || c == b'"') && !self.dropped.contains(&self.i)) {
                self.quoted();
                continue;
            }
            let next = self.peek(1);
            match c {
                b'#' => {
                    let end = self.line_end();
                    self.skip_to(end);
                }
                b'[' | b'{' => {
                    self.flow += 1;
                    self.bump();
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    self.bump();
                }
                b',' if self.flow > 0 => self.bump(),
                b'-' | b'?' | b':'
                    if is_space(next)
                        || (self.flow > 0 && c == b':' && is_flow_indicator(next)) =>
                {
                    if c == b'-' && self.flow == 0 {
                        self.node_col = self.col;
                    }
                    self.bump();
                }
                b'&' | b'!' | b'*' => {
                    self.bump();
                    while !self.at_token_end() {
                        self.bump();
                    }
                }
                b'|' | b'>' if self.flow == 0 => {
                    *block = Some(self.node_col);
                    let end = self.line_end();
                    self.skip_to(end);
                }
                _ => self.plain(plain),
            }
        }
    }

    /// A plain scalar, up to a `: `, a comment, a flow indicator in flow context, or the end of
    /// the line (where, in block context, it may continue on deeper indented lines).
    fn plain(&mut self, plain: &mut Option<usize>) {
        let start = self.i;
        let start_col = self.col;
        while !self.at_end() {
            let c = self.b[self.i];
            if c == b'\n' {
                if self.flow == 0 {
                    *plain = Some(self.node_col);
                }
                return;
            }
            if self.i != start {
                let next = self.peek(1);
                let key =
                    c == b':' && (is_space(next) || (self.flow > 0 && is_flow_indicator(next)));
                if key {
                    if self.flow == 0 {
                        self.node_col = start_col;
                    }
                    return;
                }
                if (c == b'#' && matches!(self.b[self.i - 1], b' ' | b'\t'))
                    || (self.flow > 0 && is_flow_indicator(c))
                    || self.next_trusted() == Some(self.i)
                {
                    return;
                }
            }
            self.bump();
        }
    }

    /// A quoted scalar from its opening quote to its closing one.
    fn quoted(&mut self) {
        let (offset, line, col) = (self.i, self.line, self.col);
        let quote = self.b[self.i];
        let trusted = self.next_trusted() == Some(offset);
        self.bump();
        let last_line = loop {
            if self.at_end() {
                return;
            }
            let c = self.b[self.i];
            if c == b'\n' {
                self.bump();
                if is_document_marker(&self.b[self.i..]) {
                    // yaml-rust2 stops there with an error, as libyaml does.
                    break self.line - 1;
                }
                continue;
            }
            if self.next_trusted() == Some(self.i) {
                // A quote yaml-rust2 named lies inside: this was no quoted scalar.
                return;
            }
            self.bump();
            if c == b'\\' && quote == b'"' {
                if !self.at_end() && self.b[self.i] != b'\n' {
                    self.bump();
                }
            } else if c == quote {
                if quote == b'\'' && !self.at_end() && self.b[self.i] == b'\'' {
                    self.bump();
                } else {
                    break self.line;
                }
            }
        };
        if last_line > line {
            self.found.push(Quoted {
                offset,
                line,
                col,
                last_line,
                trusted,
            });
        }
        while !self.at_end() && matches!(self.b[self.i], b' ' | b'\t') {
            self.bump();
        }
        if self.flow == 0 && !self.at_end() && self.b[self.i] == b':' {
            self.node_col = col;
        }
    }
}
