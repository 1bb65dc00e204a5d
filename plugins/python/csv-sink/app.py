"""csv-sink: appends every event Ratchet emits as one CSV row to a file in the folder the
operator grants, for spreadsheets and for tools that read CSV.

Config: {"file": "events.csv"} (a plain file name; default events.csv). The plugin asks for
the "fs" capability; the operator grants a folder (grants.dir), which the plugin sees as "/".
Columns: at_ms, kind, task, execution_id, data (the event's details as JSON text). A new file
starts with that header row.
"""

import csv
import json
import os

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import host, types

HEADER = ["at_ms", "kind", "task", "execution_id", "data"]


def settings() -> str:
    """The file to write, from the operator's config; refuses a bad config with a typed error."""
    try:
        config = json.loads(host.config())
    except ValueError as error:
        raise Err(types.PluginError_InvalidInput(f"config is not JSON: {error}"))
    name = config.get("file", "events.csv")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise Err(types.PluginError_InvalidInput(f"config.file `{name}` must be a plain file name, e.g. events.csv"))
    return "/" + name


class Sink(exports.Sink):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="csv-sink",
            version="0.1.0",
            description="appends events as CSV rows to a file in the granted folder",
            capabilities=["fs"],
        )

    def write(self, events: list[types.Event]) -> None:
        # The host sends an empty batch at load: the configuration is checked there.
        path = settings()
        if not events:
            return
        try:
            new = not os.path.exists(path) or os.path.getsize(path) == 0
            with open(path, "a", newline="") as out:
                writer = csv.writer(out)
                if new:
                    writer.writerow(HEADER)
                for event in events:
                    writer.writerow([event.at_ms, event.kind, event.task or "", event.execution_id or "", event.data])
        except OSError as error:
            raise Err(types.PluginError_Denied(f"cannot write {path} ({error}): grant the plugin a folder (grants.dir)"))
