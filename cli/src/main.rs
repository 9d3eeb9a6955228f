//! `gka`: the command-line entry point. Parses the arguments and hands each subcommand to
//! its module in `cmd/`.

use std::io;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc: see [`alloc`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Before anything is allocated, `gka daemon` sets the allocator to return freed memory at
/// once (see [`alloc`]): a daemon holds clients' frames briefly and must not keep their
/// memory. A function in `.init_array` runs before `main` and gets the arguments.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static DAEMON_ALLOCATOR: extern "C" fn(i32, *const *const std::ffi::c_char) = daemon_allocator;

#[cfg(target_os = "linux")]
extern "C" fn daemon_allocator(argc: i32, argv: *const *const std::ffi::c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: the loader passes argc valid C strings in argv.
    let first = unsafe { std::ffi::CStr::from_ptr(*argv.add(1)) };
    if first.to_bytes() == b"daemon" {
        alloc::return_freed_memory_at_once();
    }
}

mod alloc;
mod cmd;
mod common;
mod credentials;
mod etcd_args;
mod ratelimit;

/// Secure group communication with pluggable, switchable group key agreement.
#[derive(Debug, Parser)]
#[command(name = "gka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check or explain a policy file.
    Policy(cmd::policy::PolicyArgs),
    /// Run the group communication daemon.
    Daemon(cmd::daemon::DaemonArgs),
    /// An operator's commands to a running daemon: status, partition, heal, delay.
    Ctl(cmd::ctl::CtlArgs),
    /// Join a group: lines read from stdin are sent encrypted; views, key changes
    /// (fingerprints only) and received lines are printed.
    Member(cmd::member::MemberArgs),
    /// The main job: an embedded daemon, members over real TCP, and a scenario of joins, a
    /// leave, a merge, a partition and its heal and a cascade, with encrypted traffic; then the
    /// adaptive demo: a group under a rules policy moved through a small LAN group, a large
    /// group, a WAN and loaded CPUs, switching protocols as the policy says.
    Demo(cmd::demo::DemoArgs),
    /// Make a member's identity key pair: DIR/ID.key (PKCS#8 PEM, mode 0600) and DIR/ID.pub
    /// (SPKI PEM, for the other members' trust stores).
    Keygen(cmd::keygen::KeygenArgs),
    /// Check an access rules file (trusted domains, who may join which group).
    Access(cmd::access::AccessArgs),
    /// A domain's certificate authority: make it, issue and revoke member certificates, and
    /// show what a certificate or revocation list says.
    Ca(cmd::ca::CaArgs),
    /// Simulate the protocols: a sweep of protocols × events × group sizes × networks in the
    /// discrete-event simulator (real plugins, virtual time), written as CSV, a Markdown
    /// table and SVG plots, each latency beside the cost model's prediction.
    Bench(cmd::bench::BenchArgs),
    /// Inspect the key-agreement plugins.
    Plugins(cmd::plugins::PluginsArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gka: error: {e:#}");
            match e.downcast_ref::<common::ExitStatus>() {
                Some(status) => ExitCode::from(status.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Policy(args) => cmd::policy::run(args),
        Command::Daemon(args) => cmd::daemon::run(args),
        Command::Ctl(args) => cmd::ctl::run(args),
        Command::Member(args) => cmd::member::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Ca(args) => cmd::ca::run(args),
        Command::Access(args) => cmd::access::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Plugins(args) => cmd::plugins::run(args),
    }
}

/// Output cut short by the reader (`gka ... | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
