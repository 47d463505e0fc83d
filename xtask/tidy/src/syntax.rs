//! Just enough Rust syntax for the rules: comments and literals blanked out, a token
//! stream, `use` trees expanded into paths, and `mod` declarations — each with its line and
//! the inline modules around it. Not a parser: a bad guess makes a rule miss, never panic.

/// A source text with comments and string/char literal contents replaced by spaces, byte for
/// byte (newlines kept), so offsets and line numbers still point into the original.
pub(crate) fn blank(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        let end = match bytes[i] {
            b'/' if next == Some(b'/') => line_end(bytes, i),
            b'/' if next == Some(b'*') => block_comment_end(bytes, i),
            b'"' => string_end(bytes, i + 1),
            b'r' if !ident_before(bytes, i) || prefix_b(bytes, i) => match raw_string_end(bytes, i)
            {
                Some(end) => end,
                None => i + 1,
            },
            b'\'' => char_literal_end(text, i).unwrap_or(i + 1),
            _ => i + 1,
        };
        if end > i + 1 {
            for b in &mut out[i..end] {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
        }
        i = end;
    }
    // Only ASCII bytes were written over whole UTF-8 sequences; the rest is untouched.
    String::from_utf8(out).unwrap_or_default()
}

fn ident_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && is_ident_byte(bytes[i - 1])
}

/// `br"…"`: the `r` follows a lone `b`.
fn prefix_b(bytes: &[u8], i: usize) -> bool {
    i > 0 && bytes[i - 1] == b'b' && !ident_before(bytes, i - 1)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

fn block_comment_end(bytes: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// End (exclusive) of a `"…"` literal whose contents start at `from`.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `r"…"`, `r#"…"#`, …: `None` if `r` at `from` does not start a raw string (`r#type`).
fn raw_string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let hashes = bytes[from + 1..].iter().take_while(|&&b| b == b'#').count();
    let quote = from + 1 + hashes;
    if bytes.get(quote) != Some(&b'"') {
        return None;
    }
    let closing: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = quote + 1;
    let end = bytes[body..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice())
        .map_or(bytes.len(), |p| body + p + closing.len());
    Some(end)
}

/// `'x'`, `'\n'`, `'\''`, `'\u{1F600}'`, `'é'`: `None` for a lifetime such as `'a`.
fn char_literal_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.get(from + 1) == Some(&b'\\') {
        // Skip the escaped character itself (it may be a quote), then find the closing one.
        let start = from + 3;
        let close = bytes.get(start..)?.iter().position(|&b| b == b'\'')?;
        return Some(start + close + 1);
    }
    let c = text.get(from + 1..)?.chars().next()?;
    let after = from + 1 + c.len_utf8();
    (bytes.get(after) == Some(&b'\'')).then_some(after + 1)
}

/// One token of blanked text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An identifier, keyword or number.
    Ident(String),
    /// `::`.
    PathSep,
    /// Any other single punctuation character.
    Punct(char),
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) offset: usize,
}

impl Token {
    pub(crate) fn is_ident(&self, word: &str) -> bool {
        matches!(&self.tok, Tok::Ident(w) if w == word)
    }

    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }
}

/// Tokens of a blanked text (see [`blank`]).
pub(crate) fn tokens(blanked: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = blanked.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let tok = if c.is_alphanumeric() || c == '_' {
            let mut word = String::from(c);
            while let Some(&(_, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                word.push(d);
                chars.next();
            }
            Tok::Ident(word)
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            Tok::PathSep
        } else {
            Tok::Punct(c)
        };
        out.push(Token { tok, offset });
    }
    out
}

/// Line starts of a text, for 1-based line numbers of byte offsets.
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines(starts)
    }

    /// 1-based line of a byte offset.
    pub(crate) fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Visibility of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visibility {
    /// No `pub`.
    Private,
    /// Plain `pub`.
    Public,
    /// `pub(crate)`, `pub(super)`, `pub(in …)`.
    Restricted,
}

/// One path of an expanded `use` tree: `use a::{b, c::*}` gives `a::b` and `a::c::*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsePath {
    /// The segments as written (`crate`, `self` and `super` included); a glob ends in `*`.
    pub(crate) segments: Vec<String>,
    /// The name it is imported as: the alias, else the last segment (none for a glob).
    pub(crate) name: Option<String>,
}

