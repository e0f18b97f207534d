//! Planning SELECT: pushed down whole when it reaches one shard (or an unsharded keyspace),
//! otherwise rewritten for every shard with a [`MergeSpec`] that tells the sidecar how to
//! combine the results.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, ObjectNamePart, OrderByKind,
    OrderBySort, Query, Select, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement,
    UnaryOperator, Value as SqlValue, Visit, Visitor,
};

use super::error::PlanError;
use super::merge::{AggKind, Aggregate, Average, CmpOp, Col, Filter, Key, MergeSpec, Operand};
use super::route::{self, conjuncts, Placement, Routing, TableUse};
use super::schema::RoutingSchema;
use super::{PlanContext, Route};
use crate::vindex::Value;

/// Every SELECT block inside `node` (its own, subqueries, derived tables, UNION branches).
fn blocks_of<V: Visit>(node: &V) -> Vec<Select> {
    struct Collect(Vec<Select>);
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
            self.0.push(select.clone());
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect(Vec::new());
    let _ = node.visit(&mut c);
    c.0
}

/// Plans a query statement.
pub(crate) fn plan_query(
    schema: &RoutingSchema,
    statement: &Statement,
    query: &Query,
    ctx: &PlanContext<'_>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Route, PlanError> {
    let (tables, keyspace) = route::statement_keyspace(schema, statement, ctx)?;
    if !keyspace.sharded || !tables.any_sharded {
        return Ok(Route::pass(&keyspace.name, vec![0]));
    }
    if query.with.is_some() {
        return Err(PlanError::unsupported("WITH over sharded tables"));
    }
    match query.body.as_ref() {
        SetExpr::Select(select) => {
            let blocks = blocks_of(statement);
            let routing = route_blocks(schema, &blocks, ctx, params)?;
            if !routing.scatter {
                return Ok(Route::pass(&keyspace.name, routing.shards));
            }
            let mut route = scatter_select(query, select, routing)?;
            if blocks.len() == 1 {
                let (uses, _, _) = route::from_tables(schema, &select.from, ctx)?;
                route.lookup =
                    route::lookup_narrowing(&uses, select.selection.as_ref(), params).map(Box::new);
            }
            Ok(route)
        }
        SetExpr::SetOperation { .. } => plan_union(schema, query, ctx, params),
        _ => Err(PlanError::unsupported("this query form across shards")),
    }
}

/// UNION: pushed down when every branch reaches the same one shard; UNION ALL of plain
/// selects over sharded tables runs on every shard they reach and is concatenated.
fn plan_union<'s>(
    schema: &'s RoutingSchema,
    query: &Query,
    ctx: &PlanContext<'_>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Route, PlanError> {
    let mut leaves = Vec::new();
    let mut all_union_all = true;
    let mut stack = vec![query.body.as_ref()];
    while let Some(e) = stack.pop() {
        match e {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier,
                left,
                right,
            } => {
                all_union_all &= matches!(set_quantifier, SetQuantifier::All);
                stack.push(right);
                stack.push(left);
            }
            SetExpr::SetOperation { .. } => {
                return Err(PlanError::unsupported("INTERSECT or EXCEPT across shards"))
            }
            leaf => leaves.push(leaf),
        }
    }
    let mut routings: Vec<Routing<'s>> = Vec::new();
    let mut concatenable =
        all_union_all && query.order_by.is_none() && query.limit_clause.is_none();
    for leaf in &leaves {
        let blocks = blocks_of(*leaf);
        let routing = route_blocks(schema, &blocks, ctx, params)?;
        let plain = matches!(leaf, SetExpr::Select(s) if !is_aggregated(s) && s.distinct.is_none())
            && blocks.len() == 1
            && block_is_sharded(schema, &blocks[0], ctx)?;
        concatenable &= plain;
        routings.push(routing);
    }
    let Some(first) = routings.first() else {
        return Err(PlanError::unsupported("an empty UNION"));
    };
    let keyspace = first.keyspace.name.clone();
    if routings
        .iter()
        .all(|r| !r.scatter && r.shards == first.shards)
    {
        return Ok(Route::pass(&keyspace, first.shards.clone()));
    }
    if concatenable {
        let mut shards: Vec<usize> = routings
            .iter()
            .flat_map(|r| r.shards.iter().copied())
            .collect();
        shards.sort_unstable();
        shards.dedup();
        return Ok(Route::pass(&keyspace, shards));
    }
    Err(PlanError::unsupported(
        "UNION (DISTINCT), or ORDER BY/LIMIT over a UNION, across shards",
    ))
}

