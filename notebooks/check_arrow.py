"""The Arrow contract test: pyarrow reads every column of every table of a
Loupe trace with the types and shapes docs/schema.md gives, and reads the
Parquet and CSV exports back.

    python check_arrow.py TRACE.arrow [TRACE.arrow ...]

Exits non-zero (with the reason) on the first mismatch.
"""

import glob
import json
import math
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loupe_trace import SCHEMA_VERSION, Trace, metadata

i32, f32, f64, utf8 = pa.int32(), pa.float32(), pa.float64(), pa.string()

# docs/schema.md, table by table: (column, type, nullable).
COLUMNS = {
    "tokens": [("prompt_id", i32, False), ("position", i32, False), ("token_id", i32, False), ("token_text", utf8, False)],
    "attention": [("prompt_id", i32, False), ("layer", i32, False), ("head", i32, False), ("query_pos", i32, False),
                  ("n_keys", i32, False), ("weights", pa.list_(f32), False)],
    "attention_topk": [("prompt_id", i32, False), ("layer", i32, False), ("head", i32, False), ("query_pos", i32, False),
                       ("key_pos", pa.list_(i32), False), ("weight", pa.list_(f32), False)],
    "head_scores": [("layer", i32, False), ("head", i32, False), ("score", utf8, False), ("value", f64, False),
                    ("label", utf8, True), ("details", utf8, True)],
    "flow": [("prompt_id", i32, False), ("method", utf8, False), ("layer", i32, False), ("head", i32, False),
             ("from_layer", i32, False), ("to_layer", i32, False), ("output_pos", i32, False),
             ("values", pa.list_(f32), False)],
    "logit_lens": [("prompt_id", i32, False), ("layer", i32, False), ("position", i32, False), ("target_prob", f32, True),
                   ("top_ids", pa.list_(i32), False), ("top_probs", pa.list_(f32), False), ("top_texts", pa.list_(utf8), False)],
    "ablation": [("task", utf8, False), ("method", utf8, False), ("layers", pa.list_(i32), False), ("heads", pa.list_(i32), False),
                 ("baseline", f64, False), ("accuracy", f64, False), ("random_mean", f64, True), ("random_std", f64, True),
                 ("random_accuracy", pa.list_(f64), False), ("random_heads", pa.list_(utf8), False)],
    "features": [("latent", i32, False), ("density", f64, False), ("max_act", f32, False), ("mean_act", f32, False),
                 ("hist_counts", pa.list_(i32), False), ("top_token_ids", pa.list_(i32), False),
                 ("top_token_texts", pa.list_(utf8), False), ("top_logits", pa.list_(f32), False),
                 ("bottom_token_ids", pa.list_(i32), False), ("bottom_token_texts", pa.list_(utf8), False),
                 ("bottom_logits", pa.list_(f32), False)],
    "feature_examples": [("latent", i32, False), ("kind", utf8, False), ("rank", i32, False), ("quantile", f32, True),
                         ("context", i32, False), ("position", i32, False), ("activation", f32, False),
                         ("window_start", i32, False), ("token_ids", pa.list_(i32), False),
                         ("token_texts", pa.list_(utf8), False), ("acts", pa.list_(f32), False)],
    "feature_acts": [("prompt_id", i32, False), ("position", i32, False), ("token_id", i32, False),
                     ("token_text", utf8, False), ("latents", pa.list_(i32), False), ("values", pa.list_(f32), False)],
    "codes": [("source", utf8, False), ("hook", utf8, False), ("group", i32, False), ("code", i32, False),
                 ("count", pa.int64(), False), ("positions", pa.int64(), False), ("frequency", f32, False),
                 ("top_tokens", pa.list_(i32), False), ("top_counts", pa.list_(i32), False),
                 ("top_texts", pa.list_(utf8), False), ("context_prompts", pa.list_(i32), False),
                 ("context_positions", pa.list_(i32), False), ("contexts", pa.list_(utf8), False),
                 ("label", utf8, True), ("label_precision", f32, True), ("label_ap", f32, True)],
    "index": [("table", utf8, False), ("batch", i32, False), ("first_row", pa.int64(), False), ("rows", pa.int64(), False),
              ("prompt_id", i32, False), ("hook", utf8, False), ("layer", i32, False), ("head", i32, False)],
}


