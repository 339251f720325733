/* database/sql: one CLIENT span per statement, transaction start and transaction end a Go program runs through the
 * standard library's database/sql package, whichever driver serves it.
 *
 * Where (Go 1.25 through 1.27, registers per the Go register ABI; every function named below is one the compiler
 * keeps out of line):
 *   (*DB).queryDC(db, ctx, txctx, dc, releaseConn, query string, args)  RAX=db, R10/R11=query  -> (*Rows, error)
 *   (*DB).execDC(db, ctx, dc, release, query string, args)              RAX=db, R8/R9=query    -> (Result, error)
 *     Every Query/QueryRow/Exec of a DB, a Conn or a Tx ends in one of these two, on the caller's goroutine.
 *   (*Stmt).QueryContext(s, ctx, args...) / (*Stmt).ExecContext           RAX=s; text in s.query, DB in s.db
 *     A prepared statement's calls run the driver's statement directly (not through queryDC/execDC).
 *   (*DB).beginDC(db, ctx, dc, release, opts)                               RAX=db  -> (*Tx, error)
 *   (*Tx).Commit(tx) / (*Tx).rollback(tx, discardConn)                      RAX=tx; DB in tx.db  -> error
 *     (rollback, as Rollback is inlined; skipped when tx.done is already set: nothing is rolled back then)
 * The one return program reads the error from the registers the entry program noted (`err_slot`).
 *
 * The parent: the nearest span registered on the call's context chain (go_context.h ps_go_parent: a server span
 * whose r.Context() the query runs under, on whatever goroutine), else the goroutine's active span. The context is
 * the `ctx` argument (RBX/RCX: its data word is RCX) of queryDC, execDC, beginDC and the Stmt methods, and the
 * transaction's own (Tx.ctx, derived from BeginTx's) for Commit and rollback.
 *
 * The driver: the DB's `connector` field is a driver.Connector interface. Its itab's type is the driver's connector
 * (`*stdlib.driverConnector` for pgx), or `sql.dsnConnector` for a driver without OpenConnector, whose `driver` field
 * then holds the driver (`*sqlite.Driver` for modernc). Both type names go to user space, which maps them to
 * db.system.name. An error's dynamic type name becomes error.type the same way.
 *
 * Type names are read through `runtime.types` (go_types.h), found at the entry probe's runtime address plus the
 * distance user space measured in the binary for that function (`types_from_*`): position independent.
 *
 * server.address/port come from the connector's data source name (sql.dsnConnector.dsn, or pgx's driverConnector.name
 * when the binary's DWARF locates it), parsed in user space, which keeps nothing else of it.
 *
 * The statement's first DATABASE_SQL_QUERY_CAP bytes always go to user space: it summarises them into
 * db.operation.name and db.collection.name, and exports the text itself only when configured to. */
#include "common.h"
#include "go_context.h"
#include "sampling.h"
#include "nethttp.h"
#include "go_types.h"

#define DATABASE_SQL_QUERY_CAP 512
#define DATABASE_SQL_TYPE_CAP 64
#define DATABASE_SQL_DSN_CAP 128

/* database_sql_record.kind. Mirrored by `Kind` in src/instrumentations/DatabaseSql.ts. */
#define DATABASE_SQL_QUERY 1
#define DATABASE_SQL_EXEC 2
#define DATABASE_SQL_STMT_QUERY 3
#define DATABASE_SQL_STMT_EXEC 4
#define DATABASE_SQL_BEGIN 5
#define DATABASE_SQL_COMMIT 6
#define DATABASE_SQL_ROLLBACK 7

/* database_sql_record.dsn_of: which connector's field the DSN was read from. */
#define DATABASE_SQL_DSN_OF_DSN_CONNECTOR 1
#define DATABASE_SQL_DSN_OF_PGX 2

