//! XMPP wire parsing (RFC 6120): a streaming splitter that finds where each
//! top-level unit (stream header, stanza, stream-level element, stream end)
//! ends in a byte stream cut at any point, and a reader that pulls the fields
//! events need out of one complete stanza with quick-xml. Pure: no I/O, no
//! session state; never panics on any input.

use std::borrow::Cow;

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

/// What a complete unit at the top of the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// `<stream:stream ...>`: a (re)started stream.
    StreamHeader,
    /// `</stream:stream>`.
    StreamEnd,
    /// A complete depth-1 element (stanza or stream-level element).
    Element,
}

/// Where the splitter is inside the pending unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Splitter {
    /// Bytes of the unit already scanned.
    pos: usize,
    /// Elements open inside the unit at `pos`.
    depth: usize,
}

/// The splitter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Unit(usize, UnitKind),
    /// Whitespace keep-alives, an XML declaration, text or comments between
    /// units: drop these bytes.
    Skip(usize),
    NeedMore,
}

impl Splitter {
    /// A splitter that goes on where the fast reader stopped in a unit:
    /// `pos` bytes scanned (up to a tag or a text), `depth` elements open.
    pub(super) fn resumed(pos: usize, depth: usize) -> Splitter {
        Splitter { pos, depth }
    }

    /// At a unit's first byte, nothing scanned yet.
    pub fn is_fresh(&self) -> bool {
        *self == Splitter::default()
    }

    /// Forget the partial unit.
    pub fn reset(&mut self) {
        *self = Splitter::default();
    }

    /// Find the end of the unit at the start of `buf` (the same start as on
    /// the previous call, unless a unit was returned or `reset` was called).
    pub fn split(&mut self, buf: &[u8]) -> Split {
        if self.pos == 0 {
            // Between units: whitespace, text and declarations are dropped.
            let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if ws > 0 {
                return Split::Skip(ws);
            }
            match buf.first() {
                None => return Split::NeedMore,
                Some(b'<') => {}
                Some(_) => {
                    return match memchr::memchr(b'<', buf) {
                        Some(i) => Split::Skip(i),
                        None => Split::Skip(buf.len()),
                    }
                }
            }
            match special_end(buf) {
                Some(Some(end)) => return Split::Skip(end),
                Some(None) => return Split::NeedMore,
                None => {}
            }
        }
        let mut pos = self.pos.min(buf.len());
        loop {
            // Tags follow each other more often than not: look before
            // setting up a search.
            let lt = match buf.get(pos) {
                Some(b'<') => Some(0),
                _ => memchr::memchr(b'<', &buf[pos..]),
            };
            let Some(lt) = lt else {
                self.pos = buf.len();
                return Split::NeedMore;
            };
            let tag_at = pos + lt;
            let tag = &buf[tag_at..];
            // Comments, CDATA, PIs inside a stanza: skip whole.
            if matches!(tag.get(1), Some(b'!' | b'?') | None) {
                match special_end(tag) {
                    Some(Some(end)) => {
                        pos = tag_at + end;
                        continue;
                    }
                    Some(None) => {
                        self.pos = tag_at;
                        return Split::NeedMore;
                    }
                    None => {}
                }
            }
            let Some(close) = tag_close(tag) else {
                self.pos = tag_at;
                return Split::NeedMore;
            };
            let end = tag_at + close + 1;
            let is_end_tag = tag.get(1) == Some(&b'/');
            let self_closing = close > 0 && tag[close - 1] == b'/';
            if is_end_tag {
                if self.depth == 0 {
                    // An end tag at the top: the stream's end (or garbage).
                    let kind = if is_stream_name(tag_name(&tag[2..])) {
                        UnitKind::StreamEnd
                    } else {
                        UnitKind::Element
                    };
                    self.reset();
                    return Split::Unit(end, kind);
                }
                self.depth -= 1;
            } else if !self_closing {
                if self.depth == 0 && is_stream_name(tag_name(&tag[1..])) {
                    self.reset();
                    return Split::Unit(end, UnitKind::StreamHeader);
                }
                self.depth += 1;
            }
            if self.depth == 0 {
                self.reset();
                return Split::Unit(end, UnitKind::Element);
            }
            pos = end;
        }
    }
}

