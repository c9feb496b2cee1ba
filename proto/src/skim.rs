//! Envelope routing in one validating pass over the frame, without building anything.
//!
//! The panel routes every agent frame but fully decodes few of them. simd-json builds a tape
//! of the whole document first, and for frames of a few hundred bytes that setup costs more
//! than the routing itself (see BENCHMARKS.md). The skimmer instead walks the top-level object
//! once: it picks out `type`, `id`, `agentId`, `serverId`, `action`/`event`, `success` and
//! `data.serverId` as slices of the original frame, and validates everything else as JSON
//! (strings with SSE2/AVX2 scans) so that only well-formed frames are ever forwarded.
//!
//! A routed key or value that contains a backslash escape is returned as
//! [`Skimmed::NeedsDecoder`]: unescaping needs a buffer, so the caller falls back to the full
//! decoder for that rare frame.

#![allow(
    unsafe_code,
    reason = "SSE2/AVX2 intrinsics for the string scan; each block states why it is sound"
)]

use std::borrow::Cow;

use crate::codec::{DecodeError, Envelope};
use crate::message::MessageType;

/// Nesting deeper than this is rejected (serde_json's limit too): bounded recursion.
const MAX_DEPTH: u32 = 128;

pub(crate) enum Skimmed<'a> {
    Routed(Envelope<'a>),
    NeedsDecoder,
}

pub(crate) fn envelope(frame: &[u8]) -> Result<Skimmed<'_>, DecodeError> {
    skim(frame).map_err(|e| *e)
}

/// Errors are boxed inside the skimmer so that every internal `Result` stays two words wide
/// (returned in registers); they are rare, and the message is allocated anyway.
type Fail = Box<DecodeError>;

fn skim(frame: &[u8]) -> Result<Skimmed<'_>, Fail> {
    // UTF-8 is checked per string (outside strings the grammar admits only ASCII).
    let mut p = Parser { b: frame, i: 0 };
    let mut env = Fields::default();
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        p.expect(b'"')?;
        loop {
            let key = p.string()?;
            p.colon()?;
            if key.escaped {
                // Could be one of ours once unescaped: let the decoder decide.
                env.fallback = true;
                p.value(0)?;
            } else {
                p.member(key.raw, &mut env)?;
            }
            if !p.next_member("expected `,` or `}` after an object member")? {
                break;
            }
        }
    }
    p.ws();
    if p.i != frame.len() {
        return Err(invalid("trailing characters after the message"));
    }
    if env.fallback {
        return Ok(Skimmed::NeedsDecoder);
    }
    let kind = env.kind.ok_or_else(|| invalid("missing field `type`"))?;
    Ok(Skimmed::Routed(Envelope {
        kind,
        id: env.id.map(borrowed),
        agent_id: env.agent_id.map(borrowed),
        server_id: env.server_id.or(env.data_server_id).map(borrowed),
        name: env.name.map(borrowed),
        success: env.success,
    }))
}

/// Whether `input` is one well-formed JSON value (used by tests and fuzzing to compare the
/// skimmer's notion of validity with serde_json's).
pub fn is_valid_json(input: &[u8]) -> bool {
    let mut p = Parser { b: input, i: 0 };
    p.ws();
    if p.value(0).is_err() {
        return false;
    }
    p.ws();
    p.i == input.len()
}

#[cold]
#[inline(never)]
fn invalid(msg: &str) -> Fail {
    Box::new(DecodeError::Invalid(msg.to_owned()))
}

#[cold]
#[inline(never)]
fn invalid_at(what: &str, at: usize) -> Fail {
    Box::new(DecodeError::Invalid(format!("{what} at byte {at}")))
}

#[cold]
#[inline(never)]
fn duplicate(name: &str) -> Fail {
    Box::new(DecodeError::Invalid(format!("duplicate field `{name}`")))
}