/// Whether a SELECT block's FROM holds a sharded table (so its rows are split across shards).
fn block_is_sharded(
    schema: &RoutingSchema,
    block: &Select,
    ctx: &PlanContext<'_>,
) -> Result<bool, PlanError> {
    let (uses, _, _) = route::from_tables(schema, &block.from, ctx)?;
    Ok(uses
        .iter()
        .any(|u| matches!(u.placement, Placement::Sharded { .. })))
}

/// Routes all SELECT blocks of a statement together. Blocks joined or correlated on their
/// vindex columns run shard by shard, on the shards the outer block's predicates choose;
/// otherwise every block with sharded tables must be pinned to one and the same shard.
fn route_blocks<'s>(
    schema: &'s RoutingSchema,
    blocks: &[Select],
    ctx: &PlanContext<'_>,
    params: &dyn Fn(&Expr) -> Option<Value>,
) -> Result<Routing<'s>, PlanError> {
    let mut all_uses: Vec<TableUse<'s>> = Vec::new();
    let mut all_terms: Vec<Expr> = Vec::new();
    let mut outer: Option<Routing<'s>> = None;
    let mut outer_sharded = false;
    let mut singles: Vec<Option<usize>> = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let (uses, joins, derived) = route::from_tables(schema, &block.from, ctx)?;
        let sharded_here = uses
            .iter()
            .any(|u| matches!(u.placement, Placement::Sharded { .. }));
        let own = match route::route_tables(&uses, &joins, block.selection.as_ref(), params) {
            Ok(r) => r,
            Err(PlanError::Unsupported(_)) => None,
            Err(e) => return Err(e),
        };
        if sharded_here {
            singles.push(
                own.as_ref()
                    .filter(|r| !r.scatter)
                    .and_then(|r| r.shards.first().copied()),
            );
        }
        if i == 0 {
            outer_sharded = sharded_here && !derived;
            outer = own.filter(|_| outer_sharded);
        } else if derived {
            outer_sharded = false;
        }
        all_terms.extend(joins);
        if let Some(s) = &block.selection {
            all_terms.extend(conjuncts(s).into_iter().cloned());
        }
        all_uses.extend(uses);
    }
    // `from_tables` reports only derived tables that read tables: literal rows are like a
    // reference table. The outer block's shards hold when it is the only block, or when
    // every block is co-located with it.
    if let (true, Some(r)) = (outer_sharded, outer) {
        let colocated = || {
            matches!(
                route::route_tables(&all_uses, &all_terms, None, &|_| None),
                Ok(Some(_))
            )
        };
        if blocks.len() == 1 || colocated() {
            return Ok(r);
        }
    }
    // Not co-located: correct only when every sharded block is pinned to one shard.
    let keyspace = all_uses
        .iter()
        .find(|u| matches!(u.placement, Placement::Sharded { .. }))
        .map(|u| u.keyspace)
        .ok_or_else(|| PlanError::unsupported("a query without sharded tables"))?;
    match singles.iter().copied().collect::<Option<Vec<usize>>>() {
        Some(v) if !v.is_empty() && v.windows(2).all(|w| w[0] == w[1]) => Ok(Routing {
            keyspace,
            shards: vec![v[0]],
            scatter: false,
        }),
        _ => Err(PlanError::unsupported(
            "a join, subquery or derived table across shards that is not joined on the primary vindex columns",
        )),
    }
}

fn has_window_function(select: &Select) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(select, |e| {
        if matches!(e, Expr::Function(f) if f.over.is_some()) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found || !select.named_window.is_empty()
}

fn is_aggregated(select: &Select) -> bool {
    let grouped = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if !e.is_empty());
    grouped
        || select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        })
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "group_concat",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_arrayagg",
    "json_objectagg",
];

