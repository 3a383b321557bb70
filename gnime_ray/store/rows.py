"""Result rows: one Parquet file per row under the results root (store/root.py).

Rows are hive-partitioned by study/dataset/explainer. The partition columns live in the directory
names, not in the files; ``read_rows`` (or ``pyarrow.dataset.dataset(root, partitioning="hive")``,
pandas, DuckDB) returns them as columns. ``SCHEMA`` is every column a row has.

Exactly once: a row's file is named by a hash of its identity (study, cell, attack seed and the
exact lambda, NG width and gamma), so writing the same row again (a retried attacker task, a
trial restored after a node died) replaces the file instead of adding a second row, and "does
this row exist" is one metadata lookup. A row may carry arrays for figures, kept beside it as
``_figures/study=<study>/<row key>.npz``.
"""

from __future__ import annotations

import io
import math
from typing import Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..cellspec import content_hash
from ..paper import PAPER_ATTRIBUTES
from .root import atomic_write, resolve_out

PARTITION_COLUMNS = ("study", "dataset", "explainer")
# the metrics a row holds for each set of evaluation images: the test images' under these names, the
# selection images' as select_<name> (pipeline/cell.py)
SPLIT_METRICS = ("mse", "ssim", "tca", "deepsim", "feature_distance", "psnr", "recl_acc", "perturbation_mse",
                 "utility_deepsim", "deepsim_paper_n", "utility_deepsim_paper_n", "utility_topk")

SCHEMA = pa.schema([
    ("study", pa.string()), ("dataset", pa.string()), ("explainer", pa.string()),
    ("trial", pa.string()), ("cell", pa.string()),
    ("aux_dataset", pa.string()), ("variant", pa.string()),
    # the GNIME variant of the row's defence: 'paper' (INV fed as the release) or 'one-scale' ('' without GNIME;
    # null in rows of earlier versions, which trained one-scale)
    ("gnime_variant", pa.string()),
    ("defense", pa.string()), ("attack", pa.string()),
    ("lambda", pa.float64()), ("ng_width", pa.float64()), ("gamma", pa.float64()),
    ("study_seed", pa.int64()), ("attack_seed", pa.int64()), ("preset", pa.string()),
    # which of several independently trained GNIMEs the row's defence used (0: the study seed's own)
    ("gnime_seed", pa.int64()),
    # how lambda was calibrated to a perturbation target (JSON; '' when it was given)
    ("calibration", pa.string()),
    # which evaluation images the plain metric columns below are measured on: 'test' (data/splits.py);
    # null in rows of earlier versions, whose metrics cover the whole evaluation split
    ("split", pa.string()),
    *[(f"{prefix}{m}", pa.float64()) for prefix in ("", "select_") for m in SPLIT_METRICS],
    # RND's and OND's noise size (a perturbation MSE), what it was matched to ('perturbation', 'utility' or
    # 'utility-topk'; '' for other defences, null in rows of earlier versions: perturbation) and, for a
    # utility match, its search on the selection images (JSON: pipeline/match.py)
    ("matched_mse", pa.float64()), ("matched_on", pa.string()), ("matching", pa.string()),
    # test images (the plain metrics') and selection images (the select_* metrics')
    ("n_eval", pa.int64()), ("n_select", pa.int64()), ("attack_epochs_run", pa.int64()),
    # the release's evaluation images of the dataset the paper reports (MNIST 7,000, CIFAR-10 6,000, CelebA
    # 3,000): the N at which deepsim_paper_n and utility_deepsim_paper_n estimate the release's DeePSiM (metrics.py)
    ("paper_n", pa.int64()),
    # where the networks this row used are kept, relative to the results root (store/artifacts.py)
    ("classifiers_artifact", pa.string()), ("gnime_artifact", pa.string()),
    # everything needed to run the cell again (JSON: cell, preset fields and overrides, data, runtime)
    ("config", pa.string()),
    # per evaluation image: the reconstruction's SSIM; per evaluation map: the perturbation MSE (figures)
    ("ssim_per_image", pa.list_(pa.float32())), ("perturbation_per_map", pa.list_(pa.float32())),
    # the row's sample of evaluation images, maps and reconstructions (_figures/...npz), for figures
    ("figure_sample", pa.string()),
    # provenance: the package version and the git commit of the code that made the row (provenance.py;
    # code_commit null in rows of earlier versions)
    ("code_version", pa.string()), ("code_commit", pa.string()), ("torch_version", pa.string()),
    ("device", pa.string()), ("host", pa.string()),
    ("wall_seconds", pa.float64()), ("created_at", pa.string()),
    # attribute leakage (CelebA, Fig. 6): F1 of each attribute classifier on the reconstructions
    *[(f"f1_{a.lower()}", pa.float64()) for a in PAPER_ATTRIBUTES],
])
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in PARTITION_COLUMNS])
# a row may carry, under this key, arrays for figures (name -> numpy array); ``write_rows`` stores
# them as ``_figures/study=<study>/<row key>.npz`` and names that file in the ``figure_sample`` column
FIGURE_SAMPLE = "_figure_sample"


