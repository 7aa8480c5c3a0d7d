//! The Pi models pureboot-image writes folders for (`--model`): the contract's board table
//! (`pureboot_contract::boards`), which the controller reads too, so the folders it asks
//! for and the ones written here name the same files.

pub use pureboot_contract::boards::{Board as Model, DtbFamily};

/// `--model`'s parser: `pi3`, `pi4` or `pi5`.
pub fn parse(name: &str) -> Result<Model, String> {
    Model::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
        format!("no model {name:?}: one of {}", all.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_preset_and_parses_by_name() {
        for m in Model::ALL {
            assert!(crate::presets::find(m.preset()).is_some(), "{m:?}");
            assert_eq!(parse(m.name()), Ok(m));
        }
        assert!(parse("pi2").unwrap_err().contains("pi3, pi4, pi5"));
    }
}