/// For `<!--`, `<![CDATA[`, `<!DOCTYPE` and `<?...?>` at the start of `b`:
/// `Some(Some(len))` when complete, `Some(None)` when cut. `None` otherwise.
fn special_end(b: &[u8]) -> Option<Option<usize>> {
    let (open, close): (&[u8], &[u8]) = if b.starts_with(b"<!--") {
        (b"<!--", b"-->")
    } else if b.starts_with(b"<![CDATA[") {
        (b"<![CDATA[", b"]]>")
    } else if b.starts_with(b"<?") {
        (b"<?", b"?>")
    } else if b.starts_with(b"<!") && b.len() >= 9 {
        (b"<!", b">")
    } else if b.len() < 9 && (b"<![CDATA[".starts_with(b) || b"<!--".starts_with(b)) && b.len() > 1
    {
        return Some(None);
    } else {
        return None;
    };
    Some(memchr::memmem::find(&b[open.len()..], close).map(|i| open.len() + i + close.len()))
}

/// Offset of the `>` that ends the tag starting at `tag[0] == b'<'`, skipping
/// quoted attribute values (which may hold `>`).
fn tag_close(tag: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        let at = i + find_byte(tag.get(i..)?, [b'>', b'"', b'\''])?;
        match *tag.get(at)? {
            b'>' => return Some(at),
            q => i = at + 1 + find_byte(tag.get(at + 1..)?, [q])? + 1,
        }
    }
}

/// Offset of the first byte of `hay` that is one of `needles`, eight
/// bytes at a time: the spans searched here (tags, attribute values) are
/// mostly too short for `memchr`'s setup to pay off.
#[inline(always)]
pub(super) fn find_byte<const N: usize>(hay: &[u8], needles: [u8; N]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        let w = u64::from_le_bytes(bytes);
        // A zero byte in `w ^ needle` is a match; the lowest flagged byte
        // is always a true one.
        let mut hit = 0;
        for n in needles {
            let x = w ^ (LO * u64::from(n));
            hit |= x.wrapping_sub(LO) & !x;
        }
        hit &= HI;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|c| needles.contains(c))
        .map(|i| at + i)
}

/// The element name at the start of `b` (up to whitespace, `/` or `>`).
pub fn tag_name(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>')
        .unwrap_or(b.len());
    &b[..end]
}

/// `stream:stream` or any `prefix:stream`.
pub(super) fn is_stream_name(name: &[u8]) -> bool {
    name == b"stream:stream" || (name.ends_with(b":stream") && name.len() > 7)
}

