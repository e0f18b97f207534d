//! `numeric_static_map`: like `numeric`, but the number is first looked up in a JSON map
//! of number → number given inline (`json`) or in a file (`json_path`). A number missing
//! from the map is used as is, or hashed by the `fallback_type` vindex when one is set
//! (Vitess `numeric_static_map.go`).

use std::collections::{BTreeMap, HashMap};

use super::{Ctx, Params, Value, ValueError, Vindex, VindexError};

pub(crate) const PARAMS: &[&str] = &["json", "json_path", "fallback_type"];
const TYPE: &str = "numeric_static_map";

/// The `numeric_static_map` vindex.
#[derive(Debug, Clone)]
pub struct NumericStaticMap {
    lookup: HashMap<u64, u64>,
    fallback: Option<Box<Vindex>>,
}

impl NumericStaticMap {
    pub(crate) fn new(ctx: &Ctx<'_>, params: &Params) -> Result<Self, VindexError> {
        let json = params.get("json");
        let json_path = params.get("json_path");
        let (param, data) = match (json, json_path) {
            (None, None) => return Err(ctx.bad_param(
                TYPE,
                "json",
                "NumericStaticMap: Could not find either `json_path` or `json` params in vschema",
            )),
            (Some(_), Some(_)) => {
                return Err(ctx.bad_param(
                    TYPE,
                    "json",
                    "NumericStaticMap: Found both `json` and `json_path` params in vschema",
                ))
            }
            (Some(text), None) => ("json", text.as_bytes().to_vec()),
            (None, Some(path)) => (
                "json_path",
                ctx.files
                    .load(path)
                    .map_err(|e| ctx.bad_param(TYPE, "json_path", e))?,
            ),
        };
        let lookup = parse_lookup_table(&data).map_err(|e| ctx.bad_param(TYPE, param, e))?;
        let fallback = match params.get("fallback_type") {
            None => None,
            Some(fallback_type) => {
                let name = format!("{}_hash", ctx.name);
                let vindex =
                    Vindex::create_with_files(fallback_type, &name, &Params::new(), ctx.files)
                        .map_err(|e| ctx.bad_param(TYPE, "fallback_type", e.to_string()))?;
                if !vindex.kind.is_hashing() {
                    return Err(ctx.bad_param(
                        TYPE,
                        "fallback_type",
                        format!("vindex type {fallback_type:?} does not export a hashing function"),
                    ));
                }
                Some(Box::new(vindex))
            }
        };
        Ok(NumericStaticMap { lookup, fallback })
    }

    /// The number of entries in the map.
    pub fn len(&self) -> usize {
        self.lookup.len()
    }

    /// True for an empty map.
    pub fn is_empty(&self) -> bool {
        self.lookup.is_empty()
    }

    /// The keyspace id of one value.
    pub fn hash(&self, id: &Value) -> Result<Vec<u8>, ValueError> {
        let num = id.to_cast_uint64()?;
        match self.lookup.get(&num) {
            Some(mapped) => Ok(mapped.to_be_bytes().to_vec()),
            None => match &self.fallback {
                Some(fallback) => fallback
                    .kind
                    .hash(id)
                    .unwrap_or_else(|| Ok(num.to_be_bytes().to_vec())),
                None => Ok(num.to_be_bytes().to_vec()),
            },
        }
    }
}

/// `{"1": 2, "3": 4}`: decimal keys, unsigned integer values.
fn parse_lookup_table(data: &[u8]) -> Result<HashMap<u64, u64>, String> {
    let raw: BTreeMap<String, u64> = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<u64>()
                .map(|k| (k, v))
                .map_err(|_| format!("strconv.ParseUint: parsing {k:?}: invalid syntax"))
        })
        .collect()
}
