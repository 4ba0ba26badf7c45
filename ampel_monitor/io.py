"""Reading flat tabular files into the columns the drift kernels take.

CSV, Parquet, JSON lines and Avro container files, chosen by extension. Numeric
columns (integers, floats, decimals) become float64 arrays with NaN for nulls; string
and boolean columns become dictionary-encoded ``EncodedColumn``s. Other types
(timestamps, nested values, bytes) are left out unless asked for by name, which is
an error.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from drift.columns import Column, EncodedColumn

__all__ = ["FORMATS", "arrow_to_columns", "read_columns", "read_table"]

#: File extension to format name.
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".avro": "avro",
}


def read_table(path: str | Path) -> pa.Table:
    """Reads a CSV, Parquet, JSON-lines or Avro file into an Arrow table.

    Raises:
        ValueError: naming the file, if it is missing, of an unknown extension or unreadable.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r}, expected one of {sorted(FORMATS)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if kind == "csv":
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            return pa_csv.read_csv(
                path,
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
            )
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "json":
            return pa_json.read_json(path)
        with path.open("rb") as handle:
            return pa.Table.from_pylist(list(fastavro.reader(handle)))
    except (OSError, ValueError, pa.ArrowException, fastavro.read.SchemaResolutionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: cannot read {kind} file: {reason}") from exc


def _is_numeric_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _is_categorical_type(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_dictionary(kind)
    )


def arrow_to_columns(
    table: pa.Table,
    names: Sequence[str] | None = None,
    source: str = "",
    categorical: Collection[str] = (),
) -> dict[str, Column]:
    """Converts Arrow columns into kernel columns.

    Args:
        table: the data.
        names: the columns wanted; None for every numeric or categorical column
            (others are skipped with a note on stderr).
        source: the file name, for messages.
        categorical: columns to encode as categories even when they hold numbers.

    Raises:
        ValueError: naming the column, if a wanted one is absent or of an unusable type.
    """
    prefix = f"{source}: " if source else ""
    wanted = list(table.column_names) if names is None else list(names)
    columns: dict[str, Column] = {}
    for name in wanted:
        if name not in table.column_names:
            raise ValueError(f"{prefix}unknown column {name!r}")
        data = table.column(name)
        if (_is_numeric_type(data.type) or pa.types.is_null(data.type)) and name not in categorical:
            columns[name] = pc.cast(data, pa.float64()).to_numpy(zero_copy_only=False)
        elif _is_categorical_type(data.type) or _is_numeric_type(data.type) or pa.types.is_null(data.type):
            encoded = pc.dictionary_encode(pc.cast(data, pa.string())).combine_chunks()
            indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            columns[name] = EncodedColumn(indices.astype(np.intp), encoded.dictionary.to_pylist())
        elif names is None:
            print(f"{prefix}skipping column {name!r} of type {data.type}", file=sys.stderr)
        else:
            raise ValueError(f"{prefix}column {name!r} has type {data.type}, neither numeric nor categorical")
    return columns


def read_columns(
    path: str | Path, names: Sequence[str] | None = None, categorical: Collection[str] = ()
) -> dict[str, Column]:
    """Reads a file into kernel columns (see ``arrow_to_columns``)."""
    return arrow_to_columns(read_table(path), names, str(path), categorical)


#: Reference data columns named ``attributions.<feature>`` hold per-row feature
#: attributions (a nested ``attributions`` object is flattened into them).
ATTRIBUTIONS = "attributions."


def read_reference(
    path: str | Path, names: Sequence[str] | None = None, categorical: Collection[str] = ()
) -> tuple[dict[str, Column], dict[str, np.ndarray]]:
    """Reads reference data: its columns (see ``arrow_to_columns``) and, apart, its
    attributions by feature (``ATTRIBUTIONS`` columns, as numbers).

    Raises:
        ValueError: naming the file and column, if a wanted column is absent or unusable.
    """
    table = read_table(path)
    if "attributions" in table.column_names and pa.types.is_struct(table.column("attributions").type):
        nested = table.column("attributions").combine_chunks()
        table = table.drop_columns(["attributions"])
        for i in range(nested.type.num_fields):
            table = table.append_column(ATTRIBUTIONS + nested.type.field(i).name, nested.field(i))
    attributed = [name for name in table.column_names if name.startswith(ATTRIBUTIONS)]
    attributions = {}
    for name in attributed:
        data = table.column(name)
        if not (_is_numeric_type(data.type) or pa.types.is_null(data.type)):
            raise ValueError(f"{path}: column {name!r} has type {data.type}, attributions must be numbers")
        attributions[name[len(ATTRIBUTIONS):]] = pc.cast(data, pa.float64()).to_numpy(zero_copy_only=False)
    table = table.drop_columns(attributed)
    return arrow_to_columns(table, names, str(path), categorical), attributions

