//! Exclude patterns for `ckpt write --exclude PATTERN`, matched the way GNU tar matches
//! `--exclude` by default (`--no-anchored --wildcards --wildcards-match-slash`, recursion on).
//!
//! A pattern is a shell glob over bytes:
//!
//! - `*` matches any run of bytes, `/` included; `?` matches any one byte, `/` included;
//! - `[...]` matches one byte from a set: single bytes, ranges `a-z` (by byte value), the
//!   POSIX classes `[:alpha:]`, `[:digit:]`, ... (ASCII, as in the C locale), and the
//!   one-byte forms `[.c.]` and `[=c=]`. A `!` or `^` right after the `[` negates the set; a
//!   `]` right after the `[` (or after the negation) is a member; a `-` first or last is a
//!   member. A set may match `/`;
//! - `\` makes the next byte literal, inside and outside sets;
//! - any other byte matches itself (case matters).
//!
//! A stored path is relative and `/`-separated, its first component the input's own name
//! (`etc/ssh/sshd_config`). A pattern excludes a path when it matches a run of the path's
//! whole components: it starts at the start of the path or right after a `/` (tar's
//! unanchored matching) and ends at the end of the path or right before a `/` (tar's
//! recursion rule: a name is excluded when one of its parent directories is). So `foo`
//! excludes `foo`, `a/foo`, `foo/bar` and `a/foo/bar`, but neither `a/foobar` nor `xfoo`;
//! `*.o` excludes `a/b.o` and everything under a directory `a/dir.o`; `src/*.tmp` excludes
//! `p/src/x.tmp` and, since `*` crosses `/`, `p/src/deep/x.tmp` as well. The walker does not
//! descend into an excluded directory, so the parent rule only matters for callers that
//! test paths below one.
//!
//! Like tar, patterns are used as given: a pattern ending in `/` (`build/`) matches no stored
//! path, since paths never end in `/` — write `build` to exclude a directory `build` (tar
//! 1.34 with `--exclude=build/` also archives `build` and everything in it).
//!
//! Matching is by bytes, as tar does under `LC_ALL=C`; in a UTF-8 locale tar's `?` and
//! `[...]` match one whole character and ranges follow the locale's collation.
//!
//! Where tar's `fnmatch` quietly treats a malformed pattern as literal text or as matching
//! nothing (an unclosed `[`, a trailing `\`, an unknown class `[:foo:]`), [`Pattern::new`]
//! refuses it instead.
//!
//! Matching simulates the pattern's automaton over the path once, so it costs at most
//! (path length x pattern length) steps, whatever the stars.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;

/// One exclude pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as given (for messages).
    source: Vec<u8>,
    /// The compiled glob; no two `Star`s in a row.
    tokens: Vec<Token>,
}

/// One element of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This byte.
    Byte(u8),
    /// `?`: any one byte.
    Any,
    /// `*`: any run of bytes.
    Star,
    /// `[...]`: one byte of the set (negation already applied).
    Set(ByteSet),
}

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        if let Some(word) = self.0.get_mut(usize::from(b >> 6)) {
            *word |= 1 << (b & 63);
        }
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.insert(b);
        }
    }

    fn insert_all(&mut self, other: &ByteSet) {
        for (word, add) in self.0.iter_mut().zip(other.0) {
            *word |= add;
        }
    }

    fn negate(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0.get(usize::from(b >> 6)).is_some_and(|word| word & (1 << (b & 63)) != 0)
    }

    /// A POSIX character class by name, in the C locale; `None` for an unknown name.
    fn class(name: &[u8]) -> Option<ByteSet> {
        let test: fn(&u8) -> bool = match name {
            b"alnum" => u8::is_ascii_alphanumeric,
            b"alpha" => u8::is_ascii_alphabetic,
            b"blank" => |b| matches!(b, b' ' | b'\t'),
            b"cntrl" => u8::is_ascii_control,
            b"digit" => u8::is_ascii_digit,
            b"graph" => u8::is_ascii_graphic,
            b"lower" => u8::is_ascii_lowercase,
            b"print" => |b| b.is_ascii_graphic() || *b == b' ',
            b"punct" => u8::is_ascii_punctuation,
            // C's isspace: also the vertical tab, which Rust's is_ascii_whitespace omits.
            b"space" => |b| b.is_ascii_whitespace() || *b == 0x0b,
            b"upper" => u8::is_ascii_uppercase,
            b"xdigit" => u8::is_ascii_hexdigit,
            _ => return None,
        };
        let mut set = ByteSet::default();
        for b in (0..=u8::MAX).filter(test) {
            set.insert(b);
        }
        Some(set)
    }
}