fn function_name(f: &sqlparser::ast::Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn contains_aggregate(expr: &Expr) -> bool {
    // Aggregates inside a subquery belong to it, not to this block.
    struct Find {
        depth: usize,
        found: bool,
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e {
                if self.depth == 0
                    && f.over.is_none()
                    && function_name(f).is_some_and(|n| AGGREGATES.contains(&n.as_str()))
                {
                    self.found = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find {
        depth: 0,
        found: false,
    };
    let _ = expr.visit(&mut f);
    f.found
}

/// An aggregate call the merge can combine: its kind and its one argument (`None` for
/// `COUNT(*)`).
fn mergeable_aggregate(expr: &Expr) -> Result<Option<(AggKindOrAvg, Option<Expr>)>, PlanError> {
    let Expr::Function(f) = expr else {
        return Ok(None);
    };
    let Some(name) = function_name(f) else {
        return Ok(None);
    };
    if !AGGREGATES.contains(&name.as_str()) || f.over.is_some() {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(PlanError::unsupported(format!(
            "{name} without arguments across shards"
        )));
    };
    if matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)) {
        return Err(PlanError::unsupported(format!(
            "{}(DISTINCT ...) across shards",
            name.to_ascii_uppercase()
        )));
    }
    if !list.clauses.is_empty() || f.filter.is_some() {
        return Err(PlanError::unsupported(format!(
            "{name} with clauses across shards"
        )));
    }
    let kind = match name.as_str() {
        "count" => AggKindOrAvg::Agg(AggKind::Count),
        "sum" => AggKindOrAvg::Agg(AggKind::Sum),
        "min" => AggKindOrAvg::Agg(AggKind::Min),
        "max" => AggKindOrAvg::Agg(AggKind::Max),
        "avg" => AggKindOrAvg::Avg,
        other => {
            return Err(PlanError::unsupported(format!(
                "{}() across shards",
                other.to_ascii_uppercase()
            )))
        }
    };
    let arg = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if name == "count" => None,
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e.clone()),
        _ => {
            return Err(PlanError::unsupported(format!(
                "{name} with these arguments across shards"
            )))
        }
    };
    Ok(Some((kind, arg)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKindOrAvg {
    Agg(AggKind),
    Avg,
}

fn call(name: &str, arg: Expr) -> Expr {
    Expr::Function(sqlparser::ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter: None,
        null_treatment: None,
        over: None,
    })
}

/// The select list being rebuilt for the shards.
struct Projection {
    items: Vec<SelectItem>,
    /// Original expressions and aliases of the visible items (`None` after a wildcard).
    visible: Vec<Option<(Expr, Option<String>)>>,
    wildcard: bool,
    hidden: Vec<SelectItem>,
    spec: MergeSpec,
}

impl Projection {
    fn hidden(&mut self, expr: Expr) -> Col {
        let alias = Ident::with_quote('`', format!("__sc{}", self.hidden.len()));
        self.hidden.push(SelectItem::ExprWithAlias { expr, alias });
        Col::Hidden(self.hidden.len() - 1)
    }

    /// The column holding `expr`: a visible item that is that expression, an alias, a
    /// 1-based position, or a new hidden column.
    fn column_for(&mut self, expr: &Expr, aggregated: bool) -> Result<(Col, Expr), PlanError> {
        if let Expr::Value(v) = expr {
            if let SqlValue::Number(n, _) = &v.value {
                let pos: usize = n
                    .parse()
                    .map_err(|_| PlanError::unsupported("a non-integer column position"))?;
                if self.wildcard {
                    return Err(PlanError::unsupported(
                        "a column position with * across shards",
                    ));
                }
                return match pos
                    .checked_sub(1)
                    .and_then(|i| self.visible.get(i).cloned().flatten().map(|v| (i, v)))
                {
                    Some((i, (e, _))) => Ok((Col::Visible(i), e)),
                    None => Err(PlanError::Syntax(format!(
                        "Unknown column '{pos}' in 'order clause'"
                    ))),
                };
            }
        }
        if !self.wildcard {
            for (i, v) in self.visible.iter().enumerate() {
                let Some((e, alias)) = v else { continue };
                if e == expr {
                    return Ok((Col::Visible(i), e.clone()));
                }
                if let (Some(a), Expr::Identifier(id)) = (alias, expr) {
                    if a.eq_ignore_ascii_case(&id.value) {
                        return Ok((Col::Visible(i), e.clone()));
                    }
                }
            }
        }
        // Not in the select list: computed by the shards as a hidden column.
        if aggregated {
            if let Some((kind, arg)) = mergeable_aggregate(expr)? {
                return Ok((self.hidden_aggregate(expr, kind, arg), expr.clone()));
            }
            if contains_aggregate(expr) {
                return Err(PlanError::unsupported(
                    "an expression over an aggregate function across shards",
                ));
            }
        }
        Ok((self.hidden(expr.clone()), expr.clone()))
    }

    fn hidden_aggregate(&mut self, expr: &Expr, kind: AggKindOrAvg, arg: Option<Expr>) -> Col {
        match kind {
            AggKindOrAvg::Agg(k) => {
                let col = self.hidden(expr.clone());
                let weight = matches!(k, AggKind::Min | AggKind::Max)
                    .then(|| self.hidden(call("WEIGHT_STRING", expr.clone())));
                self.spec.aggregates.push(Aggregate {
                    col,
                    kind: k,
                    weight,
                });
                col
            }
            AggKindOrAvg::Avg => {
                let arg =
                    arg.unwrap_or_else(|| Expr::Value(SqlValue::Number("1".into(), false).into()));
                let sum = self.hidden(call("SUM", arg.clone()));
                let count = self.hidden(call("COUNT", arg));
                self.average(sum, count);
                sum
            }
        }
    }

    /// An AVG merged from the partial SUM in `sum` and COUNT in `count`.
    fn average(&mut self, sum: Col, count: Col) {
        for (col, kind) in [(sum, AggKind::Sum), (count, AggKind::Count)] {
            self.spec.aggregates.push(Aggregate {
                col,
                kind,
                weight: None,
            });
        }
        self.spec.averages.push(Average { sum, count });
    }

    /// A key over `col` (holding `expr`), with a weight string when `expr` may be text.
    fn key(&mut self, col: Col, expr: &Expr, descending: bool) -> Key {
        let numeric_agg = matches!(
            mergeable_aggregate(expr),
            Ok(Some((
                AggKindOrAvg::Avg | AggKindOrAvg::Agg(AggKind::Count | AggKind::Sum),
                _
            )))
        );
        let weight = (!numeric_agg && !is_literal(expr))
            .then(|| self.hidden(call("WEIGHT_STRING", expr.clone())));
        Key {
            col,
            weight,
            descending,
        }
    }
}

fn is_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(_))
}

