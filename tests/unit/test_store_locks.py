"""Opening the database again in the same process must not break an open connection."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from observer.model import Run, Source
from observer.store.database import Batch, open_for_reading, open_for_writing, write_batch


def test_a_second_connection_closing_leaves_the_first_ones_wal_in_place(tmp_path: Path) -> None:
    path = tmp_path / "observer.db"
    daemon = open_for_writing(path)
    write_batch(daemon, Batch(runs=[Run("a.service", "1" * 32, "host", Source.BUS)]))

    # What `observer run`'s import does every few seconds inside the daemon's process,
    # then a reader in another process (the CLI) comes and goes.
    importer = threading.Thread(target=lambda: open_for_writing(path).close())
    importer.start()
    importer.join()
    reader = open_for_reading(path)
    reader.execute("SELECT COUNT(*) FROM runs").fetchone()
    reader.close()
    read_elsewhere = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT COUNT(*) FROM runs').fetchone(); c.close()"
    )
    subprocess.run([sys.executable, "-c", read_elsewhere, str(path)], check=True)

    assert (tmp_path / "observer.db-wal").exists()
    write_batch(daemon, Batch(runs=[Run("a.service", "2" * 32, "host", Source.BUS)]))
    reader = open_for_reading(path)
    assert reader.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    reader.close()
    daemon.close()


def test_the_database_file_is_not_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "observer.db"
    path.touch(mode=0o666)
    path.chmod(0o666)

    open_for_writing(path).close()

    assert path.stat().st_mode & 0o777 == 0o640