/// Offset of the next `<message`, `<presence`, `<iq` or stream header start
/// tag in `buf`: where decoding can restart after a gap.
pub fn find_stanza_start(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'<', buf.get(pos..)?) {
        let at = pos + i;
        let name = tag_name(&buf[at + 1..]);
        let complete = at + 1 + name.len() < buf.len();
        if complete && (matches!(name, b"message" | b"presence" | b"iq") || is_stream_name(name)) {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

/// Longest stanza start tag prefix a resync must keep for the next chunk.
pub const START_TAG_PREFIX: usize = 16;

/// The fields of one top-level element that events are made of. Texts borrow
/// from the unit when they need no decoding (the common case), so reading a
/// stanza allocates only for what had entities in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stanza<'a> {
    /// Local name of the element (`message`, `iq`, `presence`, `proceed` ...);
    /// empty for names no event or state depends on.
    pub name: &'static str,
    pub to: Option<Cow<'a, str>>,
    pub from: Option<Cow<'a, str>>,
    pub kind: Option<Cow<'a, str>>,
    pub id: Option<Cow<'a, str>>,
    /// `mechanism` of a SASL `<auth>`.
    pub mechanism: Option<Cow<'a, str>>,
    /// Text directly inside the element (SASL payloads).
    pub own_text: Cow<'a, str>,
    /// The plain body (no `xml:lang` preferred), entities decoded.
    pub body: Option<Cow<'a, str>>,
    /// The chat state child's name (`composing`, `paused`, `active` ...).
    pub chat_state: Option<&'static str>,
    /// The `<jid>` of a resource binding result.
    pub bound_jid: Option<Cow<'a, str>>,
    /// A file offer (XEP-0096 SI, XEP-0234 Jingle FT) or an OOB URL.
    pub file: Option<FileOffer>,
    /// A Jingle RTP session with video.
    pub video_call: bool,
    /// A MUC presence (`<x xmlns='http://jabber.org/protocol/muc'>`).
    pub muc_join: bool,
    /// A forwarded copy (MAM result, carbons): its inner message is not
    /// read here.
    pub forwarded: bool,
    /// A message carbon (XEP-0280): `Some(true)` for `<sent>` (the local user
    /// wrote it on another device), `Some(false)` for `<received>`.
    pub carbon: Option<bool>,
    /// Part of the element could not be decoded exactly.
    pub decode_error: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOffer {
    pub name: Option<String>,
    pub size: Option<u64>,
}

const NS_CHATSTATES: &[u8] = b"http://jabber.org/protocol/chatstates";
const NS_SI_FT: &[u8] = b"http://jabber.org/protocol/si/profile/file-transfer";
const NS_JINGLE_FT: &[u8] = b"urn:xmpp:jingle:apps:file-transfer:";
const NS_JINGLE_RTP: &[u8] = b"urn:xmpp:jingle:apps:rtp:";
const NS_OOB: &[u8] = b"jabber:x:oob";
const NS_BIND: &[u8] = b"urn:ietf:params:xml:ns:xmpp-bind";
const NS_MUC: &[u8] = b"http://jabber.org/protocol/muc";
const NS_CARBONS: &[u8] = b"urn:xmpp:carbons:";

/// Most open elements a stanza read follows: deeper ones end the read.
const MAX_DEPTH: usize = 64;

/// The open elements of the stanza being read, on the stack: a stanza is
/// read per unit, and a heap vector each time cost as much as reading it.
struct ElementStack {
    items: [(Capture, bool); MAX_DEPTH],
    len: usize,
}

impl Default for ElementStack {
    fn default() -> Self {
        ElementStack {
            items: [(Capture::None, false); MAX_DEPTH],
            len: 0,
        }
    }
}

impl ElementStack {
    fn last(&self) -> Option<&(Capture, bool)> {
        self.items.get(..self.len).unwrap_or_default().last()
    }

    /// Returns false when full (the caller stops at [`MAX_DEPTH`] first).
    fn push(&mut self, item: (Capture, bool)) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn pop(&mut self) -> Option<(Capture, bool)> {
        self.len = self.len.checked_sub(1)?;
        self.items.get(self.len).copied()
    }
}

/// Where a text belongs while reading an element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Own,
    Body { lang: bool },
    Jid,
    FileName,
    FileSize,
    OobUrl,
}

/// Read the fields of one complete top-level element (or a stream header):
/// the fast reader ([`super::fast`]) when it can read the unit exactly, else
/// the quick-xml reader, [`read_stanza_xml`].
pub fn read_stanza(unit: &[u8]) -> Stanza<'_> {
    let mut st = Stanza::default();
    if !super::fast::read_into(unit, &mut st) {
        st = read_stanza_xml(unit);
    }
    st
}

/// One attribute as a reader hands it to [`StanzaBuilder::attr`]: its raw
/// key and value, and the value with entities decoded on demand (most
/// attribute values are never decoded).
pub(super) trait AttrText<'a, 'x> {
    fn key(&self) -> &[u8];
    fn raw(&self) -> &[u8];
    /// The decoded value, and whether decoding was not exact.
    fn text(&self) -> (Cow<'a, str>, bool);
    /// The raw value, kept for after the tag's last attribute.
    fn into_raw(self) -> Cow<'x, [u8]>;
}

impl<'a, 'x> AttrText<'a, 'x> for quick_xml::events::attributes::Attribute<'x> {
    fn key(&self) -> &[u8] {
        self.key.as_ref()
    }

    fn raw(&self) -> &[u8] {
        &self.value
    }

    fn into_raw(self) -> Cow<'x, [u8]> {
        self.value
    }

    fn text(&self) -> (Cow<'a, str>, bool) {
        match self.unescape_value() {
            Ok(v) => (Cow::Owned(v.into_owned()), false),
            Err(_) => (
                Cow::Owned(String::from_utf8_lossy(&self.value).into_owned()),
                true,
            ),
        }
    }
}

/// Whether a reader goes on after a markup event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// The top element is complete (or too deep): stop reading.
    Done,
}

