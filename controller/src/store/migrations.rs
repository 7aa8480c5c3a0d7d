//! Schema migrations: numbered, applied once each, recorded in `schema_migrations`.
//!
//! Each engine has its own steps, to the same numbers: SQLite's from 1; PostgreSQL's start at
//! [`POSTGRES_FIRST`] with the whole schema SQLite had reached by then (the engine came in
//! at that version), and from there each SQLite step has its PostgreSQL twin
//! (`postgres_has_a_twin_of_every_step` holds that).

use super::db::{Conn, DbTx, Engine, OptionalExtension};
use super::{sql, StoreError};

/// SQLite's steps. Append only; never edit a released step.
const MIGRATIONS: &[&str] = &[
    // 1: nodes and the append-only boot event log.
    "CREATE TABLE nodes (
        id           TEXT PRIMARY KEY,
        serial       TEXT NOT NULL UNIQUE,
        full_serial  TEXT,
        mac          TEXT,
        model        TEXT,
        hostname     TEXT,
        state        TEXT NOT NULL,
        workflow_id  TEXT,
        machine_id   TEXT NOT NULL,
        overlay_mode TEXT,
        base_image   TEXT,
        last_boot_at TEXT,
        last_ip      TEXT,
        conflict     TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE boot_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id TEXT,
        serial  TEXT NOT NULL,
        kind    TEXT NOT NULL,
        at      TEXT NOT NULL,
        ip      TEXT,
        detail  TEXT NOT NULL
    );
    CREATE INDEX boot_events_by_node ON boot_events(node_id, id);
    CREATE INDEX boot_events_by_serial ON boot_events(serial, id);
    CREATE TRIGGER boot_events_no_update BEFORE UPDATE ON boot_events
        BEGIN SELECT RAISE(ABORT, 'boot_events is append-only'); END;
    CREATE TRIGGER boot_events_no_delete BEFORE DELETE ON boot_events
        BEGIN SELECT RAISE(ABORT, 'boot_events is append-only'); END;",
    // 2: a node whose persistent layer broke (reason, NULL when fine); an 8-hex "full
    // serial" is a short one, not recorded as full.
    "ALTER TABLE nodes ADD COLUMN degraded TEXT;
    UPDATE nodes SET full_serial = NULL WHERE length(full_serial) <= 8;",
    // 3: the unguessable id of a node's current boot (its callback URL) and the address
    // that asked for that boot: reports are accepted on that id only.
    "ALTER TABLE nodes ADD COLUMN boot_id TEXT;
    ALTER TABLE nodes ADD COLUMN boot_ip TEXT;
    CREATE UNIQUE INDEX nodes_by_boot_id ON nodes(boot_id);",
    // 4: one row /healthz rewrites, to know that writes still reach the disk.
    "CREATE TABLE write_check (id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL);",
    // 5: retention. The log stays append-only for what is kept: only a prefix (ids up to a
    // recorded prune mark) may be deleted, marks only grow and are themselves append-only.
    "CREATE INDEX nodes_by_state ON nodes(state);
    CREATE TABLE event_prunes (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        up_to  INTEGER NOT NULL,
        at     TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TRIGGER event_prunes_grow BEFORE INSERT ON event_prunes
        WHEN NEW.up_to < (SELECT COALESCE(MAX(up_to), 0) FROM event_prunes)
        BEGIN SELECT RAISE(ABORT, 'prune marks only grow'); END;
    CREATE TRIGGER event_prunes_no_update BEFORE UPDATE ON event_prunes
        BEGIN SELECT RAISE(ABORT, 'event_prunes is append-only'); END;
    CREATE TRIGGER event_prunes_no_delete BEFORE DELETE ON event_prunes
        BEGIN SELECT RAISE(ABORT, 'event_prunes is append-only'); END;
    DROP TRIGGER boot_events_no_delete;
    CREATE TRIGGER boot_events_no_delete BEFORE DELETE ON boot_events
        WHEN OLD.id > (SELECT COALESCE(MAX(up_to), 0) FROM event_prunes)
        BEGIN SELECT RAISE(ABORT, 'boot_events is append-only (only a pruned prefix may go)'); END;",
    // 6: one pending boot per (node, address): a boot asked from another address has its
    // own id and never replaces the one the node's own address holds. Whether the node's
    // MAC was set by an operator (deployments wait for that).
    "ALTER TABLE nodes ADD COLUMN mac_confirmed INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE node_boots (
        boot_id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        ip      TEXT NOT NULL,
        at      TEXT NOT NULL,
        UNIQUE (node_id, ip)
    );
    INSERT INTO node_boots (boot_id, node_id, ip, at)
        SELECT boot_id, id, boot_ip, COALESCE(last_boot_at, updated_at) FROM nodes
        WHERE boot_id IS NOT NULL AND boot_ip IS NOT NULL;
    DROP INDEX nodes_by_boot_id;
    UPDATE nodes SET boot_id = NULL;",
    // 7: the log is pruned as it grows (a mark every few thousand events): the latest mark,
    // read by each prune and by the delete trigger for every row it deletes, is an index
    // lookup instead of a scan of every mark.
    "CREATE INDEX event_prunes_by_up_to ON event_prunes(up_to);",
    // 8: after the boot. Each pending boot keeps its stages (pi-init's report, "boot
    // complete") and the writable layer it runs on; the post-boot steps' runs (a bounded
    // history per node), the last success of each step (what `first_boot` goes by) and the
    // operator's reruns (a success counts only after the run id recorded there).
    "ALTER TABLE node_boots ADD COLUMN layer TEXT NOT NULL DEFAULT '';
    ALTER TABLE node_boots ADD COLUMN installed_at TEXT;
    ALTER TABLE node_boots ADD COLUMN installed_ms INTEGER;
    ALTER TABLE node_boots ADD COLUMN pi_init_steps TEXT;
    ALTER TABLE node_boots ADD COLUMN complete_at TEXT;
    ALTER TABLE node_boots ADD COLUMN complete TEXT;
    ALTER TABLE node_boots ADD COLUMN healthy INTEGER;
    CREATE INDEX node_boots_by_node ON node_boots(node_id, at);
    CREATE TABLE step_runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id     TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        boot_id     TEXT NOT NULL,
        name        TEXT NOT NULL,
        digest      TEXT NOT NULL,
        layer       TEXT NOT NULL,
        ok          INTEGER NOT NULL,
        summary     TEXT NOT NULL,
        exit_code   INTEGER,
        timed_out   INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        output      TEXT NOT NULL,
        output_dropped INTEGER NOT NULL,
        at          TEXT NOT NULL
    );
    CREATE INDEX step_runs_by_node ON step_runs(node_id, id);
    CREATE TABLE step_done (
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        name    TEXT NOT NULL,
        digest  TEXT NOT NULL,
        layer   TEXT NOT NULL,
        run_id  INTEGER NOT NULL,
        PRIMARY KEY (node_id, name)
    );
    CREATE TABLE step_reruns (
        node_id  TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        name     TEXT NOT NULL,
        after_id INTEGER NOT NULL,
        PRIMARY KEY (node_id, name)
    );",
    // 9: a node's own volumes, as JSON (`[{"path":…,"size_mb":…}]`); NULL: none.
    "ALTER TABLE nodes ADD COLUMN volumes TEXT;",
    // 10: node groups (a parent each at most; volumes and variables as JSON, NULL: none),
    // a node's group, and the rules that place new nodes in a group at first contact
    // (lowest priority first). Existing nodes are in no group: they boot as before.
    "CREATE TABLE groups (
        name         TEXT PRIMARY KEY,
        parent       TEXT REFERENCES groups(name),
        workflow_id  TEXT,
        base_image   TEXT,
        overlay_mode TEXT,
        hostname     TEXT,
        volumes      TEXT,
        variables    TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    ALTER TABLE nodes ADD COLUMN group_name TEXT REFERENCES groups(name);
    CREATE INDEX nodes_by_group ON nodes(group_name);
    CREATE TABLE group_rules (
        priority   INTEGER PRIMARY KEY,
        group_name TEXT NOT NULL REFERENCES groups(name),
        serial     TEXT,
        mac        TEXT,
        model      TEXT,
        created_at TEXT NOT NULL
    );",
    // 11: image versions and channels. A version is an immutable directory under base/
    // (`dir`); a channel points at one and remembers the one before (rollback). A rollout's
    // canaries are pinned to its version (`version_pins`) until it ends; its events, and
    // every channel's, are one stream (`image_events`). Each boot records the version it was
    // answered and whether pi-init reported it failed; a node, the version it last reported
    // booting and the one its writable layer was last prepared for. Existing base/<name> directories are registered as channels at start (the
    // export is not visible here; see service/versions.rs).
    "CREATE TABLE image_versions (
        id          TEXT PRIMARY KEY,
        channel     TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        dir         TEXT NOT NULL UNIQUE,
        digest      TEXT,
        size        INTEGER,
        imported_at TEXT NOT NULL,
        complete    INTEGER NOT NULL,
        bad         TEXT,
        UNIQUE (channel, seq)
    );
    CREATE TABLE image_channels (
        name     TEXT PRIMARY KEY,
        version  TEXT NOT NULL,
        previous TEXT,
        moved_at TEXT NOT NULL
    );
    CREATE TABLE rollouts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        channel      TEXT NOT NULL,
        version      TEXT NOT NULL,
        from_version TEXT NOT NULL,
        canaries     TEXT NOT NULL,
        wait_secs    INTEGER NOT NULL,
        min_healthy  INTEGER NOT NULL,
        health       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        outcome      TEXT,
        reason       TEXT,
        ended_at     TEXT
    );
    CREATE INDEX rollouts_by_channel ON rollouts(channel, id);
    CREATE TABLE version_pins (
        node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        version TEXT NOT NULL,
        rollout INTEGER NOT NULL
    );
    CREATE TABLE image_events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        rollout INTEGER,
        kind    TEXT NOT NULL,
        at      TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX image_events_by_channel ON image_events(channel, id);
    ALTER TABLE node_boots ADD COLUMN version TEXT;
    ALTER TABLE node_boots ADD COLUMN failed TEXT;
    ALTER TABLE nodes ADD COLUMN running_version TEXT;
    ALTER TABLE nodes ADD COLUMN layer_version TEXT;",
    // 12: the pool of NFS servers (`[[nfs.servers]]`, service/pool.rs): the server each
    // node was placed on (its home: where its data lives, sticky), and the pins an operator
    // set on a node or a group. Servers are named by their configured address; they live in
    // the config, not here.
    "CREATE TABLE nfs_homes (
        node_id   TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
        server    TEXT NOT NULL,
        placed_at TEXT NOT NULL
    );
    CREATE INDEX nfs_homes_by_server ON nfs_homes(server);
    CREATE TABLE node_nfs_pins (
        node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
        server  TEXT NOT NULL
    );
    CREATE TABLE group_nfs_pins (
        group_name TEXT PRIMARY KEY REFERENCES groups(name) ON DELETE CASCADE,
        server     TEXT NOT NULL
    );",
];

