//! IMSpector's bad-word list: its file syntax and its counting rules
//! (imspector-format.md §7.1). It only counts and locates hits; it never
//! changes the text an event carries.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// IMSpector read the file with a 1024-byte `fgets` buffer: a longer line is
/// split into entries of at most this many bytes.
const MAX_ENTRY: usize = 1023;

/// IMSpector's default `badwords_replace_character`.
pub const DEFAULT_REPLACE: u8 = b'*';

/// A loaded bad-word list.
#[derive(Debug)]
pub struct Badwords {
    /// Entries in file order (the order changes counts, see [`Badwords::hits`]).
    entries: Vec<Vec<u8>>,
    /// Finds which entries occur at all, so clean text costs one scan.
    finder: AhoCorasick,
    /// Entries containing the replace character: a censored occurrence of an
    /// earlier entry can create a new match for them.
    replace_sensitive: Vec<usize>,
    replace: u8,
}

/// What reading the file found besides the entries, for the user to see.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BadwordsNotes {
    /// 1-based line of the first empty line when non-empty lines follow it:
    /// IMSpector stopped reading there, and so do we.
    pub ignored_after_line: Option<u32>,
}

impl Badwords {
    /// Parses a bad-word file as IMSpector read it: one entry per line, the
    /// first CR or LF ends a line, a NUL ends it too (C string), lines longer
    /// than 1023 bytes are split, reading stops at the first empty line, no
    /// comments, spaces are part of the entry.
    ///
    /// Errors (as `(line, message)`) only when no entry would be used at all.
    pub fn parse(bytes: &[u8], replace: u8) -> Result<(Badwords, BadwordsNotes), (u32, String)> {
        let mut entries = Vec::new();
        let mut notes = BadwordsNotes::default();
        let mut line_no: u32 = 0;
        let mut at_line_start = true;
        let mut rest = bytes;
        while !rest.is_empty() {
            // One fgets call: up to and including LF, at most MAX_ENTRY bytes.
            let take = match memchr::memchr(b'\n', rest) {
                Some(i) if i < MAX_ENTRY => i + 1,
                _ => rest.len().min(MAX_ENTRY),
            };
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            if at_line_start {
                line_no = line_no.saturating_add(1);
            }
            at_line_start = chunk.last() == Some(&b'\n');
            let end = chunk
                .iter()
                .position(|&b| b == b'\r' || b == b'\n' || b == 0)
                .unwrap_or(chunk.len());
            let entry = &chunk[..end];
            if entry.is_empty() {
                if rest.iter().any(|&b| b != b'\n' && b != b'\r') {
                    notes.ignored_after_line = Some(line_no);
                }
                break;
            }
            entries.push(entry.to_vec());
        }
        if entries.is_empty() {
            return Err((
                1,
                "no bad word before the first empty line (IMSpector stops reading at an empty line)"
                    .to_string(),
            ));
        }
        let finder = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&entries)
            .map_err(|e| (1, format!("cannot build the bad-word matcher: {e}")))?;
        let replace_sensitive = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.iter().any(|b| b.eq_ignore_ascii_case(&replace)))
            .map(|(i, _)| i)
            .collect();
        Ok((
            Badwords {
                entries,
                finder,
                replace_sensitive,
                replace,
            },
            notes,
        ))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The occurrences IMSpector's filter would have counted in `text`, as
    /// byte ranges in counting order. For each entry in file order, over the
    /// progressively censored text: ASCII case-insensitive substring search;
    /// an occurrence is skipped only when the byte before it and the byte
    /// after it are both ASCII letters; each counted occurrence is overwritten
    /// with the replace character, so it cannot be counted again.
    pub fn hits(&self, text: &[u8]) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        if text.is_empty() {
            return spans;
        }
        // Which entries occur in the original text. Censoring only removes
        // matches, except for entries that contain the replace character.
        let mut candidate = vec![false; self.entries.len()];
        let mut any = false;
        for m in self.finder.find_overlapping_iter(text) {
            candidate[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return spans;
        }
        for &i in &self.replace_sensitive {
            candidate[i] = true;
        }
        let mut work = text.to_vec();
        for (entry, _) in self.entries.iter().zip(&candidate).filter(|(_, &c)| c) {
            let n = entry.len();
            let mut from = 0;
            while let Some(pos) = find_ascii_ci(&work[from..], entry).map(|p| p + from) {
                let before = pos.checked_sub(1).and_then(|i| work.get(i));
                let after = work.get(pos + n);
                let buried = matches!((before, after), (Some(b), Some(a)) if b.is_ascii_alphabetic() && a.is_ascii_alphabetic());
                if buried {
                    from = pos + 1;
                } else {
                    spans.push((pos, pos + n));
                    work[pos..pos + n].fill(self.replace);
                    from = pos + n;
                }
                if from >= work.len() {
                    break;
                }
            }
        }
        spans
    }
}