/// What a start tag's attributes say, gathered one attribute at a time by
/// [`StanzaBuilder::attr`] for [`StanzaBuilder::open`].
#[derive(Default)]
pub(super) struct StartTag<'a, 'x> {
    xmlns: Option<Cow<'x, [u8]>>,
    lang: bool,
    name_attr: Option<(Cow<'a, str>, bool)>,
    size_attr: Option<(Cow<'a, str>, bool)>,
    media_video: bool,
}

/// What [`StanzaBuilder::open`] took from a start tag: where its text goes
/// and whether it is inside a Jingle file-transfer description.
pub(super) struct Opened {
    cap: Capture,
    jft: bool,
}

/// What both stanza readers feed, in document order: start and end tags and
/// decoded text. All the decisions about which elements, attributes and
/// texts matter are made here, once, so the quick-xml reader and the fast
/// reader can differ only in how they cut the bytes into those events.
pub(super) struct StanzaBuilder<'s, 'a> {
    /// Filled in place: a `Stanza` is large, and moving it between the
    /// reader's frames cost as much as reading a chat message.
    st: &'s mut Stanza<'a>,
    depth: usize,
    /// Per open element: what its text is captured into, and whether it is
    /// inside a Jingle file-transfer description.
    stack: ElementStack,
    /// The chosen body and whether it had `xml:lang` (RFC 6121 §5.2.3: prefer
    /// the body without it, else the first).
    body: Option<(bool, Cow<'a, str>)>,
    body_text: Cow<'a, str>,
    text_buf: Cow<'a, str>,
    oob_url: Option<Cow<'a, str>>,
}

impl<'s, 'a> StanzaBuilder<'s, 'a> {
    /// A builder filling `st`, which must be empty (`Stanza::default()`).
    pub(super) fn new(st: &'s mut Stanza<'a>) -> Self {
        StanzaBuilder {
            st,
            depth: 0,
            stack: ElementStack::default(),
            body: None,
            body_text: Cow::Borrowed(""),
            text_buf: Cow::Borrowed(""),
            oob_url: None,
        }
    }

    /// Elements open now.
    #[inline]
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// An attribute of the start tag being read (`None`: one that could
    /// not be parsed). Attributes of a tag one level too deep are not read.
    #[inline]
    pub(super) fn attr<'x, A: AttrText<'a, 'x>>(
        &mut self,
        tag: &mut StartTag<'a, 'x>,
        a: Option<A>,
    ) {
        if self.depth >= MAX_DEPTH {
            return;
        }
        let Some(a) = a else {
            self.st.decode_error = true;
            return;
        };
        let st = &mut *self.st;
        match a.key() {
            b"xmlns" => tag.xmlns = Some(a.into_raw()),
            b"xml:lang" => tag.lang = true,
            b"name" => tag.name_attr = Some(a.text()),
            b"size" => tag.size_attr = Some(a.text()),
            b"media" => tag.media_video = a.raw() == b"video",
            key if self.depth == 0 => {
                let slot = match key {
                    b"to" => &mut st.to,
                    b"from" => &mut st.from,
                    b"type" => &mut st.kind,
                    b"id" => &mut st.id,
                    b"mechanism" => &mut st.mechanism,
                    _ => return,
                };
                let (v, err) = a.text();
                st.decode_error |= err;
                *slot = Some(v);
            }
            _ => {}
        }
    }

    /// A start tag with local name `local` and the attributes gathered in
    /// `tag`. `None` when it is one level too deep: the read is over. The
    /// reader then says, with [`Self::opened`], whether the tag closed itself.
    #[inline]
    pub(super) fn open(&mut self, local: &[u8], tag: StartTag<'a, '_>) -> Option<Opened> {
        if self.depth >= MAX_DEPTH {
            self.st.decode_error = true;
            return None;
        }
        let in_jft = self.stack.last().is_some_and(|s| s.1);
        let (cap, jft) = open_element(self.st, local, tag, self.depth, in_jft);
        Some(Opened {
            cap,
            jft: jft || in_jft,
        })
    }

    /// The start tag of `o` ended, with `/>` when `empty`.
    #[inline]
    pub(super) fn opened(&mut self, o: Opened, empty: bool) -> Flow {
        if empty {
            if let Capture::Body { lang } = o.cap {
                choose_body(&mut self.body, lang, Cow::Borrowed(""));
            }
            if self.depth == 0 {
                return Flow::Done;
            }
        } else {
            if !self.stack.push((o.cap, o.jft)) {
                self.st.decode_error = true;
                return Flow::Done;
            }
            self.depth += 1;
            self.text_buf = Cow::Borrowed("");
            if matches!(o.cap, Capture::Body { .. }) {
                self.body_text = Cow::Borrowed("");
            }
        }
        Flow::Continue
    }

    /// An end tag (its name is not checked: quick-xml's `check_end_names`
    /// is off, and the splitter matched tags by depth alone).
    #[inline]
    pub(super) fn end(&mut self) -> Flow {
        let Some((cap, _)) = self.stack.pop() else {
            return Flow::Done;
        };
        self.depth = self.depth.saturating_sub(1);
        let st = &mut *self.st;
        match cap {
            Capture::Body { lang } => {
                let text = std::mem::replace(&mut self.body_text, Cow::Borrowed(""));
                choose_body(&mut self.body, lang, text)
            }
            Capture::Jid => {
                st.bound_jid = Some(std::mem::replace(&mut self.text_buf, Cow::Borrowed("")))
            }
            Capture::FileName => {
                let name = std::mem::replace(&mut self.text_buf, Cow::Borrowed(""));
                st.file.get_or_insert_with(FileOffer::default).name = Some(name.into_owned());
            }
            Capture::FileSize => {
                st.file.get_or_insert_with(FileOffer::default).size =
                    self.text_buf.trim().parse().ok();
            }
            Capture::OobUrl => {
                self.oob_url = Some(std::mem::replace(&mut self.text_buf, Cow::Borrowed("")))
            }
            Capture::Own | Capture::None => {}
        }
        if self.depth == 0 {
            Flow::Done
        } else {
            Flow::Continue
        }
    }

    /// Decoded character data (text or CDATA) at the current position.
    #[inline]
    pub(super) fn text(&mut self, s: Cow<'a, str>) {
        let dst = match self.stack.last().map(|c| c.0) {
            Some(Capture::Body { .. }) => &mut self.body_text,
            Some(Capture::Own) => &mut self.st.own_text,
            Some(Capture::Jid | Capture::FileName | Capture::FileSize | Capture::OobUrl) => {
                &mut self.text_buf
            }
            _ => return,
        };
        if dst.is_empty() {
            *dst = s;
        } else {
            dst.to_mut().push_str(&s);
        }
    }

    /// Part of the element could not be decoded exactly.
    pub(super) fn decode_error(&mut self) {
        self.st.decode_error = true;
    }

    /// The element is read: settle the body and the OOB file name.
    pub(super) fn finish(&mut self) {
        let st = &mut *self.st;
        st.body = self.body.take().map(|(_, b)| b);
        if st.file.is_none() {
            if let Some(url) = self.oob_url.take() {
                let url = url.trim();
                let path = url.split(['?', '#']).next().unwrap_or(url);
                let name = path.rsplit('/').next().unwrap_or(path);
                st.file = Some(FileOffer {
                    name: Some(name.to_owned()),
                    size: None,
                });
            }
        }
    }
}

/// Read the fields of one complete top-level element with quick-xml: the
/// reference reader, which reads any input (CDATA, comments, malformed
/// markup) and says when part of it could not be decoded.
pub fn read_stanza_xml(unit: &[u8]) -> Stanza<'_> {
    let mut st = Stanza::default();
    let mut b = StanzaBuilder::new(&mut st);
    let mut reader = Reader::from_reader(unit);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = false;
        cfg.allow_unmatched_ends = true;
        cfg.trim_text_start = false;
        cfg.trim_text_end = false;
    }
    loop {
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(_) => {
                b.decode_error();
                break;
            }
        };
        let flow = match ev {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                let empty = matches!(ev, XmlEvent::Empty(_));
                let mut tag = StartTag::default();
                let mut attrs = e.attributes();
                attrs.with_checks(false);
                for a in attrs {
                    b.attr(&mut tag, a.ok());
                }
                match b.open(e.local_name().as_ref(), tag) {
                    Some(o) => b.opened(o, empty),
                    None => Flow::Done,
                }
            }
            XmlEvent::End(_) => b.end(),
            XmlEvent::Text(t) => {
                let s = match t.unescape() {
                    Ok(s) => Cow::Owned(s.into_owned()),
                    Err(_) => {
                        b.decode_error();
                        Cow::Owned(String::from_utf8_lossy(&t.into_inner()).into_owned())
                    }
                };
                b.text(s);
                Flow::Continue
            }
            XmlEvent::CData(c) => {
                let raw = c.into_inner();
                let s = match std::str::from_utf8(&raw) {
                    Ok(s) => Cow::Owned(s.to_owned()),
                    Err(_) => {
                        b.decode_error();
                        Cow::Owned(String::from_utf8_lossy(&raw).into_owned())
                    }
                };
                b.text(s);
                Flow::Continue
            }
            XmlEvent::Eof => Flow::Done,
            _ => Flow::Continue,
        };
        if flow == Flow::Done {
            break;
        }
    }
    b.finish();
    st
}

