//! The policy file a member watches: re-read every sample, handed on when it changes.

use std::path::PathBuf;

use crate::policy::Policy;

/// The policy file, and what it held when last read.
pub(super) struct PolicyWatch {
    path: PathBuf,
    /// The protocol names the policy may mention.
    known: Vec<String>,
    last: Option<String>,
}

impl PolicyWatch {
    pub(super) fn new(path: PathBuf, known: Vec<String>) -> Self {
        let last = std::fs::read_to_string(&path).ok();
        Self { path, known, last }
    }

    /// The new policy if the file changed: `Err` with every error if it does not parse.
    pub(super) fn poll(&mut self) -> Option<Result<Policy, String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                let changed = self.last.take().is_some();
                return changed.then(|| Err(format!("cannot read {}: {e}", self.path.display())));
            }
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last = Some(text.clone());
        let known: Vec<&str> = self.known.iter().map(String::as_str).collect();
        Some(Policy::parse(&text, &known).map_err(|errors| {
            let list: Vec<String> =
                errors.iter().map(|e| format!("{}:{e}", self.path.display())).collect();
            list.join("; ")
        }))
    }
}
