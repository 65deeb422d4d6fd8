"""The synthetic training matrix, kept for retraining: `train` (what real labels are added to) and `holdout`
(the held-out specs' problems: the frozen set on which the gate compares a candidate with the champion)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.adapters.label_log import filesystem, write_durably
from pipeline.learning.training_rows import rows_frame
from train.dataset import Dataset

PARTS = ("train", "holdout")


def frame_of(data: Dataset, prefix: str) -> pd.DataFrame:
    groups = np.repeat(np.arange(len(data.group_sizes)), data.group_sizes)
    specs = np.repeat(np.array(data.group_specs, dtype=object), data.group_sizes)
    qids = np.char.add(prefix, groups.astype(str)).astype(object)
    return rows_frame(data.X, data.y, qids, specs)


def save_base_data(train: Dataset, holdout: Dataset, uri: str) -> None:
    fs, root = filesystem(uri)
    for part, data in zip(PARTS, (train, holdout)):
        table = pa.Table.from_pandas(frame_of(data, f"{part}:"), preserve_index=False)
        write_durably(table, fs, base_path(root, part))


def base_path(uri: str, part: str) -> str:
    return f"{uri.rstrip('/')}/{part}.parquet"


def read_part(uri: str, part: str) -> pd.DataFrame:
    fs, root = filesystem(uri)
    return pq.read_table(base_path(root, part), filesystem=fs).to_pandas()