fn choose_body<'a>(chosen: &mut Option<(bool, Cow<'a, str>)>, lang: bool, text: Cow<'a, str>) {
    let better = match chosen {
        None => true,
        Some((had_lang, _)) => *had_lang && !lang,
    };
    if better {
        *chosen = Some((lang, text));
    }
}

/// Take what matters from a start tag at `depth` (0 = the unit's element).
fn open_element<'a>(
    st: &mut Stanza<'a>,
    local: &[u8],
    tag: StartTag<'a, '_>,
    depth: usize,
    in_jft: bool,
) -> (Capture, bool) {
    let StartTag {
        xmlns,
        lang,
        name_attr,
        size_attr,
        media_video,
    } = tag;
    let ns: &[u8] = xmlns.as_deref().unwrap_or_default();
    if depth == 0 {
        st.name = match local {
            b"message" => "message",
            b"iq" => "iq",
            b"presence" => "presence",
            b"stream" => "stream",
            b"proceed" => "proceed",
            b"success" => "success",
            b"auth" => "auth",
            b"starttls" => "starttls",
            _ => "",
        };
        return (Capture::Own, false);
    }
    match local {
        b"body"
            if depth == 1
                && (xmlns.is_none() || ns == b"jabber:client" || ns == b"jabber:server") =>
        {
            (Capture::Body { lang }, false)
        }
        b"composing" | b"paused" | b"active" | b"inactive" | b"gone" if ns == NS_CHATSTATES => {
            if st.chat_state.is_none() || local == b"composing" {
                st.chat_state = Some(match local {
                    b"composing" => "composing",
                    b"paused" => "paused",
                    b"active" => "active",
                    b"inactive" => "inactive",
                    _ => "gone",
                });
            }
            (Capture::None, false)
        }
        b"sent" | b"received" if depth == 1 && ns.starts_with(NS_CARBONS) => {
            st.carbon = Some(local == b"sent");
            st.forwarded = true;
            (Capture::None, false)
        }
        b"forwarded" | b"result" => {
            st.forwarded = true;
            (Capture::None, false)
        }
        b"jid" if depth == 2 => (Capture::Jid, false),
        b"bind" if ns == NS_BIND => (Capture::None, false),
        b"file" if ns == NS_SI_FT || (in_jft && (name_attr.is_some() || size_attr.is_some())) => {
            let f = st.file.get_or_insert_with(FileOffer::default);
            if let Some((n, err)) = name_attr {
                f.name = Some(n.into_owned());
                st.decode_error |= err;
            }
            if let Some((s, _)) = size_attr {
                f.size = s.trim().parse().ok();
            }
            (Capture::None, in_jft)
        }
        b"description" if ns.starts_with(NS_JINGLE_FT) => {
            st.file.get_or_insert_with(FileOffer::default);
            (Capture::None, true)
        }
        b"description" if ns.starts_with(NS_JINGLE_RTP) => {
            st.video_call |= media_video;
            (Capture::None, false)
        }
        b"name" if in_jft => (Capture::FileName, true),
        b"size" if in_jft => (Capture::FileSize, true),
        b"url" if depth == 2 => (Capture::OobUrl, false),
        b"x" if ns == NS_OOB => (Capture::None, false),
        b"x" if ns.starts_with(NS_MUC) => {
            st.muc_join = true;
            (Capture::None, false)
        }
        _ => (Capture::None, false),
    }
}