def activation_columns(shape, dtype):
    elem = pa.float16() if dtype == "float16" else f32
    return [("hook", utf8, False), ("layer", i32, False), ("head", i32, False), ("prompt_id", i32, False),
            ("position", i32, False), ("values", pa.list_(elem, math.prod(shape)), False)]


def fail(msg):
    raise SystemExit(f"check_arrow: {msg}")


def check_schema(where, schema, want):
    got = [(f.name, f.type) for f in schema]
    exp = [(n, t) for n, t, _ in want]
    if got != exp:
        fail(f"{where}: columns {got}, want {exp}")


def check_trace(path):
    tr = Trace(path)
    for key in ("model_path", "model_hash", "architecture", "loupe_version", "command_line", "created_at"):
        if key not in tr.run:
            fail(f"{path}: run info lacks {key}")
    pd.Timestamp(tr.run["created_at"])  # parses
    names = {t["name"] for t in tr.tables}
    for required in ("index", tr.main_table):
        if required not in names:
            fail(f"{path}: no {required} table")
    for t in tr.tables:
        name, kind = t["name"], t["kind"]
        file = tr.file(name)
        reader = tr.open(name)
        md = metadata(reader.schema)
        for key in ("loupe.schema", "loupe.kind", "loupe.table", "loupe.main_table", "loupe.trace_id", "loupe.run"):
            if key not in md:
                fail(f"{file}: schema metadata lacks {key}")
        if md["loupe.kind"] != kind or md["loupe.table"] != name or md["loupe.schema"] != str(SCHEMA_VERSION):
            fail(f"{file}: metadata {md['loupe.kind']}/{md['loupe.table']}/{md['loupe.schema']}")
        if json.loads(md["loupe.run"]) != tr.run:
            fail(f"{file}: run info differs from the main file's")
        if kind == "activations":
            shape = json.loads(md["loupe.shape"])
            if shape != t["shape"] or md["loupe.dtype"] != t["dtype"]:
                fail(f"{file}: shape/dtype metadata {md['loupe.shape']} {md['loupe.dtype']} vs table list {t}")
            fmd = {k.decode(): v.decode() for k, v in (reader.schema.field("values").metadata or {}).items()}
            if json.loads(fmd["loupe.shape"]) != shape:
                fail(f"{file}: values field metadata shape {fmd}")
            want = activation_columns(shape, t["dtype"])
        else:
            want = COLUMNS[kind]
        check_schema(file, reader.schema, want)
        table = reader.read_all()
        if kind != "index" and (table.num_rows != t["rows"] or reader.num_record_batches != t["batches"]):
            fail(f"{file}: {table.num_rows} rows in {reader.num_record_batches} batches, index says {t['rows']} in {t['batches']}")
        for col, _, nullable in want:
            if not nullable and table[col].null_count:
                fail(f"{file}: non-nullable column {col} has nulls")
        df = table.to_pandas()
        if kind == "activations":
            vals = np.stack(df["values"].to_numpy()).reshape(-1, *shape)
            if vals.shape != (len(df), *shape):
                fail(f"{file}: values reshape to {vals.shape}")
            exp = np.float16 if t["dtype"] == "float16" else np.float32
            if vals.dtype != exp:
                fail(f"{file}: values dtype {vals.dtype}, want {exp}")
        if kind == "attention":
            if not all(len(w) <= n for w, n in zip(df.weights, df.n_keys)):
                fail(f"{file}: a weights row is longer than n_keys")
        if kind == "flow":
            for _, g in df.groupby(["prompt_id", "method", "layer", "head", "from_layer", "to_layer"]):
                if len({len(v) for v in g["values"]}) != 1:
                    fail(f"{file}: ragged matrix")
                if g.output_pos.duplicated().any() or (g.output_pos >= len(g["values"].iloc[0])).any():
                    fail(f"{file}: output positions {list(g.output_pos)} repeat or pass the {len(g['values'].iloc[0])} inputs")
            if (df.to_layer <= df.from_layer).any() or (df["head"] < -1).any():
                fail(f"{file}: a flow row with to_layer <= from_layer or head < -1")
        if kind == "ablation":
            for _, r in df.iterrows():
                if len(r.layers) != len(r.heads) or len(r.heads) == 0 or len(r.random_heads) != len(r.random_accuracy):
                    fail(f"{file}: ablation row {r.task}: {len(r.layers)} layers, {len(r.heads)} heads, "
                         f"{len(r.random_heads)} random draws for {len(r.random_accuracy)} accuracies")
                if len(r.random_accuracy) and not np.isclose(r.random_mean, np.mean(r.random_accuracy)):
                    fail(f"{file}: ablation row {r.task}: random_mean {r.random_mean} is not the mean of {list(r.random_accuracy)}")
                if len(r.random_accuracy) and not np.isclose(r.random_std, np.std(r.random_accuracy)):
                    fail(f"{file}: ablation row {r.task}: random_std {r.random_std} is not the spread of {list(r.random_accuracy)}")
                for draw in r.random_heads:
                    if len(draw.split(",")) != len(r.heads):
                        fail(f"{file}: ablation row {r.task}: random draw {draw} is not {len(r.heads)} heads")
        # The index points at batches that hold its keys.
        for _, e in tr.index[tr.index.table == name].iterrows():
            b = reader.get_batch(int(e.batch))
            if b.num_rows != e.rows:
                fail(f"{file}: batch {e.batch} has {b.num_rows} rows, index says {e.rows}")
            for col in ("prompt_id", "layer", "head"):
                if e[col] != -1 and col in b.schema.names and set(b[col].to_pylist()) != {e[col]}:
                    fail(f"{file}: batch {e.batch} {col} values {set(b[col].to_pylist())}, index says {e[col]}")
    # A selection reads the indexed batches only and gets exactly its rows.
    for act in tr.table_names("activations")[:1]:
        hook = tr.index[tr.index.table == act].hook.iloc[0]
        sel = tr.select(act, prompt_id=1, hook=hook)
        if sel.num_rows == 0 or set(sel["hook"].to_pylist()) != {hook} or set(sel["prompt_id"].to_pylist()) != {1}:
            fail(f"{path}: select({act}, prompt 1, {hook}) gave {sel.num_rows} rows")
    return tr


