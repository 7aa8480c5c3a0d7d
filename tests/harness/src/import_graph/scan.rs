//! A Rust file read as text: comments and literals blanked out, then tokens, then what the
//! file declares (`mod`) and the paths it writes (`use` trees and paths in the code).

/// Comments, string and character literals blanked out (newlines kept): what is left is code.
pub(super) fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        match non_code_end(&c, i) {
            Some(end) => {
                out.extend(
                    c[i..end]
                        .iter()
                        .map(|&ch| if ch == '\n' { ch } else { ' ' }),
                );
                i = end;
            }
            None => {
                out.push(c[i]);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Where the comment or literal that starts at `i` ends (exclusive), if one starts there.
fn non_code_end(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied();
    match (c[i], at(i + 1)) {
        ('/', Some('/')) => Some((i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len())),
        ('/', Some('*')) => {
            let (mut depth, mut k) = (0, i);
            while k < c.len() {
                match (c[k], at(k + 1)) {
                    ('/', Some('*')) => (depth, k) = (depth + 1, k + 2),
                    ('*', Some('/')) => (depth, k) = (depth - 1, k + 2),
                    _ => k += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            Some(k.min(c.len()))
        }
        ('"', _) => Some(quoted_end(c, i + 1, '"')),
        // A character literal ('\n', '\''; 'x'); a lifetime ('a) has no closing quote.
        ('\'', Some('\\')) => Some(quoted_end(c, i + 1, '\'')),
        ('\'', _) if at(i + 2) == Some('\'') => Some(i + 3),
        _ if i == 0 || !is_ident(c[i - 1]) => {
            // A raw string: r"…", r#"…"#, br"…".
            let hashes = raw_string(c, i)?;
            let mut k = i + usize::from(c[i] == 'b') + hashes + 2;
            while k < c.len() && !(c[k] == '"' && (1..=hashes).all(|h| at(k + h) == Some('#'))) {
                k += 1;
            }
            Some((k + 1 + hashes).min(c.len()))
        }
        _ => None,
    }
}

/// From `k`, just inside an opening quote: the index past the closing `quote` (escapes skipped).
fn quoted_end(c: &[char], mut k: usize, quote: char) -> usize {
    while k < c.len() && c[k] != quote {
        k += if c[k] == '\\' { 2 } else { 1 };
    }
    (k + 1).min(c.len())
}

/// At `i`, the opening of a raw string (`r"`, `r#"`, `br##"`): how many `#` it has.
fn raw_string(c: &[char], i: usize) -> Option<usize> {
    let j = i + usize::from(c[i] == 'b');
    if c.get(j) != Some(&'r') {
        return None;
    }
    let hashes = c[j + 1..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(j + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Identifiers (`$crate` as `crate`, `r#x` as `x`), `::`, and every other mark on its own.
pub(super) fn tokens(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let ident = is_ident;
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
        } else if ident(c[i]) || (c[i] == '$' && c.get(i + 1).is_some_and(|&n| ident(n))) {
            let start = if c[i] == '$' { i + 1 } else { i };
            i = start;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if word == "r" && c.get(i) == Some(&'#') && c.get(i + 1).is_some_and(|&n| ident(n)) {
                i += 1; // r#type: the identifier follows
                continue;
            }
            out.push(word);
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

/// A path a file writes, with the inline modules (`mod tests { … }`) it stands in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PathUse {
    pub(super) scope: Vec<String>,
    pub(super) segments: Vec<String>,
    /// The name a `use` binds (its last segment or its `as`); `None` for a glob or a code path.
    pub(super) binds: Option<String>,
}

/// What one file says: the modules it declares and the paths it uses.
#[derive(Debug, Default)]
pub(super) struct FileScan {
    /// `mod name;` with the inline modules around it (the child lives in another file).
    pub(super) mod_files: Vec<(Vec<String>, String)>,
    /// `mod name { … }`: modules inside this file.
    pub(super) mod_inline: Vec<Vec<String>>,
    pub(super) uses: Vec<PathUse>,
    pub(super) code_paths: Vec<PathUse>,
}

/// Expands one `use` tree (after the `use` keyword) into its paths, advancing `i`.
fn use_tree(
    t: &[String],
    i: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let at = |k: usize| t.get(k).map(String::as_str).unwrap_or(";");
    let mut path = prefix;
    if at(*i) == "::" {
        path.push("::".into()); // `use ::name`: an external crate
        *i += 1;
    }
    loop {
        match at(*i) {
            "{" => {
                *i += 1;
                while !matches!(at(*i), "}" | ";") {
                    use_tree(t, i, path.clone(), out);
                    if at(*i) == "," {
                        *i += 1;
                    }
                }
                if at(*i) == "}" {
                    *i += 1;
                }
                return;
            }
            "*" => {
                *i += 1;
                out.push((path, None));
                return;
            }
            ";" | "}" | "," => return,
            word => {
                *i += 1;
                // `a::{self, b}`: `self` is `a` itself.
                if word != "self" || path.is_empty() {
                    path.push(word.to_string());
                }
                if at(*i) == "::" {
                    *i += 1;
                    continue;
                }
                let mut binds = path.last().cloned();
                if at(*i) == "as" {
                    binds = Some(at(*i + 1).to_string()).filter(|b| b != "_");
                    *i += 2;
                }
                out.push((path, binds));
                return;
            }
        }
    }
}

pub(super) fn scan(src: &str) -> FileScan {
    let t = tokens(&strip(src));
    let at = |k: usize| t.get(k).map(String::as_str).unwrap_or("");
    let starts_ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
    };
    let mut out = FileScan::default();
    // One entry per open brace: the inline module it opens, if it opens one.
    let mut braces: Vec<Option<String>> = Vec::new();
    let scope = |braces: &Vec<Option<String>>| braces.iter().flatten().cloned().collect::<Vec<_>>();
    let mut i = 0;
    while i < t.len() {
        match at(i) {
            "{" => {
                let opens = (i >= 2 && at(i - 2) == "mod").then(|| at(i - 1).to_string());
                if let Some(name) = &opens {
                    let mut m = scope(&braces);
                    m.push(name.clone());
                    out.mod_inline.push(m);
                }
                braces.push(opens);
                i += 1;
            }
            "}" => {
                braces.pop();
                i += 1;
            }
            "mod" if starts_ident(at(i + 1)) && at(i + 2) == ";" => {
                out.mod_files.push((scope(&braces), at(i + 1).to_string()));
                i += 3;
            }
            "use" => {
                i += 1;
                let mut paths = Vec::new();
                use_tree(&t, &mut i, Vec::new(), &mut paths);
                let s = scope(&braces);
                out.uses
                    .extend(paths.into_iter().map(|(segments, binds)| PathUse {
                        scope: s.clone(),
                        segments,
                        binds,
                    }));
            }
            word if starts_ident(word) && at(i + 1) == "::" && (i == 0 || at(i - 1) != "::") => {
                let mut segments = vec![word.to_string()];
                i += 1;
                while at(i) == "::" && starts_ident(at(i + 1)) {
                    segments.push(at(i + 1).to_string());
                    i += 2;
                }
                // `Vec::<u8>` names nothing of a module.
                if segments.len() > 1 {
                    out.code_paths.push(PathUse {
                        scope: scope(&braces),
                        segments,
                        binds: None,
                    });
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_strings_and_characters_are_not_code() {
        let code = strip(
            "a // crate::x\nb /* crate::y /* nested */ still */ c \"crate::z \\\" q\" \
             r#\"crate::w \"# '\"' '\\'' 'x' <'a> d",
        );
        let t = tokens(&code);
        assert_eq!(t, ["a", "b", "c", "<", "'", "a", ">", "d"]);
        assert_eq!(code.lines().count(), 2, "newlines kept: {code:?}");
    }

    fn use_paths(src: &str) -> Vec<(String, Option<String>)> {
        scan(src)
            .uses
            .into_iter()
            .map(|u| (u.segments.join("::"), u.binds))
            .collect()
    }

    #[test]
    fn use_trees_expand_to_their_paths() {
        let got = use_paths(
            "pub use super::x::Y;\npub(crate) use crate::{a, b::c, d::{e as f, self, g::*}};\n\
             use std::io; use ::log::info; use r#loop::X as _;",
        );
        let want: Vec<(String, Option<String>)> = [
            ("super::x::Y", Some("Y")),
            ("crate::a", Some("a")),
            ("crate::b::c", Some("c")),
            ("crate::d::e", Some("f")),
            ("crate::d", Some("d")),
            ("crate::d::g", None),
            ("std::io", Some("io")),
            ("::::log::info", Some("info")),
            ("loop::X", None),
        ]
        .into_iter()
        .map(|(p, b)| (p.to_string(), b.map(str::to_string)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mod_declarations_inline_modules_and_code_paths() {
        let s = scan(
            "mod a;\npub mod b { mod c; fn f() { crate::x::y(); } }\n\
             #[cfg(test)] mod tests { use super::*; }\n\
             fn g() -> Vec::<u8> { a::run(); std::fs::read(\"crate::q\"); Vec::<u8>::new() }",
        );
        assert_eq!(
            s.mod_files,
            [
                (vec![], "a".to_string()),
                (vec!["b".to_string()], "c".to_string())
            ]
        );
        assert_eq!(s.mod_inline, [vec!["b"], vec!["tests"]]);
        let code: Vec<(Vec<String>, String)> = s
            .code_paths
            .iter()
            .map(|p| (p.scope.clone(), p.segments.join("::")))
            .collect();
        assert_eq!(
            code,
            [
                (vec!["b".to_string()], "crate::x::y".to_string()),
                (vec![], "a::run".to_string()),
                (vec![], "std::fs::read".to_string()),
            ]
        );
        assert_eq!(s.uses[0].scope, ["tests"]);
    }
}
