"""Open a Loupe trace from Python: pyarrow + pandas, nothing else.

A trace is a main file (``traces.arrow``) plus sibling files
(``traces.<table>.arrow``) and an index; docs/schema.md describes them.
This module is a thin convenience over ``pyarrow.ipc``: every file is an
ordinary Arrow IPC file that ``pyarrow.ipc.open_file`` reads directly.

    from loupe_trace import Trace
    tr = Trace("traces.arrow")
    tr.run                       # model, hash, config, command line, time
    tr.tables                    # one dict per table (name, kind, rows, ...)
    tr.read("head_scores").to_pandas()
    tr.select("activations.576", prompt_id=2, hook="blocks.3.hook_resid_post")
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

SCHEMA_VERSION = 2


def metadata(schema):
    """A schema's metadata as a str -> str dict."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


class Trace:
    def __init__(self, path):
        if not path.endswith(".arrow"):
            raise ValueError(f"{path}: a trace's main file ends in .arrow")
        self.path = path
        self.stem = path[: -len(".arrow")]
        main = ipc.open_file(pa.memory_map(path))
        md = metadata(main.schema)
        if "loupe.schema" not in md:
            raise ValueError(f"{path}: not a Loupe trace file (no loupe.schema metadata)")
        self.schema_version = int(md["loupe.schema"])
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(f"{path}: schema version {self.schema_version} is newer than {SCHEMA_VERSION}")
        self.trace_id = md["loupe.trace_id"]
        self.main_table = md["loupe.main_table"]
        self.run = json.loads(md["loupe.run"])
        index = self.open("index")
        self.tables = json.loads(metadata(index.schema)["loupe.tables"])
        self.index = index.read_all().to_pandas()

    def file(self, name):
        """The file that holds table ``name``."""
        return self.path if name == self.main_table else f"{self.stem}.{name}.arrow"

    def table_names(self, kind=None):
        return [t["name"] for t in self.tables if kind is None or t["kind"] == kind]

    def open(self, name):
        """A memory-mapped pyarrow RecordBatchFileReader for one table."""
        reader = ipc.open_file(pa.memory_map(self.file(name)))
        tid = metadata(reader.schema).get("loupe.trace_id")
        if tid != self.trace_id:
            raise ValueError(f"{self.file(name)} belongs to another write of this trace ({tid} != {self.trace_id})")
        return reader

    def read(self, name):
        """A whole table (mind the size of activation tables)."""
        return self.open(name).read_all()

    def select(self, name, prompt_id=None, hook=None, layer=None, head=None, method=None):
        """The rows of one table for the given keys, reading only the record
        batches the index points to."""
        idx = self.index[self.index.table == name]
        for col, want in (("prompt_id", prompt_id), ("layer", layer), ("head", head)):
            if want is not None:
                idx = idx[(idx[col] == want) | (idx[col] == -1)]
        name_key = method if method is not None else hook
        if name_key is not None:
            idx = idx[(idx["hook"] == name_key) | (idx["hook"] == "")]
        reader = self.open(name)
        table = pa.Table.from_batches([reader.get_batch(int(i)) for i in idx.batch], schema=reader.schema)
        mask = None
        for col, want in (("prompt_id", prompt_id), ("layer", layer), ("head", head), ("hook", hook), ("method", method)):
            if want is not None and col in table.column_names:
                m = pc.equal(table[col], want)
                mask = m if mask is None else pc.and_(mask, m)
        return table if mask is None else table.filter(mask)

    def tokens(self, prompt_id):
        """Token texts of one prompt, in position order."""
        t = self.select("tokens", prompt_id=prompt_id).to_pandas().sort_values("position")
        return list(t.token_text)

    def attention(self, prompt_id, layer, head):
        """One head's full attention pattern as a queries x keys array."""
        rows = self.select("attention", prompt_id=prompt_id, layer=layer, head=head).to_pandas()
        if rows.empty:
            raise KeyError(f"no attention for prompt {prompt_id} layer {layer} head {head}")
        rows = rows.sort_values("query_pos")
        n = int(rows.n_keys.iloc[0])
        out = np.zeros((len(rows), n), dtype=np.float32)
        for i, w in enumerate(rows.weights):
            out[i, : len(w)] = w
        return out

    def activations(self, hook, prompt_id):
        """One hook's activations on one prompt as a positions x shape array."""
        for t in self.tables:
            if t["kind"] != "activations":
                continue
            rows = self.select(t["name"], prompt_id=prompt_id, hook=hook)
            if rows.num_rows:
                df = rows.to_pandas().sort_values("position")
                return np.stack(df["values"].to_numpy()).reshape(-1, *t["shape"])
        raise KeyError(f"no activations for {hook} on prompt {prompt_id}")
