//! The fast stanza reader: one pass over a unit of the common shape (start,
//! end and self-closing tags with quoted attributes, text with the five
//! named entities and character references), feeding the same
//! [`StanzaBuilder`] as the quick-xml reader, with texts borrowed from the
//! unit. It must never guess: on anything it does not read exactly as
//! [`read_stanza_xml`](super::parser::read_stanza_xml) would (CDATA,
//! comments, processing instructions, DOCTYPE, unknown entities, text that
//! is not UTF-8, spaces around `=`, unquoted values, a byte in a name that
//! XML names never hold, a unit not starting with `<`), it answers "not
//! handled" and the caller uses the quick-xml reader. Pure, never panics.

use std::borrow::Cow;

use super::parser::{
    find_byte, is_stream_name, read_stanza_xml, AttrText, Flow, Split, Splitter, Stanza,
    StanzaBuilder, StartTag, UnitKind,
};

/// Read `unit` like [`read_stanza_xml`](super::parser::read_stanza_xml), or
/// `None` when the unit has something this reader does not handle.
pub fn read_stanza_fast(unit: &[u8]) -> Option<Stanza<'_>> {
    let mut st = Stanza::default();
    read_into(unit, &mut st).then_some(st)
}

/// [`read_stanza_fast`] into `st` (empty on entry): true when read, false
/// (with `st` partly filled) when the quick-xml reader must read the unit.
pub(super) fn read_into<'a>(unit: &'a [u8], st: &mut Stanza<'a>) -> bool {
    !matches!(read(unit, st, false), Outcome::NotHandled(_))
}

/// The first way this reader disagrees with the reference on `data`, if
/// any: the test oracle of the unit tests, the proptests and the fuzz
/// target `xmpp_reader`. Checked: (1) when the fast reader reads `data` as
/// a unit, its stanza equals [`read_stanza_xml`]'s; (2) when it reads an
/// element at the start of `data` as a stream, a fresh [`Splitter`] ends
/// the unit at the same byte and the stanza equals the quick-xml reader's
/// on that unit; when it stops early, a splitter resumed where it stopped
/// answers as a fresh one and is left in the same state.
pub fn disagreement(data: &[u8]) -> Option<String> {
    if let Some(fast) = read_stanza_fast(data) {
        let xml = read_stanza_xml(data);
        if fast != xml {
            return Some(format!("unit read: fast {fast:?}, quick-xml {xml:?}"));
        }
    }
    let mut fresh = Splitter::default();
    let split = fresh.split(data);
    let mut st = Stanza::default();
    match read_element(data, &mut st) {
        Ok(n) => {
            if split != Split::Unit(n, UnitKind::Element) {
                return Some(format!("element ends at {n}, splitter: {split:?}"));
            }
            let xml = read_stanza_xml(data.get(..n)?);
            if st != xml {
                return Some(format!("element read: fast {st:?}, quick-xml {xml:?}"));
            }
        }
        Err(at) if at.pos > 0 => {
            let mut resumed = Splitter::resumed(at.pos, at.depth);
            let again = resumed.split(data);
            if again != split || resumed != fresh {
                return Some(format!(
                    "resumed at {at:?}: {again:?} {resumed:?}, fresh: {split:?} {fresh:?}"
                ));
            }
        }
        Err(_) => {}
    }
    None
}

/// How [`read_element`] ended without a complete element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Resume {
    /// Where the splitter can go on scanning the unit: the start of the
    /// first tag or text the read did not take.
    pub pos: usize,
    /// Elements open before `pos`, as the splitter counts them.
    pub depth: usize,
}

/// Read the element at the start of `buf` (a stream cut at a unit
/// boundary) into `st` (empty on entry), when it is complete in `buf` and
/// of the shape this reader handles: `Ok` with its length, which is where
/// the [`Splitter`](super::parser::Splitter) ends the unit (the read counts
/// depth by the same tags). Otherwise `Err` with how far the read got, so
/// that the splitter need not scan those bytes again (a stream header, the
/// unit of its own start tag, is refused at `pos` 0).
pub(super) fn read_element<'a>(buf: &'a [u8], st: &mut Stanza<'a>) -> Result<usize, Resume> {
    match read(buf, st, true) {
        Outcome::Closed(end) => Ok(end),
        Outcome::Open(at) | Outcome::NotHandled(at) => Err(at),
    }
}

