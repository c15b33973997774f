//! The names U-GAT-IT gives its six networks and its two translation directions: the vocabulary
//! shared by the networks and the checkpoint format, so neither has to import the other for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A translation direction; A is the photo domain, B the animation domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    A2B,
    B2A,
}

impl Direction {
    /// The official name of the generator of this direction.
    pub fn generator(self) -> NetworkKind {
        match self {
            Direction::A2B => NetworkKind::GenA2B,
            Direction::B2A => NetworkKind::GenB2A,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::A2B => "a2b",
            Direction::B2A => "b2a",
        })
    }
}

impl FromStr for Direction {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "a2b" => Ok(Direction::A2B),
            "b2a" => Ok(Direction::B2A),
            _ => Err(ModelError::Direction(s.to_string())),
        }
    }
}

/// One of the six networks, named as in the official checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkKind {
    GenA2B,
    GenB2A,
    DisGA,
    DisGB,
    DisLA,
    DisLB,
}

impl NetworkKind {
    pub const ALL: [NetworkKind; 6] = [
        NetworkKind::GenA2B,
        NetworkKind::GenB2A,
        NetworkKind::DisGA,
        NetworkKind::DisGB,
        NetworkKind::DisLA,
        NetworkKind::DisLB,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NetworkKind::GenA2B => "genA2B",
            NetworkKind::GenB2A => "genB2A",
            NetworkKind::DisGA => "disGA",
            NetworkKind::DisGB => "disGB",
            NetworkKind::DisLA => "disLA",
            NetworkKind::DisLB => "disLB",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn is_generator(self) -> bool {
        matches!(self, NetworkKind::GenA2B | NetworkKind::GenB2A)
    }

    /// File holding this network's weights in a checkpoint directory.
    pub fn file_name(self) -> String {
        format!("{}.safetensors", self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn direction_parses_and_names_its_generator() {
        assert_eq!("A2B".parse::<Direction>().unwrap(), Direction::A2B);
        assert!(matches!(
            "sideways".parse::<Direction>(),
            Err(ModelError::Direction(s)) if s == "sideways"
        ));
        assert_eq!(Direction::B2A.generator().name(), "genB2A");
        assert_eq!(NetworkKind::from_name("disLA"), Some(NetworkKind::DisLA));
    }
}
