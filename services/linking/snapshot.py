"""Linking's persisted state: the index, the teasers and the follower positions it reflects.

Written atomically (temporary file + rename) as a zip with three members, so a restart loads
it in about a second and replays only the events after ``positions`` instead of rebuilding
the index from the database.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import zipfile

from services.linking.handlers import LinkingState
from services.linking.relatedness import RelatedIndex
from services.linking.teasers import Store, Teasers

FORMAT = 4  # 4: ids in id tables; 3: smaller inverted lists; 2: teasers packed. An older snapshot is not loaded (rebuilt instead)


def save(path: pathlib.Path, state: LinkingState, positions: dict[int, int], *, topic: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    meta = {"format": FORMAT, "topic": topic, "positions": {str(p): o for p, o in positions.items()},
            "articles": len(state.teasers)}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("index.bin", state.index.dump())
        with z.open("teasers.bin", "w", force_zip64=True) as f:
            for record in state.teasers.dump():
                f.write(record)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def load(path: pathlib.Path, *, topic: str, store: Store | None = None) -> tuple[LinkingState, dict[int, int]] | None:
    """The saved state, or None when there is none or it does not fit (then rebuild). The
    teasers go into ``store`` (default: memory); it is closed when nothing is loaded."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            if meta.get("format") != FORMAT or meta.get("topic") != topic:
                raise ValueError("another format or topic")
            index = RelatedIndex.load(z.read("index.bin"))
            teasers = Teasers.load(z.read("teasers.bin"), store=store)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, struct.error, UnicodeDecodeError):
        if store is not None:
            store.close()
        return None
    return LinkingState(index=index, teasers=teasers), {int(p): o for p, o in meta["positions"].items()}