/// How a read ended.
enum Outcome {
    /// The top element closed; the unit ends here.
    Closed(usize),
    /// The unit ended first, or the element is too deep: read as quick-xml
    /// reads it. The [`Resume`] is for the splitter.
    Open(Resume),
    /// Something this reader does not handle starts at the [`Resume`].
    NotHandled(Resume),
}

/// What one token (a tag, or the text up to the next tag) did.
enum Token {
    Continue,
    /// The top element closed.
    Closed,
    /// The unit ended (in text), or the element is too deep.
    Open,
}

/// `element`: refuse a stream header start tag (see [`read_element`]).
fn read<'a>(unit: &'a [u8], st: &mut Stanza<'a>, element: bool) -> Outcome {
    let mut b = StanzaBuilder::new(st);
    let mut r = Reader {
        unit,
        text: Text {
            bytes: unit,
            valid: "",
        },
        b: &mut b,
        pos: 0,
        element,
    };
    loop {
        let at = Resume {
            pos: r.pos,
            depth: r.b.depth(),
        };
        match r.token() {
            Some(Token::Continue) => {}
            Some(Token::Closed) => {
                r.b.finish();
                return Outcome::Closed(r.pos);
            }
            Some(Token::Open) => {
                r.b.finish();
                return Outcome::Open(at);
            }
            None => return Outcome::NotHandled(at),
        }
    }
}

struct Reader<'r, 's, 'a> {
    unit: &'a [u8],
    text: Text<'a>,
    b: &'r mut StanzaBuilder<'s, 'a>,
    /// The next token starts here.
    pos: usize,
    element: bool,
}

impl<'a> Reader<'_, '_, 'a> {
    /// Read the token at `pos` and move past it; `None` when not handled.
    fn token(&mut self) -> Option<Token> {
        let unit = self.unit;
        let pos = self.pos;
        if unit.get(pos) != Some(&b'<') {
            if pos == 0 {
                return None;
            }
            return self.text_token();
        }
        let flow = match *unit.get(pos + 1)? {
            b'/' if pos > 0 => {
                self.pos = end_tag(unit, pos + 2)?;
                self.b.end()
            }
            b'/' | b'!' | b'?' => return None,
            _ => {
                let (name_end, colon) = name_end(unit, pos + 1)?;
                let after = *unit.get(name_end)?;
                if name_end == pos + 1 || !(after == b'>' || after == b'/' || is_xml_space(after)) {
                    return None;
                }
                if self.element && pos == 0 && is_stream_name(unit.get(1..name_end)?) {
                    return None;
                }
                // quick-xml's local name: after the first `:`.
                let local = unit.get(colon.map_or(pos + 1, |c| c + 1)..name_end)?;
                let mut tag = StartTag::default();
                let (end, empty) = self.attributes(name_end, &mut tag)?;
                let Some(opened) = self.b.open(local, tag) else {
                    // Too deep: quick-xml stops at this tag too.
                    return Some(Token::Open);
                };
                self.pos = end;
                self.b.opened(opened, empty)
            }
        };
        Some(match flow {
            Flow::Continue => Token::Continue,
            Flow::Done if self.b.depth() == 0 => Token::Closed,
            Flow::Done => Token::Open,
        })
    }