/// One item inside `[...]`.
enum Item {
    /// A byte, which may start or end a range.
    Byte(u8),
    /// A named class, which may not.
    Class(ByteSet),
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    Empty,
    /// A `[` has no closing `]`.
    UnclosedBracket {
        /// The pattern (lossily decoded).
        pattern: String,
        /// The byte offset of the `[`.
        at: usize,
    },
    /// The pattern ends with a `\` that escapes nothing.
    TrailingBackslash {
        /// The pattern (lossily decoded).
        pattern: String,
    },
    /// The pattern contains a NUL byte, which no path can.
    Nul {
        /// The pattern (lossily decoded).
        pattern: String,
    },
    /// A `[:name:]`, `[.x.]` or `[=x=]` inside `[...]` names no class or single byte.
    UnknownClass {
        /// The pattern (lossily decoded).
        pattern: String,
        /// The offending item, brackets included (lossily decoded).
        name: String,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty exclude pattern"),
            Self::UnclosedBracket { pattern, at } => write!(
                f,
                "exclude pattern `{pattern}`: the `[` at byte {at} has no closing `]` \
                 (write `\\[` for a literal `[`)"
            ),
            Self::TrailingBackslash { pattern } => write!(
                f,
                "exclude pattern `{pattern}` ends with a lone `\\` (write `\\\\` for a literal one)"
            ),
            Self::Nul { pattern } => {
                write!(f, "exclude pattern `{pattern}` contains a NUL byte")
            }
            Self::UnknownClass { pattern, name } => write!(
                f,
                "exclude pattern `{pattern}`: `{name}` is not a known character class or a \
                 single byte"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Reads patterns; `at` is always the index of the next unread byte of `src`.
struct Parser<'a> {
    src: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.at + ahead).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        if b.is_some() {
            self.at += 1;
        }
        b
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(self.src).into_owned()
    }

    fn unclosed(&self, at: usize) -> PatternError {
        PatternError::UnclosedBracket { pattern: self.lossy(), at }
    }

    fn tokens(&mut self) -> Result<Vec<Token>, PatternError> {
        let mut tokens = Vec::with_capacity(self.src.len());
        while let Some(b) = self.next() {
            let token = match b {
                b'*' if tokens.last() == Some(&Token::Star) => continue,
                b'*' => Token::Star,
                b'?' => Token::Any,
                b'[' => Token::Set(self.set(self.at - 1)?),
                b'\\' => match self.next() {
                    Some(escaped) => Token::Byte(escaped),
                    None => return Err(PatternError::TrailingBackslash { pattern: self.lossy() }),
                },
                _ => Token::Byte(b),
            };
            tokens.push(token);
        }
        Ok(tokens)
    }

