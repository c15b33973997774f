//! The store's key namespaces: every key the server writes starts with one of these, and each
//! kind of process does only what its row says under it. On S3 this table is the IAM contract:
//! terraform derives each role's grants and the bucket's lifecycle rules from
//! `terraform/store-namespaces.json`, which a test below keeps equal to this table, and the
//! S3 + SQS integration tests run under the policies terraform renders from it.

/// What a process may do under a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Get,
    Put,
    Delete,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Get => "get",
            Access::Put => "put",
            Access::Delete => "delete",
        }
    }
}

/// How long the bucket keeps a namespace's objects: a fixed number of days, or what a terraform
/// variable says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Days(u32),
    Variable(&'static str),
}

/// One namespace: its first key segment, what the HTTP API and a queue worker do under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    pub name: &'static str,
    pub api: &'static [Access],
    pub worker: &'static [Access],
    pub expiry: Expiry,
    /// Keyed by hour (`NAME/<hour>/...`), so the fs store's pruner can expire it by hour.
    pub by_hour: bool,
}

use Access::{Delete, Get, Put};

pub const INPUTS: &str = "inputs";
pub const JOBS: &str = "jobs";
pub const RESULTS: &str = "results";
pub const DEDUP: &str = "dedup";
pub const HEALTH: &str = "health";

/// Every namespace of the shared store (the fs store's pruner adds its own bookkeeping, which
/// never reaches S3: there the bucket's lifecycle rules expire objects).
pub const NAMESPACES: &[Namespace] = &[
    Namespace {
        name: INPUTS,
        api: &[Get, Put, Delete],
        // A worker deletes an input once its image is done, and a deleted job's leftovers.
        worker: &[Get, Delete],
        expiry: Expiry::Variable("inputs_expire_days"),
        by_hour: true,
    },
    Namespace {
        name: JOBS,
        api: &[Get, Put, Delete],
        worker: &[Get, Put, Delete],
        expiry: Expiry::Variable("results_expire_days"),
        by_hour: true,
    },
    Namespace {
        name: RESULTS,
        api: &[Get, Put, Delete],
        worker: &[Get, Put, Delete],
        expiry: Expiry::Variable("results_expire_days"),
        by_hour: true,
    },
    Namespace {
        name: DEDUP,
        api: &[Get, Put],
        worker: &[Get, Put],
        // Looked up for the current and the previous hour only.
        expiry: Expiry::Days(1),
        by_hour: true,
    },
    Namespace {
        name: HEALTH,
        api: &[Get, Put, Delete],
        worker: &[Get, Put, Delete],
        expiry: Expiry::Days(1),
        by_hour: false,
    },
];

/// The namespaces whose keys start with an hour.
pub fn by_hour() -> impl Iterator<Item = &'static str> {
    NAMESPACES.iter().filter(|n| n.by_hour).map(|n| n.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accesses(v: &serde_json::Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .expect("an array of accesses")
            .iter()
            .map(|a| a.as_str().expect("a string").to_string())
            .collect();
        out.sort();
        out
    }

    fn ours(a: &[Access]) -> Vec<String> {
        let mut out: Vec<String> = a.iter().map(|a| a.as_str().to_string()).collect();
        out.sort();
        out
    }

    /// terraform's copy of the table must say exactly what the code does: a namespace the code
    /// writes that terraform does not grant fails every job on AWS (moto does not check IAM).
    #[test]
    fn terraform_grants_what_the_code_uses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../terraform/store-namespaces.json"
        );
        let text = std::fs::read_to_string(path).expect("terraform/store-namespaces.json");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let rows = doc["namespaces"].as_array().expect("namespaces");
        assert_eq!(rows.len(), NAMESPACES.len(), "{path}: other namespaces");
        for (row, ns) in rows.iter().zip(NAMESPACES) {
            assert_eq!(
                row["prefix"],
                format!("{}/", ns.name),
                "{path}: order or name"
            );
            assert_eq!(accesses(&row["api"]), ours(ns.api), "{}: api", ns.name);
            assert_eq!(
                accesses(&row["worker"]),
                ours(ns.worker),
                "{}: worker",
                ns.name
            );
            let expiry = match ns.expiry {
                Expiry::Days(d) => serde_json::json!(d),
                Expiry::Variable(v) => serde_json::json!(v),
            };
            assert_eq!(row["expire_days"], expiry, "{}: expiry", ns.name);
        }
    }
}