/// A `use` item.
#[derive(Debug, Clone)]
pub(crate) struct UseDecl {
    pub(crate) visibility: Visibility,
    pub(crate) paths: Vec<UsePath>,
    pub(crate) line: usize,
    /// Inline modules (`mod tests { … }`) around it, outermost first.
    pub(crate) inline: Vec<String>,
    /// Inside a `#[cfg(test)]` module.
    pub(crate) test_only: bool,
}

/// A `mod name;` or `mod name { … }` item.
#[derive(Debug, Clone)]
pub(crate) struct ModDecl {
    pub(crate) name: String,
    pub(crate) visibility: Visibility,
    pub(crate) line: usize,
    /// Inline modules around it, outermost first.
    pub(crate) inline: Vec<String>,
    /// Marked `#[cfg(test)]` itself or inside such a module.
    pub(crate) test_only: bool,
}

/// A path in code (not in a `use`) that starts with `crate::`, `self::` or `super::`,
/// such as `crate::admin::NewQueue` in a signature.
#[derive(Debug, Clone)]
pub(crate) struct CodePath {
    pub(crate) segments: Vec<String>,
    pub(crate) line: usize,
    /// Inline modules around it, outermost first.
    pub(crate) inline: Vec<String>,
    /// Inside a `#[cfg(test)]` module.
    pub(crate) test_only: bool,
}

/// The items of one file the rules look at.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileItems {
    pub(crate) uses: Vec<UseDecl>,
    pub(crate) mods: Vec<ModDecl>,
    pub(crate) paths: Vec<CodePath>,
}

/// An inline module being read: its name, the brace depth of its body, `#[cfg(test)]`.
struct Open {
    name: String,
    depth: usize,
    test_only: bool,
}

/// The `use` and `mod` items of a source text, and the anchored paths in its code.
pub(crate) fn items(text: &str) -> FileItems {
    let blanked = blank(text);
    let mut reader = Reader {
        toks: tokens(&blanked),
        lines: Lines::new(text),
        depth: 0,
        open: Vec::new(),
        items: FileItems::default(),
    };
    let mut i = 0;
    while i < reader.toks.len() {
        i = reader.step(i);
    }
    reader.items
}

/// One pass over the tokens of a file, tracking braces and inline modules.
struct Reader {
    toks: Vec<Token>,
    lines: Lines,
    depth: usize,
    open: Vec<Open>,
    items: FileItems,
}

impl Reader {
    /// Reads what starts at token `i`; returns the index of the next token to read.
    fn step(&mut self, i: usize) -> usize {
        let toks = &self.toks;
        let t = &toks[i];
        let inline: Vec<String> = self.open.iter().map(|o| o.name.clone()).collect();
        let test_only = self.open.iter().any(|o| o.test_only);
        let line = self.lines.of(t.offset);
        if t.is_punct('{') {
            self.depth += 1;
        } else if t.is_punct('}') {
            if self.open.last().is_some_and(|o| o.depth == self.depth) {
                self.open.pop();
            }
            self.depth = self.depth.saturating_sub(1);
        } else if at_item_start(toks, i) && t.is_ident("use") {
            let (paths, end) = parse_use(toks, i + 1);
            let visibility = visibility_before(toks, i);
            let decl = UseDecl {
                visibility,
                paths,
                line,
                inline,
                test_only,
            };
            self.items.uses.push(decl);
            return end;
        } else if let Some((segments, end)) = code_path(toks, i) {
            let path = CodePath {
                segments,
                line,
                inline,
                test_only,
            };
            self.items.paths.push(path);
            return end;
        } else if at_item_start(toks, i)
            && t.is_ident("mod")
            && let Some(Tok::Ident(name)) = toks.get(i + 1).map(|t| t.tok.clone())
        {
            return self.module(i, name, line, inline, test_only);
        }
        i + 1
    }

    /// `mod name;` or `mod name {` at token `i`: records it and enters an inline body.
    fn module(
        &mut self,
        i: usize,
        name: String,
        line: usize,
        inline: Vec<String>,
        in_test: bool,
    ) -> usize {
        let toks = &self.toks;
        let test_only = in_test || cfg_test_before(toks, visibility_start(toks, i));
        let visibility = visibility_before(toks, i);
        let has_body = toks.get(i + 2).is_some_and(|t| t.is_punct('{'));
        self.items.mods.push(ModDecl {
            name: name.clone(),
            visibility,
            line,
            inline,
            test_only,
        });
        if !has_body {
            return i + 2;
        }
        self.depth += 1;
        self.open.push(Open {
            name,
            depth: self.depth,
            test_only,
        });
        i + 3
    }
}