def _exact(value: Optional[float]) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def row_key(row: dict) -> str:
    """The file name stem of a row: a hash of its identity, (study, cell, attack seed) and the exact
    lambda, NG width and gamma (the cell key rounds them to 6 digits)."""
    return content_hash([row["study"], row["cell"], int(row["attack_seed"]), _exact(row["lambda"]),
                         _exact(row["ng_width"]), _exact(row["gamma"])], length=20)


def row_path(out: str, row: dict) -> tuple[pafs.FileSystem, str]:
    """Where the row (a dict with its identity's and partition's columns) lives under ``out``."""
    fs, root = resolve_out(out)
    part = "/".join(f"{c}={row[c]}" for c in PARTITION_COLUMNS)
    return fs, f"{root}/{part}/part-{row_key(row)}.parquet"


def row_identity(study: str, dataset: str, explainer: str, cell: str, attack_seed: int, lam: float, width: float,
                 gamma: Optional[float]) -> dict:
    """The columns that name a row, for ``row_exists``/``read_row``."""
    return {"study": study, "dataset": dataset, "explainer": explainer, "cell": cell, "attack_seed": attack_seed,
            "lambda": lam, "ng_width": width, "gamma": gamma}


def row_exists(out: str, identity: dict) -> bool:
    fs, path = row_path(out, identity)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_row(out: str, identity: dict) -> dict:
    """The row named by ``identity`` (``row_identity``), partition columns included."""
    fs, path = row_path(out, identity)
    with fs.open_input_file(path) as fh:
        row = pq.read_table(fh).to_pylist()[0]
    return {**row, **{c: identity[c] for c in PARTITION_COLUMNS}}


def write_rows(rows: Iterable[dict], out: str) -> list[str]:
    """Write each row to its own file under ``out`` (replacing an earlier write of the same row).
    Rows must carry every column of SCHEMA. Returns the paths written."""
    written = []
    for row in rows:
        missing = [f.name for f in SCHEMA if f.name not in row]
        if missing:
            raise ValueError(f"row is missing columns {missing}")
        fs, path = row_path(out, row)
        if row.get(FIGURE_SAMPLE):
            relpath = f"_figures/study={row['study']}/{row_key(row)}.npz"
            buf = io.BytesIO()
            np.savez_compressed(buf, **row[FIGURE_SAMPLE])
            atomic_write(fs, f"{resolve_out(out)[1]}/{relpath}", buf.getvalue())
            row = {**row, "figure_sample": relpath}
        table = pa.Table.from_pylist([{f.name: row[f.name] for f in FILE_SCHEMA}], schema=FILE_SCHEMA)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        atomic_write(fs, path, buf.getvalue())
        written.append(path)
    return written


def read_rows(out: str) -> pa.Table:
    """Every row under ``out`` as one table, partition columns included (empty if none). Columns a
    row file lacks (written by an older version) read as null."""
    fs, root = resolve_out(out)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return SCHEMA.empty_table()
    files = [f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
             if f.type == pafs.FileType.File and f.path.endswith(".parquet")
             and f.path[len(root):].lstrip("/").startswith("study=")
             and not any(part.startswith((".", "_")) for part in f.path[len(root):].split("/"))]
    if not files:
        return SCHEMA.empty_table()
    partitioning = ds.partitioning(pa.schema([SCHEMA.field(c) for c in PARTITION_COLUMNS]), flavor="hive")
    dataset = ds.dataset(files, filesystem=fs, format="parquet", partitioning=partitioning, schema=SCHEMA,
                         partition_base_dir=root)
    return dataset.to_table()


def read_figure_sample(out: str, relpath: str) -> dict[str, np.ndarray]:
    """The arrays a row kept for figures (``figure_sample`` column)."""
    fs, root = resolve_out(out)
    with fs.open_input_file(f"{root}/{relpath}") as fh:
        with np.load(io.BytesIO(fh.read())) as z:
            return {k: z[k] for k in z.files}
