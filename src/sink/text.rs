//! `-F text`: a transcript for people, one line per event:
//!
//! ```text
//! 2009-07-20T11:00:00.000000Z [1:3] msn alice@hotmail.com → bob@hotmail.com: hi bob
//! 2009-07-20T11:00:30.000000Z [1:3] msn alice@hotmail.com → bob@hotmail.com: [file] report.pdf (48213 bytes)
//! 2009-07-20T11:02:40.000000Z [1:3] msn alice@hotmail.com → bob@hotmail.com: the [[darn]] build broke  [badwords]
//! ```
//!
//! Time (UTC), the flow id in brackets (the same as in JSON Lines, so
//! interleaved conversations can be told apart and grepped), protocol,
//! `sender → recipient` (the recipient of a group message is the channel or
//! room; an unknown local user is `(unknown)`), then the text, or `[file]
//! name (size bytes)`, `[typing]`, `[webcam invitation]`. After the text:
//! `[filtered: <categories>]` or `[<categories>]` when a policy matched, and
//! `{gap_before, lost 12 bytes, ...}` when the event is damaged.
//!
//! The text is made to stay on one line and to show what was sent: LF, CR
//! and tab are written `\n`, `\r`, `\t`; other control characters and the
//! Unicode bidi controls (which would reorder what the terminal shows) are
//! written `\u{XXXX}`. Bad-word hits are shown in bold red on a terminal and
//! between `[[` and `]]` otherwise.

use std::io::{self, BufWriter, Write};

use crate::event::{Event, Kind, LocalId};
use crate::sink::{Sink, SinkContext, STREAM_BUFFER};

const HIT_ON_COLOR: &str = "\x1b[1;31m";
const HIT_OFF_COLOR: &str = "\x1b[0m";
const HIT_ON_PLAIN: &str = "[[";
const HIT_OFF_PLAIN: &str = "]]";

pub struct TextSink {
    out: BufWriter<Box<dyn Write + Send>>,
    ctx: SinkContext,
    line: String,
}

impl TextSink {
    pub fn new(w: Box<dyn Write + Send>, ctx: SinkContext) -> Self {
        TextSink {
            out: BufWriter::with_capacity(STREAM_BUFFER, w),
            ctx,
            line: String::with_capacity(256),
        }
    }
}

/// Characters that would break the line or mislead the reader.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Appends `s` escaped (see the module doc); `spans` (byte ranges of `s`)
/// are highlighted.
pub(crate) fn push_escaped(line: &mut String, s: &str, spans: &[(usize, usize)], color: bool) {
    let (on, off) = if color {
        (HIT_ON_COLOR, HIT_OFF_COLOR)
    } else {
        (HIT_ON_PLAIN, HIT_OFF_PLAIN)
    };
    // Merge overlapping hits (possible when an entry contains the replace
    // character) into disjoint ranges.
    let mut merged: Vec<(usize, usize)> = spans.to_vec();
    merged.sort_unstable();
    let mut disjoint: Vec<(usize, usize)> = Vec::with_capacity(merged.len());
    for (a, b) in merged {
        match disjoint.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => disjoint.push((a, b)),
        }
    }
    let mut next = disjoint.iter().peekable();
    let mut open_until: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if let Some(end) = open_until {
            if i >= end {
                line.push_str(off);
                open_until = None;
            }
        }
        if open_until.is_none() {
            if let Some(&&(a, b)) = next.peek() {
                if i >= a {
                    next.next();
                    if b > i {
                        line.push_str(on);
                        open_until = Some(b);
                    }
                }
            }
        }
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if needs_escape(c) => line.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            c => line.push(c),
        }
    }
    if open_until.is_some() {
        line.push_str(off);
    }
}

/// Appends one event as a transcript line (no newline) to `line`.
pub(crate) fn render(line: &mut String, ev: &Event, ctx: &SinkContext) {
    let local = match &ev.local_id {
        LocalId::Known(s) if !s.is_empty() => s.as_str(),
        _ => "(unknown)",
    };
    let remote = if ev.remote_id.is_empty() {
        "(unknown)"
    } else {
        ev.remote_id.as_str()
    };
    let (from, to) = if ev.outgoing {
        (ev.sender.as_deref().unwrap_or(local), remote)
    } else if ev.group {
        (ev.sender.as_deref().unwrap_or("(unknown)"), remote)
    } else {
        (ev.sender.as_deref().unwrap_or(remote), local)
    };
    line.push_str(&ev.time.rfc3339_micros());
    line.push_str(&format!(" [{}] {} ", ev.flow, ev.protocol.name()));
    push_escaped(line, from, &[], false);
    line.push_str(" → ");
    push_escaped(line, to, &[], false);
    line.push_str(": ");
    match ev.kind {
        Kind::Message => push_escaped(
            line,
            ev.text.as_deref().unwrap_or(""),
            &ev.policy.badword_spans,
            ctx.color,
        ),
        Kind::File => {
            line.push_str("[file] ");
            push_escaped(
                line,
                ev.file_name.as_deref().unwrap_or("(no name)"),
                &[],
                false,
            );
            match ev.file_size {
                Some(n) => line.push_str(&format!(" ({n} bytes)")),
                None => line.push_str(" (size unknown)"),
            }
        }
        Kind::Typing => line.push_str("[typing]"),
        Kind::Webcam => line.push_str("[webcam invitation]"),
    }
    if !ev.categories.is_empty() || ev.filtered {
        line.push_str(if ev.filtered { "  [filtered" } else { "  [" });
        if ev.filtered && !ev.categories.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&ev.categories.join(" "));
        line.push(']');
    }
    let mut damage: Vec<String> = ev.flags.names().into_iter().map(str::to_string).collect();
    if ev.lost_bytes > 0 {
        damage.push(format!("lost {} bytes", ev.lost_bytes));
    }
    if !damage.is_empty() {
        line.push_str(&format!("  {{{}}}", damage.join(", ")));
    }
}

impl Sink for TextSink {
    fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.line.clear();
        render(&mut self.line, ev, &self.ctx);
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, spans: &[(usize, usize)], color: bool) -> String {
        let mut l = String::new();
        push_escaped(&mut l, s, spans, color);
        l
    }

    #[test]
    fn escapes_keep_one_line_and_show_bidi_controls() {
        assert_eq!(esc("a\r\nb\tc", &[], false), "a\\r\\nb\\tc");
        assert_eq!(esc("x\u{202E}y\0", &[], false), "x\\u{202E}y\\u{0000}");
        assert_eq!(esc("héllo", &[], false), "héllo");
    }

    #[test]
    fn highlights_hits_plain_and_in_colour() {
        assert_eq!(
            esc("the darn build", &[(4, 8)], false),
            "the [[darn]] build"
        );
        assert_eq!(
            esc("darn darn", &[(0, 4), (5, 9)], false),
            "[[darn]] [[darn]]"
        );
        assert_eq!(esc("darn", &[(0, 4)], true), "\x1b[1;31mdarn\x1b[0m");
        // Overlapping spans merge.
        assert_eq!(esc("xa", &[(0, 1), (0, 2)], false), "[[xa]]");
    }
}