fn borrowed(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

#[derive(Default)]
struct Fields<'a> {
    kind: Option<MessageType>,
    id: Option<&'a str>,
    agent_id: Option<&'a str>,
    server_id: Option<&'a str>,
    name: Option<&'a str>,
    success: Option<bool>,
    data_server_id: Option<&'a str>,
    /// Set once any routed key or value needed unescaping.
    fallback: bool,
}

struct RawStr<'a> {
    /// The string's bytes between the quotes, escapes not decoded; valid UTF-8.
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> RawStr<'a> {
    fn as_str(&self) -> &'a str {
        // SAFETY: `Parser::string` only returns byte runs that are ASCII or were checked with
        // `str::from_utf8`.
        unsafe { std::str::from_utf8_unchecked(self.raw) }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Result<u8, Fail> {
        match self.peek() {
            Some(c) => {
                self.i += 1;
                Ok(c)
            }
            None => Err(invalid("unexpected end of frame")),
        }
    }

    #[inline(always)]
    fn expect(&mut self, want: u8) -> Result<(), Fail> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(self.expected(want))
        }
    }

    #[cold]
    #[inline(never)]
    fn expected(&self, want: u8) -> Fail {
        invalid_at(&format!("expected `{}`", want as char), self.i - 1)
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// The `:` between a key and its value, with any whitespace around it. Compact frames
    /// (what agents send) have none, so that case is a single compare.
    #[inline(always)]
    fn colon(&mut self) -> Result<(), Fail> {
        if self.peek() == Some(b':') {
            self.i += 1;
        } else {
            self.ws();
            self.expect(b':')?;
        }
        self.ws();
        Ok(())
    }

    /// After a member's value: `true` if `,` and the next key's opening `"` follow (both
    /// consumed), `false` after the closing `}`; anything else is the error `msg`. The compact
    /// `,"` is checked as one two-byte compare.
    #[inline(always)]
    fn next_member(&mut self, msg: &str) -> Result<bool, Fail> {
        if self.b.get(self.i..self.i + 2) == Some(b",\"") {
            self.i += 2;
            return Ok(true);
        }
        self.ws();
        match self.next()? {
            b',' => {
                self.ws();
                self.expect(b'"')?;
                Ok(true)
            }
            b'}' => Ok(false),
            _ => Err(invalid(msg)),
        }
    }

    /// One top-level member: routed keys are captured, everything else is validated.
    fn member(&mut self, key: &'a [u8], env: &mut Fields<'a>) -> Result<(), Fail> {
        let (slot, name) = match key {
            b"type" => {
                let t = self.routed_string(env, "type")?;
                if let Some(t) = t {
                    let kind = MessageType::from_wire(t).ok_or_else(|| {
                        Box::new(DecodeError::Invalid(format!("unknown message type `{t}`")))
                    })?;
                    set_once(&mut env.kind, kind, "type")?;
                }
                return Ok(());
            }
            b"id" => (&mut env.id, "id"),
            b"agentId" => (&mut env.agent_id, "agentId"),
            b"serverId" => (&mut env.server_id, "serverId"),
            b"action" => (&mut env.name, "action"),
            b"event" => (&mut env.name, "event"),
            b"success" => {
                let v = match self.peek() {
                    Some(b't') => {
                        self.literal(b"true")?;
                        true
                    }
                    Some(b'f') => {
                        self.literal(b"false")?;
                        false
                    }
                    _ => return Err(invalid("`success` must be true or false")),
                };
                return set_once(&mut env.success, v, "success");
            }
            b"data" if self.peek() == Some(b'{') => return self.data_object(env),
            _ => return self.value(0),
        };
        if let Some(v) = self.take_string(name)? {
            if slot.is_some() {
                return Err(duplicate(name));
            }
            *slot = Some(v);
        } else {
            env.fallback = true;
        }
        Ok(())
    }

    /// A string value that routing needs; `None` when it carries escapes.
    #[inline(always)]
    fn take_string(&mut self, field: &str) -> Result<Option<&'a str>, Fail> {
        if self.peek() != Some(b'"') {
            return Err(not_a_string(field));
        }
        self.i += 1;
        let s = self.string()?;
        Ok((!s.escaped).then(|| s.as_str()))
    }

    #[inline(always)]
    fn routed_string(
        &mut self,
        env: &mut Fields<'a>,
        field: &str,
    ) -> Result<Option<&'a str>, Fail> {
        let v = self.take_string(field)?;
        if v.is_none() {
            env.fallback = true;
        }
        Ok(v)
    }

    /// `data` as an object: only `serverId` is captured, one level deep.
    fn data_object(&mut self, env: &mut Fields<'a>) -> Result<(), Fail> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        self.expect(b'"')?;
        loop {
            let key = self.string()?;
            self.colon()?;
            if key.escaped {
                env.fallback = true;
                self.value(1)?;
            } else if key.raw == b"serverId"
                && self.peek() == Some(b'"')
                && env.data_server_id.is_none()
            {
                match self.take_string("data.serverId")? {
                    Some(v) => env.data_server_id = Some(v),
                    None => env.fallback = true,
                }
            } else {
                self.value(1)?;
            }
            if !self.next_member("expected `,` or `}` in `data`")? {
                return Ok(());
            }
        }
    }

    /// Validates and skips any JSON value. Inlined, so that scalars (most values) cost no
    /// call; containers recurse through the out-of-line `object` and `array`.
    #[inline(always)]
    fn value(&mut self, depth: u32) -> Result<(), Fail> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string().map(drop)
            }
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(invalid_at("unexpected character", self.i)),
            None => Err(invalid("unexpected end of frame")),
        }
    }

    #[inline(never)]
    fn object(&mut self, depth: u32) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(invalid("nesting too deep"));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        self.expect(b'"')?;
        loop {
            self.string()?;
            self.colon()?;
            self.value(depth)?;
            if !self.next_member("expected `,` or `}` in an object")? {
                return Ok(());
            }
        }
    }

    #[inline(never)]
    fn array(&mut self, depth: u32) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(invalid("nesting too deep"));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b']' => return Ok(()),
                _ => return Err(invalid("expected `,` or `]` in an array")),
            }
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Result<(), Fail> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(invalid_at("invalid literal", self.i))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    #[inline(always)]
    fn number(&mut self) -> Result<(), Fail> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(invalid_at("invalid number", start)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(invalid_at("invalid number", start));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(invalid_at("invalid number", start));
            }
            self.digits();
        }
        Ok(())
    }

    #[inline(always)]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// The body of a string whose opening quote was consumed; leaves `i` after the closing
    /// quote. Escapes are validated (including surrogate pairs) but not decoded; non-ASCII
    /// content is checked to be UTF-8.
    ///
    /// The common case — a plain ASCII string shorter than 32 bytes, which is nearly every
    /// key, id, name and timestamp — is one or two SSE2 blocks, inlined at each call site.
    #[inline(always)]
    fn string(&mut self) -> Result<RawStr<'a>, Fail> {
        #[cfg(target_arch = "x86_64")]
        {
            let start = self.i;
            let at = start;
            let len = self.b.len();
            if at + 16 <= len {
                // SAFETY: 16 in-bounds bytes (just checked); SSE2 is the x86_64 baseline.
                let (quote, stop) = unsafe { Self::stops16(self.b, at) };
                if stop == 0 && at + 32 <= len {
                    // A second block covers timestamps and longer ids.
                    let next = at + 16;
                    // SAFETY: 16 in-bounds bytes (checked just above).
                    let (q2, s2) = unsafe { Self::stops16(self.b, next) };
                    return self.finish_fast(start, next, q2, s2);
                }
                return self.finish_fast(start, at, quote, stop);
            }
            if at < len && len >= 16 {
                // Near the end of the frame the last 16 bytes are loaded instead and the bytes
                // before `at` shifted out (their bits would otherwise be mistaken for ours).
                let shift = at - (len - 16);
                // SAFETY: the last 16 bytes of a frame of at least 16 bytes.
                let (q, s) = unsafe { Self::stops16(self.b, len - 16) };
                return self.finish_fast(start, at, q >> shift, s >> shift);
            }
        }
        self.string_slow()
    }

    /// The fast path's verdict on one block at `at`: the string ends in it if the first stop
    /// byte (see [`Self::stops16`]) is the closing quote; otherwise (escape, control
    /// character, non-ASCII, or no stop in the block) the slow path starts over from `start`.
    #[inline(always)]
    fn finish_fast(
        &mut self,
        start: usize,
        at: usize,
        quote: u32,
        stop: u32,
    ) -> Result<RawStr<'a>, Fail> {
        // `n` is 32 when there is no stop byte; bit 32 of the widened `quote` is 0.
        let n = stop.trailing_zeros();
        if (u64::from(quote) >> n) & 1 != 0 {
            let end = at + n as usize;
            self.i = end + 1;
            return Ok(RawStr {
                raw: &self.b[start..end],
                escaped: false,
            });
        }
        self.string_slow()
    }

    /// Bit masks (bit k = byte `at + k`) of `"` and of every byte that ends the plain-ASCII
    /// fast path: `"`, `\`, control characters and non-ASCII bytes. One signed compare finds
    /// both of the last two (bytes >= 0x80 are negative as `i8`, so `< 0x20`).
    ///
    /// # Safety
    /// `at + 16 <= b.len()`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn stops16(b: &[u8], at: usize) -> (u32, u32) {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 16 bytes at `at`; SSE2 is part of the x86_64 baseline
        // and `loadu` has no alignment requirement.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(at) as *const __m128i);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let low_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            let stop = _mm_or_si128(_mm_or_si128(quote, slash), low_or_high);
            (
                _mm_movemask_epi8(quote) as u32,
                _mm_movemask_epi8(stop) as u32,
            )
        }
    }

    /// Bit masks (bit k = byte `at + k`) of `"`, of any byte needing attention in a string
    /// (`"`, `\`, control characters) and of non-ASCII bytes.
    ///
    /// # Safety
    /// `at + 16 <= b.len()`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn classify16(b: &[u8], at: usize) -> (u32, u32, u32) {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 16 bytes at `at`; SSE2 is part of the x86_64 baseline
        // and `loadu` has no alignment requirement.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(at) as *const __m128i);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Signed compare: bytes 0x00..=0x1F are < 0x20; bytes >= 0x80 are negative, so
            // exclude them with the sign mask.
            let below = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            let ctrl = _mm_and_si128(below, _mm_cmpgt_epi8(v, _mm_set1_epi8(-1)));
            let any = _mm_or_si128(_mm_or_si128(quote, slash), ctrl);
            (
                _mm_movemask_epi8(quote) as u32,
                _mm_movemask_epi8(any) as u32,
                _mm_movemask_epi8(v) as u32,
            )
        }
    }

    /// [`Self::string`] for everything but the common case: long strings, escapes,
    /// non-ASCII text, the last 16 bytes of a frame, errors.
    #[inline(never)]
    fn string_slow(&mut self) -> Result<RawStr<'a>, Fail> {
        let start = self.i;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            non_ascii |= self.skip_plain();
            match self.next()? {
                b'"' => {
                    let raw = &self.b[start..self.i - 1];
                    if non_ascii && std::str::from_utf8(raw).is_err() {
                        return Err(invalid("string is not valid UTF-8"));
                    }
                    return Ok(RawStr { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                c if c < 0x20 => return Err(invalid("control character in a string")),
                // Not reached (`skip_plain` stops only at the three cases above), but if it
                // were, the byte must still count towards the UTF-8 check.
                c => non_ascii |= c >= 0x80,
            }
        }
    }

    /// Advances over bytes that need no attention, stopping at `"`, `\` or a control
    /// character (or the end). Returns whether any byte skipped was non-ASCII.
    #[inline(always)]
    fn skip_plain(&mut self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let mut high = false;
            // Long strings (log lines, file contents) go 64 bytes per step with AVX2: first
            // the cheaper plain-ASCII scan, then, from the first non-ASCII byte on (if any),
            // the scan that also tracks non-ASCII bytes for the UTF-8 check.
            if self.i + 64 <= self.b.len() && std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is available (checked just above).
                let (i, hit) = unsafe { skip_ascii_avx2(self.b, self.i) };
                self.i = i;
                if hit && self.b[i] < 0x80 {
                    // Stopped at `"`, `\` or a control character; everything skipped was ASCII.
                    return false;
                }
                if self.i + 64 <= self.b.len() {
                    // SAFETY: as above.
                    let (i, h) = unsafe { skip_plain_avx2(self.b, self.i) };
                    self.i = i;
                    high = h;
                }
            }
            // Most strings (keys, ids, names) end within the first 16 bytes.
            if self.i + 16 <= self.b.len() {
                return self.skip_plain_sse2() | high;
            }
            self.skip_plain_swar() | high
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.skip_plain_swar()
    }

    /// Eight bytes at a time in a general-purpose register, then byte by byte.
    fn skip_plain_swar(&mut self) -> bool {
        let mut high = false;
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let quote = w ^ (ONES * u64::from(b'"'));
            let slash = w ^ (ONES * u64::from(b'\\'));
            // Classic "has zero byte" / "has byte less than n" tricks; the lowest flagged byte
            // is exact, later ones may be false positives, so only the first is used.
            let special = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (w.wrapping_sub(ONES * 0x20) & !w);
            let special = special & HIGH;
            if special != 0 {
                let n = (special.trailing_zeros() / 8) as usize;
                high |= chunk[..n].iter().any(|c| *c >= 0x80);
                self.i += n;
                return high;
            }
            high |= w & HIGH != 0;
            self.i += 8;
        }
        while let Some(c) = self.peek() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            high |= c >= 0x80;
            self.i += 1;
        }
        high
    }

    /// Sixteen bytes at a time with SSE2, which every x86_64 CPU has; the tail (fewer than
    /// 16 bytes left in the frame) goes to the SWAR loop.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn skip_plain_sse2(&mut self) -> bool {
        let mut high = 0u32;
        while self.i + 16 <= self.b.len() {
            // SAFETY: the 16 bytes at `i` are in bounds (checked above).
            let (_, special, hi) = unsafe { Self::classify16(self.b, self.i) };
            if special != 0 {
                let n = special.trailing_zeros();
                high |= hi & ((1 << n) - 1);
                self.i += n as usize;
                return high != 0;
            }
            high |= hi;
            self.i += 16;
        }
        self.skip_plain_swar() | (high != 0)
    }

    fn escape(&mut self) -> Result<(), Fail> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let cp = self.hex4()?;
                match cp {
                    0xD800..=0xDBFF => {
                        if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            if (0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                return Ok(());
                            }
                        }
                        Err(invalid("unpaired surrogate in a \\u escape"))
                    }
                    0xDC00..=0xDFFF => Err(invalid("unpaired surrogate in a \\u escape")),
                    _ => Ok(()),
                }
            }
            _ => Err(invalid("invalid escape in a string")),
        }
    }

    fn hex4(&mut self) -> Result<u32, Fail> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| invalid("truncated \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| invalid("invalid \\u escape"))?;
            v = v * 16 + n;
        }
        self.i += 4;
        Ok(v)
    }
}