/// Can this unit give an event or change the session's state? A cheap look
/// at its start tag, so the common stanzas that cannot (presence broadcasts
/// from the server, `get` queries and their errors, stream-management acks)
/// are not parsed at all. `from_client`: the unit is from the client.
pub fn may_matter(from_client: bool, unit: &[u8]) -> bool {
    let name = tag_name(unit.get(1..).unwrap_or_default());
    match name {
        // Only the client's own MUC joins (our room nick) matter.
        b"presence" => from_client,
        b"iq" => {
            let head = match tag_close(unit) {
                Some(end) => &unit[..end],
                None => unit,
            };
            !(attr_is(head, b"type", b"get") || attr_is(head, b"type", b"error"))
        }
        // XEP-0198 acks and requests.
        b"r" | b"a" => false,
        _ => true,
    }
}

/// The start tag `head` has attribute `name` with exactly `value` (either quote).
fn attr_is(head: &[u8], name: &[u8], value: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(i) = memchr::memmem::find(&head[pos..], name) {
        let at = pos + i;
        let before_ok = at > 0 && head[at - 1].is_ascii_whitespace();
        let rest = &head[at + name.len()..];
        if before_ok {
            if let [b'=', q @ (b'\'' | b'"'), tail @ ..] = rest {
                if tail.starts_with(value) && tail.get(value.len()) == Some(q) {
                    return true;
                }
            }
        }
        pos = at + 1;
    }
    false
}

