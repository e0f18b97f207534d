//! What the db role needs to know about one statement before it runs, read in one pass
//! of the lexer: its kind, the session state it creates or reads, its optimizer and
//! Shardcar hints, whether it has a top-level WHERE or LIMIT, and where a row limit can
//! be added.

use crate::sql::lexer::{shardcar_hint, Lexer, Token};

/// The statement's verb, as far as protection and pinning care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Select,
    Insert,
    Replace,
    Update,
    Delete,
    Load,
    Set,
    Use,
    Begin,
    Commit,
    Rollback,
    Savepoint,
    LockTables,
    UnlockTables,
    /// CREATE, ALTER, DROP, TRUNCATE, RENAME.
    Ddl,
    Show,
    Explain,
    Call,
    Do,
    Prepare,
    Execute,
    Deallocate,
    Xa,
    Handler,
    Kill,
    /// GRANT, REVOKE, FLUSH, ANALYZE, OPTIMIZE, and anything unrecognised.
    Other,
}

impl Kind {
    /// The lower-case name used in configuration and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::Replace => "replace",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Load => "load",
            Kind::Set => "set",
            Kind::Use => "use",
            Kind::Begin => "begin",
            Kind::Commit => "commit",
            Kind::Rollback => "rollback",
            Kind::Savepoint => "savepoint",
            Kind::LockTables => "lock",
            Kind::UnlockTables => "unlock",
            Kind::Ddl => "ddl",
            Kind::Show => "show",
            Kind::Explain => "explain",
            Kind::Call => "call",
            Kind::Do => "do",
            Kind::Prepare => "prepare",
            Kind::Execute => "execute",
            Kind::Deallocate => "deallocate",
            Kind::Xa => "xa",
            Kind::Handler => "handler",
            Kind::Kill => "kill",
            Kind::Other => "other",
        }
    }

    /// Whether statements of this kind change rows.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Kind::Insert | Kind::Replace | Kind::Update | Kind::Delete | Kind::Load
        )
    }

    /// Whether the statement only reads and leaves no session state behind, so that
    /// identical concurrent ones may share a result.
    pub fn reads_only(self) -> bool {
        matches!(self, Kind::Select | Kind::Show | Kind::Explain)
    }
}

/// Session state a statement creates or depends on, beyond variables set with SET.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// Assigns a user variable (`@x := ..`, `INTO @x`).
    pub sets_user_variable: bool,
    /// Takes a named lock (`GET_LOCK(..)`).
    pub named_lock: bool,
    /// Creates a temporary table.
    pub temporary_table: bool,
    /// `SQL_CALC_FOUND_ROWS`: the next `FOUND_ROWS()` needs this connection.
    pub calc_found_rows: bool,
    /// Reads `LAST_INSERT_ID()`, `ROW_COUNT()`, `FOUND_ROWS()` or `CONNECTION_ID()`.
    pub session_functions: bool,
    /// `LAST_INSERT_ID(expr)`: sets the value the next `LAST_INSERT_ID()` returns.
    pub sets_last_insert_id: bool,
    /// `XA START`/`XA BEGIN` (opens) or `XA COMMIT`/`XA ROLLBACK` (closes).
    pub xa_open: bool,
    pub xa_close: bool,
    /// `HANDLER .. OPEN`.
    pub handler_open: bool,
    /// `FLUSH TABLES .. WITH READ LOCK`, which holds until UNLOCK TABLES like LOCK TABLES.
    pub global_read_lock: bool,
    /// More than one statement in the text (CLIENT_MULTI_STATEMENTS).
    pub multi: bool,
    /// A locking read: SELECT ... FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE.
    pub locking_read: bool,
    /// Calls a function whose result differs between identical calls (RAND, UUID, ...),
    /// so identical statements must not share one result.
    pub nondeterministic: bool,
}

/// A top-level LIMIT clause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Limit {
    #[default]
    None,
    /// At most this many rows.
    Rows(u64),
    /// A placeholder or variable: unknown until execution.
    Unknown,
}

/// The analysis of one COM_QUERY text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: Kind,
    pub effects: Effects,
    /// A WHERE clause outside any parentheses.
    pub has_where: bool,
    /// A FROM clause outside any parentheses.
    pub has_from: bool,
    pub limit: Limit,
    /// Byte offset where ` LIMIT n` can be inserted (a single SELECT without INTO), so
    /// that mysqld stops producing rows beyond a row limit.
    pub limit_at: Option<usize>,
    /// `/*+ MAX_EXECUTION_TIME(n) */` or `/* shardcar: timeout_ms=n */`, in milliseconds.
    pub max_execution_ms: Option<u64>,
    /// The tables the statement names after FROM (and its comma list), JOIN, INTO,
    /// UPDATE and TABLE, at any depth, lower-cased and without schema qualifier; at most
    /// [`MAX_TABLES`]. A lexical reading, for query rules and logs.
    pub tables: Vec<String>,
}