    /// The attributes of a start tag from `i` (after its name) on, each
    /// `key='value'` or `key="value"` after whitespace, handed to the
    /// builder as they come; then `>` or `/>`. The offset after the tag and
    /// whether it closed itself.
    fn attributes(&mut self, mut i: usize, tag: &mut StartTag<'a, 'a>) -> Option<(usize, bool)> {
        let u = self.unit;
        loop {
            let after_value = i;
            while is_xml_space(*u.get(i)?) {
                i += 1;
            }
            match *u.get(i)? {
                b'>' => return Some((i + 1, false)),
                b'/' if u.get(i + 1) == Some(&b'>') => return Some((i + 2, true)),
                // An attribute must follow whitespace.
                _ if i == after_value => return None,
                _ => {}
            }
            let (key_end, _) = name_end(u, i)?;
            let quote = *u.get(key_end + 1)?;
            if key_end == i || u.get(key_end) != Some(&b'=') || !matches!(quote, b'"' | b'\'') {
                return None;
            }
            let v_start = key_end + 2;
            let mut j = v_start + find_byte(u.get(v_start..)?, [quote, b'&'])?;
            let amp = u.get(j) == Some(&b'&');
            if amp {
                j += memchr::memchr(quote, u.get(j..)?)?;
            }
            let attr = FastAttr {
                key: u.get(i..key_end)?,
                value: self.text.get(v_start, j)?,
                amp,
            };
            self.b.attr(tag, Some(attr));
            i = j + 1;
        }
    }

    /// Text from `pos` up to the next tag, or to the end of the unit.
    fn text_token(&mut self) -> Option<Token> {
        let pos = self.pos;
        let rest = self.unit.get(pos..)?;
        // One search finds the text's end and whether it has entities.
        let (lt, amp) = match memchr::memchr2(b'<', b'&', rest) {
            Some(i) if rest.get(i) == Some(&b'&') => {
                (memchr::memchr(b'<', rest.get(i..)?).map(|j| i + j), true)
            }
            found => (found, false),
        };
        let end = pos + lt.unwrap_or(rest.len());
        let s = self.text.get(pos, end)?;
        self.b
            .text(if amp { unescape(s)? } else { Cow::Borrowed(s) });
        self.pos = end;
        Some(match lt {
            Some(_) => Token::Continue,
            None => Token::Open,
        })
    }
}

/// The unit as text, validated as far as the read has needed: one
/// validation of a prefix (encoding_rs validates with SIMD, much faster
/// than per piece or `std::str::from_utf8` on chat text), doubled when a
/// piece lies past it. The buffer handed to [`read_element`] runs past the
/// unit, so it is not validated whole.
struct Text<'a> {
    bytes: &'a [u8],
    valid: &'a str,
}

impl<'a> Text<'a> {
    /// `bytes[a..b]` as text; `None` when it is not UTF-8.
    #[inline]
    fn get(&mut self, a: usize, b: usize) -> Option<&'a str> {
        if b > self.valid.len() {
            let mut end = b.max(self.valid.len() * 2).max(256).min(self.bytes.len());
            // Do not cut a character (at most three continuation bytes).
            while end > b && self.bytes.get(end).is_some_and(|&c| c & 0xc0 == 0x80) {
                end -= 1;
            }
            self.valid = utf8(self.bytes.get(..end)?)?;
        }
        self.valid.get(a..b)
    }
}

/// `bytes` as text when it is UTF-8.
fn utf8(bytes: &[u8]) -> Option<&str> {
    match encoding_rs::UTF_8.decode_without_bom_handling_and_without_replacement(bytes)? {
        Cow::Borrowed(s) => Some(s),
        Cow::Owned(_) => None,
    }
}