/// The plain-ASCII part of [`Parser::skip_plain`], 64 bytes per step: returns the position
/// of the first `"`, `\`, control character or non-ASCII byte at or after `i` and `true`, or
/// the position where fewer than 64 bytes remain and `false`.
///
/// Per 32-byte vector this is four instructions: `"` and `\` differ in their low nibble, so
/// one nibble-indexed shuffle maps each byte to the one special byte it could be (or to 0),
/// and a signed `< 0x20` finds control characters and non-ASCII bytes at once.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn skip_ascii_avx2(b: &[u8], mut i: usize) -> (usize, bool) {
    use std::arch::x86_64::*;
    // Index = low nibble of the byte (bytes >= 0x80 map to 0); `"` is 0x22, `\` is 0x5C. A
    // byte whose nibble has no special byte maps to 0, which only 0x00 itself (a control
    // character, flagged anyway) equals.
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0, 0, b'"' as i8, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\\' as i8, 0, 0, 0,
        0, 0, b'"' as i8, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\\' as i8, 0, 0, 0,
    );
    let space = _mm256_set1_epi8(0x20);
    macro_rules! stops {
        ($v:expr) => {
            _mm256_or_si256(
                _mm256_cmpeq_epi8(_mm256_shuffle_epi8(table, $v), $v),
                _mm256_cmpgt_epi8(space, $v),
            )
        };
    }
    while i + 64 <= b.len() {
        // SAFETY: 64 bytes at `i` are in bounds (loop condition); `loadu` has no alignment
        // requirement.
        let (lo, hi) = unsafe {
            let p = b.as_ptr().add(i) as *const __m256i;
            (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
        };
        let (s_lo, s_hi) = (stops!(lo), stops!(hi));
        let any = _mm256_or_si256(s_lo, s_hi);
        if _mm256_testz_si256(any, any) == 0 {
            let mask = u64::from(_mm256_movemask_epi8(s_lo) as u32)
                | (u64::from(_mm256_movemask_epi8(s_hi) as u32) << 32);
            return (i + mask.trailing_zeros() as usize, true);
        }
        i += 64;
    }
    (i, false)
}

