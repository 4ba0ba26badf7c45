"""The profile and drift commands on real files of every supported format."""

import json
import subprocess
import sys

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json  # noqa: F401  (registers the reader used by the command)
import pyarrow.parquet as pq
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from ampel_monitor.cli import main
from tests.drift.conftest import decile_counts, psi_reference

REPORT_KEYS = {"features", "drifted_features", "share_drifted"}


def make_table(rows, seed, shift):
    rng = np.random.default_rng(seed)
    income = rng.normal(50 + shift, 10, rows)
    income[::50] = np.nan
    return pa.table(
        {
            "age": rng.integers(18, 90, rows),
            "income": income,
            "region": rng.choice(["n", "s", "e", "w"], rows, p=[0.4, 0.3, 0.2, 0.1] if not shift else [0.1, 0.2, 0.3, 0.4]),
            "when": pa.array(np.arange(rows).astype("datetime64[s]")),
        }
    )


def write(table, path):
    suffix = path.suffix
    if suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".jsonl":
        with path.open("w") as handle:
            for row in table.drop(["when"]).to_pylist():
                handle.write(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}) + "\n")
    elif suffix == ".avro":
        schema = {
            "type": "record",
            "name": "Row",
            "fields": [
                {"name": "age", "type": "long"},
                {"name": "income", "type": ["null", "double"]},
                {"name": "region", "type": "string"},
            ],
        }
        records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
                   for row in table.drop(["when"]).to_pylist()]
        with path.open("wb") as handle:
            fastavro.writer(handle, schema, records)
    return path


@pytest.fixture(scope="module")
def tables():
    return make_table(4000, 1, 0), make_table(3000, 2, 8)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".avro"])
def test_drift_report_on_every_format(tmp_path, tables, suffix, capsys):
    reference = write(tables[0], tmp_path / f"ref{suffix}")
    current = write(tables[1], tmp_path / f"cur{suffix}")
    out = tmp_path / "report.json"
    status = main(["drift", "--reference", str(reference), "--current", str(current), "--out", str(out),
                   "--numeric", "age,income", "--categorical", "region"])
    assert status == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert set(report) == REPORT_KEYS
    assert report["drifted_features"] == ["income", "region"]
    assert report["share_drifted"] == pytest.approx(2 / 3)

    ref_income = tables[0].column("income").to_numpy(zero_copy_only=False)
    cur_income = tables[1].column("income").to_numpy(zero_copy_only=False)
    income = report["features"]["income"]
    assert income["psi"] == pytest.approx(psi_reference(*decile_counts(ref_income, cur_income)), rel=1e-12)
    assert income["missing_share"] == pytest.approx(60 / 3000)
    expected = ks_2samp(ref_income[~np.isnan(ref_income)], cur_income[~np.isnan(cur_income)], method="asymp")
    assert abs(income["ks_statistic"] - expected.statistic) <= 0.01

    region = report["features"]["region"]
    names = ["n", "s", "e", "w"]
    table = [[tables[i].column("region").to_pylist().count(n) for n in names] for i in (0, 1)]
    assert region["chi2_statistic"] == pytest.approx(chi2_contingency(table, correction=False).statistic, rel=1e-9)
    assert region["kind"] == "categorical" and report["features"]["age"]["kind"] == "numeric"


def test_profile_then_drift_with_inferred_kinds_and_table(tmp_path, tables, capsys):
    reference = write(tables[0], tmp_path / "ref.parquet")
    current = write(tables[1], tmp_path / "cur.parquet")
    profile = tmp_path / "profile.json"
    assert main(["profile", "--reference", str(reference), "--out", str(profile)]) == 0
    captured = capsys.readouterr()
    assert "skipping column 'when'" in captured.err
    assert "2 numeric and 1 categorical" in captured.out
    assert json.loads(profile.read_text())["format"] == "ampel-profile"
    assert main(["drift", "--reference", str(profile), "--current", str(current), "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["feature", "kind", "psi", "js", "statistic", "p-value", "missing", "drifted"]
    assert [line.split()[0] for line in lines[1:4]] == ["age", "income", "region"]
    assert lines[-1] == "2 of 3 features drifted (share 0.667)"


def test_thresholds_and_fail_on_drift(tmp_path, tables, capsys):
    reference = write(tables[0], tmp_path / "ref.parquet")
    current = write(tables[1], tmp_path / "cur.parquet")
    args = ["drift", "--reference", str(reference), "--current", str(current), "--numeric", "age,income",
            "--categorical", "region"]
    assert main([*args, "--fail-on-drift"]) == 1
    capsys.readouterr()
    assert main([*args, "--feature-threshold", "income:psi=50", "--feature-threshold", "income:js=1",
                 "--threshold", "psi=50", "--threshold", "js=1", "--fail-on-drift"]) == 0
    assert json.loads(capsys.readouterr().out)["drifted_features"] == []


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--reference", "{tmp}/absent.csv"], "absent.csv: no such file"),
        ("garbage", ["--reference", "{tmp}/bad.parquet"], "bad.parquet: cannot read parquet file"),
        (None, ["--reference", "{tmp}/ref.txt"], "ref.txt: unknown file type '.txt'"),
        (None, ["--numeric", "nope"], "ref.csv: unknown column 'nope'"),
        (None, ["--numeric", "region"], "ref.csv: feature 'region' is not numeric"),
        ("empty-column", ["--numeric", "empty"], "feature 'empty' has no values"),
        ("empty-current", [], "cur.csv: feature 'income' has no values"),
        ("bad-profile", ["--reference", "{tmp}/profile.json"], "profile.json: invalid reference profile"),
        (None, ["--feature-threshold", "nope:psi=1"], "--feature-threshold: unknown feature 'nope'"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_or_column(tmp_path, tables, setup, args, message):
    write(tables[0], tmp_path / "ref.csv")
    write(tables[1], tmp_path / "cur.csv")
    (tmp_path / "ref.txt").write_text("x")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "profile.json").write_text(json.dumps({"format": "ampel-profile", "version": 1}))
    if setup == "empty-column":
        (tmp_path / "ref.csv").write_text("empty,age\n,1\n,2\n")
    if setup == "empty-current":
        (tmp_path / "cur.csv").write_text("age,income,region\n1,,n\n2,,s\n")
    base = {"--reference": f"{tmp_path}/ref.csv", "--current": f"{tmp_path}/cur.csv"}
    extra = [a.format(tmp=tmp_path) for a in args]
    for flag in list(base):
        if flag in extra:
            base.pop(flag)
    argv = [sys.executable, "-m", "ampel_monitor.cli", "drift", *[x for kv in base.items() for x in kv], *extra]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("ampel-monitor: error: "), result.stderr
    assert sum("error" in line for line in lines) == 1, result.stderr
    assert message in lines[-1]
    assert "Traceback" not in result.stderr
