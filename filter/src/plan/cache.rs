//! The plan cache: statements normalized by the lexer (literals out) map to a template
//! that routes the statement from its literals without parsing it again. Only plans that
//! relay the client's own text to one shard are cached — an unsharded or reference-only
//! statement (always the same shard) and a point statement on one sharded table (the
//! shard of its primary-vindex literal) — so a hit never rewrites SQL.
//!
//! The cache is a [`crate::cache::Generations`] map: bounded, recently planned shapes
//! stay in.

use sqlparser::ast::{BinaryOperator, Expr, SetExpr, Statement};

use super::route::{self, column_ref, conjuncts, Placement};
use super::schema::RoutingSchema;
use super::{parse, placeholder_positions, PlanContext, Route};
use crate::sql::{lexer, literal};
use crate::vindex::Value;

/// A cached way to route a statement shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// Always this shard (unsharded keyspace, reference tables, no tables).
    Fixed {
        keyspace: String,
        shard: usize,
        write: bool,
    },
    /// The shard of literal number `param` under the keyspace's vindex `vindex`.
    Point {
        keyspace: String,
        vindex: String,
        param: usize,
        write: bool,
    },
}

impl Template {
    /// The route for a statement of this shape with these literals (lexer text).
    pub fn route(&self, schema: &RoutingSchema, literals: &[&str]) -> Option<Route> {
        self.route_by(schema, |param| literal_value(literals.get(param)?))
    }

    /// The route for a prepared statement of this shape with these parameter values.
    pub fn route_params(&self, schema: &RoutingSchema, params: &[Value]) -> Option<Route> {
        self.route_by(schema, |param| params.get(param).cloned())
    }

    fn route_by(
        &self,
        schema: &RoutingSchema,
        value_of: impl Fn(usize) -> Option<Value>,
    ) -> Option<Route> {
        match self {
            Template::Fixed {
                keyspace,
                shard,
                write,
            } => Some(Route {
                write: *write,
                ..Route::pass(keyspace, vec![*shard])
            }),
            Template::Point {
                keyspace,
                vindex,
                param,
                write,
            } => {
                let ks = schema.keyspace(keyspace)?;
                let v = ks.vindexes.get(vindex)?;
                let value = value_of(*param)?;
                let shards = route::shards_for_values(ks, v, std::slice::from_ref(&value)).ok()?;
                let mut it = shards.into_iter();
                let shard = it.next()?;
                if it.next().is_some() {
                    return None;
                }
                Some(Route {
                    write: *write,
                    ..Route::pass(keyspace, vec![shard])
                })
            }
        }
    }
}

/// A literal as the lexer returned it, as a vindex value.
fn literal_value(text: &str) -> Option<Value> {
    if let Some(bytes) = literal::unquote_string(text) {
        return Some(Value::Bytes(bytes));
    }
    if text.starts_with("0x") || text.starts_with("x'") || text.starts_with("X'") {
        return literal::hex_literal(text).map(Value::HexNum);
    }
    if let Ok(v) = text.parse::<i64>() {
        return Some(Value::Int(v));
    }
    if let Ok(v) = text.parse::<u64>() {
        return Some(Value::Uint(v));
    }
    text.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.')
        .then(|| Value::Decimal(text.to_string()))
}

/// The cache key of a statement for a session, and its literals; `None` when the
/// statement cannot be cached (placeholders, executable comments).
pub fn key<'a>(default_keyspace: Option<&str>, sql: &'a str) -> Option<(String, Vec<&'a str>)> {
    let (mut normalized, literals) = lexer::normalize(sql)?;
    normalized.push('\u{0}');
    normalized.push_str(default_keyspace.unwrap_or(""));
    Some((normalized, literals))
}