    /// The rest of a `[...]` whose `[` is at byte `open`.
    fn set(&mut self, open: usize) -> Result<ByteSet, PatternError> {
        let negated = matches!(self.peek(), Some(b'!' | b'^'));
        if negated {
            self.at += 1;
        }
        let mut set = ByteSet::default();
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(self.unclosed(open)),
                Some(b']') if !first => {
                    self.at += 1;
                    break;
                }
                Some(_) => {}
            }
            first = false;
            match self.item(open)? {
                Item::Class(class) => set.insert_all(&class),
                Item::Byte(lo) => {
                    // `-` starts a range unless it is the set's last byte.
                    if self.peek() == Some(b'-') && !matches!(self.peek_at(1), None | Some(b']')) {
                        self.at += 1;
                        match self.item(open)? {
                            Item::Byte(hi) => set.insert_range(lo, hi),
                            Item::Class(class) => {
                                set.insert(lo);
                                set.insert(b'-');
                                set.insert_all(&class);
                            }
                        }
                    } else {
                        set.insert(lo);
                    }
                }
            }
        }
        if negated {
            set.negate();
        }
        Ok(set)
    }

    /// One item of the set opened at byte `open`; the caller saw there is at least one byte.
    fn item(&mut self, open: usize) -> Result<Item, PatternError> {
        let start = self.at;
        match (self.next(), self.peek()) {
            (None, _) => Err(self.unclosed(open)),
            (Some(b'\\'), _) => self.next().map(Item::Byte).ok_or_else(|| self.unclosed(open)),
            (Some(b'['), Some(b':')) => {
                // `[:name:]` when `name` is lowercase letters; otherwise `[` is a member.
                let name_len = self
                    .src
                    .get(self.at + 1..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| b.is_ascii_lowercase())
                    .count();
                let name_end = self.at + 1 + name_len;
                if self.src.get(name_end..name_end + 2) != Some(b":]".as_slice()) {
                    return Ok(Item::Byte(b'['));
                }
                let name = self.src.get(self.at + 1..name_end).unwrap_or_default();
                self.at = name_end + 2;
                ByteSet::class(name).map(Item::Class).ok_or_else(|| self.unknown(start))
            }
            (Some(b'['), Some(delim @ (b'.' | b'='))) => {
                // `[.x.]` or `[=x=]`: up to the first `.]` or `=]`, which must enclose one byte.
                let body = self.at + 1;
                let close = self
                    .src
                    .get(body..)
                    .unwrap_or_default()
                    .windows(2)
                    .position(|w| w == [delim, b']'])
                    .ok_or_else(|| self.unclosed(open))?;
                self.at = body + close + 2;
                match self.src.get(body..body + close) {
                    Some(&[b]) => Ok(Item::Byte(b)),
                    _ => Err(self.unknown(start)),
                }
            }
            (Some(b), _) => Ok(Item::Byte(b)),
        }
    }

    /// The item from `start` up to the current position is not a known class or byte.
    fn unknown(&self, start: usize) -> PatternError {
        let name = self.src.get(start..self.at).unwrap_or_default();
        PatternError::UnknownClass {
            pattern: self.lossy(),
            name: String::from_utf8_lossy(name).into_owned(),
        }
    }
}