def check_exports(tr):
    for t in tr.tables:
        arrow_tbl = tr.read(t["name"])
        base = tr.stem if t["name"] == tr.main_table else f"{tr.stem}.{t['name']}"
        pq_tbl = pq.read_table(base + ".parquet")
        if pq_tbl.schema.remove_metadata() != arrow_tbl.schema.remove_metadata():
            fail(f"{base}.parquet: schema {pq_tbl.schema} differs from the Arrow file's {arrow_tbl.schema}")
        if metadata(pq_tbl.schema).get("loupe.trace_id") != tr.trace_id:
            fail(f"{base}.parquet: lost the schema metadata")
        if not pq_tbl.equals(arrow_tbl.replace_schema_metadata(pq_tbl.schema.metadata)):
            fail(f"{base}.parquet: values differ from the Arrow file's")
        csv = pd.read_csv(base + ".csv", keep_default_na=False, na_values=[""] if t["kind"] != "tokens" else [])
        if len(csv) != arrow_tbl.num_rows or list(csv.columns) != arrow_tbl.column_names:
            fail(f"{base}.csv: {len(csv)} rows, columns {list(csv.columns)}")
        for f in arrow_tbl.schema:
            if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type):
                got = [len(json.loads(s)) for s in csv[f.name]]
                want = [len(v) for v in arrow_tbl[f.name].to_pylist()]
                if got != want:
                    fail(f"{base}.csv: column {f.name} JSON arrays have the wrong lengths")


def main(paths):
    if not paths:
        fail("usage: check_arrow.py TRACE.arrow ...")
    for path in paths:
        tr = check_trace(path)
        if glob.glob(tr.stem + "*.parquet"):
            check_exports(tr)
            print(f"check_arrow: {path}: {len(tr.tables)} tables, types, shapes, index and exports ok")
        else:
            print(f"check_arrow: {path}: {len(tr.tables)} tables, types, shapes and index ok")


if __name__ == "__main__":
    main(sys.argv[1:])
