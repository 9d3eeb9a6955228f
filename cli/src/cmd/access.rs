//! `gka access check`: every problem in an access rules file, with its line and column.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;
use gka_host::identity::access::AccessRules;

/// `gka access` and its flags.
#[derive(Debug, clap::Args)]
pub(crate) struct AccessArgs {
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Check an access rules file: TOML, domains and their CA certificates and revocation lists
    /// (read relative to the file), group rules and roles. Prints every problem with its line
    /// and column and exits non-zero on any.
    Check {
        /// The rules file (access.toml).
        file: PathBuf,
    },
}

/// Runs `gka access`.
pub(crate) fn run(args: AccessArgs) -> Result<()> {
    match args.command {
        AccessCommand::Check { file } => match AccessRules::load(&file) {
            Ok(rules) => {
                let domains: Vec<&str> = rules.domains().collect();
                writeln!(
                    std::io::stdout(),
                    "{}: ok ({} domain(s): {}; {} group rule(s))",
                    file.display(),
                    domains.len(),
                    domains.join(", "),
                    rules.groups().len()
                )?;
                Ok(())
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                bail!("{} problem(s) in {}", errors.len(), file.display())
            }
        },
    }
}
