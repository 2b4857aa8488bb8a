//! ringmq-loadgen: arguments -> run -> report.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ringmq_loadgen::cli::Args;
use ringmq_loadgen::{run, stats};

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match run::run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringmq-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let json_to_stdout = args.json.as_deref() == Some("-");
    if !args.quiet {
        let table = stats::render_table(&report, args.table_publishers);
        if json_to_stdout {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
    }
    if let Some(dest) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        let written = if dest == "-" {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{json}")
        } else {
            std::fs::write(dest, json + "\n")
        };
        if let Err(e) = written {
            eprintln!("ringmq-loadgen: writing {dest}: {e}");
            return ExitCode::from(2);
        }
    }
    if report.clients.ready == 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
