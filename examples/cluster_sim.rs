//! Runs the seeded cluster simulation (src/cluster/logic/sim) once:
//!
//! ```text
//! cargo run --release --example cluster_sim -- --nodes 50 --seed 7 --steps 20000
//! cargo run --release --example cluster_sim -- --seed 7 --trace   # every event
//! ```
//!
//! A failure prints the seed and step and exits with status 1; the same
//! arguments replay it exactly.

use clap::Parser;
use ringmq::cluster::logic::sim::{run, Sabotage, SimConfig};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes (default: 3 to 5 by seed, as in `cargo test`).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long, default_value_t = 3_000)]
    steps: u64,
    #[arg(long)]
    clients: Option<usize>,
    #[arg(long, default_value_t = 2)]
    shards: u16,
    /// No crashes, partitions or link breaks.
    #[arg(long)]
    no_faults: bool,
    /// Print every trace line.
    #[arg(long)]
    trace: bool,
    /// Break the glue on purpose (suback-without-acks | no-holding) to
    /// see the checks fail.
    #[arg(long)]
    sabotage: Option<String>,
}

fn main() {
    let args = Args::parse();
    let small = SimConfig::small(args.seed);
    let nodes = args.nodes.unwrap_or(small.nodes);
    let config = SimConfig {
        nodes,
        shards: args.shards,
        clients: args.clients.unwrap_or(if args.nodes.is_some() {
            nodes * 4
        } else {
            small.clients
        }),
        steps: args.steps,
        faults: !args.no_faults,
        keep_trace: args.trace,
        sabotage: args.sabotage.as_deref().map(|s| match s {
            "suback-without-acks" => Sabotage::SubackWithoutAcks,
            "no-holding" => Sabotage::NoHolding,
            other => {
                eprintln!("--sabotage {other}: expected suback-without-acks or no-holding");
                std::process::exit(2)
            }
        }),
        ..small
    };
    let started = std::time::Instant::now();
    match run(config) {
        Ok(report) => {
            for line in &report.trace {
                println!("{line}");
            }
            println!(
                "ok: seed {} nodes {} steps {} ({} ms simulated, {:.1} s): {} publishes, {} \
                 deliveries, {} owed deliveries checked, {} faults, {} frames ({} lost), trace {:016x}",
                args.seed,
                nodes,
                report.steps,
                report.sim_time_ms,
                started.elapsed().as_secs_f64(),
                report.publishes,
                report.deliveries,
                report.expectations_met,
                report.faults,
                report.frames_sent,
                report.frames_lost,
                report.trace_hash
            );
        }
        Err(failure) => {
            for line in &failure.trace {
                println!("{line}");
            }
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