/// The schema version PostgreSQL's first step creates.
const POSTGRES_FIRST: i64 = 12;

/// PostgreSQL's steps, from [`POSTGRES_FIRST`]. Append only, one twin per SQLite step.
///
/// Written for what the store's SQL expects of SQLite: 64-bit integers (`BIGINT`), text
/// compared byte by byte (`COLLATE "C"`, as SQLite's default; timestamps are ISO text),
/// SQLite's `rowid` where the SQL orders by it (node_boots), and the two SQLite date
/// functions it uses (`strftime` with the formats `%Y-%m-%dT%H:%M:%fZ` and `%s`, and
/// `julianday`), of the same meaning. The append-only triggers are SQLite's, in PL/pgSQL.
const POSTGRES_MIGRATIONS: &[&str] = &[POSTGRES_SCHEMA_12];

const POSTGRES_SCHEMA_12: &str = r#"
CREATE FUNCTION pureboot_time(t text) RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN t = 'now' THEN statement_timestamp() ELSE t::timestamptz END
$$;
CREATE FUNCTION strftime(fmt text, t text, modifier text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE fmt
        WHEN '%Y-%m-%dT%H:%M:%fZ'
            THEN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        WHEN '%s' THEN floor(extract(epoch FROM ts))::bigint::text
    END
    FROM (SELECT pureboot_time(t) + COALESCE(modifier::interval, interval '0') AS ts) AS s
$$;
CREATE FUNCTION julianday(t text) RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT extract(epoch FROM pureboot_time(t))::double precision / 86400.0 + 2440587.5
$$;
CREATE FUNCTION pureboot_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;
CREATE FUNCTION boot_events_delete_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id > (SELECT COALESCE(MAX(up_to), 0) FROM event_prunes) THEN
        RAISE EXCEPTION 'boot_events is append-only (only a pruned prefix may go)';
    END IF;
    RETURN OLD;
END
$$;
CREATE FUNCTION event_prunes_grow_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.up_to < (SELECT COALESCE(MAX(up_to), 0) FROM event_prunes) THEN
        RAISE EXCEPTION 'prune marks only grow';
    END IF;
    RETURN NEW;
END
$$;

CREATE TABLE groups (
    name         TEXT PRIMARY KEY,
    parent       TEXT REFERENCES groups(name),
    workflow_id  TEXT,
    base_image   TEXT,
    overlay_mode TEXT,
    hostname     TEXT,
    volumes      TEXT,
    variables    TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    serial       TEXT NOT NULL UNIQUE,
    full_serial  TEXT,
    mac          TEXT,
    model        TEXT,
    hostname     TEXT,
    state        TEXT NOT NULL,
    workflow_id  TEXT,
    machine_id   TEXT NOT NULL,
    overlay_mode TEXT,
    base_image   TEXT,
    last_boot_at TEXT,
    last_ip      TEXT,
    conflict     TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    degraded     TEXT,
    boot_id      TEXT,
    boot_ip      TEXT,
    mac_confirmed BIGINT NOT NULL DEFAULT 0,
    volumes      TEXT,
    group_name   TEXT REFERENCES groups(name),
    running_version TEXT,
    layer_version TEXT
);
CREATE INDEX nodes_by_state ON nodes(state);
CREATE INDEX nodes_by_group ON nodes(group_name);

CREATE TABLE boot_events (
    id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    node_id TEXT,
    serial  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at      TEXT NOT NULL,
    ip      TEXT,
    detail  TEXT NOT NULL
);
CREATE INDEX boot_events_by_node ON boot_events(node_id, id);
CREATE INDEX boot_events_by_serial ON boot_events(serial, id);
CREATE TABLE event_prunes (
    id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    up_to  BIGINT NOT NULL,
    at     TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX event_prunes_by_up_to ON event_prunes(up_to);
CREATE TRIGGER boot_events_no_update BEFORE UPDATE ON boot_events
    FOR EACH ROW EXECUTE FUNCTION pureboot_refuse('boot_events is append-only');
CREATE TRIGGER boot_events_no_delete BEFORE DELETE ON boot_events
    FOR EACH ROW EXECUTE FUNCTION boot_events_delete_check();
CREATE TRIGGER event_prunes_grow BEFORE INSERT ON event_prunes
    FOR EACH ROW EXECUTE FUNCTION event_prunes_grow_check();
CREATE TRIGGER event_prunes_no_update BEFORE UPDATE ON event_prunes
    FOR EACH ROW EXECUTE FUNCTION pureboot_refuse('event_prunes is append-only');
CREATE TRIGGER event_prunes_no_delete BEFORE DELETE ON event_prunes
    FOR EACH ROW EXECUTE FUNCTION pureboot_refuse('event_prunes is append-only');

CREATE TABLE write_check (id BIGINT PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL);

CREATE TABLE node_boots (
    boot_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    ip      TEXT NOT NULL,
    at      TEXT NOT NULL,
    layer   TEXT NOT NULL DEFAULT '',
    installed_at TEXT,
    installed_ms BIGINT,
    pi_init_steps TEXT,
    complete_at TEXT,
    complete TEXT,
    healthy BIGINT,
    version TEXT,
    failed  TEXT,
    rowid   BIGINT GENERATED ALWAYS AS IDENTITY,
    UNIQUE (node_id, ip)
);
CREATE INDEX node_boots_by_node ON node_boots(node_id, at);
CREATE TABLE step_runs (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    node_id     TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    boot_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    layer       TEXT NOT NULL,
    ok          BIGINT NOT NULL,
    summary     TEXT NOT NULL,
    exit_code   BIGINT,
    timed_out   BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    output      TEXT NOT NULL,
    output_dropped BIGINT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX step_runs_by_node ON step_runs(node_id, id);
CREATE TABLE step_done (
    node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    layer   TEXT NOT NULL,
    run_id  BIGINT NOT NULL,
    PRIMARY KEY (node_id, name)
);
CREATE TABLE step_reruns (
    node_id  TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    after_id BIGINT NOT NULL,
    PRIMARY KEY (node_id, name)
);

CREATE TABLE group_rules (
    priority   BIGINT PRIMARY KEY,
    group_name TEXT NOT NULL REFERENCES groups(name),
    serial     TEXT,
    mac        TEXT,
    model      TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE image_versions (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    dir         TEXT NOT NULL UNIQUE,
    digest      TEXT,
    size        BIGINT,
    imported_at TEXT NOT NULL,
    complete    BIGINT NOT NULL,
    bad         TEXT,
    UNIQUE (channel, seq)
);
CREATE TABLE image_channels (
    name     TEXT PRIMARY KEY,
    version  TEXT NOT NULL,
    previous TEXT,
    moved_at TEXT NOT NULL
);
CREATE TABLE rollouts (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    channel      TEXT NOT NULL,
    version      TEXT NOT NULL,
    from_version TEXT NOT NULL,
    canaries     TEXT NOT NULL,
    wait_secs    BIGINT NOT NULL,
    min_healthy  BIGINT NOT NULL,
    health       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    outcome      TEXT,
    reason       TEXT,
    ended_at     TEXT
);
CREATE INDEX rollouts_by_channel ON rollouts(channel, id);
CREATE TABLE version_pins (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    rollout BIGINT NOT NULL
);
CREATE TABLE image_events (
    id      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    channel TEXT NOT NULL,
    rollout BIGINT,
    kind    TEXT NOT NULL,
    at      TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX image_events_by_channel ON image_events(channel, id);

CREATE TABLE nfs_homes (
    node_id   TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    server    TEXT NOT NULL,
    placed_at TEXT NOT NULL
);
CREATE INDEX nfs_homes_by_server ON nfs_homes(server);
CREATE TABLE node_nfs_pins (
    node_id TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
    server  TEXT NOT NULL
);
CREATE TABLE group_nfs_pins (
    group_name TEXT PRIMARY KEY REFERENCES groups(name) ON DELETE CASCADE,
    server     TEXT NOT NULL
);
"#;

/// The steps of `engine`, numbered.
fn steps(engine: Engine) -> Vec<(i64, std::borrow::Cow<'static, str>)> {
    match engine {
        Engine::Sqlite => (1..).zip(MIGRATIONS.iter().map(|s| (*s).into())).collect(),
        // Every text column compares as SQLite's do (the DDL says TEXT only for columns).
        Engine::Postgres => (POSTGRES_FIRST..)
            .zip(
                POSTGRES_MIGRATIONS
                    .iter()
                    .map(|s| s.replace(" TEXT", " TEXT COLLATE \"C\"").into()),
            )
            .collect(),
    }
}

pub(super) fn current_version(tx: &DbTx<'_>) -> Result<i64, StoreError> {
    tx.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
        r.get::<Option<i64>>(0)
    })
    .optional()
    .map_err(sql("read schema version"))
    .map(|v| v.flatten().unwrap_or(0))
}

/// Brings the database to this controller's schema, in one transaction under the write lock
/// (two controllers starting at once on one PostgreSQL: the second finds it done).
pub(super) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let engine = conn.engine();
    let tx = conn.begin_write().map_err(sql("begin migration"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL
        )",
    )
    .map_err(sql("create schema_migrations"))?;
    let current = current_version(&tx)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    for (version, step) in steps(engine) {
        if version <= current {
            continue;
        }
        tx.execute_batch(&step).map_err(sql("apply migration"))?;
        tx.execute(
            &format!(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, {})",
                super::NOW
            ),
            [version],
        )
        .map_err(sql("record migration"))?;
        log::info!("database migrated to schema version {version}");
    }
    tx.commit().map_err(sql("commit migration"))
}

#[cfg(test)]
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::test_support::database(dir.path(), "r.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest());
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest());
        if let Conn::Lite(conn) = &*store.conn.lock().unwrap() {
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        store
            .write(|tx| {
                tx.tx
                    .execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')",
                        [],
                    )
                    .map_err(sql("insert"))
            })
            .unwrap();
        drop(store);
        let err = Store::open(&path).err().expect("a newer schema is refused");
        assert!(
            err.to_string().contains("99") && err.to_string().contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
}

#[cfg(test)]
mod twins {
    use super::*;

    /// A new SQLite step without its PostgreSQL twin would leave a PostgreSQL registry a
    /// version behind while it says it is current.
    #[test]
    fn postgres_has_a_twin_of_every_step() {
        assert_eq!(
            POSTGRES_FIRST + POSTGRES_MIGRATIONS.len() as i64 - 1,
            MIGRATIONS.len() as i64
        );
    }
}