/// [`Parser::skip_plain`] 64 bytes per step: returns the position of the first `"`, `\` or
/// control character at or after `i` (or where fewer than 64 bytes remain) and whether any
/// byte before it is non-ASCII.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn skip_plain_avx2(b: &[u8], mut i: usize) -> (usize, bool) {
    use std::arch::x86_64::*;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let slash = _mm256_set1_epi8(b'\\' as i8);
    let ctrl_max = _mm256_set1_epi8(0x1f);
    let mut high = _mm256_setzero_si256();
    // `v <= 0x1F` (unsigned) is `min(v, 0x1F) == v`. (A macro, not a closure, so that the
    // intrinsics are compiled with this function's AVX2 feature.)
    macro_rules! special {
        ($v:expr) => {
            _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8($v, quote), _mm256_cmpeq_epi8($v, slash)),
                _mm256_cmpeq_epi8(_mm256_min_epu8($v, ctrl_max), $v),
            )
        };
    }
    while i + 64 <= b.len() {
        // SAFETY: 64 bytes at `i` are in bounds (loop condition); `loadu` has no alignment
        // requirement.
        let (lo, hi) = unsafe {
            let p = b.as_ptr().add(i) as *const __m256i;
            (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
        };
        let (s_lo, s_hi) = (special!(lo), special!(hi));
        let any = _mm256_or_si256(s_lo, s_hi);
        if _mm256_testz_si256(any, any) == 0 {
            let mask = u64::from(_mm256_movemask_epi8(s_lo) as u32)
                | (u64::from(_mm256_movemask_epi8(s_hi) as u32) << 32);
            let n = mask.trailing_zeros();
            let non_ascii = u64::from(_mm256_movemask_epi8(lo) as u32)
                | (u64::from(_mm256_movemask_epi8(hi) as u32) << 32);
            let before = non_ascii & ((1u64 << n) - 1) != 0;
            return (i + n as usize, before || _mm256_movemask_epi8(high) != 0);
        }
        high = _mm256_or_si256(high, _mm256_or_si256(lo, hi));
        i += 64;
    }
    (i, _mm256_movemask_epi8(high) != 0)
}

