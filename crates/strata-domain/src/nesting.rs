//! Bounds on the shape of a definition, checked before any parser sees it.
//!
//! Parsers of TOML, YAML and JSON build a tree, and some of them spend time that grows with the
//! square of the nesting depth (libyaml re-scans its open flow levels on every token: 100,000
//! levels of `[[[...]]]` in 200 KB took 36 s of CPU). A dataset definition is never more than
//! five levels deep, so these scans refuse anything deeper than [`MAX_DEPTH`] in one linear
//! pass, counting conservatively: brackets and braces outside strings and comments in every
//! format, dotted keys in TOML, and in YAML also indentation levels, compact `- - -`
//! sequences, and aliases (which let a small document expand into a huge one).

use crate::dataset::Format;

/// Deepest nesting accepted in a definition file.
pub const MAX_DEPTH: usize = 32;
/// YAML aliases (`*name`) accepted in a definition; none are needed.
pub const MAX_YAML_ALIASES: usize = 64;

/// `Err` names what is too deep, in a sentence for the user.
pub fn check(text: &str, format: Format) -> Result<(), String> {
    let depth = match format {
        Format::Json => brackets(text, Quotes::Json)?,
        Format::Toml => brackets(text, Quotes::Toml)?.max(toml_dotted_keys(text)),
        Format::Yaml => brackets(text, Quotes::Yaml)?.max(yaml_blocks(text)?),
    };
    if depth > MAX_DEPTH {
        return Err(format!("the definition nests {depth} levels deep; the limit is {MAX_DEPTH}"));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Quotes {
    Json,
    Toml,
    Yaml,
}

/// The deepest bracket nesting outside strings and comments. Stops early past the limit.
fn brackets(text: &str, q: Quotes) -> Result<usize, String> {
    let b = text.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    let mut aliases = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_double_quoted(b, i, q),
            b'\'' if q != Quotes::Json && starts_string(b, i, q) => i = skip_single_quoted(b, i, q),
            b'#' if q != Quotes::Json && (i == 0 || b[i - 1].is_ascii_whitespace()) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                if max > MAX_DEPTH {
                    return Ok(max);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'*' if q == Quotes::Yaml
                && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'[' | b'{' | b','))
                && b.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace() && !b",[]{}".contains(c)) =>
            {
                aliases += 1;
                if aliases > MAX_YAML_ALIASES {
                    return Err(format!(
                        "the definition uses more than {MAX_YAML_ALIASES} YAML aliases; write the values out"
                    ));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(max)
}

/// A `'` opens a string in TOML anywhere, in YAML only where a scalar starts.
fn starts_string(b: &[u8], i: usize, q: Quotes) -> bool {
    q == Quotes::Toml || i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':' | b'-')
}

/// Index of the closing quote of a `"` string (escapes honoured; TOML's `"""` too).
fn skip_double_quoted(b: &[u8], start: usize, q: Quotes) -> usize {
    if q == Quotes::Toml && b[start..].starts_with(b"\"\"\"") {
        return find(b, start + 3, b"\"\"\"", true).map_or(b.len(), |e| e + 2);
    }
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i,
            b'\n' if q == Quotes::Toml => return i,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_single_quoted(b: &[u8], start: usize, q: Quotes) -> usize {
    if q == Quotes::Toml && b[start..].starts_with(b"'''") {
        return find(b, start + 3, b"'''", false).map_or(b.len(), |e| e + 2);
    }
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            // YAML doubles a quote inside single quotes.
            b'\'' if q == Quotes::Yaml && b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i,
            b'\n' if q == Quotes::Toml => return i,
            _ => i += 1,
        }
    }
    b.len()
}

fn find(b: &[u8], from: usize, needle: &[u8], escapes: bool) -> Option<usize> {
    let mut i = from;
    while i + needle.len() <= b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// TOML nests a table per dot of a key (`a.b.c = 1`, `[a.b.c]`): the most dots on a line,
/// counted before the `=` of a key and inside a header, outside quotes.
fn toml_dotted_keys(text: &str) -> usize {
    let mut max = 0;
    for line in text.lines() {
        let t = line.trim_start();
        let key = if t.starts_with('[') { t } else { t.split('=').next().unwrap_or("") };
        let mut dots = 0;
        let mut quote: Option<char> = None;
        for c in key.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '.') => dots += 1,
                (None, ']') => break,
                _ => {}
            }
        }
        max = max.max(dots + 1);
    }
    max
}

/// YAML block nesting: the number of open indentation levels, plus the compact indicators
/// (`- `, `? `) that open a level on the same line.
fn yaml_blocks(text: &str) -> Result<usize, String> {
    let mut indents: Vec<usize> = Vec::new();
    let mut max = 0;
    for line in text.lines() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        while indents.last().is_some_and(|&top| top > indent) {
            indents.pop();
        }
        if indents.last().is_none_or(|&top| top < indent) {
            indents.push(indent);
        }
        let mut rest = content;
        let mut compact = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            compact += 1;
            rest = r.trim_start_matches(' ');
        }
        max = max.max(indents.len() + compact);
        if max > MAX_DEPTH {
            break;
        }
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_definitions_pass_in_every_format() {
        let toml = include_str!("hr.toml");
        check(toml, Format::Toml).unwrap();
        let def = crate::dataset::DatasetDef::parse(toml, Format::Toml).unwrap();
        check(&serde_json::to_string_pretty(&def).unwrap(), Format::Json).unwrap();
        check(&serde_yaml::to_string(&def).unwrap(), Format::Yaml).unwrap();
        check("name: x\ntables:\n  - name: t\n    columns:\n      - {name: id, type: integer}\n", Format::Yaml)
            .unwrap();
        // Brackets inside strings and comments do not count.
        check(&format!("description = \"{}\" # {}\n", "[".repeat(500), "{".repeat(500)), Format::Toml).unwrap();
        check(&format!("description: '{}'\n", "[".repeat(500)), Format::Yaml).unwrap();
        check(&format!("{{\"d\": \"{}\"}}", "[".repeat(500)), Format::Json).unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_in_every_format() {
        for (text, f) in [
            (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), Format::Yaml),
            (format!("a: {}1{}", "{b: ".repeat(50), "}".repeat(50)), Format::Yaml),
            (format!("{}x", "- ".repeat(50_000)), Format::Yaml),
            ((0..40).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>(), Format::Yaml),
            (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), Format::Json),
            (format!("a = {}1{}", "[".repeat(100), "]".repeat(100)), Format::Toml),
            (format!("{} = 1", vec!["a"; 1000].join(".")), Format::Toml),
            (format!("[{}]", vec!["a"; 1000].join(".")), Format::Toml),
        ] {
            let err = check(&text, f).unwrap_err();
            assert!(err.contains("levels deep"), "{err}");
        }
        let aliases = format!("a: &x 1\nb: [{}]\n", vec!["*x"; 100].join(", "));
        assert!(check(&aliases, Format::Yaml).unwrap_err().contains("aliases"));
    }

    #[test]
    fn the_scan_stops_at_the_limit_on_huge_inputs() {
        let text = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
        assert_eq!(brackets(&text, Quotes::Yaml).unwrap(), MAX_DEPTH + 1);
    }
}
