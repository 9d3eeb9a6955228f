//! `gka plugins check LIB`: the conformance suite (`gka-conformance`) through the ABI against a
//! built plugin library, with no Rust workspace: the shared scenarios, the refresh contract,
//! the cost model against measurements and hostile payloads, as a report.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gka_conformance::report::{self, Outcome, SUITE};
use gka_host::loader::{file_sha256, load_plugin};
use gka_plugin_api::Protocol;

/// Lines of a failure's reason shown in the text report (`--json` has them all).
const REASON_LINES: usize = 8;

/// `gka plugins check`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The plugin library (`libgka_NAME_plugin.so`).
    library: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Loads the library, runs the suite and prints the report; fails unless every scenario
/// passed.
pub(crate) fn run(args: CheckArgs) -> Result<()> {
    let CheckArgs { library, json } = args;
    if !library.is_file() {
        bail!(
            "no plugin library at {}: build the plugin (`cargo build` in its crate) and give \
             the path of its `.so`",
            library.display()
        );
    }
    let loaded = load_plugin(&library)
        .with_context(|| format!("cannot load {} as a gka plugin", library.display()))?;
    let descriptor = loaded.descriptor();
    let sha256 =
        file_sha256(&library).with_context(|| format!("cannot read {}", library.display()))?;
    let make = move || Box::new(loaded.clone()) as Box<dyn Protocol>;
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "checking {} ({} {}, sha256 {}): {} scenarios",
            library.display(),
            descriptor.name,
            descriptor.version,
            &sha256[..16],
            SUITE.len()
        )?;
    }
    let outcomes = report::run(&make, |o| {
        if !json {
            let _ = print_outcome(&mut std::io::stdout().lock(), o);
        }
    });
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    if json {
        let scenarios: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "name": o.scenario.name,
                    "part": o.scenario.part,
                    "passed": o.failure.is_none(),
                    "failure": o.failure,
                    "seconds": o.took.as_secs_f64(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "library": library,
            "sha256": sha256,
            "protocol": descriptor.name,
            "version": descriptor.version,
            "passed": outcomes.len() - failed,
            "failed": failed,
            "scenarios": scenarios,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed)?;
    }
    if failed > 0 {
        bail!("{failed} of {} scenarios failed for {}", outcomes.len(), library.display());
    }
    Ok(())
}

fn print_outcome(out: &mut impl Write, o: &Outcome) -> std::io::Result<()> {
    let (status, s) = (if o.failure.is_some() { "FAIL" } else { "PASS" }, o.scenario);
    writeln!(out, "{status} {}: {} ({:.1} s)", s.part, s.name, o.took.as_secs_f64())?;
    if let Some(why) = &o.failure {
        let lines: Vec<&str> = why.lines().collect();
        for line in lines.iter().take(REASON_LINES) {
            writeln!(out, "     {line}")?;
        }
        if lines.len() > REASON_LINES {
            writeln!(
                out,
                "     ... ({} more lines; --json has them all)",
                lines.len() - REASON_LINES
            )?;
        }
    }
    Ok(())
}
