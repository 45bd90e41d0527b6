//! `outpost models`: the embedding and chat model files.

use anyhow::Result;
use serde_json::json;

use crate::cli::ModelsCommand;
use crate::output::{outln, print_json};

/// `outpost models`.
pub fn models(cmd: &ModelsCommand) -> Result<i32> {
    let root = outpost_models::files::models_root();
    match cmd {
        ModelsCommand::Fetch { name, llm } => {
            let default = if *llm {
                outpost_models::DEFAULT_LLM
            } else {
                outpost_models::DEFAULT_MODEL
            };
            let name = name.as_deref().unwrap_or(default);
            eprintln!("fetching {name} into {}", root.display());
            let dir = outpost_models::fetch(name, &root)?;
            outln!("{}", dir.display())?;
        }
        ModelsCommand::List { json } => {
            let list = outpost_models::files::list(&root);
            if *json {
                let models: Vec<_> = list
                    .iter()
                    .map(|m| {
                        json!({ "name": m.name, "model_id": m.model_id, "path": m.path,
                                "present": m.present, "known": m.known })
                    })
                    .collect();
                print_json(&json!({ "root": root, "models": models }))?;
            } else {
                for m in &list {
                    let state = if m.present {
                        "installed"
                    } else {
                        "not fetched"
                    };
                    outln!("{:<24} {:<12} {}", m.name, state, m.path.display())?;
                }
            }
        }
    }
    Ok(0)
}
