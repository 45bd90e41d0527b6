//! `outpost conv`: conversation memory.

use anyhow::Result;
use serde_json::json;

use super::open::{engine, open_store};
use crate::cli::{Cli, ConvCommand};
use crate::output::{outln, print_json};

/// `outpost conv`.
pub fn conv(cli: &Cli, cmd: &ConvCommand) -> Result<i32> {
    match cmd {
        ConvCommand::New { title, json } => {
            let store = open_store(cli)?;
            let c = store.create_conversation(title)?;
            if *json {
                print_json(&serde_json::to_value(&c)?)?;
            } else {
                outln!("{}", c.id)?;
            }
        }
        ConvCommand::List { title, json } => {
            let store = open_store(cli)?;
            let list = store.conversations(title.as_deref(), 1000)?;
            if *json {
                print_json(&json!({ "conversations": list }))?;
            } else {
                for c in &list {
                    outln!("{}  {:>4} messages  {}", c.id, c.messages, c.title)?;
                }
            }
        }
        ConvCommand::Add { id, role, text } => {
            let (engine, _) = engine(cli)?;
            let m = engine.add_message(id, role, &text.join(" "))?;
            outln!("{} #{}", m.id, m.seq)?;
        }
        ConvCommand::Show { id, n, json } => {
            let store = open_store(cli)?;
            let msgs = store.recent_messages(id, *n)?;
            if *json {
                print_json(&json!({ "messages": msgs }))?;
            } else {
                for m in &msgs {
                    outln!("#{} {}: {}", m.seq, m.role, m.content)?;
                }
            }
        }
    }
    Ok(0)
}