/// The bytes of the `<message>` element nested in a forwarded copy (`unit`
/// is the whole outer stanza), when complete.
pub fn inner_message(unit: &[u8]) -> Option<&[u8]> {
    let fwd = memchr::memmem::find(unit, b"<forwarded")?;
    let rel = memchr::memmem::find(&unit[fwd..], b"<message")?;
    let inner = &unit[fwd + rel..];
    match Splitter::default().split(inner) {
        Split::Unit(n, UnitKind::Element) => Some(&inner[..n]),
        _ => None,
    }
}

/// The bare JID (resource removed).
pub fn bare(jid: &str) -> &str {
    match jid.bytes().position(|b| b == b'/') {
        Some(i) => jid.get(..i).unwrap_or(jid),
        None => jid,
    }
}

/// The resource part of a JID, if any.
pub fn resource(jid: &str) -> Option<&str> {
    let i = jid.bytes().position(|b| b == b'/')?;
    jid.get(i + 1..)
}

/// Decode standard base64 (RFC 4648, padding optional, whitespace ignored).
/// `None` on any other byte. Output is at most 3/4 of the input.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(stream: &[u8]) -> Vec<(Vec<u8>, Option<UnitKind>)> {
        let mut sp = Splitter::default();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            match sp.split(&stream[pos..]) {
                Split::Unit(n, k) => {
                    out.push((stream[pos..pos + n].to_vec(), Some(k)));
                    pos += n;
                }
                Split::Skip(n) => {
                    assert!(n > 0);
                    pos += n;
                }
                Split::NeedMore => break,
            }
        }
        out
    }

    #[test]
    fn splits_a_stream_into_units() {
        let s = b"<?xml version='1.0'?><stream:stream to='x' xmlns='jabber:client'> <message to='a' type=\"chat\"><body>1 &gt; 0</body></message><presence/>\n<iq id='a>b'><query/></iq></stream:stream>";
        let u = units(s);
        let kinds: Vec<_> = u.iter().map(|x| x.1.unwrap()).collect();
        assert_eq!(
            kinds,
            [
                UnitKind::StreamHeader,
                UnitKind::Element,
                UnitKind::Element,
                UnitKind::Element,
                UnitKind::StreamEnd
            ]
        );
        assert_eq!(u[3].0, b"<iq id='a>b'><query/></iq>");
    }

    #[test]
    fn needs_more_on_every_cut() {
        let s = b"<message to='a'><body><![CDATA[x<y]]></body><!-- c --></message>";
        for cut in 0..s.len() {
            let mut sp = Splitter::default();
            assert_eq!(sp.split(&s[..cut]), Split::NeedMore, "cut {cut}");
            assert_eq!(
                sp.split(s),
                Split::Unit(s.len(), UnitKind::Element),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn reads_a_chat_message() {
        let st = read_stanza(b"<message to='bob@example.net' type='chat' id='m1'><body xml:lang='de'>hallo</body><body>hi &amp; bye</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert_eq!(st.name, "message");
        assert_eq!(st.to.as_deref(), Some("bob@example.net"));
        assert_eq!(st.kind.as_deref(), Some("chat"));
        assert_eq!(st.body.as_deref(), Some("hi & bye"));
        assert_eq!(st.chat_state, Some("active"));
        assert!(!st.decode_error);
    }

    #[test]
    fn xhtml_body_is_not_the_body() {
        let st = read_stanza(b"<message><body>plain</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>rich</p></body></html></message>");
        assert_eq!(st.body.as_deref(), Some("plain"));
    }

    #[test]
    fn reads_file_offers() {
        let si = read_stanza(b"<iq type='set' to='f@x/phone'><si xmlns='http://jabber.org/protocol/si' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='men\xc3\xbc &amp; prices.txt' size='691'/></si></iq>");
        assert_eq!(
            si.file,
            Some(FileOffer {
                name: Some("menü & prices.txt".into()),
                size: Some(691)
            })
        );
        let j = read_stanza(b"<iq type='set'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'><content name='a'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a.jpg</name><size>6144</size></file></description></content></jingle></iq>");
        assert_eq!(
            j.file,
            Some(FileOffer {
                name: Some("a.jpg".into()),
                size: Some(6144)
            })
        );
        let old = read_stanza(b"<iq type='set'><jingle xmlns='urn:xmpp:jingle:1'><content><description xmlns='urn:xmpp:jingle:apps:file-transfer:1'><offer><file name='b.txt' size='3'/></offer></description></content></jingle></iq>");
        assert_eq!(old.file.unwrap().name.as_deref(), Some("b.txt"));
        let oob = read_stanza(
            b"<message><x xmlns='jabber:x:oob'><url>https://h/up/c.png?x=1</url></x></message>",
        );
        assert_eq!(oob.file.unwrap().name.as_deref(), Some("c.png"));
        let v = read_stanza(b"<iq type='set'><jingle xmlns='urn:xmpp:jingle:1'><content><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/></content></jingle></iq>");
        assert!(v.video_call);
    }

    #[test]
    fn skips_stanzas_that_cannot_matter() {
        assert!(!may_matter(
            false,
            b"<presence from='a@b/c'><show>away</show></presence>"
        ));
        assert!(may_matter(
            true,
            b"<presence to='room@muc/nick'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
        assert!(!may_matter(
            true,
            b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        assert!(!may_matter(false, b"<iq id='1' type=\"error\"/>"));
        assert!(may_matter(false, b"<iq type='result' id='b'><bind/></iq>"));
        assert!(may_matter(true, b"<iq xtype='get' type='set'><si/></iq>"));
        assert!(!may_matter(true, b"<r xmlns='urn:xmpp:sm:3'/>"));
        assert!(may_matter(
            true,
            b"<message to='a@b'><body>x</body></message>"
        ));
        assert!(may_matter(true, b"<"));
    }

    #[test]
    fn reads_carbons() {
        let unit = b"<message from='dave@x' to='dave@x/laptop'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message from='dave@x/phone' to='erin@x' type='chat'><body>from my phone</body></message></forwarded></sent></message>";
        let st = read_stanza(unit);
        assert_eq!(st.carbon, Some(true));
        assert_eq!(st.body, None);
        let inner = read_stanza(inner_message(unit).unwrap());
        assert_eq!(inner.body.as_deref(), Some("from my phone"));
        assert_eq!(inner.from.as_deref(), Some("dave@x/phone"));
        assert_eq!(inner_message(b"<message><forwarded><message>"), None);
    }

    #[test]
    fn reads_bind_result() {
        let st = read_stanza(b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>tom@cs-xmpp.lan/darkstar</jid></bind></iq>");
        assert_eq!(st.bound_jid.as_deref(), Some("tom@cs-xmpp.lan/darkstar"));
    }

    #[test]
    fn hostile_xml_does_not_panic() {
        for s in [
            &b"<message><body>\xff\xfe</body></message>"[..],
            b"<message a='1' a='2'><body>&bogus;</body></message>",
            b"</x>",
            b"<a><b><c>",
            b"<message to='&#xD800;'/>",
        ] {
            let _ = read_stanza(s);
        }
        let deep: Vec<u8> = b"<a>".repeat(200);
        assert!(read_stanza(&deep).decode_error);
    }

    #[test]
    fn finds_stanza_starts() {
        assert_eq!(find_stanza_start(b"ge></message><iq id='1'/>"), Some(13));
        assert_eq!(find_stanza_start(b"<messages/><presence/>"), Some(11));
        assert_eq!(find_stanza_start(b"xx<mess"), None);
        assert_eq!(find_stanza_start(b"<iq"), None);
    }

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode(b"AGRhdmUAZGF2ZS1wdy0yMDI2").unwrap(),
            b"\0dave\0dave-pw-2026"
        );
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert!(base64_decode(b"*").is_none());
    }

    #[test]
    fn jids() {
        assert_eq!(bare("a@b/c/d"), "a@b");
        assert_eq!(resource("room@s/nick"), Some("nick"));
        assert_eq!(resource("a@b"), None);
    }
}