fn limit_number(e: &Expr) -> Result<u64, PlanError> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => n
                .parse()
                .map_err(|_| PlanError::Syntax(format!("bad LIMIT value {n}"))),
            _ => Err(PlanError::unsupported(
                "a LIMIT that is not a number across shards",
            )),
        },
        _ => Err(PlanError::unsupported(
            "a LIMIT that is not a number across shards",
        )),
    }
}

/// Rewrites a SELECT over several shards and says how to merge what they return.
fn scatter_select(
    query: &Query,
    select: &Select,
    routing: Routing<'_>,
) -> Result<Route, PlanError> {
    if query.with.is_some() {
        return Err(PlanError::unsupported("WITH across shards"));
    }
    if select.into.is_some() {
        return Err(PlanError::unsupported("SELECT ... INTO across shards"));
    }
    if has_window_function(select) {
        return Err(PlanError::unsupported("window functions across shards"));
    }
    if !query.locks.is_empty() && (query.order_by.is_some() || query.limit_clause.is_some()) {
        return Err(PlanError::unsupported(
            "FOR UPDATE with ORDER BY or LIMIT across shards",
        ));
    }
    let group_exprs: Vec<Expr> = match &select.group_by {
        GroupByExpr::Expressions(e, modifiers) => {
            if !modifiers.is_empty() {
                return Err(PlanError::unsupported(
                    "GROUP BY modifiers (WITH ROLLUP) across shards",
                ));
            }
            e.clone()
        }
        GroupByExpr::All(_) => return Err(PlanError::unsupported("GROUP BY ALL")),
    };
    let aggregated = is_aggregated(select);
    let distinct = match &select.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(_) => return Err(PlanError::unsupported("DISTINCT ON")),
    };
    let mut p = Projection {
        items: Vec::new(),
        visible: Vec::new(),
        wildcard: false,
        hidden: Vec::new(),
        spec: MergeSpec {
            aggregated,
            ..MergeSpec::default()
        },
    };
    // The select list: aggregates become their partial forms.
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                if aggregated || distinct {
                    return Err(PlanError::unsupported(
                        "* with aggregates or DISTINCT across shards",
                    ));
                }
                p.wildcard = true;
                p.visible.push(None);
                p.items.push(item.clone());
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let alias = match item {
                    SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                    _ => None,
                };
                let index = p.visible.len();
                p.visible.push(if p.wildcard {
                    None
                } else {
                    Some((e.clone(), alias.clone()))
                });
                let merged = if aggregated {
                    mergeable_aggregate(e)?
                } else {
                    None
                };
                match merged {
                    Some((AggKindOrAvg::Agg(kind), _)) => {
                        let col = Col::Visible(index);
                        let weight = matches!(kind, AggKind::Min | AggKind::Max)
                            .then(|| p.hidden(call("WEIGHT_STRING", e.clone())));
                        p.spec.aggregates.push(Aggregate { col, kind, weight });
                        p.items.push(item.clone());
                    }
                    Some((AggKindOrAvg::Avg, arg)) => {
                        let arg = arg.ok_or_else(|| PlanError::unsupported("AVG(*)"))?;
                        let name = alias.clone().unwrap_or_else(|| e.to_string());
                        p.items.push(SelectItem::ExprWithAlias {
                            expr: call("SUM", arg.clone()),
                            alias: Ident::with_quote('`', name),
                        });
                        let count = p.hidden(call("COUNT", arg));
                        p.average(Col::Visible(index), count);
                    }
                    None => {
                        if aggregated && contains_aggregate(e) {
                            return Err(PlanError::unsupported(
                                "an expression over an aggregate function across shards",
                            ));
                        }
                        p.items.push(item.clone());
                    }
                }
            }
            _ => return Err(PlanError::unsupported("this select item across shards")),
        }
    }
    // GROUP BY keys (their weight strings make 'Paris' and 'paris' one group, as the
    // collation does).
    for g in &group_exprs {
        let (col, expr) = p.column_for(g, false)?;
        let key = p.key(col, &expr, false);
        p.spec.group_by.push(key);
    }
    if distinct {
        for i in 0..p.visible.len() {
            let Some(Some((e, _))) = p.visible.get(i).cloned() else {
                continue;
            };
            let key = p.key(Col::Visible(i), &e, false);
            p.spec.distinct.push(key);
        }
    }
    if let Some(h) = &select.having {
        if !aggregated {
            return Err(PlanError::unsupported(
                "HAVING without GROUP BY across shards",
            ));
        }
        let filter = having_filter(&mut p, h)?;
        p.spec.having = Some(filter);
    }
    // ORDER BY keys.
    let mut order_by = Vec::new();
    if let Some(ob) = &query.order_by {
        let OrderByKind::Expressions(exprs) = &ob.kind else {
            return Err(PlanError::unsupported("ORDER BY ALL"));
        };
        for o in exprs {
            if o.with_fill.is_some() || o.options.nulls_first.is_some() {
                return Err(PlanError::unsupported("NULLS FIRST/LAST"));
            }
            let descending = match &o.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(_) => return Err(PlanError::unsupported("ORDER BY ... USING")),
            };
            let (col, expr) = p.column_for(&o.expr, aggregated)?;
            let key = p.key(col, &expr, descending);
            order_by.push(key);
        }
    }
    p.spec.order_by = order_by;
    // LIMIT / OFFSET.
    let (limit, offset) = match &query.limit_clause {
        None => (None, 0),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(PlanError::unsupported("LIMIT BY"));
            }
            (
                limit.as_ref().map(limit_number).transpose()?,
                offset
                    .as_ref()
                    .map(|o| limit_number(&o.value))
                    .transpose()?
                    .unwrap_or(0),
            )
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (Some(limit_number(limit)?), limit_number(offset)?)
        }
    };
    p.spec.limit = limit;
    p.spec.offset = offset;
    p.spec.hidden = p.hidden.len();
    if p.spec.is_concatenation() {
        return Ok(Route::pass(&routing.keyspace.name, routing.shards));
    }
    // The shard query.
    let mut shard_select = select.clone();
    shard_select.projection = p.items;
    shard_select.projection.extend(p.hidden);
    shard_select.having = None;
    if distinct {
        // Merged by the sidecar over visible values; the shards may still dedupe.
        shard_select.distinct = Some(Distinct::Distinct);
    }
    let mut shard_query = query.clone();
    shard_query.body = Box::new(SetExpr::Select(Box::new(shard_select)));
    if aggregated || distinct {
        shard_query.order_by = None;
        shard_query.limit_clause = None;
    } else if let Some(l) = limit {
        shard_query.limit_clause = Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(
                SqlValue::Number(l.saturating_add(offset).to_string(), false).into(),
            )),
            offset: None,
            limit_by: Vec::new(),
        });
    }
    let sql = Statement::Query(Box::new(shard_query)).to_string();
    Ok(Route {
        shards: routing.shards,
        query: Some(sql),
        merge: Some(p.spec),
        ..Route::pass(&routing.keyspace.name, Vec::new())
    })
}