#[cold]
#[inline(never)]
fn not_a_string(field: &str) -> Fail {
    Box::new(DecodeError::Invalid(format!("`{field}` must be a string")))
}

fn set_once<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), Fail> {
    if slot.is_some() {
        return Err(duplicate(name));
    }
    *slot = Some(v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_matches_serde_json_on_edge_cases() {
        let cases: &[&[u8]] = &[
            b"{}",
            b"[]",
            b"  {\"a\" : [1, -0.5e+3, true, false, null, \"x\"]}  ",
            b"\"\\u00e9\\ud83d\\ude00\"",
            b"\"\\ud83d\"",
            b"\"\\ude00\"",
            b"\"\\x\"",
            b"\"tab\there\"",
            b"01",
            b"-",
            b"1.",
            b"1e",
            b".5",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"[1 2]",
            b"tru",
            b"nul",
            b"\"unterminated",
            b"\"abcdefghijklmnopqrstuvwxyz0123456789\"",
            b"\"abcdefgh\\\"ijklmnop\"",
            b"{} {}",
            b"\"\xff\"",
            b"\xff",
            b"[\"caf\xc3\xa9 au lait, long enough for sixteen\"]",
            b"\"0123456789abcdef\xc3\"",
            b"\"0123456789abcdefghij\x01klm\"",
            b"\"0123456789abcdefghijklmnopq\\\"rs\"",
            b"\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"",
            b"",
            b"   ",
        ];
        for case in cases {
            let ours = is_valid_json(case);
            let theirs = serde_json::from_slice::<serde_json::Value>(case).is_ok();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn long_strings_stop_at_every_special_byte_position() {
        // Exercise the AVX2, SSE2, SWAR and byte loops and their hand-offs: a special byte at
        // every offset of strings of many lengths, checked against serde_json.
        for len in [15, 16, 17, 31, 63, 64, 65, 127, 128, 129, 200] {
            for at in 0..len {
                for special in [
                    &b"\""[..],
                    b"\\n",
                    b"\\q",
                    b"\x01",
                    b"\x7f",
                    b"\xc3\xa9",
                    b"\xff",
                    b"\xe2\x82",
                ] {
                    let mut s = vec![b'a'; len];
                    s.splice(at..at + 1, special.iter().copied());
                    let mut doc = b"[\"".to_vec();
                    doc.extend_from_slice(&s);
                    doc.extend_from_slice(b"\",1]");
                    let ours = is_valid_json(&doc);
                    let theirs = serde_json::from_slice::<serde_json::Value>(&doc).is_ok();
                    assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&doc));
                }
            }
        }
    }

    #[test]
    fn long_routed_values_borrow_exactly() {
        for len in [1, 15, 16, 17, 63, 64, 65, 100, 300] {
            let id = "é".repeat(len / 2) + &"s".repeat(len);
            let frame = format!(r#"{{"type":"event","event":"server_log","serverId":"{id}"}}"#);
            match envelope(frame.as_bytes()) {
                Ok(Skimmed::Routed(env)) => assert_eq!(env.server_id.as_deref(), Some(&*id)),
                _ => panic!("{frame}"),
            }
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "[".repeat(100_000);
        assert!(!is_valid_json(deep.as_bytes()));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(is_valid_json(ok.as_bytes()));
    }

    #[test]
    fn escaped_routing_fields_fall_back() {
        let frame = br#"{"type":"event","event":"server_log","serverId":"a\u0062c","data":{}}"#;
        assert!(matches!(envelope(frame), Ok(Skimmed::NeedsDecoder)));
        let frame = br#"{"t\u0079pe":"event","event":"server_log","data":{}}"#;
        assert!(matches!(envelope(frame), Ok(Skimmed::NeedsDecoder)));
    }

    #[test]
    fn duplicate_routing_fields_are_rejected() {
        for frame in [
            &br#"{"type":"event","type":"command"}"#[..],
            br#"{"type":"event","serverId":"a","serverId":"b"}"#,
            br#"{"type":"event","event":"a","action":"b"}"#,
        ] {
            assert!(
                envelope(frame).is_err(),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }
}
