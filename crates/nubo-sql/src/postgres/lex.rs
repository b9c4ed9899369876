//! Just enough of PostgreSQL's lexical rules to find where SQL text is
//! code and where it is a literal, an identifier or a comment: for
//! rewriting `?` parameters as `$n`, splitting a migration into its
//! statements, and reading a statement's first words.

/// What a byte of SQL text belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    Code,
    /// `'…'`; escapes with a backslash when written `E'…'`.
    Quote {
        backslash: bool,
    },
    /// `"…"`.
    Ident,
    /// `-- …` up to the end of the line.
    Line,
    /// `/* … */`, nested to this depth.
    Block(u32),
    /// `$tag$ … $tag$`: the tag starts at this byte and has this length.
    Dollar(usize, usize),
}

/// Calls `code(i, byte)` for each byte of `sql` that is code (outside
/// literals, quoted identifiers and comments).
fn scan(sql: &str, mut code: impl FnMut(usize, u8)) {
    let b = sql.as_bytes();
    let mut state = In::Code;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match state {
            In::Code => match c {
                b'\'' => {
                    let e = i > 0 && matches!(b[i - 1], b'E' | b'e') && !is_word(b, i - 1);
                    state = In::Quote { backslash: e };
                }
                b'"' => state = In::Ident,
                b'-' if next == Some(b'-') => {
                    state = In::Line;
                    i += 1;
                }
                b'/' if next == Some(b'*') => {
                    state = In::Block(1);
                    i += 1;
                }
                b'$' if !(i > 0 && is_ident_byte(b[i - 1])) => match dollar_tag(b, i) {
                    Some(len) => {
                        state = In::Dollar(i, len);
                        i += len - 1;
                    }
                    None => code(i, c),
                },
                _ => code(i, c),
            },
            In::Quote { backslash } => match c {
                b'\\' if backslash => i += 1,
                b'\'' if next == Some(b'\'') => i += 1,
                b'\'' => state = In::Code,
                _ => {}
            },
            In::Ident => match c {
                b'"' if next == Some(b'"') => i += 1,
                b'"' => state = In::Code,
                _ => {}
            },
            In::Line => {
                if c == b'\n' {
                    state = In::Code;
                    code(i, c);
                }
            }
            In::Block(depth) => match (c, next) {
                (b'*', Some(b'/')) => {
                    state = if depth == 1 {
                        In::Code
                    } else {
                        In::Block(depth - 1)
                    };
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = In::Block(depth + 1);
                    i += 1;
                }
                _ => {}
            },
            In::Dollar(start, len) => {
                if b[i..].starts_with(&b[start..start + len]) {
                    state = In::Code;
                    i += len - 1;
                }
            }
        }
        i += 1;
    }
}