impl Pattern {
    /// Parses a shell glob: `*`, `?`, `[...]` with ranges, classes and `!`/`^` negation,
    /// `\` escapes (see the [module documentation](self) for the exact rules).
    ///
    /// # Errors
    ///
    /// [`PatternError`] for an empty pattern, a `[` without its `]`, a trailing `\`, a NUL
    /// byte, or an unknown `[:class:]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_tree::pattern::Pattern;
    /// let p = Pattern::new(b"*.o")?;
    /// assert!(p.matches(b"src/main.o"));
    /// assert!(!p.matches(b"src/main.c"));
    /// assert!(Pattern::new(b"[abc").is_err());
    /// # Ok::<(), ckpt_tree::pattern::PatternError>(())
    /// ```
    pub fn new(pattern: &[u8]) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.contains(&0) {
            return Err(PatternError::Nul {
                pattern: String::from_utf8_lossy(pattern).into_owned(),
            });
        }
        let tokens = Parser { src: pattern, at: 0 }.tokens()?;
        Ok(Self { source: pattern.to_vec(), tokens })
    }

    /// The pattern as given.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.source
    }

    /// Whether an entry with this stored path is excluded: whether the pattern matches a run
    /// of whole components of `path` (tar's unanchored rule, plus its rule that a name under
    /// an excluded directory is excluded).
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_tree::pattern::Pattern;
    /// let p = Pattern::new(b"foo")?;
    /// assert!(p.matches(b"foo") && p.matches(b"a/foo") && p.matches(b"a/foo/bar"));
    /// assert!(!p.matches(b"a/foobar") && !p.matches(b"afoo"));
    /// # Ok::<(), ckpt_tree::pattern::PatternError>(())
    /// ```
    #[must_use]
    pub fn matches(&self, path: &[u8]) -> bool {
        let end = self.tokens.len();
        // `live[k]`: the pattern's first `k` tokens match the bytes since some start.
        let mut live = vec![false; end + 1];
        let mut next = vec![false; end + 1];
        self.enter(&mut live, 0);
        let mut any_live = true;
        for &b in path {
            if b == b'/' && live.last() == Some(&true) {
                return true;
            }
            if any_live {
                next.fill(false);
                for (k, token) in self.tokens.iter().enumerate() {
                    if live.get(k) != Some(&true) {
                        continue;
                    }
                    let to = match token {
                        Token::Star => k,
                        Token::Any => k + 1,
                        Token::Byte(c) if *c == b => k + 1,
                        Token::Set(set) if set.contains(b) => k + 1,
                        Token::Byte(_) | Token::Set(_) => continue,
                    };
                    self.enter(&mut next, to);
                }
                std::mem::swap(&mut live, &mut next);
                any_live = live.contains(&true);
            }
            if b == b'/' {
                // A new component starts: the pattern may start matching here too.
                self.enter(&mut live, 0);
                any_live = true;
            }
        }
        live.last() == Some(&true)
    }

    /// Marks state `k` live, and the states a run of empty `*` matches reaches from it.
    fn enter(&self, states: &mut [bool], mut k: usize) {
        loop {
            match states.get_mut(k) {
                Some(state) => *state = true,
                None => return,
            }
            if self.tokens.get(k) != Some(&Token::Star) {
                return;
            }
            k += 1;
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.source))
    }
}

/// The set of patterns given with `--exclude`; a path is excluded when any of them matches.
///
/// # Examples
///
/// ```
/// use ckpt_tree::pattern::Excludes;
/// let ex = Excludes::new(&["*.o", "target", "cache/*.tmp"])?;
/// assert!(ex.excludes(b"proj/src/main.o"));
/// assert!(ex.excludes(b"proj/target"));
/// assert!(ex.excludes(b"proj/target/debug/app")); // under an excluded directory
/// assert!(ex.excludes(b"proj/cache/a.tmp"));
/// assert!(!ex.excludes(b"proj/src/main.rs"));
/// assert!(!ex.excludes(b"proj/targets"));
/// assert!(Excludes::new(&[""]).is_err());
/// assert!(Excludes::default().is_empty());
/// # Ok::<(), ckpt_tree::pattern::PatternError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