/// `b' '`, tab, CR, LF: what quick-xml treats as whitespace in markup.
#[inline]
fn is_xml_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that end an element or attribute name: whitespace and the bytes
/// that would make quick-xml cut the markup differently from a plain
/// `name='value'` reading (quotes, `=`, `/`, `<`, `>`, `&`); also the other
/// ASCII punctuation below `-`, which XML names never hold, so that eight
/// bytes can be classified at once (see [`name_stops`]).
const fn is_name_stop(c: u8) -> bool {
    c <= b',' || c == b'/' || (c >= b'<' && c <= b'>')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is zero (the lowest flagged byte
/// is always a true one; above it, borrows may flag more).
#[inline]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// High bit set in each byte of `w` that [`is_name_stop`] (lowest one exact).
#[inline]
fn name_stops(w: u64) -> u64 {
    // Bytes below 0x2d; bytes >= 0x80 (UTF-8 in names) never count.
    let below = w.wrapping_sub(LO * 0x2d) & !w & HI;
    let slash = zero_bytes(w ^ (LO * u64::from(b'/')));
    let lt = zero_bytes(w ^ (LO * u64::from(b'<')));
    let eq = zero_bytes(w ^ (LO * u64::from(b'=')));
    let gt = zero_bytes(w ^ (LO * u64::from(b'>')));
    below | slash | lt | eq | gt
}

/// Where the name starting at `i` ends (the first [`is_name_stop`] byte),
/// and its first `:`; `None` when the unit ends first.
#[inline(always)]
fn name_end(u: &[u8], i: usize) -> Option<(usize, Option<usize>)> {
    let mut at = i;
    while let Some(chunk) = u.get(at..at + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let w = u64::from_le_bytes(bytes);
        let stops = name_stops(w);
        let colons = zero_bytes(w ^ (LO * u64::from(b':')));
        if stops != 0 {
            let end = at + (stops.trailing_zeros() / 8) as usize;
            // The lowest colon flag is exact, and earlier words had none.
            let colon = at + (colons.trailing_zeros() / 8) as usize;
            return Some((end, (colon < end).then_some(colon)));
        }
        if colons != 0 {
            // A colon in a word of name bytes (a long prefixed name).
            return name_end_bytewise(u, i);
        }
        at += 8;
    }
    name_end_bytewise(u, i)
}

fn name_end_bytewise(u: &[u8], i: usize) -> Option<(usize, Option<usize>)> {
    let mut colon = None;
    for (j, &c) in u.get(i..)?.iter().enumerate() {
        if is_name_stop(c) {
            return Some((i + j, colon));
        }
        if c == b':' && colon.is_none() {
            colon = Some(i + j);
        }
    }
    None
}

/// The end of an end tag whose name starts at `i` (after `</`): a plain
/// name, optional whitespace, `>`. quick-xml ignores end tag names here
/// (`check_end_names` is off).
fn end_tag(u: &[u8], i: usize) -> Option<usize> {
    let (mut j, _) = name_end(u, i)?;
    if j == i {
        return None;
    }
    while is_xml_space(*u.get(j)?) {
        j += 1;
    }
    (*u.get(j)? == b'>').then_some(j + 1)
}

/// An attribute as the fast reader found it: UTF-8, entities decoded only
/// when the builder asks for its value.
struct FastAttr<'a> {
    key: &'a [u8],
    value: &'a str,
    amp: bool,
}

impl<'a> AttrText<'a, 'a> for FastAttr<'a> {
    fn key(&self) -> &[u8] {
        self.key
    }

    fn raw(&self) -> &[u8] {
        self.value.as_bytes()
    }

    fn into_raw(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.value.as_bytes())
    }

    /// quick-xml's answer exactly: on an entity error, the raw value and
    /// the error flag.
    fn text(&self) -> (Cow<'a, str>, bool) {
        if !self.amp {
            return (Cow::Borrowed(self.value), false);
        }
        match unescape(self.value) {
            Some(v) => (v, false),
            None => (Cow::Borrowed(self.value), true),
        }
    }
}

/// Decode the five XML entities and character references the way
/// `quick_xml::escape::unescape` does (a `&` must be closed by `;` before
/// the next `&`; `&#0;`, surrogates, signs and out-of-range numbers are
/// errors); `None` on any error or any other entity.
fn unescape(raw: &str) -> Option<Cow<'_, str>> {
    let bytes = raw.as_bytes();
    let Some(first) = memchr::memchr(b'&', bytes) else {
        return Some(Cow::Borrowed(raw));
    };
    let mut out = String::with_capacity(raw.len());
    let mut last = 0;
    let mut amp = Some(first);
    while let Some(start) = amp {
        let end = start + 1 + memchr::memchr2(b'&', b';', bytes.get(start + 1..)?)?;
        if bytes.get(end) != Some(&b';') {
            return None;
        }
        out.push_str(raw.get(last..start)?);
        match raw.get(start + 1..end)? {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "apos" => out.push('\''),
            "quot" => out.push('"'),
            pat => out.push(char_ref(pat.strip_prefix('#')?)?),
        }
        last = end + 1;
        amp = memchr::memchr(b'&', bytes.get(last..)?).map(|i| last + i);
    }
    out.push_str(raw.get(last..)?);
    Some(Cow::Owned(out))
}