/// `strcasestr` in the C locale: first position of `needle` in `hay`,
/// ignoring ASCII case only.
fn find_ascii_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    let first = needle[0];
    (0..=hay.len() - needle.len()).find(|&i| {
        hay[i].eq_ignore_ascii_case(&first) && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Badwords {
        Badwords::parse(s.as_bytes(), DEFAULT_REPLACE).unwrap().0
    }

    fn count(b: &Badwords, text: &str) -> usize {
        b.hits(text.as_bytes()).len()
    }

    #[test]
    fn word_boundary_rule_from_the_spec() {
        let b = list("darn\n");
        assert_eq!(count(&b, "darn"), 1);
        assert_eq!(count(&b, "darned"), 1);
        assert_eq!(count(&b, "undarn"), 1);
        assert_eq!(count(&b, "darn2"), 1);
        assert_eq!(count(&b, "adarnb"), 0);
        assert_eq!(count(&b, "1darn2"), 1);
        assert_eq!(count(&b, "_darn_"), 1);
        // Non-ASCII neighbours are not letters.
        assert_eq!(count(&b, "édarné"), 1);
        assert_eq!(count(&b, "DaRn darn"), 2);
    }

    #[test]
    fn entry_order_changes_counts_and_spans_are_reported() {
        // Longer first: `darned` consumes the occurrence, `darn` finds nothing.
        let b = list("darned\ndarn\n");
        assert_eq!(b.hits(b"oh darned"), vec![(3, 9)]);
        // Shorter first: `darn` censors `darn` in `darned`, `darned` is gone.
        let b = list("darn\ndarned\n");
        assert_eq!(b.hits(b"oh darned"), vec![(3, 7)]);
        let b = list("heck\n");
        assert_eq!(count(&b, "anyone tried the new borrow checker?"), 0);
        assert_eq!(count(&b, "heck, what the heck"), 2);
    }

    #[test]
    fn case_is_ascii_only() {
        let b = list("Ärger\n");
        assert_eq!(count(&b, "ärger"), 0);
        assert_eq!(count(&b, "ÄRGER"), 1);
        assert_eq!(count(&b, "Ärger"), 1);
    }

    #[test]
    fn censoring_can_create_a_match_for_an_entry_with_the_replace_char() {
        let b = list("x\n*a\n");
        // `x` → `*`, then `*a` matches the censored text.
        assert_eq!(b.hits(b"xa"), vec![(0, 1), (0, 2)]);
    }

    #[test]
    fn file_syntax_stops_at_the_first_empty_line() {
        let (b, notes) =
            Badwords::parse(b"son of a gun\r\n# not a comment\nfrak\n\nlater\n", b'*').unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(notes.ignored_after_line, Some(4));
        assert_eq!(count(&b, "# not a comment"), 1);
        assert_eq!(count(&b, "you son of a gun"), 1);
        assert_eq!(count(&b, "later"), 0);
        // Spaces are part of the entry.
        let b = list(" heck\n");
        assert_eq!(count(&b, "heck"), 0);
        assert_eq!(count(&b, "oh heck"), 1);
    }

    #[test]
    fn trailing_empty_lines_are_not_reported_as_ignored_words() {
        let (b, notes) = Badwords::parse(b"frak\n\n\n", b'*').unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(notes.ignored_after_line, None);
        let (b, _) = Badwords::parse(b"frak", b'*').unwrap();
        assert_eq!(count(&b, "frak"), 1);
    }

    #[test]
    fn long_lines_are_split_like_fgets() {
        let mut file = vec![b'a'; 1030];
        file.extend_from_slice(b"\nzz\n");
        let (b, _) = Badwords::parse(&file, b'*').unwrap();
        assert_eq!(b.entries[0].len(), 1023);
        assert_eq!(b.entries[1], b"aaaaaaa");
        assert_eq!(b.entries[2], b"zz");
        // A 1023-byte line: its LF is read by the next fgets as an empty
        // line, so IMSpector stopped there (reported on that same line 1).
        let mut file = vec![b'a'; 1023];
        file.extend_from_slice(b"\nzz\n");
        let (b, notes) = Badwords::parse(&file, b'*').unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(notes.ignored_after_line, Some(1));
    }

    #[test]
    fn a_file_without_entries_is_an_error() {
        assert!(Badwords::parse(b"", b'*').is_err());
        let err = Badwords::parse(b"\nword\n", b'*').unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("empty line"), "{}", err.1);
    }

    #[test]
    fn empty_text_is_not_counted() {
        assert!(list("a\n").hits(b"").is_empty());
    }
}
