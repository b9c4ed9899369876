//! `{{ variable }}` templates in component config values.

/// A parsed config value: literal text and variable references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Var(String),
}

/// Why a config value is not a template, or cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` is not closed by `}}}}`")]
    Unclosed,
    #[error(
        "`{{{{ {0} }}}}` is not a variable reference: names are lower-case letters, digits and `_`"
    )]
    NotAName(String),
    #[error("uses undefined variable `{0}`")]
    Undefined(String),
}

pub(crate) fn parse(s: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..end].trim();
        if !crate::is_variable_name(name) {
            return Err(TemplateError::NotAName(name.to_string()));
        }
        parts.push(Part::Var(name.to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The text with every variable replaced by its value; the first
/// variable `lookup` does not know is an error.
pub(crate) fn render(
    parts: &[Part],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(v) => {
                out.push_str(&lookup(v).ok_or_else(|| TemplateError::Undefined(v.clone()))?)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Part, parse, render};

    #[test]
    fn parses_and_renders() {
        let parts = parse("{{ greeting }}, {{name}}!").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Var("greeting".into()),
                Part::Text(", ".into()),
                Part::Var("name".into()),
                Part::Text("!".into())
            ]
        );
        let out = render(&parts, |v| Some(v.to_uppercase())).unwrap();
        assert_eq!(out, "GREETING, NAME!");
    }

    #[test]
    fn rejects_unclosed_and_bad_names() {
        assert!(parse("{{ x").is_err());
        assert!(parse("{{ Bad-Name }}").is_err());
    }
}
