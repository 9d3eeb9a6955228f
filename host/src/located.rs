//! Problems in a configuration file, with the line and column they are at: what the policy and
//! the access rules report, and what `gka policy check` and `gka access check` print.

use std::ops::Range;

/// One problem in a file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    // Spans from the TOML parser fall on character boundaries; stay safe if one does not.
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A problem at byte span `span` of `text`.
pub fn at(text: &str, span: Range<usize>, message: String) -> Located {
    let (line, column) = position(text, span.start);
    Located { line, column, message }
}

/// A TOML parse error of `text`, at its position.
pub fn toml_error(text: &str, e: &toml::de::Error) -> Located {
    // One line per problem: the parser's message may span several.
    let message = e.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
    at(text, e.span().unwrap_or(0..0), message)
}