/// Analyzes `text` (a COM_QUERY payload after its command byte).
pub fn analyze(text: &str) -> Statement {
    let mut scan = Scan::default();
    let mut lexer = Lexer::new(text);
    let mut prev: Option<Token> = None;
    let mut prev2: Option<Token> = None;
    loop {
        let before = lexer.position();
        let Some(token) = lexer.next() else { break };
        scan.token(token, prev, prev2, before, lexer.position());
        if !matches!(token, Token::Comment(_)) {
            prev2 = prev;
            prev = Some(token);
        }
    }
    if let Some(Token::Other("(")) = prev {
        // An unbalanced statement: leave it to mysqld, and do not rewrite it.
        scan.limit_at_end = None;
    }
    let kind = scan.kind.unwrap_or(Kind::Other);
    let limit_at = if kind == Kind::Select
        && !scan.into
        && !scan.effects.multi
        && scan.depth == 0
        && scan.limit == Limit::None
    {
        scan.locking_clause_at.or(scan.limit_at_end)
    } else {
        None
    };
    let max_execution_ms = scan
        .max_execution_ms
        .or_else(|| shardcar_hint(text, "timeout_ms").and_then(|v| v.parse::<u64>().ok()));
    Statement {
        kind,
        effects: scan.effects,
        has_where: scan.has_where,
        has_from: scan.has_from,
        limit: scan.limit,
        limit_at,
        max_execution_ms,
        tables: scan.tables,
    }
}

