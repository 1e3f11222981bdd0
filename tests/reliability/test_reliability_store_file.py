"""The SQLite store file deleted under a pool of connections: the connection that re-opens the path
owns the new file's write-ahead log, and the other, stale connections must leave it alone.

Found by the fault matrix (``sqlite-file-deleted``): a stale connection checked out after the
re-open removed the new file's ``-wal``/``-shm``, and every later write failed with "disk I/O error".
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from monitor.store.engine import create_store_engine


def _delete(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_a_stale_connection_leaves_the_new_files_log_alone(tmp_path: Path) -> None:
    """Two pooled connections on a deleted file: the first re-opens the path and writes; the second,
    checked out while the first is in use, is replaced too -- and both keep working on the new file."""
    db = tmp_path / "synthmon.db"
    changes: list[str] = []
    engine = create_store_engine(f"sqlite:///{db}", on_file_changed=changes.append)
    try:
        first, second = engine.connect(), engine.connect()
        first.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        first.commit()
        first.close()
        second.close()  # both back in the pool, both on the file about to go
        _delete(db)

        fresh = engine.connect()  # notices the deletion and opens the path anew
        fresh.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        fresh.exec_driver_sql("INSERT INTO t VALUES (1)")
        fresh.commit()
        assert Path(f"{db}-wal").exists()

        other = engine.connect()  # the other pooled connection, still on the deleted file
        other.exec_driver_sql("INSERT INTO t VALUES (2)")
        other.commit()
        assert Path(f"{db}-wal").exists()
        assert fresh.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
        fresh.close()
        other.close()
        assert changes == ["deleted"]
    finally:
        engine.dispose()
    # Everything written after the re-open is in the file at the path.
    check = sa.create_engine(f"sqlite:///{db}")
    with check.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1, 2]
    check.dispose()