/* Per target. Mirrored by `Target` in src/instrumentations/DatabaseSql.ts, checked against this BTF at load. */
struct database_sql_target {
  /* runtime.types minus each entry probe's address; meaningful only when types_known. */
  s64 types_from_query;
  s64 types_from_exec;
  s64 types_from_stmt_query;
  s64 types_from_stmt_exec;
  s64 types_from_begin;
  s64 types_from_commit;
  s64 types_from_rollback;
  u64 types_known;
  struct ps_go_type_offsets type;
  u64 db_connector;
  u64 dsn_connector_driver;
  u64 dsn_connector_dsn;
  /* pgx's *stdlib.driverConnector.name (its DSN); meaningful only when pgx_known. */
  u64 pgx_connector_name;
  u64 pgx_known;
  u64 stmt_db;
  u64 stmt_query;
  u64 tx_db;
  /* Tx.done (an atomic.Bool: its first byte). */
  u64 tx_done;
  /* Tx.ctx's data word (the interface's offset + 8; 0: unknown, the goroutine's span is the parent). */
  u64 tx_ctx_data;
};

PS_TARGETS(struct database_sql_target);

/* Mirrored by `Record` in src/instrumentations/DatabaseSql.ts, checked against this BTF at load. The head is the HTTP
 * probes' span head (status unused, 0). */
struct database_sql_record {
  struct ps_http_head head;
  u8 kind;
  u8 has_error;
  u8 connector_tflag;
  u8 connector_len;
  u8 driver_tflag;
  u8 driver_len;
  u8 error_tflag;
  u8 error_len;
  /* The statement's full length (the text holds at most DATABASE_SQL_QUERY_CAP bytes of it). */
  u32 query_len;
  /* Bytes of `dsn`: the data source name the connector holds (user space keeps host, port and database only). */
  u8 dsn_len;
  /* Whose field `dsn` was read from: DATABASE_SQL_DSN_OF_*. */
  u8 dsn_of;
  /* The DSN's length when its bytes are at dsn_at (0: dsn_at is its header's address). */
  u8 dsn_cold_len;
  u8 _pad[1];
  /* runtime.types of this process, 0 when unknown. */
  u64 types;
  /* The itabs of the connector, driver and error whose type could not be read here (go_types.h), else 0. */
  u64 connector_at;
  u64 driver_at;
  u64 error_at;
  /* pgx's connector's DSN (a Go string) when the connector's type could not be read: user space reads it if the type
   * turns out to be pgx's. */
  u64 pgx_dsn_at;
  /* The statement's text when it could not be read here (a constant on a page not mapped yet), else 0. */
  u64 query_at;
  /* The DSN when it could not be read here (a constant given to sql.Open), else 0. */
  u64 dsn_at;
  char connector[DATABASE_SQL_TYPE_CAP];
  char driver[DATABASE_SQL_TYPE_CAP];
  char error[DATABASE_SQL_TYPE_CAP];
  char dsn[DATABASE_SQL_DSN_CAP];
  char query[DATABASE_SQL_QUERY_CAP];
};
PS_RECORD(database_sql_record);

struct database_sql_inflight {
  struct database_sql_record rec;
  /* Which registers hold the returned error: 1 = RAX/RBX, 2 = RBX/RCX, 3 = RCX/RDI. */
  u64 err_slot;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, struct ps_g_key);
  __type(value, struct database_sql_inflight);
} database_sql_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, u32);
  __type(value, struct database_sql_inflight);
} database_sql_scratch SEC(".maps");

/* Start a call's record: ids, parent, sampling, the driver's type names and the statement's text (query_ptr 0: none).
 * `ip` is the entry probe's runtime address and `types_from` its distance to runtime.types. */