/// Whether the byte before `at` continues a word (so `at` is not where
/// an `E` prefix of a string starts).
fn is_word(b: &[u8], at: usize) -> bool {
    at > 0 && is_ident_byte(b[at - 1])
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The length of the `$tag$` that starts at `at`, if one does (a
/// parameter such as `$1` is not one: a tag does not start with a digit).
fn dollar_tag(b: &[u8], at: usize) -> Option<usize> {
    let rest = &b[at + 1..];
    if rest.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let end = rest.iter().position(|&c| !is_ident_byte(c))?;
    (rest[end] == b'$').then_some(end + 2)
}

/// A statement with `?` parameters written as PostgreSQL's `$n`.
#[derive(Debug, PartialEq)]
pub(crate) struct Rewritten {
    pub text: String,
    /// Where the rewritten text grew: (byte in the rewritten text after
    /// which it did, by how many bytes).
    grew: Vec<(usize, usize)>,
}

impl Rewritten {
    /// The byte of the original statement at byte `at` of the rewritten.
    pub fn original(&self, at: usize) -> usize {
        let grown: usize = self
            .grew
            .iter()
            .filter(|(after, _)| *after < at)
            .map(|(_, by)| by)
            .sum();
        at.saturating_sub(grown)
    }
}

/// `sql` with SQLite's `?` and `?NNN` parameters as `$n`, numbered as
/// SQLite numbers them (a bare `?` is one more than the highest so far).
/// A statement that already uses `$n` is left as it is, so PostgreSQL's
/// own form works, and so does its `?` operator on `jsonb` beside it.
pub(crate) fn placeholders(sql: &str) -> Rewritten {
    let b = sql.as_bytes();
    let mut marks = Vec::new();
    let mut dollar = false;
    scan(sql, |i, c| match c {
        b'?' => marks.push(i),
        b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => dollar = true,
        _ => {}
    });
    if dollar || marks.is_empty() {
        return Rewritten {
            text: sql.to_string(),
            grew: Vec::new(),
        };
    }
    let mut text = String::with_capacity(sql.len() + marks.len() * 2);
    let mut grew = Vec::new();
    let mut from = 0;
    let mut highest = 0u32;
    for at in marks {
        text.push_str(&sql[from..at]);
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let n = match sql[at + 1..at + 1 + digits].parse::<u32>() {
            Ok(n) => n,
            Err(_) => highest + 1,
        };
        highest = highest.max(n);
        let written = format!("${n}");
        let was = 1 + digits;
        if written.len() > was {
            grew.push((text.len(), written.len() - was));
        }
        text.push_str(&written);
        from = at + was;
    }
    text.push_str(&sql[from..]);
    Rewritten { text, grew }
}

/// The statements of a script, each with the byte it starts at; empty
/// ones (only blanks, `;` and comments) are left out.
pub(crate) fn statements(sql: &str) -> Vec<(usize, &str)> {
    let mut ends = Vec::new();
    scan(sql, |i, c| {
        if c == b';' {
            ends.push(i);
        }
    });
    ends.push(sql.len());
    let mut out = Vec::new();
    let mut start = 0;
    for end in ends {
        let text = &sql[start..end];
        if let Some(at) = first_code(text) {
            out.push((start + at, &text[at..]));
        }
        start = (end + 1).min(sql.len());
    }
    out
}

/// The first byte of `sql` that is code and not blank.
fn first_code(sql: &str) -> Option<usize> {
    let mut first = None;
    scan(sql, |i, c| {
        if first.is_none() && !c.is_ascii_whitespace() {
            first = Some(i);
        }
    });
    first
}

/// The first `n` words of code in `sql`, upper-cased.
pub(crate) fn first_words(sql: &str, n: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut last = None;
    let mut done = false;
    scan(sql, |i, c| {
        if done {
            return;
        }
        let joined = last.is_some_and(|l| l + 1 == i);
        if c.is_ascii_alphabetic() || (c == b'_' && !current.is_empty()) {
            if !joined && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            current.push(c.to_ascii_uppercase() as char);
            last = Some(i);
        } else if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        done = words.len() >= n;
    });
    if !current.is_empty() && words.len() < n {
        words.push(current);
    }
    words.truncate(n);
    words
}

/// The line (from 1) of byte `at` of `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_in_code_become_numbered_parameters() {
        let r = placeholders("SELECT ?, '?', \"a?\", ? -- ?\n, $$?$$, ?3, ?");
        assert_eq!(r.text, "SELECT $1, '?', \"a?\", $2 -- ?\n, $$?$$, $3, $4");
        let r = placeholders("SELECT e'it\\'s ?', ? /* ? /* ? */ ? */");
        assert_eq!(r.text, "SELECT e'it\\'s ?', $1 /* ? /* ? */ ? */");
    }

    #[test]
    fn a_statement_with_dollar_parameters_is_left_alone() {
        let sql = "SELECT data ? 'k' FROM t WHERE id = $1";
        assert_eq!(placeholders(sql).text, sql);
    }

    #[test]
    fn offsets_in_the_rewritten_text_map_back() {
        let r = placeholders("SELECT ?, ?, ? FRM");
        let at = r.text.find("FRM").unwrap();
        assert_eq!(r.original(at), "SELECT ?, ?, ? ".len());
        let r = placeholders("SELECT ?12, x");
        assert_eq!(r.original(r.text.find('x').unwrap()), "SELECT ?12, ".len());
    }

    #[test]
    fn a_script_splits_at_semicolons_in_code_only() {
        let sql = "CREATE TABLE a (x text default ';');\n-- c;\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n;\n";
        let parts: Vec<usize> = statements(sql)
            .iter()
            .map(|(at, _)| line_of(sql, *at))
            .collect();
        assert_eq!(statements(sql).len(), 2);
        assert_eq!(parts, vec![1, 3]);
        assert_eq!(
            first_words(statements(sql)[1].1, 2),
            vec!["CREATE", "FUNCTION"]
        );
    }

    #[test]
    fn first_words_skip_comments() {
        assert_eq!(
            first_words("/* x */ -- y\n  set local x", 2),
            vec!["SET", "LOCAL"]
        );
        assert_eq!(first_words("begin;", 3), vec!["BEGIN"]);
        assert!(first_words(" -- only\n", 1).is_empty());
    }
}