/// `x263A` or `9786` (after `&#`): the character, as quick-xml parses it.
fn char_ref(num: &str) -> Option<char> {
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    if code == 0 {
        return None;
    }
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agree(data: &[u8]) {
        if let Some(d) = disagreement(data) {
            panic!("{}: {d}", String::from_utf8_lossy(data));
        }
    }

    /// Read by the fast reader, and the same as quick-xml's reading.
    fn handled(unit: &[u8]) -> Stanza<'_> {
        agree(unit);
        match read_stanza_fast(unit) {
            Some(st) => st,
            None => panic!("not handled: {}", String::from_utf8_lossy(unit)),
        }
    }

    fn declined(unit: &[u8]) {
        agree(unit);
        assert!(
            read_stanza_fast(unit).is_none(),
            "handled: {}",
            String::from_utf8_lossy(unit)
        );
    }

    #[test]
    fn reads_the_common_shapes_as_quick_xml_does() {
        let st = handled(b"<message from='erin@x/m' to=\"dave@x/l\" type='chat' id='r1'><body>tea &lt; coffee &amp;&amp; &quot;yes&quot; &apos;no&apos; &#x263A; &#9731; &amp;amp;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert_eq!(
            st.body.as_deref(),
            Some("tea < coffee && \"yes\" 'no' \u{263a} \u{2603} &amp;")
        );
        assert_eq!(st.from.as_deref(), Some("erin@x/m"));
        assert_eq!(st.chat_state, Some("active"));
        // Borrowed from the unit: nothing to decode in it.
        assert!(matches!(st.to, Some(Cow::Borrowed("dave@x/l"))));
        let st = handled("<message\n\tto='a@b'\ttype='x'><body xml:lang='de'>Grüße</body><body>hi</body></message>".as_bytes());
        assert_eq!(st.body.as_deref(), Some("hi"));
        handled(b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>tom@x/dark</jid></bind></iq>");
        handled(b"<iq id='a>b' type='set'><si xmlns='http://jabber.org/protocol/si'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='men&#xFC; &amp; prices.txt' size=' 691 '/></si></iq>");
        handled(b"<stream:stream to='x' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
        handled(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGRhdmUA\nZGF2ZQ==</auth>");
        handled(b"<presence/>");
        handled(b"<presence />");
        handled(
            b"<x:message xmlns:x='jabber:client' a:to='q'><x:body>prefixed</x:body></x:message >",
        );
        handled(b"<message><body>cut short");
        handled(b"<message><body></body><body/></message>trailing <garbage");
        handled(b"<message><body>x</body ></message >x</a b='1'>");
        handled("<message to='Ω@ü/φ'><body>日本語 · Ελληνικά</body></message>".as_bytes());
        // Values quick-xml cannot decode: read alike, flagged alike.
        let st = handled(b"<message to='a&bogus;b'><body>x</body></message>");
        assert!(st.decode_error);
        let st = handled(b"<message from='&#0;' id='&#xD800;'/>");
        assert!(st.decode_error);
        let deep = b"<a>".repeat(100);
        assert!(handled(&deep).decode_error);
    }

    #[test]
    fn declines_what_it_does_not_read_exactly() {
        for unit in [
            &b"<message><body><![CDATA[x<y]]></body></message>"[..],
            b"<message><!-- c --><body>x</body></message>",
            b"<message><?pi x?><body>x</body></message>",
            b"<!DOCTYPE x><message/>",
            b"<message to = 'a'/>",
            b"<message to='a'type='chat'/>",
            b"<message to=a/>",
            b"<message to/>",
            b"<message><body>&nbsp;</body></message>",
            b"<message><body>&#0;</body></message>",
            b"<message><body>a & b</body></message>",
            b"<message><body>\xff\xfe</body></message>",
            b"<message to='\xff'/>",
            b"<mess\"age/>",
            b"<message/ >",
            b"</message>",
            b" <message/>",
            b"<message to='a",
            b"<",
            b"",
        ] {
            declined(unit);
        }
    }

    #[test]
    fn element_reads_end_where_the_splitter_does() {
        let stream = b"<message to='a@b' type='chat' id='1'><body>one</body></message><presence to='r@c/n'><x xmlns='http://jabber.org/protocol/muc'/></presence><iq type='set'><a><b/></a></iq><r xmlns='urn:xmpp:sm:3'/>";
        for start in 0..stream.len() {
            for end in start..=stream.len() {
                agree(&stream[start..end]);
            }
        }
        let mut st = Stanza::default();
        let first = b"<message to='a@b' type='chat' id='1'><body>one</body></message>";
        assert_eq!(read_element(stream, &mut st), Ok(first.len()));
        assert_eq!(st.body.as_deref(), Some("one"));
        // A stream header is a unit of its own start tag: not read here.
        let header = b"<stream:stream to='x'><message/>";
        assert_eq!(
            read_element(header, &mut Stanza::default()),
            Err(Resume { pos: 0, depth: 0 })
        );
        // Cut short: the splitter goes on from the last token read.
        let cut = b"<message to='a'><body>hel";
        assert_eq!(
            read_element(cut, &mut Stanza::default()),
            Err(Resume { pos: 22, depth: 2 })
        );
        // 100 000 nested elements: the read stops at the depth limit.
        let deep = b"<a>".repeat(100_000);
        assert_eq!(
            read_element(&deep, &mut Stanza::default()),
            Err(Resume {
                pos: 64 * 3,
                depth: 64
            })
        );
        agree(&deep);
    }

    /// Every unit of every TCP stream in the fixture captures (the
    /// generated ones and the real captures of `fixtures/real/`), and each
    /// stream from each unit boundary on as the read-ahead sees it.
    #[test]
    fn every_fixture_unit_agrees() {
        use crate::capture::{CaptureReader, FrameRef, ReadOptions};
        use crate::net::{NetConfig, NetDecoder, Packet};
        use crate::tcp::harness::{Recorded, Recorder};
        use crate::tcp::{FlowTable, TcpConfig};

        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from("fixtures")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("fixtures") {
                let path = entry.expect("fixture entry").path();
                let name = path.to_string_lossy().into_owned();
                if path.is_dir() {
                    dirs.push(path);
                } else if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                    files.push(name);
                }
            }
        }
        files.sort();
        let (mut units, mut read_fast) = (0, 0);
        for file in &files {
            let Ok(mut reader) = CaptureReader::open(file, 0, ReadOptions::default()) else {
                continue;
            };
            let mut net = NetDecoder::new(NetConfig::default());
            let mut table: FlowTable<Recorder> = FlowTable::new(TcpConfig::default());
            let mut last = FrameRef::default();
            let mut flows = Vec::new();
            while let Some(batch) = reader.next_batch(64, 1 << 20) {
                for frame in batch.iter() {
                    last = frame.frame_ref();
                    if let Some(Packet::Tcp(seg)) = net.decode(&frame) {
                        table.segment(&seg, |_| Recorder::default());
                    }
                }
                flows.extend(table.take_closed());
            }
            table.finish(last);
            flows.extend(table.take_closed());
            for flow in &flows {
                let dirs = flow.chunks.iter().map(|(_, info)| info.dir);
                let mut seen = Vec::new();
                for dir in dirs {
                    if seen.contains(&dir) {
                        continue;
                    }
                    seen.push(dir);
                    for piece in flow.stream(dir) {
                        let Recorded::Data(bytes) = piece else {
                            continue;
                        };
                        let mut sp = Splitter::default();
                        let mut pos = 0;
                        while pos < bytes.len() {
                            let rest = &bytes[pos..];
                            match sp.split(rest) {
                                Split::Unit(n, _) => {
                                    agree(rest);
                                    agree(&rest[..n]);
                                    units += 1;
                                    read_fast +=
                                        usize::from(read_stanza_fast(&rest[..n]).is_some());
                                    pos += n;
                                }
                                Split::Skip(n) => pos += n,
                                Split::NeedMore => break,
                            }
                        }
                    }
                }
            }
        }
        // The XMPP fixtures alone hold hundreds of units, nearly all of the
        // common shape.
        println!(
            "{read_fast} of {units} units in {} files read fast",
            files.len()
        );
        assert!(units > 300, "{units} units in {} files", files.len());
        assert!(
            read_fast * 10 > units * 8,
            "{read_fast} of {units} read fast"
        );
    }

    /// Pieces of stanzas, well-formed or not, for the soup below.
    const PIECES: &[&[u8]] = &[
        b"<message",
        b"<body",
        b"<x:body",
        b"<active",
        b"<jid",
        b"<file",
        b"<url",
        b"<x",
        b"<iq",
        b"<stream:stream",
        b"<description",
        b"<name",
        b"<size",
        b"<sent",
        b"<forwarded",
        b" to='a@b/c'",
        b" from=\"d@e\"",
        b" type='groupchat'",
        b" id='m1'",
        b" xml:lang='en'",
        b" xmlns='http://jabber.org/protocol/chatstates'",
        b" xmlns='jabber:x:oob'",
        b" xmlns='urn:xmpp:jingle:apps:file-transfer:5'",
        b" xmlns='urn:xmpp:carbons:2'",
        b" xmlns='http://jabber.org/protocol/si/profile/file-transfer'",
        b" name='f&amp;g.txt'",
        b" size='12'",
        b" media='video'",
        b" mechanism='PLAIN'",
        b" a='>'",
        b" b=\"'\"",
        b">",
        b"/>",
        b" />",
        b"</message>",
        b"</body>",
        b"</x:body >",
        b"</jid>",
        b"</x>",
        b"hello",
        b" ",
        b"\n",
        b"\t",
        b"&amp;",
        b"&lt;",
        b"&#x263A;",
        b"&#65;",
        b"&#0;",
        b"&#xD800;",
        b"&bogus;",
        b"&",
        b";",
        b"\xce\x95\xce\xbb",
        b"\xff",
        b"\xce",
        b"<![CDATA[",
        b"]]>",
        b"<!--",
        b"-->",
        b"<?x",
        b"?>",
        b"'",
        b"\"",
        b"=",
        b"<",
        b"</",
        b"https://h/u/a.png",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn soup_agrees(parts in prop::collection::vec(prop::sample::select(PIECES), 0..40)) {
            agree(&parts.concat());
        }

        #[test]
        fn mutated_stanzas_agree(
            which in 0usize..4,
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(&b"<>/='\"& \t:;#x0aA\xff\xc3"[..]),
            edit in 0u8..3,
            cut in any::<prop::sample::Index>(),
        ) {
            let stanzas: [&[u8]; 4] = [
                b"<message from='erin@x/m' to='dave@x/l' type='chat' id='r1'><body>are we on? &amp; more</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
                b"<iq type='set' id='j1'><jingle xmlns='urn:xmpp:jingle:1'><content><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.jpg</name><size>6144</size></file></description></content></jingle></iq>",
                b"<message from='dave@x' to='dave@x/l'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message to='e@x' type='chat'><body>hi</body></message></forwarded></sent></message>",
                b"<presence to='room@muc/nick'><x xmlns='http://jabber.org/protocol/muc'/></presence><message><x xmlns='jabber:x:oob'><url>https://h/up/c.png?x=1</url></x></message>",
            ];
            let mut unit = stanzas[which].to_vec();
            let i = at.index(unit.len());
            match edit {
                0 => unit[i] = byte,
                1 => unit.insert(i, byte),
                _ => { unit.remove(i); }
            }
            agree(&unit);
            agree(&unit[..cut.index(unit.len() + 1)]);
        }
    }
}