static __always_inline int database_sql_start(u64 g, u64 call_ctx, u64 ip, u8 kind, u64 err_slot, u64 db,
                                              u64 query_ptr, u64 query_len, const struct database_sql_target *t,
                                              s64 types_from) {
  u32 zero = 0;
  struct database_sql_inflight *inf = bpf_map_lookup_elem(&database_sql_scratch, &zero);
  if (!inf)
    return 0;
  __builtin_memset(inf, 0, sizeof(*inf));
  struct database_sql_record *r = &inf->rec;
  r->head.start_ns = bpf_ktime_get_ns();
  r->head.pid = ps_tgid();
  r->kind = kind;
  inf->err_slot = err_slot;
  r->types = t->types_known ? ip + (u64)types_from : 0;

  struct ps_span_ctx sc = {};
  struct ps_span_ctx parent = {};
  bool has_parent = ps_go_parent(g, call_ctx, &parent) == 0;
  ps_span_begin(has_parent ? &parent : NULL, &sc);
  struct ps_g_key key = ps_g_key_of(g);
  /* An unsampled call is not worth the reads below; an entry a call that never returned left (a panic in the driver)
   * must not be ended by this call's RET. */
  if (!(sc.flags & PS_FLAG_SAMPLED)) {
    bpf_map_delete_elem(&database_sql_inflight, &key);
    return 0;
  }
  ps_http_head_ids(&r->head, &sc, has_parent ? &parent : NULL, PS_PARENT_LOCAL);

  r->query_len = query_len > 0xffffffff ? 0xffffffff : (u32)query_len;
  ps_read_go_str_or_at(r->query, DATABASE_SQL_QUERY_CAP, query_ptr, query_len, &r->query_at);

  if (db && r->types) {
    struct go_iface conn = {};
    if (bpf_probe_read_user(&conn, sizeof(conn), (const void *)(db + t->db_connector)) == 0 && conn.tab) {
      struct ps_go_type info = {};
      r->connector_len = ps_go_itab_describe(r->connector, DATABASE_SQL_TYPE_CAP, conn.tab, r->types, &t->type,
                                             &info, &r->connector_at);
      r->connector_tflag = info.tflag;
      /* The DSN, for server.address/port: sql.dsnConnector's (a struct), or pgx's connector's (a pointer). For any
       * other connector these bytes mean nothing; user space reads them only for those two types. A connector whose
       * type could not be read is taken for a struct, and pgx's field's address is kept in case it is pgx's. */
      bool unknown = r->connector_at != 0;
      if (conn.data && (unknown || info.kind != PS_GO_KIND_POINTER)) {
        r->dsn_len = ps_read_go_str_at_or_at(r->dsn, DATABASE_SQL_DSN_CAP, conn.data + t->dsn_connector_dsn,
                                             &r->dsn_at, &r->dsn_cold_len);
        r->dsn_of = DATABASE_SQL_DSN_OF_DSN_CONNECTOR;
        if (unknown && t->pgx_known)
          r->pgx_dsn_at = conn.data + t->pgx_connector_name;
      } else if (conn.data && t->pgx_known) {
        r->dsn_len = ps_read_go_str_at_or_at(r->dsn, DATABASE_SQL_DSN_CAP, conn.data + t->pgx_connector_name,
                                             &r->dsn_at, &r->dsn_cold_len);
        r->dsn_of = DATABASE_SQL_DSN_OF_PGX;
      }
      /* Only sql.dsnConnector has a driver field to look at; user space ignores it for any other connector. */
      struct go_iface drv = {};
      if ((unknown || info.kind != PS_GO_KIND_POINTER) && conn.data &&
          bpf_probe_read_user(&drv, sizeof(drv), (const void *)(conn.data + t->dsn_connector_driver)) == 0 &&
          drv.tab) {
        struct ps_go_type dinfo = {};
        r->driver_len = ps_go_itab_describe(r->driver, DATABASE_SQL_TYPE_CAP, drv.tab, r->types, &t->type, &dinfo,
                                            &r->driver_at);
        r->driver_tflag = dinfo.tflag;
      }
    }
  }

  bpf_map_update_elem(&database_sql_inflight, &key, inf, BPF_ANY);
  return 0;
}

SEC("uprobe/database_sql_DB_queryDC")
int uprobe_queryDC(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), db = GO_ARG1(ctx), q = GO_ARG8(ctx), n = GO_ARG9(ctx);
  struct database_sql_target *t = ps_target();
  if (!t)
    return 0;
  return database_sql_start(g, GO_ARG3(ctx), ip, DATABASE_SQL_QUERY, 2, db, q, n, t, t->types_from_query);
}

SEC("uprobe/database_sql_DB_execDC")
int uprobe_execDC(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), db = GO_ARG1(ctx), q = GO_ARG6(ctx), n = GO_ARG7(ctx);
  struct database_sql_target *t = ps_target();
  if (!t)
    return 0;
  return database_sql_start(g, GO_ARG3(ctx), ip, DATABASE_SQL_EXEC, 3, db, q, n, t, t->types_from_exec);
}

/* A prepared statement: its DB and text are fields of the *Stmt. */
static __always_inline int database_sql_stmt(u64 g, u64 call_ctx, u64 ip, u64 s, u8 kind, u64 err_slot,
                                             const struct database_sql_target *t, s64 types_from) {
  if (s == 0)
    return 0;
  struct go_string q = {};
  bpf_probe_read_user(&q, sizeof(q), (const void *)(s + t->stmt_query));
  return database_sql_start(g, call_ctx, ip, kind, err_slot, ps_read_u64(s + t->stmt_db), q.ptr, q.len, t,
                            types_from);
}