fn having_filter(p: &mut Projection, e: &Expr) -> Result<Filter, PlanError> {
    match e {
        Expr::Nested(inner) => having_filter(p, inner),
        Expr::BinaryOp { left, op, right } => {
            let cmp = match op {
                BinaryOperator::And => {
                    return Ok(Filter::And(
                        Box::new(having_filter(p, left)?),
                        Box::new(having_filter(p, right)?),
                    ))
                }
                BinaryOperator::Or => {
                    return Ok(Filter::Or(
                        Box::new(having_filter(p, left)?),
                        Box::new(having_filter(p, right)?),
                    ))
                }
                BinaryOperator::Eq => CmpOp::Eq,
                BinaryOperator::NotEq => CmpOp::NotEq,
                BinaryOperator::Lt => CmpOp::Lt,
                BinaryOperator::LtEq => CmpOp::LtEq,
                BinaryOperator::Gt => CmpOp::Gt,
                BinaryOperator::GtEq => CmpOp::GtEq,
                _ => return Err(PlanError::unsupported("this HAVING operator across shards")),
            };
            Ok(Filter::Cmp(
                cmp,
                having_operand(p, left)?,
                having_operand(p, right)?,
            ))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Filter::Not(Box::new(having_filter(p, expr)?))),
        Expr::IsNull(inner) => Ok(Filter::IsNull(having_operand(p, inner)?, false)),
        Expr::IsNotNull(inner) => Ok(Filter::IsNull(having_operand(p, inner)?, true)),
        _ => Err(PlanError::unsupported(
            "this HAVING condition across shards",
        )),
    }
}

fn having_operand(p: &mut Projection, e: &Expr) -> Result<Operand, PlanError> {
    match e {
        Expr::Value(v) => match &v.value {
            SqlValue::Number(n, _) => Ok(Operand::Literal {
                text: n.clone().into_bytes(),
                numeric: true,
            }),
            SqlValue::SingleQuotedString(s) => Ok(Operand::Literal {
                text: crate::sql::literal::unescape(s.as_bytes(), b'\''),
                numeric: false,
            }),
            SqlValue::Null => Ok(Operand::Null),
            _ => Err(PlanError::unsupported("this HAVING literal across shards")),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match having_operand(p, expr)? {
            Operand::Literal {
                text,
                numeric: true,
            } => {
                let mut t = b"-".to_vec();
                t.extend(text);
                Ok(Operand::Literal {
                    text: t,
                    numeric: true,
                })
            }
            _ => Err(PlanError::unsupported(
                "this HAVING expression across shards",
            )),
        },
        other => {
            let (col, _) = p.column_for(other, true)?;
            Ok(Operand::Col(col))
        }
    }
}