impl Excludes {
    /// Parses every pattern.
    ///
    /// # Errors
    ///
    /// The [`PatternError`] of the first pattern [`Pattern::new`] refuses.
    pub fn new(patterns: &[impl AsRef<[u8]>]) -> Result<Self, PatternError> {
        let patterns =
            patterns.iter().map(|p| Pattern::new(p.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether no pattern was given.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in the order given.
    #[must_use]
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether an entry with this stored path is excluded by any pattern
    /// (see [`Pattern::matches`]).
    #[must_use]
    pub fn excludes(&self, path: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches(path))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Pattern {
        Pattern::new(p.as_bytes()).unwrap()
    }

    /// Asserts which of `paths` the pattern matches (`yes`) and does not (`no`).
    fn check(p: &str, yes: &[&str], no: &[&str]) {
        let pattern = pat(p);
        for path in yes {
            assert!(pattern.matches(path.as_bytes()), "`{p}` should match `{path}`");
        }
        for path in no {
            assert!(!pattern.matches(path.as_bytes()), "`{p}` should not match `{path}`");
        }
    }

    #[test]
    fn tar_manual_examples() {
        // `tar -xf foo.tar --exclude '*.c'` on a.c b.c a.txt [remarks] keeps a.txt, [remarks].
        check("*.c", &["a.c", "b.c"], &["a.txt", "[remarks]"]);
        check("*.o", &["main.o", "src/main.o", "src/dir.o/keep"], &["main.c", "src/main.oo"]);
    }

    #[test]
    fn unanchored_whole_components() {
        check(
            "foo",
            &["foo", "a/foo", "foo/bar", "a/foo/bar", "a/b/foo/c/d"],
            &["afoo", "a/foobar", "a/xfoo/bar", "fo", "a/fo/o"],
        );
        check("a/b", &["a/b", "x/a/b", "x/a/b/c"], &["xa/b", "a/bc", "a", "b"]);
        // The input's own name is a component like any other.
        check("in", &["in", "in/x"], &["inx", "n/in2"]);
        check("n", &["x/n"], &["in", "in/x"]);
    }

    #[test]
    fn wildcards_match_slash() {
        check("x?y", &["x/y", "p/x/y/z", "xay"], &["x//y", "xy"]);
        check("x[/]y", &["p/x/y"], &["xay"]);
        check("x*y", &["x/a/b/y", "xy", "p/xy/q"], &["p/ax/y"]);
        check("*", &["a", "a/b/c"], &[]);
    }

    #[test]
    fn anchored_looking_patterns_are_not_anchored() {
        check(
            "dir/*.tmp",
            &["dir/a.tmp", "p/dir/a.tmp", "p/dir/sub/a.tmp", "p/dir/a.tmp/x"],
            &["p/xdir/a.tmp", "p/dir/a.tmpx", "p/dir", "p/a.tmp"],
        );
        check("src/*.o", &["in/src/main.o"], &["in/src/main.c", "in/src"]);
        check("*/foo", &["in/foo", "in/a/foo/bar"], &["foo", "in/xfoo"]);
    }

    #[test]
    fn trailing_slash_matches_nothing() {
        for p in ["build/", "bui*/", "build/**/"] {
            check(p, &[], &["build", "p/build", "p/build/x", "build/x/y"]);
        }
        check("build/*", &["p/build/x", "build/x/y"], &["p/build"]);
    }

    #[test]
    fn brackets() {
        check("[abc]", &["a", "p/c"], &["d", "ab", "[abc]"]);
        check("[a-c]x", &["bx", "p/cx"], &["dx", "-x"]);
        check("[!a-c]", &["d", "-"], &["a", "b"]);
        check("[^a-c]", &["d", "/"], &["c"]);
        check("[]]", &["]"], &["a"]);
        check("[!]]", &["a"], &["]"]);
        check("[]a-]", &["]", "a", "-"], &["b"]);
        check("[-a]", &["-", "a"], &["b"]);
        check("[--0]", &["-", ".", "0"], &["1", ","]);
        check("[\\]]", &["]"], &["\\"]);
        check("[\\a-\\c]", &["b"], &["d", "\\"]);
        check("[c-a]", &[], &["a", "b", "c", "-"]);
        check("[*?]", &["*", "?"], &["a"]);
        check("[[:digit:]]*", &["1a", "p/9"], &["a1"]);
        check("[[:alpha:][:digit:]_]", &["a", "Z", "5", "_"], &["-"]);
        check("[![:lower:]]", &["A", "1"], &["a"]);
        check("[[:space:]]", &[" ", "\t", "\u{b}"], &["a"]);
        check("[[:al]", &["[", ":", "a", "l"], &["p", "]"]);
        check("[[.a.]]", &["a"], &["."]);
        check("[[=a=]b]", &["a", "b"], &["="]);
        check("[[.-.]a]", &["-", "a"], &["."]);
        // Bytes beyond ASCII are plain bytes.
        let p = Pattern::new(b"[\x80-\xff]").unwrap();
        assert!(p.matches(b"\xe9") && !p.matches(b"e"));
    }

    #[test]
    fn escapes() {
        check("star\\*", &["star*", "p/star*"], &["starx", "star"]);
        check("\\?", &["?"], &["a"]);
        check("back\\\\slash", &["back\\slash"], &["backslash"]);
        check("\\a\\[b", &["a[b"], &["ab"]);
        check("a\\/b", &["a/b"], &["ab"]);
    }

    #[test]
    fn stars_and_dots() {
        check(".*", &[".git", "p/.git/HEAD"], &["p/a.git"]);
        check("**a", &["a", "ba", "b/a"], &["ab"]);
        check("a*", &["a", "abc", "p/ab/c"], &["ba"]);
        check("*a*b*", &["ab", "xaybz", "p/a/b"], &["ba", "bbb"]);
        assert_eq!(pat("a***b").tokens.len(), 3);
    }

    #[test]
    fn errors_name_the_pattern() {
        let err = |p: &[u8]| Pattern::new(p).unwrap_err();
        assert_eq!(err(b""), PatternError::Empty);
        assert_eq!(err(b"[abc"), PatternError::UnclosedBracket { pattern: "[abc".into(), at: 0 });
        assert_eq!(err(b"x*a["), PatternError::UnclosedBracket { pattern: "x*a[".into(), at: 3 });
        assert_eq!(err(b"[]"), PatternError::UnclosedBracket { pattern: "[]".into(), at: 0 });
        assert_eq!(err(b"[!]"), PatternError::UnclosedBracket { pattern: "[!]".into(), at: 0 });
        assert_eq!(err(b"a[b\\"), PatternError::UnclosedBracket { pattern: "a[b\\".into(), at: 1 });
        assert_eq!(err(b"[[.a]"), PatternError::UnclosedBracket { pattern: "[[.a]".into(), at: 0 });
        assert_eq!(
            err(b"[[:alpha:]"),
            PatternError::UnclosedBracket { pattern: "[[:alpha:]".into(), at: 0 }
        );
        assert_eq!(err(b"ab\\"), PatternError::TrailingBackslash { pattern: "ab\\".into() });
        assert_eq!(err(b"a\0b"), PatternError::Nul { pattern: "a\0b".into() });
        assert_eq!(
            err(b"x[[:foo:]]"),
            PatternError::UnknownClass { pattern: "x[[:foo:]]".into(), name: "[:foo:]".into() }
        );
        assert_eq!(
            err(b"[[.ab.]]"),
            PatternError::UnknownClass { pattern: "[[.ab.]]".into(), name: "[.ab.]".into() }
        );
        for (p, needle) in [
            (&b"[abc"[..], "`[abc`"),
            (b"ab\\", "`ab\\`"),
            (b"a\0b", "`a\0b`"),
            (b"[[:foo:]]", "`[[:foo:]]`"),
            (b"", "empty"),
        ] {
            let msg = err(p).to_string();
            assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
        }
        // Escaped specials are not errors.
        for p in ["\\[", "\\\\", "a\\]", "]", "[\\]]"] {
            Pattern::new(p.as_bytes()).unwrap();
        }
    }

    #[test]
    fn excludes_set() {
        let none = Excludes::new(&[] as &[&str]).unwrap();
        assert!(none.is_empty() && !none.excludes(b"a"));
        assert!(Excludes::default().is_empty());
        let ex = Excludes::new(&[b"*.o".to_vec(), b"target".to_vec()]).unwrap();
        assert!(!ex.is_empty());
        assert_eq!(ex.patterns().len(), 2);
        assert_eq!(ex.patterns()[1].as_bytes(), b"target");
        assert_eq!(ex.patterns()[0].to_string(), "*.o");
        assert!(ex.excludes(b"p/a.o") && ex.excludes(b"p/target/x") && !ex.excludes(b"p/a.c"));
        assert_eq!(
            Excludes::new(&["ok", "bad[", "worse\\"]).unwrap_err(),
            PatternError::UnclosedBracket { pattern: "bad[".into(), at: 3 }
        );
    }

    #[test]
    fn many_stars_on_a_long_path_is_fast() {
        let mut pattern = b"*a".repeat(99);
        pattern.extend_from_slice(b"*b");
        let pattern = Pattern::new(&pattern).unwrap();
        assert_eq!(pattern.tokens.len(), 200);
        let flat = vec![b'a'; 4096];
        let mut slashed = b"a/".repeat(2048);
        slashed.pop();
        let start = std::time::Instant::now();
        assert!(!pattern.matches(&flat));
        assert!(!pattern.matches(&slashed));
        let mut hit = flat.clone();
        *hit.last_mut().unwrap() = b'b';
        assert!(pattern.matches(&hit));
        // A naive backtracking matcher needs about C(4096, 99) steps here.
        let elapsed = start.elapsed();
        assert!(elapsed < std::time::Duration::from_secs(2), "took {elapsed:?}");
    }

    /// A plain recursive glob matcher over whole strings, the definition the automaton
    /// must agree with.
    fn naive_glob(tokens: &[Token], s: &[u8]) -> bool {
        match tokens.split_first() {
            None => s.is_empty(),
            Some((Token::Star, rest)) => (0..=s.len()).any(|i| naive_glob(rest, &s[i..])),
            Some((t, rest)) => match s.split_first() {
                None => false,
                Some((&b, tail)) => {
                    let ok = match t {
                        Token::Byte(c) => *c == b,
                        Token::Any => true,
                        Token::Set(set) => set.contains(b),
                        Token::Star => unreachable!(),
                    };
                    ok && naive_glob(rest, tail)
                }
            },
        }
    }

    /// The naive definition of `matches`: some run of whole components matches.
    fn naive_matches(p: &Pattern, path: &[u8]) -> bool {
        let starts = (0..=path.len()).filter(|&i| i == 0 || path[i - 1] == b'/');
        starts.into_iter().any(|i| {
            (i..=path.len())
                .filter(|&j| j == path.len() || path[j] == b'/')
                .any(|j| naive_glob(&p.tokens, &path[i..j]))
        })
    }

    /// Every string over `alphabet` of length `0..=max`.
    fn strings(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s: &Vec<u8>| {
                    alphabet.iter().map(move |&c| {
                        let mut t = s.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn automaton_agrees_with_naive_definition() {
        let patterns = strings(b"a/*?", 4)
            .into_iter()
            .chain([b"[a/]b".to_vec(), b"[!a]*".to_vec(), b"a*/b".to_vec()])
            .filter_map(|p| Pattern::new(&p).ok())
            .collect::<Vec<_>>();
        let paths = strings(b"ab/", 5);
        let mut checked = 0;
        for p in &patterns {
            for path in &paths {
                assert_eq!(
                    p.matches(path),
                    naive_matches(p, path),
                    "pattern {p} path {:?}",
                    String::from_utf8_lossy(path)
                );
                checked += 1;
            }
        }
        assert!(checked > 50_000);
    }

    /// Differential tests against GNU tar: same tree, same patterns, same kept set.
    #[cfg(unix)]
    mod against_tar {
        use super::super::Excludes;
        use std::collections::BTreeSet;
        use std::os::unix::ffi::OsStrExt;
        use std::path::Path;
        use std::process::Command;

        const DIRS: [&str; 11] = [
            "in",
            "in/src",
            "in/build",
            "in/build/obj",
            "in/a",
            "in/a/foo",
            "in/x",
            "in/x/y",
            "in/dir.o",
            "in/.git",
            "in/Q",
        ];
        const FILES: [&str; 16] = [
            "in/src/main.c",
            "in/src/main.o",
            "in/src/util.o",
            "in/build/obj/a.o",
            "in/build/out",
            "in/a/foo/bar",
            "in/foo",
            "in/x/y/z.tmp",
            "in/dir.o/keep",
            "in/.git/HEAD",
            "in/[remarks]",
            "in/star*",
            "in/back\\slash",
            "in/-",
            "in/Q/a b",
            "in/a.tmp",
        ];
        const PATTERNS: [&str; 25] = [
            "*.o",
            "foo",
            "build",
            "build/",
            "build/*",
            "x?y",
            "x[/]y",
            "src/*.o",
            "*/foo",
            ".*",
            "[remarks]",
            "star\\*",
            "back\\\\slash",
            "[[:upper:]]",
            "[!a-z]*",
            "in",
            "n",
            "*",
            "y/z.tmp",
            "obj/a.o",
            "[.-]*",
            "*a b",
            "a?b",
            "dir.o",
            "[[.-.]]",
        ];

        /// Whether `tar` is GNU tar; when not, panics under `CI=true`, else says why.
        fn have_gnu_tar() -> bool {
            let version = Command::new("tar").arg("--version").env("LC_ALL", "C").output();
            let gnu = version
                .as_ref()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"tar (GNU tar)"));
            if !gnu {
                let reason = format!("GNU tar is not available ({:?})", version.map(|o| o.status));
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}, but CI=true");
                println!("skipping the differential test against GNU tar: {reason}");
            }
            gnu
        }

        /// The names `tar -cv` lists for `in` under `root` with these excludes.
        fn tar_kept(root: &Path, patterns: &[&str]) -> BTreeSet<String> {
            let mut cmd = Command::new("tar");
            cmd.current_dir(root).env("LC_ALL", "C");
            cmd.args(["--quoting-style=literal", "-cvf", "/dev/null"]);
            for p in patterns {
                cmd.arg(format!("--exclude={p}"));
            }
            let out = cmd.arg("in").output().unwrap();
            assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| l.strip_suffix('/').unwrap_or(l).to_owned())
                .collect()
        }

        /// Walks `rel` under `root` like the collector: every path into `all`, and into `kept`
        /// the ones neither excluded nor under an excluded directory.
        fn walk(
            root: &Path,
            rel: &Path,
            ex: &Excludes,
            all: &mut Vec<String>,
            kept: &mut Vec<String>,
        ) {
            let name = rel.as_os_str().as_bytes();
            let excluded = ex.excludes(name);
            all.push(String::from_utf8(name.to_vec()).unwrap());
            if !excluded {
                kept.push(all.last().unwrap().clone());
            }
            let full = root.join(rel);
            if full.is_dir() {
                let mut ignored = Vec::new();
                for entry in std::fs::read_dir(&full).unwrap() {
                    let child = rel.join(entry.unwrap().file_name());
                    walk(root, &child, ex, all, if excluded { &mut ignored } else { kept });
                }
            }
        }

        #[test]
        fn kept_sets_match_gnu_tar() {
            if !have_gnu_tar() {
                return;
            }
            let tmp = tempfile::tempdir().unwrap();
            for d in DIRS {
                std::fs::create_dir(tmp.path().join(d)).unwrap();
            }
            for f in FILES {
                std::fs::write(tmp.path().join(f), b"x").unwrap();
            }
            let cases = PATTERNS
                .iter()
                .map(|&p| vec![p])
                .chain([vec!["*.o", ".git", "x"], vec!["*.tmp", "Q"]])
                .collect::<Vec<_>>();
            let mut informative = 0;
            for patterns in &cases {
                let ex = Excludes::new(patterns).unwrap();
                let tar = tar_kept(tmp.path(), patterns);
                let (mut all, mut pruned) = (Vec::new(), Vec::new());
                walk(tmp.path(), Path::new("in"), &ex, &mut all, &mut pruned);
                assert_eq!(all.len(), DIRS.len() + FILES.len());
                let pruned = pruned.into_iter().collect::<BTreeSet<_>>();
                assert_eq!(pruned, tar, "patterns {patterns:?}: pruning walk vs tar");
                let filtered = all.iter().filter(|p| !ex.excludes(p.as_bytes())).cloned();
                let filtered = filtered.collect::<BTreeSet<_>>();
                assert_eq!(filtered, tar, "patterns {patterns:?}: path filter vs tar");
                informative += usize::from(!tar.is_empty() && tar.len() < all.len());
            }
            // Only `build/` and `n` keep everything, and only `*` and `in` keep nothing.
            assert_eq!(informative, cases.len() - 4);
        }
    }
}