SEC("uprobe/database_sql_Stmt_QueryContext")
int uprobe_stmt_query(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), s = GO_ARG1(ctx);
  struct database_sql_target *t = ps_target();
  if (!t)
    return 0;
  return database_sql_stmt(g, GO_ARG3(ctx), ip, s, DATABASE_SQL_STMT_QUERY, 2, t, t->types_from_stmt_query);
}

SEC("uprobe/database_sql_Stmt_ExecContext")
int uprobe_stmt_exec(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), s = GO_ARG1(ctx);
  struct database_sql_target *t = ps_target();
  if (!t)
    return 0;
  return database_sql_stmt(g, GO_ARG3(ctx), ip, s, DATABASE_SQL_STMT_EXEC, 3, t, t->types_from_stmt_exec);
}

SEC("uprobe/database_sql_DB_beginDC")
int uprobe_beginDC(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), db = GO_ARG1(ctx);
  struct database_sql_target *t = ps_target();
  if (!t)
    return 0;
  return database_sql_start(g, GO_ARG3(ctx), ip, DATABASE_SQL_BEGIN, 2, db, 0, 0, t, t->types_from_begin);
}

SEC("uprobe/database_sql_Tx_Commit")
int uprobe_commit(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), tx = GO_ARG1(ctx);
  struct database_sql_target *t = ps_target();
  if (!t || tx == 0)
    return 0;
  u64 tx_ctx = t->tx_ctx_data ? ps_read_u64(tx + t->tx_ctx_data) : 0;
  return database_sql_start(g, tx_ctx, ip, DATABASE_SQL_COMMIT, 1, ps_read_u64(tx + t->tx_db), 0, 0, t,
                            t->types_from_commit);
}

SEC("uprobe/database_sql_Tx_rollback")
int uprobe_rollback(struct pt_regs *ctx) {
  u64 g = GO_G(ctx), ip = PT_REGS_IP(ctx), tx = GO_ARG1(ctx);
  struct database_sql_target *t = ps_target();
  if (!t || tx == 0)
    return 0;
  /* A finished transaction's rollback does nothing but return ErrTxDone: the idiomatic `defer tx.Rollback()` after
   * Commit, and the one Tx.awaitDone makes when Commit cancels the transaction's context. No span for those. */
  u8 done = 0;
  if (bpf_probe_read_user(&done, 1, (const void *)(tx + t->tx_done)) != 0 || done)
    return 0;
  u64 tx_ctx = t->tx_ctx_data ? ps_read_u64(tx + t->tx_ctx_data) : 0;
  return database_sql_start(g, tx_ctx, ip, DATABASE_SQL_ROLLBACK, 1, ps_read_u64(tx + t->tx_db), 0, 0, t,
                            t->types_from_rollback);
}

/* Every RET of every function above. */
SEC("uprobe/database_sql_ret")
int uprobe_database_sql_ret(struct pt_regs *ctx) {
  u64 g = GO_G(ctx);
  u64 ax = GO_ARG1(ctx), bx = GO_ARG2(ctx), cx = GO_ARG3(ctx);
  struct ps_g_key key = ps_g_key_of(g);
  struct database_sql_inflight *inf = bpf_map_lookup_elem(&database_sql_inflight, &key);
  if (!inf)
    return 0;
  struct database_sql_record *r = &inf->rec;
  r->head.end_ns = bpf_ktime_get_ns();
  u64 err_tab = inf->err_slot == 1 ? ax : inf->err_slot == 2 ? bx : cx;
  r->has_error = err_tab != 0;
  struct database_sql_target *t = ps_target();
  if (err_tab && t && r->types) {
    struct ps_go_type info = {};
    r->error_len = ps_go_itab_describe(r->error, DATABASE_SQL_TYPE_CAP, err_tab, r->types, &t->type, &info,
                                       &r->error_at);
    r->error_tflag = info.tflag;
  }
  ps_submit(r, sizeof(*r));
  bpf_map_delete_elem(&database_sql_inflight, &key);
  return 0;
}