/// The template for the normalized statement `normalized` (a cache key without its
/// keyspace suffix), if its shape routes from one literal or none.
pub fn template(
    schema: &RoutingSchema,
    normalized: &str,
    ctx: &PlanContext<'_>,
) -> Option<Template> {
    let text = normalized.split('\u{0}').next()?;
    let statement = parse(text).ok()?;
    if !matches!(
        statement,
        Statement::Query(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Insert(_)
    ) {
        return None;
    }
    let tables = route::statement_tables(schema, &statement, ctx).ok()?;
    if !tables.any_sharded {
        let ks = match tables.keyspace {
            Some(k) => k,
            None => route::default_keyspace(schema, ctx).ok()?,
        };
        // Writes to reference tables go to every shard; not a one-shard shape.
        let write = !matches!(statement, Statement::Query(_));
        if ks.sharded && write {
            return None;
        }
        return Some(Template::Fixed {
            keyspace: ks.name.clone(),
            shard: 0,
            write,
        });
    }
    let (from, selection, write) = match &statement {
        Statement::Query(q) => {
            let SetExpr::Select(s) = q.body.as_ref() else {
                return None;
            };
            if q.with.is_some() {
                return None;
            }
            (s.from.clone(), s.selection.clone(), false)
        }
        Statement::Update(u) if u.from.is_none() => {
            (vec![u.table.clone()], u.selection.clone(), true)
        }
        Statement::Delete(d) if d.using.is_none() => {
            let t = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(t)
                | sqlparser::ast::FromTable::WithoutKeyword(t) => t.clone(),
            };
            (t, d.selection.clone(), true)
        }
        _ => return None,
    };
    if route::has_subquery(&statement) || from.len() != 1 || !from[0].joins.is_empty() {
        return None;
    }
    let (uses, _, derived) = route::from_tables(schema, &from, ctx).ok()?;
    let [table] = uses.as_slice() else {
        return None;
    };
    if derived {
        return None;
    }
    let Placement::Sharded {
        columns,
        vindex_name,
        ..
    } = &table.placement
    else {
        return None;
    };
    let [column] = columns.as_slice() else {
        return None;
    };
    if let Statement::Update(u) = &statement {
        // Changing the vindex column is refused by the full planner.
        if u.assignments
            .iter()
            .any(|a| a.target.to_string().eq_ignore_ascii_case(column))
        {
            return None;
        }
    }
    let positions = placeholder_positions(&statement);
    let selection = selection?;
    for term in conjuncts(&selection) {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = term
        else {
            continue;
        };
        for (col, val) in [(left, right), (right, left)] {
            let is_vindex_column = match column_ref(col) {
                Some((Some(q), c)) => {
                    q.eq_ignore_ascii_case(&table.qualifier) && c.eq_ignore_ascii_case(column)
                }
                Some((None, c)) => c.eq_ignore_ascii_case(column),
                None => false,
            };
            if let (true, Expr::Value(v)) = (is_vindex_column, val.as_ref()) {
                if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) {
                    let at = (v.span.start.line, v.span.start.column);
                    let param = positions.binary_search(&at).ok()?;
                    return Some(Template::Point {
                        keyspace: table.keyspace.name.clone(),
                        vindex: vindex_name.to_string(),
                        param,
                        write,
                    });
                }
            }
        }
    }
    None
}

/// Statement shapes (cache keys) to their templates; `None` records a shape known not
/// to be cacheable.
pub type PlanCache = crate::cache::Generations<Option<Template>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::schema;

    fn template_of(sql: &str) -> Option<Template> {
        let (key, _) = key(None, sql)?;
        template(&schema(), &key, &PlanContext::default())
    }

    #[test]
    fn point_selects_and_updates_get_a_vindex_template() {
        let t = template_of("SELECT name FROM customers WHERE id = 1");
        assert!(
            matches!(
                t,
                Some(Template::Point {
                    param: 0,
                    write: false,
                    ..
                })
            ),
            "{t:?}"
        );
        let t = template_of("UPDATE orders SET qty = 3 WHERE note = 'x' AND customer_id = 7");
        assert!(
            matches!(
                t,
                Some(Template::Point {
                    param: 2,
                    write: true,
                    ..
                })
            ),
            "{t:?}"
        );
        assert_eq!(
            template_of("SELECT name FROM customers WHERE city = 'x'"),
            None
        );
        assert_eq!(
            template_of("UPDATE customers SET id = 5 WHERE id = 7"),
            None
        );
    }

    #[test]
    fn unsharded_statements_get_a_fixed_template() {
        let t = template_of("SELECT * FROM products WHERE id = 3");
        assert_eq!(
            t,
            Some(Template::Fixed {
                keyspace: "main".into(),
                shard: 0,
                write: false
            })
        );
    }

    #[test]
    fn a_hit_routes_like_the_planner() {
        let s = schema();
        for id in [1, 2, 3, 4, 5, 100, 12345] {
            let sql = format!("SELECT name FROM customers WHERE id = {id}");
            let (k, lits) = key(None, &sql).unwrap_or_default();
            let t = template(&s, &k, &PlanContext::default());
            let hit = t.and_then(|t| t.route(&s, &lits));
            let planned = match crate::plan::plan(&s, &sql, &PlanContext::default()) {
                Ok(crate::plan::Plan::Route(r)) => Some(r),
                _ => None,
            };
            assert_eq!(hit, planned, "{sql}");
        }
    }

    #[test]
    fn generations_bound_the_size() {
        let mut c = PlanCache::new(2);
        for i in 0..10 {
            c.insert(format!("k{i}"), None);
        }
        assert!(c.len() <= 4);
        assert!(c.get("k9").is_some());
        assert!(c.get("k0").is_none());
    }
}
