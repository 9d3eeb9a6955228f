//! What a line typed at `gka member` means: a line for the group, or a command.

/// The commands, with what each does (for `/help`).
pub(super) const COMMANDS: [(&str, &str); 5] = [
    ("/who", "the view's members, which of them are in the key, and their domains"),
    ("/key", "the current key: epoch (view.n), protocol and fingerprint"),
    ("/stats", "lines sent and received, rekeys, refusals, envelopes, exponentiations"),
    ("/quit", "leave the group and exit (as Ctrl-D does)"),
    ("/help", "this list; a line that starts with // is sent with one / less"),
];

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Input {
    /// Send this to the group.
    Line(String),
    /// An empty line: nothing to do.
    Nothing,
    /// `/who`.
    Who,
    /// `/key`.
    Key,
    /// `/stats`.
    Stats,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// A `/word` that is no command.
    Unknown(String),
}

impl Input {
    /// Reads one line (without its newline).
    pub(super) fn parse(line: &str) -> Self {
        if let Some(escaped) = line.strip_prefix("//") {
            return Self::Line(format!("/{escaped}"));
        }
        let Some(command) = line.strip_prefix('/') else {
            return if line.trim().is_empty() {
                Self::Nothing
            } else {
                Self::Line(line.to_owned())
            };
        };
        match command.trim() {
            "who" => Self::Who,
            "key" => Self::Key,
            "stats" => Self::Stats,
            "help" | "?" => Self::Help,
            "quit" | "exit" => Self::Quit,
            other => Self::Unknown(format!("/{other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_commands_and_escapes() {
        assert_eq!(Input::parse("hello"), Input::Line("hello".into()));
        assert_eq!(Input::parse("  "), Input::Nothing);
        assert_eq!(Input::parse("/who"), Input::Who);
        assert_eq!(Input::parse("/key "), Input::Key);
        assert_eq!(Input::parse("/stats"), Input::Stats);
        assert_eq!(Input::parse("/help"), Input::Help);
        assert_eq!(Input::parse("/quit"), Input::Quit);
        assert_eq!(Input::parse("//who"), Input::Line("/who".into()));
        assert_eq!(Input::parse("/whom"), Input::Unknown("/whom".into()));
    }
}
