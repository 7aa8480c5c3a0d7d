//! `database copy`: the config's SQLite registry into a new PostgreSQL one (store/copy.rs).

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::{print_json, table};
use crate::config::Config;
use crate::store::copy::copy_registry;
use crate::store::{Location, Store};

#[derive(Debug, Subcommand)]
pub enum DatabaseCmd {
    /// Copy this config's SQLite registry into a new, empty PostgreSQL database (every row,
    /// every id: Pis' boot ids stay valid). Stop the daemon first; then set `database` to
    /// the URL on every controller.
    Copy {
        /// The target, `postgres://user@host:port/database` (made by the operator, empty).
        #[arg(long)]
        to: String,
    },
}

pub fn run(config: &Config, cmd: DatabaseCmd, json: bool) -> Result<()> {
    let DatabaseCmd::Copy { to } = cmd;
    let Location::Sqlite(path) = Location::of(&config.database) else {
        bail!(
            "database is {}: the copy reads an SQLite registry (the config's `database`)",
            Location::of(&config.database)
        );
    };
    let target = Location::of(Path::new(&to));
    if !matches!(target, Location::Postgres(_)) {
        bail!("--to {to}: a postgres:// or postgresql:// URL");
    }
    if !path.exists() {
        bail!("{}: no such registry", path.display());
    }
    let from = Store::open(&path)?;
    let into = Store::open(Path::new(&to)).with_context(|| format!("opening {target}"))?;
    eprintln!("copying {} into {target}", path.display());
    let copied = copy_registry(&from, &into, |table, rows| {
        eprintln!("  {table}: {rows} rows");
    })
    .with_context(|| format!("copying {} into {target}", path.display()))?;
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = copied
            .iter()
            .map(|(t, n)| (t.to_string(), (*n).into()))
            .collect();
        return print_json(&serde_json::json!({ "to": target.to_string(), "rows": tables }));
    }
    let rows: Vec<Vec<String>> = copied
        .iter()
        .map(|(t, n)| vec![t.to_string(), n.to_string()])
        .collect();
    print!("{}", table::render(&["TABLE", "ROWS"], &rows));
    println!("copied into {target}: set `database` to it on every controller, then start them");
    Ok(())
}