#[derive(Default)]
struct Scan {
    kind: Option<Kind>,
    /// Words of the current statement seen at depth 0, up to a few, upper-cased.
    leading: Vec<String>,
    depth: u32,
    effects: Effects,
    has_where: bool,
    has_from: bool,
    into: bool,
    limit: Limit,
    /// The LIMIT keyword was the previous top-level token (and the count comes next).
    in_limit: LimitState,
    locking_clause_at: Option<usize>,
    pending_for: Option<usize>,
    pending_lock: Option<usize>,
    limit_at_end: Option<usize>,
    max_execution_ms: Option<u64>,
    tables: Vec<String>,
    want_table: bool,
    /// Depth of the FROM/UPDATE list being read (a comma there introduces a table).
    table_list: Option<u32>,
    /// Words since the last table of the list (the alias may follow the name).
    after_table: u32,
    statements: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LimitState {
    #[default]
    Idle,
    /// After LIMIT.
    First,
    /// After `LIMIT a` (a comma or OFFSET may follow).
    AfterFirst,
    /// After `LIMIT a,`.
    Second,
}

fn is_word(token: Option<Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Scan {
    fn token(
        &mut self,
        token: Token,
        prev: Option<Token>,
        prev2: Option<Token>,
        before: usize,
        after: usize,
    ) {
        match token {
            Token::Comment(c) => {
                if c.starts_with("/*+") {
                    if let Some(ms) = max_execution_time(c) {
                        self.max_execution_ms = Some(ms);
                    }
                }
                return;
            }
            Token::Other(";") if self.depth == 0 => {
                self.statements += 1;
                self.leading.clear();
                self.in_limit = LimitState::Idle;
                return;
            }
            _ => {}
        }
        if self.statements > 0 && self.leading.is_empty() {
            self.effects.multi = true;
        }
        self.limit_at_end = Some(after);
        match token {
            Token::Other("(") => {
                self.depth += 1;
                if matches!(prev, Some(Token::Word(w)) if is_session_function(w))
                    && !is_word(prev2, "FUNCTION")
                {
                    self.effects.session_functions = true;
                }
                if is_word(prev, "GET_LOCK") {
                    self.effects.named_lock = true;
                }
                if matches!(prev, Some(Token::Word(w)) if is_nondeterministic(w)) {
                    self.effects.nondeterministic = true;
                }
                if self.depth == 1 && self.leading.is_empty() && self.statements == 0 {
                    // `(SELECT ..) UNION (SELECT ..)`
                    self.leading.push("(".to_owned());
                    self.classify();
                }
                self.limit_state_other();
                return;
            }
            Token::Other(")") => {
                self.depth = self.depth.saturating_sub(1);
                return;
            }
            _ => {}
        }
        // `LAST_INSERT_ID(` followed by anything but `)` sets the value.
        if matches!(prev, Some(Token::Other("(")))
            && is_word(prev2, "LAST_INSERT_ID")
            && token != Token::Other(")")
        {
            self.effects.sets_last_insert_id = true;
        }
        if let Token::Variable(v) = token {
            if !v.starts_with("@@") && is_word(prev, "INTO") {
                self.effects.sets_user_variable = true;
            }
        }
        if token == Token::Other(":=")
            && matches!(prev, Some(Token::Variable(v)) if !v.starts_with("@@"))
        {
            self.effects.sets_user_variable = true;
        }
        if let Token::Word(w) = token {
            if w.eq_ignore_ascii_case("SQL_CALC_FOUND_ROWS") {
                self.effects.calc_found_rows = true;
            }
        }
        self.tables(token, prev);
        if self.depth > 0 {
            return;
        }
        self.top_level(token, before);
    }

    fn tables(&mut self, token: Token, prev: Option<Token>) {
        if self.want_table {
            if let Token::Word(w) = token {
                if [
                    "LOW_PRIORITY",
                    "IGNORE",
                    "QUICK",
                    "DELAYED",
                    "HIGH_PRIORITY",
                ]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
                {
                    return;
                }
            }
            self.want_table = false;
            if let Token::Word(w) | Token::Quoted(w) = token {
                if !is_keyword_after_from(w) && self.tables.len() < MAX_TABLES {
                    self.tables.push(w.to_ascii_lowercase());
                    self.after_table = 0;
                }
            }
            return;
        }
        match token {
            // `schema.table`: the table is the next word.
            Token::Other(".") if self.after_table == 0 && !self.tables.is_empty() => {
                if matches!(prev, Some(Token::Word(_) | Token::Quoted(_))) {
                    self.tables.pop();
                    self.want_table = true;
                }
            }
            Token::Other(",") if self.table_list == Some(self.depth) => self.want_table = true,
            Token::Word(w)
                if w.eq_ignore_ascii_case("UPDATE")
                    && (is_word(prev, "KEY") || is_word(prev, "FOR")) => {}
            Token::Word(w) if ["FROM", "UPDATE"].iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                self.want_table = true;
                self.table_list = Some(self.depth);
            }
            Token::Word(w)
                if ["JOIN", "INTO", "TABLE"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                self.want_table = true;
            }
            Token::Word(w) if self.table_list == Some(self.depth) => {
                if ends_table_list(w) {
                    self.table_list = None;
                }
                self.after_table += 1;
            }
            _ => self.after_table += 1,
        }
    }

    fn top_level(&mut self, token: Token, before: usize) {
        let word = match token {
            Token::Word(w) => Some(w),
            _ => None,
        };
        match self.in_limit {
            LimitState::Idle => {}
            LimitState::First => {
                self.limit = match token {
                    Token::Number(n) => n.parse().map_or(Limit::Unknown, Limit::Rows),
                    _ => Limit::Unknown,
                };
                self.in_limit = LimitState::AfterFirst;
                return;
            }
            LimitState::AfterFirst => {
                if token == Token::Other(",") {
                    self.in_limit = LimitState::Second;
                    return;
                }
                self.in_limit = LimitState::Idle;
            }
            LimitState::Second => {
                self.limit = match token {
                    Token::Number(n) => n.parse().map_or(Limit::Unknown, Limit::Rows),
                    _ => Limit::Unknown,
                };
                self.in_limit = LimitState::Idle;
                return;
            }
        }
        let Some(word) = word else {
            return;
        };
        let upper = word.to_ascii_uppercase();
        if self.leading.len() < 4 {
            self.leading.push(upper.clone());
            if self.statements == 0 {
                self.classify();
            }
        }
        if self.statements == 0
            && self.leading.first().is_some_and(|w| w == "WITH")
            && matches!(upper.as_str(), "UPDATE" | "DELETE" | "INSERT" | "REPLACE")
            && self.kind == Some(Kind::Select)
        {
            self.kind = Some(match upper.as_str() {
                "UPDATE" => Kind::Update,
                "DELETE" => Kind::Delete,
                "INSERT" => Kind::Insert,
                _ => Kind::Replace,
            });
        }
        match upper.as_str() {
            "WHERE" => self.has_where = true,
            "FROM" => self.has_from = true,
            "INTO" if self.kind == Some(Kind::Select) => self.into = true,
            "LIMIT" => self.in_limit = LimitState::First,
            // FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE; not FOR SYSTEM_TIME.
            "UPDATE" | "SHARE" if self.pending_for.is_some() => {
                self.locking_clause_at = self.locking_clause_at.or(self.pending_for);
                self.effects.locking_read = true;
            }
            "IN" if self.pending_lock.is_some() => {
                self.locking_clause_at = self.locking_clause_at.or(self.pending_lock);
                self.effects.locking_read = true;
            }
            _ => {}
        }
        self.pending_for = (upper == "FOR" && self.has_from).then_some(before);
        self.pending_lock = (upper == "LOCK" && self.has_from).then_some(before);
    }

    fn limit_state_other(&mut self) {
        if self.depth == 1 && self.in_limit != LimitState::Idle {
            self.limit = Limit::Unknown;
            self.in_limit = LimitState::Idle;
        }
    }

    /// Sets the kind from the leading words of the first statement.
    fn classify(&mut self) {
        let w: Vec<&str> = self.leading.iter().map(String::as_str).collect();
        let kind = match w.as_slice() {
            ["SELECT" | "VALUES" | "(", ..] => Kind::Select,
            // The verb after the CTEs decides (below); until then, a SELECT.
            ["WITH", ..] => self.kind.unwrap_or(Kind::Select),
            ["INSERT", ..] => Kind::Insert,
            ["REPLACE", ..] => Kind::Replace,
            ["UPDATE", ..] => Kind::Update,
            ["DELETE", ..] => Kind::Delete,
            ["LOAD", ..] => Kind::Load,
            ["SET", ..] => Kind::Set,
            ["USE", ..] => Kind::Use,
            ["BEGIN", ..] | ["START", "TRANSACTION", ..] => Kind::Begin,
            ["COMMIT", ..] => Kind::Commit,
            ["ROLLBACK", "TO", ..] | ["RELEASE", "SAVEPOINT", ..] | ["SAVEPOINT", ..] => {
                Kind::Savepoint
            }
            ["ROLLBACK", ..] => Kind::Rollback,
            ["LOCK", "TABLE" | "TABLES", ..] => Kind::LockTables,
            ["UNLOCK", "TABLE" | "TABLES", ..] => Kind::UnlockTables,
            ["CREATE", "TEMPORARY", ..] | ["CREATE", "OR", "REPLACE", "TEMPORARY"] => {
                self.effects.temporary_table = true;
                Kind::Ddl
            }
            ["DEALLOCATE", ..] | ["DROP", "PREPARE", ..] => Kind::Deallocate,
            ["CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME", ..] => Kind::Ddl,
            ["SHOW", ..] | ["DESCRIBE" | "DESC", ..] => Kind::Show,
            ["EXPLAIN", ..] => Kind::Explain,
            ["CALL", ..] => Kind::Call,
            ["DO", ..] => Kind::Do,
            ["PREPARE", ..] => Kind::Prepare,
            ["EXECUTE", ..] => Kind::Execute,
            ["XA", second, ..] => {
                match *second {
                    "START" | "BEGIN" => self.effects.xa_open = true,
                    "COMMIT" | "ROLLBACK" => self.effects.xa_close = true,
                    _ => {}
                }
                Kind::Xa
            }
            ["XA"] => Kind::Xa,
            ["HANDLER", _, "OPEN", ..] => {
                self.effects.handler_open = true;
                Kind::Handler
            }
            ["HANDLER", ..] => Kind::Handler,
            ["KILL", ..] => Kind::Kill,
            _ => Kind::Other,
        };
        if matches!(w.as_slice(), ["FLUSH", "TABLE" | "TABLES", .., "WITH"]) {
            self.effects.global_read_lock = true;
        }
        self.kind = Some(kind);
    }
}

/// Functions whose value belongs to the connection and that the db role answers from
/// what it tracked when a statement moves to another backend connection.
fn is_session_function(word: &str) -> bool {
    ["LAST_INSERT_ID", "ROW_COUNT", "FOUND_ROWS", "CONNECTION_ID"]
        .iter()
        .any(|f| word.eq_ignore_ascii_case(f))
}

/// Most table names kept per statement.
pub const MAX_TABLES: usize = 32;

fn ends_table_list(word: &str) -> bool {
    [
        "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "SET", "ON", "USING", "WINDOW", "UNION",
        "FOR", "LOCK", "INTO", "VALUES", "SELECT", "JOIN",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

fn is_nondeterministic(word: &str) -> bool {
    ["RAND", "UUID", "UUID_SHORT", "SYSDATE", "NEXTVAL"]
        .iter()
        .any(|f| word.eq_ignore_ascii_case(f))
}

fn is_keyword_after_from(word: &str) -> bool {
    [
        "SELECT",
        "DUAL",
        "LATERAL",
        "JSON_TABLE",
        "OUTFILE",
        "DUMPFILE",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

/// The `n` of `MAX_EXECUTION_TIME(n)` in an optimizer hint comment.
fn max_execution_time(comment: &str) -> Option<u64> {
    let upper = comment.to_ascii_uppercase();
    let at = upper.find("MAX_EXECUTION_TIME")?;
    let rest = upper[at + "MAX_EXECUTION_TIME".len()..].trim_start();
    let rest = rest.strip_prefix('(')?;
    let end = rest.find(')')?;
    rest[..end].trim().parse().ok()
}

/// The values the session functions take for this session, tracked by the db role;
/// `None` leaves the call to mysqld.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionValues {
    pub last_insert_id: Option<u64>,
    /// `ROW_COUNT()`: affected rows of the last DML, -1 after a result set, 0 otherwise.
    pub row_count: Option<i64>,
    /// `FOUND_ROWS()`: rows of the last SELECT (without SQL_CALC_FOUND_ROWS).
    pub found_rows: Option<u64>,
    /// The connection id the client was given at login.
    pub connection_id: Option<u32>,
}

/// `text` with `LAST_INSERT_ID()`, `ROW_COUNT()`, `FOUND_ROWS()` and `CONNECTION_ID()`
/// (without arguments) replaced by the session's values, since a multiplexed statement
/// runs on a backend connection whose own values belong to whoever used it last. `None`
/// when nothing was replaced.
pub fn substitute_session_functions(text: &str, values: &SessionValues) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut copied = 0;
    let mut lexer = Lexer::new(text);
    let mut pending: Option<(usize, &str)> = None;
    let mut open = false;
    let mut replaced = false;
    while let Some(token) = lexer.next() {
        let end = lexer.position();
        match (token, pending, open) {
            (Token::Word(w), _, _) if is_session_function(w) => {
                pending = Some((end - w.len(), w));
                open = false;
                continue;
            }
            (Token::Other("("), Some(_), false) => {
                open = true;
                continue;
            }
            (Token::Other(")"), Some((start, name)), true) => {
                let value = match name.to_ascii_uppercase().as_str() {
                    "LAST_INSERT_ID" => values.last_insert_id.map(|v| v.to_string()),
                    "ROW_COUNT" => values.row_count.map(|v| v.to_string()),
                    "FOUND_ROWS" => values.found_rows.map(|v| v.to_string()),
                    _ => values.connection_id.map(|v| v.to_string()),
                };
                if let Some(value) = value {
                    out.push_str(&text[copied..start]);
                    out.push_str(&value);
                    copied = end;
                    replaced = true;
                }
            }
            (Token::Comment(_), _, _) => continue,
            _ => {}
        }
        pending = None;
        open = false;
    }
    if !replaced {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// `text` with ` LIMIT n` inserted where [`Statement::limit_at`] says.
pub fn with_limit(text: &str, at: usize, n: u64) -> String {
    let at = at.min(text.len());
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str(&text[..at]);
    out.push_str(" LIMIT ");
    out.push_str(&n.to_string());
    out.push_str(&text[at..]);
    out
}

/// The database a `USE db` statement switches to (back-quotes removed, comments
/// skipped), or `None` when `text` is not one.
pub fn use_database(text: &str) -> Option<String> {
    let mut words = Lexer::new(text).filter(|t| !matches!(t, Token::Comment(_)));
    match words.next()? {
        Token::Word(w) if w.eq_ignore_ascii_case("use") => {}
        _ => return None,
    }
    match words.next()? {
        Token::Word(db) => Some(db.to_owned()),
        Token::Quoted(db) => Some(db.replace("``", "`")),
        _ => None,
    }
}

/// The statements of a multi-statement text (split at `;` outside parentheses, quotes
/// and comments), trimmed, empty ones left out.
pub fn split_statements(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lexer = Lexer::new(text);
    let (mut start, mut depth) = (0usize, 0usize);
    loop {
        let before = lexer.position();
        let Some(token) = lexer.next() else { break };
        match token {
            Token::Other("(") => depth += 1,
            Token::Other(")") => depth = depth.saturating_sub(1),
            Token::Other(";") if depth == 0 => {
                let piece = text[start..before].trim();
                if !piece.is_empty() {
                    out.push(piece);
                }
                start = lexer.position();
            }
            _ => {}
        }
    }
    let piece = text[start.min(text.len())..].trim();
    if !piece.is_empty() {
        out.push(piece);
    }
    out
}