/// Whether the attributes right before token `start` include `#[cfg(test)]`.
fn cfg_test_before(toks: &[Token], start: usize) -> bool {
    let mut end = start;
    // Walk back over `#[…]` attributes.
    while end >= 1 && toks[end - 1].is_punct(']') {
        let Some(open) = (0..end - 1).rev().find(|&j| toks[j].is_punct('[')) else {
            return false;
        };
        let Some(hash) = open.checked_sub(1).filter(|&h| toks[h].is_punct('#')) else {
            return false;
        };
        let attr = &toks[open + 1..end - 1];
        let is_cfg_test = attr.len() == 4
            && attr[0].is_ident("cfg")
            && attr[1].is_punct('(')
            && attr[2].is_ident("test")
            && attr[3].is_punct(')');
        if is_cfg_test {
            return true;
        }
        end = hash;
    }
    false
}

/// `crate::a::b`, `super::x`, `self::y::z` starting at token `i` (not preceded by `::`):
/// the identifier segments and the index after them.
fn code_path(toks: &[Token], i: usize) -> Option<(Vec<String>, usize)> {
    let anchored = ["crate", "self", "super"]
        .iter()
        .any(|w| toks[i].is_ident(w));
    let after_sep = i > 0 && toks[i - 1].tok == Tok::PathSep;
    if !anchored || after_sep || toks.get(i + 1).is_none_or(|t| t.tok != Tok::PathSep) {
        return None;
    }
    let mut segments = Vec::new();
    let mut j = i;
    while let Some(Tok::Ident(word)) = toks.get(j).map(|t| &t.tok) {
        segments.push(word.clone());
        j += 1;
        if toks.get(j).is_some_and(|t| t.tok == Tok::PathSep) {
            j += 1;
        } else {
            break;
        }
    }
    Some((segments, j))
}

/// Whether token `i` can start an item: after `;`, a brace, an attribute or a visibility.
fn at_item_start(toks: &[Token], i: usize) -> bool {
    let before = visibility_start(toks, i);
    match before.checked_sub(1).map(|p| &toks[p]) {
        None => true,
        Some(t) => t.is_punct(';') || t.is_punct('{') || t.is_punct('}') || t.is_punct(']'),
    }
}

/// Index of the first token of the visibility in front of token `i` (or `i`).
fn visibility_start(toks: &[Token], i: usize) -> usize {
    if i >= 1 && toks[i - 1].is_ident("pub") {
        return i - 1;
    }
    if i >= 1
        && toks[i - 1].is_punct(')')
        && let Some(open) = (0..i - 1).rev().find(|&j| toks[j].is_punct('('))
        && open >= 1
        && toks[open - 1].is_ident("pub")
    {
        return open - 1;
    }
    i
}

fn visibility_before(toks: &[Token], i: usize) -> Visibility {
    match visibility_start(toks, i) {
        start if start == i => Visibility::Private,
        start if start + 1 == i => Visibility::Public,
        _ => Visibility::Restricted,
    }
}

/// Parses a use tree starting at `from`; returns its paths and the index after the `;`.
fn parse_use(toks: &[Token], from: usize) -> (Vec<UsePath>, usize) {
    let end = toks[from..]
        .iter()
        .position(|t| t.is_punct(';'))
        .map_or(toks.len(), |p| from + p);
    let mut paths = Vec::new();
    let mut cursor = from;
    if toks.get(cursor).is_some_and(|t| t.tok == Tok::PathSep) {
        cursor += 1;
    }
    tree(&toks[..end], &mut cursor, &[], &mut paths);
    (paths, (end + 1).min(toks.len()))
}

fn tree(toks: &[Token], cursor: &mut usize, prefix: &[String], out: &mut Vec<UsePath>) {
    let mut path = prefix.to_vec();
    while let Some(t) = toks.get(*cursor) {
        match &t.tok {
            Tok::Punct('{') => {
                *cursor += 1;
                while toks.get(*cursor).is_some_and(|t| !t.is_punct('}')) {
                    let before = *cursor;
                    tree(toks, cursor, &path, out);
                    if toks.get(*cursor).is_some_and(|t| t.is_punct(',')) || *cursor == before {
                        // Past the separator, or past a token no tree starts with.
                        *cursor += 1;
                    }
                }
                *cursor += 1;
                return;
            }
            Tok::Punct('*') => {
                *cursor += 1;
                path.push("*".to_owned());
                out.push(UsePath {
                    segments: path,
                    name: None,
                });
                return;
            }
            Tok::Ident(word) => {
                path.push(word.clone());
                *cursor += 1;
                if toks.get(*cursor).is_some_and(|t| t.tok == Tok::PathSep) {
                    *cursor += 1;
                    continue;
                }
                break;
            }
            _ => return,
        }
    }
    let mut name = path.last().cloned();
    if toks.get(*cursor).is_some_and(|t| t.is_ident("as")) {
        name = match toks.get(*cursor + 1).map(|t| &t.tok) {
            Some(Tok::Ident(alias)) => Some(alias.clone()),
            _ => None,
        };
        *cursor += 2;
    }
    if path.last().is_some_and(|s| s == "self") {
        path.pop();
        if name.as_deref() == Some("self") {
            name = path.last().cloned();
        }
    }
    if !path.is_empty() {
        out.push(UsePath {
            segments: path,
            name,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        items(text)
            .uses
            .iter()
            .flat_map(|u| u.paths.iter().map(|p| p.segments.join("::")))
            .collect()
    }

    #[test]
    fn blanking_keeps_offsets_and_hides_comments_and_strings() {
        let text = "let a = \"std::fs\"; // std::env\n/* Instant::now() */ let b = r#\"x\"#; 'c'; '\\''; 'a";
        let blanked = blank(text);
        assert_eq!(blanked.len(), text.len());
        assert!(!blanked.contains("std"), "{blanked}");
        assert!(!blanked.contains("Instant"), "{blanked}");
        assert!(blanked.contains("let b"));
        assert!(blanked.ends_with("'a"), "a lifetime stays code: {blanked}");
        let lines = Lines::new(text);
        assert_eq!(lines.of(text.find("let b").unwrap_or(0)), 2);
        assert_eq!(lines.of(0), 1);
        assert_eq!(
            lines.of(text.find('\n').unwrap_or(0)),
            1,
            "a newline ends its line"
        );
    }

    #[test]
    fn use_trees_expand() {
        let text =
            "use crate::{a::{B, c::*}, d as e, self};\npub use ::std::fs;\nuse x::y::{self as z};";
        assert_eq!(
            paths(text),
            [
                "crate::a::B",
                "crate::a::c::*",
                "crate::d",
                "crate",
                "std::fs",
                "x::y"
            ]
        );
        let decls = items(text).uses;
        assert_eq!(decls[0].paths[2].name.as_deref(), Some("e"));
        assert_eq!(decls[1].visibility, Visibility::Public);
        assert_eq!(decls[1].line, 2);
        assert_eq!(decls[2].paths[0].name.as_deref(), Some("z"));
    }

    #[test]
    fn mods_and_visibility_and_inline_nesting() {
        let text = "pub mod a;\npub(crate) mod b;\n#[cfg(test)]\nmod tests {\n    use super::a::X;\n    fn f() {}\n}\n#[cfg(test)]\n#[path = \"x.rs\"]\nmod c;\nfn g() -> impl Sized + use<> {}";
        let items = items(text);
        let mods: Vec<(&str, Visibility)> = items
            .mods
            .iter()
            .map(|m| (m.name.as_str(), m.visibility))
            .collect();
        assert_eq!(
            mods,
            [
                ("a", Visibility::Public),
                ("b", Visibility::Restricted),
                ("tests", Visibility::Private),
                ("c", Visibility::Private)
            ]
        );
        assert_eq!(items.uses.len(), 1, "`use<>` in a bound is not an import");
        assert_eq!(items.uses[0].inline, ["tests"]);
        assert!(items.uses[0].test_only);
        assert!(items.mods[3].inline.is_empty(), "the inline module closed");
        let test_only: Vec<bool> = items.mods.iter().map(|m| m.test_only).collect();
        assert_eq!(test_only, [false, false, true, true]);
    }

    #[test]
    fn anchored_paths_in_code() {
        let text = "fn f(q: crate::admin::NewQueue) -> super::super::x::Y { self.a; Self::b(); self::c::d() }";
        let paths: Vec<String> = items(text)
            .paths
            .iter()
            .map(|p| p.segments.join("::"))
            .collect();
        assert_eq!(
            paths,
            ["crate::admin::NewQueue", "super::super::x::Y", "self::c::d"]
        );
    }
}
